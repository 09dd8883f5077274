"""Codec round trips through PyAV (FFmpeg's libraries, shipped in the ``av`` wheel): encode, decode, realign.

A round trip resamples to the codec's own rate when it needs one (G.711, G.726 and AMR-NB are narrow-band 8 kHz
codecs; Opus is coded at 48 kHz, the rate FFmpeg's Opus decoders return whatever was encoded), encodes with
FFmpeg's encoder at the given bit rate, decodes the packets straight back (no container,
no temp files) and resamples to the input rate. Encoders add a start-up delay (MP3, AAC and Opus prime their
filter banks); the decoded signal is realigned by the lag of the cross-correlation peak and cut / padded to the
input length, so the output has the same length and rate as the input and no time shift.

Which encoders exist depends on how FFmpeg was built: :func:`available_codecs` checks at run time.

>>> sorted(CODECS)[:4]
['aac', 'alaw', 'amr-nb', 'g722']
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
import soxr
from scipy.signal import fftconvolve

from plastispoof.errors import InputError


@dataclass(frozen=True)
class CodecSpec:
    """One codec of the round trip: FFmpeg encoder names (first found wins), sample rate, bit rates."""

    encoders: tuple[str, ...]
    decoder: str
    sample_rate: int | None  # None: code at the input rate
    bitrates: tuple[int, ...]  # bits per second the augmentation draws from; () = the codec has a fixed rate
    sample_format: str  # the packed/planar sample format the encoder accepts
    channels: int = 1  # FFmpeg's own Vorbis encoder takes stereo only: mono is coded as two equal channels
    container: str | None = None  # a container carries what raw packets do not (G.726: bits per sample)
    max_delay: int = 4096  # samples at the coding rate searched for the start-up delay (Opus: at 48 kHz)


CODECS: dict[str, CodecSpec] = {
    "mp3": CodecSpec(("libmp3lame",), "mp3float", None, (16_000, 24_000, 32_000, 48_000, 64_000, 96_000), "fltp"),
    "aac": CodecSpec(("aac",), "aac", None, (16_000, 24_000, 32_000, 48_000, 64_000), "fltp"),
    "opus": CodecSpec(("libopus",), "libopus", 48_000, (6_000, 8_000, 12_000, 16_000, 24_000, 32_000), "flt"),
    "vorbis": CodecSpec(("libvorbis", "vorbis"), "vorbis", None, (), "fltp", channels=2),
    "mulaw": CodecSpec(("pcm_mulaw",), "pcm_mulaw", 8_000, (), "s16"),
    "alaw": CodecSpec(("pcm_alaw",), "pcm_alaw", 8_000, (), "s16"),
    "g722": CodecSpec(("g722",), "g722", 16_000, (), "s16"),
    "g726": CodecSpec(("g726",), "g726", 8_000, (16_000, 24_000, 32_000, 40_000), "s16", container="wav"),
    "amr-nb": CodecSpec(("libopencore_amrnb",), "amrnb", 8_000,
                        (4_750, 5_150, 5_900, 6_700, 7_400, 7_950, 10_200, 12_200), "s16"),
}


@lru_cache(maxsize=None)
def encoder_name(codec: str) -> str | None:
    """The FFmpeg encoder this machine has for ``codec``, or None."""
    import av

    for name in CODECS[codec].encoders:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises UnknownCodecError (or others) for a missing encoder
            continue
        return name
    return None


def available_codecs() -> list[str]:
    """Names (keys of :data:`CODECS`) whose encoder this machine's FFmpeg has."""
    return [name for name in CODECS if encoder_name(name)]


def check_codec(codec: str) -> None:
    """:class:`InputError` unless ``codec`` is known and its encoder is present here."""
    if codec not in CODECS:
        raise InputError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")
    if encoder_name(codec) is None:
        raise InputError(f"codec {codec!r} is missing from this machine's FFmpeg (PyAV); present: "
                         f"{', '.join(available_codecs()) or 'none'}")


def codec_round_trip(x: np.ndarray, sample_rate: int, codec: str, bitrate: int | None = None) -> np.ndarray:
    """``x`` (mono float32 at ``sample_rate``) encoded with ``codec`` at ``bitrate`` (bits/s; the codec's
    default or fixed rate when None) and decoded: same length and rate as ``x``, realigned."""
    check_codec(codec)
    spec = CODECS[codec]
    x = np.asarray(x, dtype=np.float32)
    rate = spec.sample_rate or sample_rate
    coded_in = soxr.resample(x, sample_rate, rate, quality="HQ").astype(np.float32) if rate != sample_rate else x
    decoded = _encode_decode(coded_in, rate, codec, bitrate)
    decoded = _realign(coded_in, decoded, spec.max_delay)
    if rate != sample_rate:
        decoded = soxr.resample(decoded, rate, sample_rate, quality="HQ")
    return _fit(decoded.astype(np.float32), x.size)


def _encode_decode(x: np.ndarray, rate: int, codec: str, bitrate: int | None) -> np.ndarray:
    import av

    spec = CODECS[codec]
    layout = "mono" if spec.channels == 1 else "stereo"
    integer = spec.sample_format.startswith("s16")
    samples = np.clip(x, -1.0, 32767 / 32768)
    samples = np.round(samples * 32768).astype(np.int16) if integer else samples.astype(np.float32)
    planar = spec.sample_format.endswith("p") or spec.channels == 1
    bit_rate = int(bitrate or spec.bitrates[len(spec.bitrates) // 2]) if (bitrate or spec.bitrates) else None

    def frames(frame_size: int):
        frame_size = frame_size or 1024
        for start in range(0, samples.size, frame_size):
            chunk = samples[start:start + frame_size]
            if chunk.size < frame_size:
                chunk = np.pad(chunk, (0, frame_size - chunk.size))  # fixed-frame encoders take whole frames
            block = np.repeat(chunk[None, :], spec.channels, axis=0)
            frame = av.AudioFrame.from_ndarray(block if planar else block.T.reshape(1, -1),
                                               format=spec.sample_format, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            yield frame
        yield None  # flush

    if spec.container:
        return _through_container(frames, spec, rate, layout, bit_rate)
    encoder = av.CodecContext.create(encoder_name(codec), "w")
    encoder.sample_rate = rate
    encoder.layout = layout
    encoder.format = spec.sample_format
    if bit_rate:
        encoder.bit_rate = bit_rate
    encoder.time_base = Fraction(1, rate)
    if spec.encoders[-1] == "vorbis":
        encoder.options = {"strict": "experimental"}  # FFmpeg's own Vorbis encoder is flagged experimental
    encoder.open()
    decoder = av.CodecContext.create(spec.decoder, "r")
    decoder.sample_rate = rate
    decoder.layout = layout
    if encoder.extradata:
        decoder.extradata = encoder.extradata
    decoder.open()
    pieces: list[np.ndarray] = []
    for frame in frames(encoder.frame_size):
        for packet in encoder.encode(frame):
            pieces += [_first_channel(decoded) for decoded in decoder.decode(packet)]
    pieces += [_first_channel(decoded) for decoded in decoder.decode(None)]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def _through_container(frames, spec: CodecSpec, rate: int, layout: str, bit_rate: int | None) -> np.ndarray:
    """Encode into an in-memory container and demux + decode it again."""
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=spec.container) as output:
        stream = output.add_stream(spec.encoders[0], rate=rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        stream.codec_context.format = spec.sample_format
        for frame in frames(stream.codec_context.frame_size):
            for packet in stream.encode(frame):
                output.mux(packet)
    buffer.seek(0)
    with av.open(buffer, "r") as source:
        pieces = [_first_channel(frame) for frame in source.decode(audio=0)]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def _first_channel(frame) -> np.ndarray:
    """A decoded frame's first channel as float32 in [-1, 1]."""
    array = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if array.shape[0] == 1 and channels > 1:  # packed: samples interleaved in one row
        row = array.reshape(-1, channels)[:, 0]
    else:
        row = array[0]
    if np.issubdtype(row.dtype, np.integer):
        return row.astype(np.float32) / float(np.iinfo(row.dtype).max + 1)
    return row.astype(np.float32)


def _realign(reference: np.ndarray, decoded: np.ndarray, max_delay: int) -> np.ndarray:
    """``decoded`` shifted left by the encoder delay: the lag in ``[0, max_delay]`` where the cross-correlation
    with ``reference`` peaks."""
    if decoded.size == 0 or not np.any(reference):
        return decoded
    n = min(reference.size, decoded.size)
    correlation = fftconvolve(decoded[: n + max_delay], reference[:n][::-1], mode="full")
    lags = correlation[n - 1: n + max_delay]  # lag 0 .. max_delay
    return decoded[int(np.argmax(lags)):]


def _fit(x: np.ndarray, length: int) -> np.ndarray:
    return x[:length] if x.size >= length else np.pad(x, (0, length - x.size))
