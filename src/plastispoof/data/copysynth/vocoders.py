"""Copy-synthesis of real recordings: one bona fide utterance re-made by a vocoder family.

Each function takes 16 kHz float audio (and its F0 analysis) and returns audio of the same length at 16 kHz.
The F0 / voicing analysis (WORLD DIO + StoneMask) is shared by every family that needs a source model; the
envelope, STFT and LPC machinery is the embedded corpus' (``data/synthetic.py``): its attacks read only
``audio``, ``f0`` and ``voiced`` from a :class:`~plastispoof.data.synthetic.DrySpeech`, and
:class:`AnalysedSpeech` carries exactly those three for a real recording.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import librosa
import numpy as np
import scipy.ndimage
import scipy.signal

from plastispoof.augment.codecs import codec_round_trip, encoder_name
from plastispoof.data import synthetic
from plastispoof.data.synthetic import SAMPLE_RATE
from plastispoof.errors import InputError

WORLD_FRAME_MS = 5.0
_UNVOICED_FALLBACK_HZ = 120.0  # F0 used for an utterance with no voiced frame at all


def _pyworld():  # pyworld imports pkg_resources, which warns on every import; the warning is not ours to act on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


# -------------------------------------------------------------------------------------------- analysis


@dataclass
class AnalysedSpeech:
    """A real recording at 16 kHz with the source analysis the vocoders need.

    ``f0`` and ``voiced`` are per sample like the embedded corpus' :class:`DrySpeech`, so its attacks run on
    real audio; ``f0`` is interpolated across unvoiced stretches (it must be positive everywhere to time a
    pulse train). ``f0_frames`` is the WORLD track (0 = unvoiced) at ``WORLD_FRAME_MS``.
    """

    audio: np.ndarray
    f0: np.ndarray
    voiced: np.ndarray
    f0_frames: np.ndarray = field(repr=False)
    times: np.ndarray = field(repr=False)


def analyse(audio: np.ndarray) -> AnalysedSpeech:
    """F0 and voicing of ``audio`` (16 kHz) by WORLD DIO refined with StoneMask (fast; Harvest is kept for W01)."""
    pw = _pyworld()
    x = np.ascontiguousarray(audio, dtype=np.float64)
    f0, times = pw.dio(x, SAMPLE_RATE, frame_period=WORLD_FRAME_MS, f0_floor=60.0, f0_ceil=500.0)
    f0 = pw.stonemask(x, f0, times, SAMPLE_RATE)
    sample_times = np.arange(len(x)) / SAMPLE_RATE
    voiced_frames = f0 > 0
    if voiced_frames.any():
        filled = np.interp(times, times[voiced_frames], f0[voiced_frames])
    else:
        filled = np.full_like(f0, _UNVOICED_FALLBACK_HZ)
    f0_samples = np.interp(sample_times, times, filled)
    voiced = np.interp(sample_times, times, voiced_frames.astype(float)) > 0.5
    return AnalysedSpeech(audio=x, f0=f0_samples, voiced=voiced, f0_frames=f0, times=times)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples."""
    return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float64)


# ---------------------------------------------------------------------------------------------- WORLD


def world_resynthesis(speech: AnalysedSpeech, rng: np.random.Generator) -> np.ndarray:
    """WORLD analysis (Harvest F0, CheapTrick envelope, D4C aperiodicity) and synthesis, parameters untouched:
    the artefact is WORLD's own source model (minimum-phase pulses, band aperiodicity)."""
    pw = _pyworld()
    x = speech.audio
    f0, times = pw.harvest(x, SAMPLE_RATE, frame_period=WORLD_FRAME_MS, f0_floor=60.0, f0_ceil=500.0)
    envelope = pw.cheaptrick(x, f0, times, SAMPLE_RATE)
    aperiodicity = pw.d4c(x, f0, times, SAMPLE_RATE)
    return _fit(pw.synthesize(f0, envelope, aperiodicity, SAMPLE_RATE, WORLD_FRAME_MS), len(x))


def world_coded(speech: AnalysedSpeech, rng: np.random.Generator, dimensions: int = 30) -> np.ndarray:
    """WORLD with the parameters an acoustic model would predict: the envelope coded to ``dimensions``
    mel-cepstrum-like coefficients, band aperiodicity, DIO F0, then smoothed over time (over-smoothing)."""
    pw = _pyworld()
    x, f0, times = speech.audio, speech.f0_frames, speech.times
    envelope = pw.cheaptrick(x, f0, times, SAMPLE_RATE)
    aperiodicity = pw.d4c(x, f0, times, SAMPLE_RATE)
    fft_size = pw.get_cheaptrick_fft_size(SAMPLE_RATE)
    coded = scipy.ndimage.uniform_filter1d(pw.code_spectral_envelope(envelope, SAMPLE_RATE, dimensions), 3, axis=0)
    envelope = pw.decode_spectral_envelope(np.ascontiguousarray(coded), SAMPLE_RATE, fft_size)
    bands = pw.code_aperiodicity(aperiodicity, SAMPLE_RATE)
    aperiodicity = pw.decode_aperiodicity(np.ascontiguousarray(bands), SAMPLE_RATE, fft_size)
    return _fit(pw.synthesize(f0, envelope, aperiodicity, SAMPLE_RATE, WORLD_FRAME_MS), len(x))


# ---------------------------------------------------------------------------------- STFT-domain families


def griffin_lim(speech: AnalysedSpeech, rng: np.random.Generator) -> np.ndarray:
    """80-band mel magnitude (1024-point STFT, 16 ms hop) -> 32 fast Griffin-Lim iterations from random phase.

    The embedded corpus' Griffin-Lim (a pseudo-inverse mel filterbank: librosa's NNLS mel inversion takes tens
    of seconds per utterance) at its weakest setting.
    """
    return synthetic.griffin_lim(speech, 0.0, rng, n_mels=(80, 80), n_fft=1024, hop=256,  # type: ignore[arg-type]
                                 iterations=(32, 32))


def lpc_pulse(speech: AnalysedSpeech, rng: np.random.Generator) -> np.ndarray:
    """LPC (order about 16) per 25 ms frame, excited by an impulse train at the analysed F0 where voiced and
    white noise elsewhere, with the residual's level: buzzy, jitter-free voicing."""
    return synthetic.lpc_vocoder(speech, 0.4, rng)  # type: ignore[arg-type]


def harmonic_resynthesis(speech: AnalysedSpeech, rng: np.random.Generator) -> np.ndarray:
    """Sinusoids at exact multiples of the analysed F0 up to 5.3 kHz with the STFT's amplitudes, envelope-shaped
    noise for unvoiced frames and the band above: no aperiodicity inside voicing."""
    return synthetic.harmonic_resynthesis(speech, 0.4, rng)  # type: ignore[arg-type]


def phase_vocoder(speech: AnalysedSpeech, rng: np.random.Generator) -> np.ndarray:
    """Phase-vocoder time stretch by 0.8-0.9 (or 1.1-1.25) and back to the original duration: phasiness and
    smeared transients while pitch and timing are kept."""
    x, n_fft, hop = speech.audio, 1024, 256
    rate = float(rng.choice([rng.uniform(0.8, 0.9), rng.uniform(1.1, 1.25)]))
    spec = synthetic._stft(x, n_fft, hop)
    stretched = librosa.phase_vocoder(spec, rate=rate, hop_length=hop, n_fft=n_fft)
    back = librosa.phase_vocoder(stretched, rate=1 / rate, hop_length=hop, n_fft=n_fft)
    return synthetic._match_rms(synthetic._istft(back, hop, len(x)), x)


# ----------------------------------------------------------------------------------------------- codecs


@dataclass(frozen=True)
class CodecLeg:
    """One encode / decode pass: a codec of :data:`plastispoof.augment.codecs.CODECS` at a bit rate."""

    codec: str
    bit_rate: int

    @property
    def encoder(self) -> str | None:
        return encoder_name(self.codec)


def codec_chain(speech: AnalysedSpeech, rng: np.random.Generator, legs: tuple[CodecLeg, ...]) -> np.ndarray:
    """``legs`` one after the other, each decoded and re-encoded (transcoding), realigned to the input by
    :func:`plastispoof.augment.codecs.codec_round_trip`."""
    missing = [leg.codec for leg in legs if leg.encoder is None]
    if missing:
        raise InputError(f"this PyAV / FFmpeg build has no encoder for {', '.join(missing)}")
    y = speech.audio
    for leg in legs:
        y = codec_round_trip(y.astype(np.float32), SAMPLE_RATE, leg.codec, leg.bit_rate).astype(np.float64)
    return y


MP3 = CodecLeg("mp3", 24_000)
OPUS = CodecLeg("opus", 10_000)
AMR_NB = CodecLeg("amr-nb", 12_200)
MP3_AFTER_AMR = CodecLeg("mp3", 32_000)


# ------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class CopyAttack:
    """One copy-synthesis system: its family, what it does, and the function that does it."""

    attack_id: str
    family: str
    description: str
    apply: Callable[[AnalysedSpeech, np.random.Generator], np.ndarray] = field(repr=False)
    codecs: tuple[str, ...] = ()  # codecs whose PyAV encoder it needs (checked at run time)

    def available(self) -> bool:
        return all(encoder_name(codec) is not None for codec in self.codecs)


def _chain(*legs: CodecLeg) -> Callable[[AnalysedSpeech, np.random.Generator], np.ndarray]:
    def apply(speech: AnalysedSpeech, rng: np.random.Generator) -> np.ndarray:
        return codec_chain(speech, rng, legs)

    return apply


COPY_ATTACKS: dict[str, CopyAttack] = {a.attack_id: a for a in (
    CopyAttack("W01", "world", "WORLD: Harvest F0 + CheapTrick + D4C -> synthesis (parameters untouched)",
               world_resynthesis),
    CopyAttack("W02", "world", "WORLD: DIO/StoneMask F0, envelope coded to 30 coefficients and smoothed over 15 ms, "
               "band aperiodicity -> synthesis", world_coded),
    CopyAttack("G01", "griffinlim", "80-band mel (1024-pt STFT, 16 ms hop) -> 32 fast Griffin-Lim iterations",
               griffin_lim),
    CopyAttack("L01", "lpc", "LPC (order ~16, 25 ms frames) with pulse-train at F0 / noise excitation, "
               "over-smoothed envelope", lpc_pulse),
    CopyAttack("S01", "sinusoidal", "harmonic sinusoids at the analysed F0 up to 5.3 kHz + envelope-shaped noise",
               harmonic_resynthesis),
    CopyAttack("S02", "sinusoidal", "phase-vocoder time stretch by 0.8-0.9 or 1.1-1.25 and back", phase_vocoder),
    CopyAttack("K01", "codec", "MP3 24 kbit/s at 16 kHz (libmp3lame)", _chain(MP3), ("mp3",)),
    CopyAttack("K02", "codec", "Opus 10 kbit/s at 16 kHz (libopus)", _chain(OPUS), ("opus",)),
    CopyAttack("K03", "codec", "AMR-NB 12.2 kbit/s at 8 kHz -> MP3 32 kbit/s (transcoded phone leg)",
               _chain(AMR_NB, MP3_AFTER_AMR), ("amr-nb", "mp3")),
)}
COPY_FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(a.family for a in COPY_ATTACKS.values()))
