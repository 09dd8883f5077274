"""Audio in and out: load any file as mono float32 at one rate, crop / pad to a fixed length, slide windows.

Decoding goes through soundfile (libsndfile reads WAV, FLAC, OGG/Vorbis and MP3); what libsndfile cannot read
(m4a / AAC, Opus, WebM, ...) is decoded by PyAV (FFmpeg's libraries in the ``av`` wheel, already a dependency
for the codec round trips). Resampling uses soxr, which is exact for any pair of rates.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from plastispoof.errors import InputError

ASVSPOOF_NUM_SAMPLES = 64600  # about 4 s at 16 kHz: the crop / pad length of the ASVspoof baselines
SILENCE_LEVEL = 1e-7  # below this peak a file is digital silence
MAX_SECONDS = 600.0  # longer files are refused unless the caller raises the limit (score --max-seconds)
# Containers libsndfile cannot read go straight to PyAV.
_PYAV_SUFFIXES = (".m4a", ".mp4", ".aac", ".opus", ".wma", ".webm", ".amr")
_BLOCK_FRAMES = 1 << 16


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, *, max_seconds: float = MAX_SECONDS,
               allow_silent: bool = False, on_conversion: Callable[[str, str], None] | None = None) -> np.ndarray:
    """Decode ``path`` to a 1-D float32 array: channels averaged to mono, resampled to ``sample_rate``.

    Raises :class:`InputError` naming the file when it is missing, cannot be decoded, holds no samples,
    holds NaN/Inf, is digital silence (unless ``allow_silent``) or is longer than ``max_seconds`` (0: no limit).
    ``on_conversion(kind, text)`` is told when channels were averaged (``"channels"``) or the rate changed
    (``"rate"``), so a caller can say so once.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file not found: {path}")
    samples, source_rate, channels = _decode(path, max_seconds or float("inf"))
    if not np.isfinite(samples).all():
        raise InputError(f"audio file {path} contains NaN or infinite samples")
    if samples.size and not allow_silent and np.abs(samples).max() < SILENCE_LEVEL:
        raise InputError(f"audio file {path} is digital silence (every sample below {SILENCE_LEVEL:g})")
    if on_conversion is not None and channels > 1:
        on_conversion("channels", f"{path.name} has {channels} channels: they were averaged to mono (and so were "
                                  "those of any other multi-channel file)")
    if source_rate != sample_rate and samples.size:
        if on_conversion is not None:
            on_conversion("rate", f"{path.name} is at {source_rate} Hz: resampled to the model's {sample_rate} Hz "
                                  "(and so is any other file at another rate)")
        samples = soxr.resample(samples, source_rate, sample_rate, quality="HQ")
    if samples.size == 0:
        raise InputError(f"audio file {path} holds no samples")
    return np.ascontiguousarray(samples, dtype=np.float32)


def _decode(path: Path, max_seconds: float) -> tuple[np.ndarray, int, int]:
    """Mono float32 samples of ``path`` at the file's own rate, the rate and the number of channels averaged."""
    if path.suffix.lower() in _PYAV_SUFFIXES:
        return _decode_with_pyav(path, max_seconds)
    try:
        # NaN / Inf samples are reported by load_audio, not as numpy warnings while down-mixing.
        with sf.SoundFile(path) as audio, np.errstate(invalid="ignore", over="ignore"):
            _check_header(path, audio.frames, audio.samplerate, max_seconds)
            # Down-mix block by block so a many-channel file never sits in memory whole.
            blocks = [block.mean(axis=1) for block in
                      audio.blocks(_BLOCK_FRAMES, dtype="float32", always_2d=True)]
            samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
            return samples, audio.samplerate, audio.channels
    except InputError:
        raise
    except sf.LibsndfileError as err:
        if "Format not recognised" in err.error_string:  # a container libsndfile lacks: PyAV may know it
            return _decode_with_pyav(path, max_seconds)
        raise InputError(f"cannot decode audio file {path}: {err.error_string}") from err
    except (RuntimeError, ValueError, TypeError, OSError, EOFError) as err:
        raise InputError(f"cannot decode audio file {path}: {err}") from err


def _decode_with_pyav(path: Path, max_seconds: float) -> tuple[np.ndarray, int, int]:
    import av  # FFmpeg's libraries load in ~0.1 s; only files libsndfile cannot read pay for them

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InputError(f"cannot decode audio file {path}: it holds no audio stream")
            stream = container.streams.audio[0]
            rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
            # Decoded as float32 planar by FFmpeg's resampler at the file's own rate (soxr resamples later).
            to_float = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
            blocks, frames = [], 0
            for frame in container.decode(stream):
                for chunk in to_float.resample(frame):
                    block = chunk.to_ndarray()
                    blocks.append(block.mean(axis=0))
                    frames += block.shape[1]
                _check_header(path, frames, rate, max_seconds)
            for chunk in to_float.resample(None):
                blocks.append(chunk.to_ndarray().mean(axis=0))
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise InputError(f"cannot decode audio file {path}: {err}") from err
    samples = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)
    return samples, int(rate or 0), int(channels or 1)


def _check_header(path: Path, frames: int, rate: int, max_seconds: float) -> None:
    if rate <= 0:
        raise InputError(f"audio file {path} declares an invalid sample rate {rate}")
    if frames / rate > max_seconds:
        raise InputError(f"audio file {path} lasts {frames / rate:.0f} s, over the {max_seconds:g} s limit")


def fix_length(x: np.ndarray, num_samples: int = ASVSPOOF_NUM_SAMPLES, *, random_crop: bool = False,
               rng: np.random.Generator | int | None = None, pad: str = "repeat") -> np.ndarray:
    """Crop or pad ``x`` to exactly ``num_samples`` (a new array).

    Longer signals keep their first ``num_samples`` (the ASVspoof evaluation convention) or, with
    ``random_crop``, a window at a random offset drawn from ``rng``. Shorter ones are tiled
    (``pad="repeat"``, as the ASVspoof baselines do) or zero-padded (``pad="zero"``).

    >>> fix_length(np.array([1.0, 2.0, 3.0]), 7)
    array([1., 2., 3., 1., 2., 3., 1.])
    >>> fix_length(np.array([1.0, 2.0, 3.0]), 5, pad="zero")
    array([1., 2., 3., 0., 0.])
    >>> fix_length(np.arange(10.0), 4)
    array([0., 1., 2., 3.])
    """
    if pad not in ("repeat", "zero"):
        raise ValueError(f"pad must be 'repeat' or 'zero', not {pad!r}")
    length = len(x)
    if length == 0:
        raise ValueError("cannot fix the length of an empty signal")
    if length >= num_samples:
        start = int(np.random.default_rng(rng).integers(0, length - num_samples + 1)) if random_crop else 0
        return x[start:start + num_samples].copy()
    if pad == "zero":
        return np.pad(x, (0, num_samples - length))
    return np.tile(x, -(-num_samples // length))[:num_samples]


def sliding_windows(x: np.ndarray, window: int = ASVSPOOF_NUM_SAMPLES, hop: int | None = None) -> np.ndarray:
    """Windows of ``window`` samples covering all of ``x``, shape ``(n_windows, window)``.

    Windows start every ``hop`` samples (default ``window // 2``); the last one is aligned to the end of the
    signal so no sample is left out. A signal no longer than ``window`` gives one repeat-padded window.

    >>> sliding_windows(np.arange(10.0), window=4)
    array([[0., 1., 2., 3.],
           [2., 3., 4., 5.],
           [4., 5., 6., 7.],
           [6., 7., 8., 9.]])
    >>> sliding_windows(np.arange(9.0), window=4, hop=4)[:, 0]
    array([0., 4., 5.])
    """
    hop = max(window // 2, 1) if hop is None else hop
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be positive, got window={window}, hop={hop}")
    if len(x) <= window:
        return fix_length(x, window)[None]
    last = len(x) - window
    starts = np.arange(0, last + 1, hop)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return np.lib.stride_tricks.sliding_window_view(x, window)[starts]


def write_audio(path: str | os.PathLike, x: np.ndarray, sample_rate: int, *, subtype: str | None = None) -> Path:
    """Write ``x`` to ``path`` (format from the suffix: .flac, .wav, ...) atomically; returns the path.

    The file appears complete or not at all: it is written under a temporary name in the same folder and
    renamed into place. Float samples outside [-1, 1] are clipped by libsndfile when the subtype is PCM.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix on the temporary name: soundfile picks the container from it.
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        sf.write(temporary, x, sample_rate, subtype=subtype)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
