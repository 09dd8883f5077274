"""Audio in and out: load any file as mono float32 at one rate, crop / pad to a fixed length, slide windows.

Decoding goes through soundfile (libsndfile reads WAV, FLAC, OGG/Opus and MP3); the containers libsndfile cannot
read (m4a, aac, ...) fall back to librosa, which needs an ffmpeg/gstreamer backend on the machine. Bytes held in
memory (a service's uploads) are decoded the same way without a file (:func:`decode_audio`), PyAV standing in
for librosa. Resampling
uses soxr (librosa's own resampler), which is exact for any pair of rates.
"""

from __future__ import annotations

import io
import os
import uuid
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from plastispoof.errors import InputError

ASVSPOOF_NUM_SAMPLES = 64600  # about 4 s at 16 kHz: the crop / pad length of the ASVspoof baselines
SILENCE_LEVEL = 1e-7  # below this peak a file is digital silence
# Containers libsndfile cannot read. Only these go to librosa: its first call costs seconds of imports, which a
# corrupt WAV should not pay.
_LIBROSA_SUFFIXES = (".m4a", ".mp4", ".aac", ".wma", ".webm")
_BLOCK_FRAMES = 1 << 16


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, *, max_seconds: float = 600.0,
               allow_silent: bool = False) -> np.ndarray:
    """Decode ``path`` to a 1-D float32 array: channels averaged to mono, resampled to ``sample_rate``.

    Raises :class:`InputError` naming the file when it is missing, cannot be decoded, holds no samples,
    holds NaN/Inf, is digital silence (unless ``allow_silent``) or is longer than ``max_seconds``
    (:class:`AudioTooLong`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file not found: {path}")
    if path.suffix.lower() in _LIBROSA_SUFFIXES:
        samples, source_rate = _decode_with_librosa(path, max_seconds)
    else:
        samples, source_rate = _decode(path, f"audio file {path}", max_seconds)
    return _checked(samples, source_rate, sample_rate, f"audio file {path}", allow_silent)


def decode_audio(data: bytes, sample_rate: int = 16000, *, name: str = "the upload", max_seconds: float = 600.0,
                 allow_silent: bool = False) -> np.ndarray:
    """:func:`load_audio` for encoded bytes held in memory (an upload): nothing touches the filesystem.

    libsndfile reads WAV, FLAC, OGG/Opus and MP3 from memory; other containers (m4a, webm, ...) are decoded with
    PyAV, also from memory. ``name`` only labels error messages. The same checks and errors as
    :func:`load_audio`.
    """
    label = name
    if not data:
        raise InputError(f"{label} is empty (0 bytes)")
    try:
        samples, source_rate = _decode(io.BytesIO(data), label, max_seconds)
    except AudioTooLong:
        raise
    except InputError as soundfile_error:
        try:
            samples, source_rate = _decode_with_pyav(data, label, max_seconds)
        except AudioTooLong:
            raise
        except InputError:
            raise soundfile_error from None
    return _checked(samples, source_rate, sample_rate, label, allow_silent)


class AudioTooLong(InputError):
    """Audio longer than the caller's limit (a service answers 413 for it, not 422)."""


def _checked(samples: np.ndarray, source_rate: int, sample_rate: int, label: str, allow_silent: bool) -> np.ndarray:
    """Mono ``samples`` at ``source_rate`` checked (finite, not silent, not empty) and resampled."""
    if not np.isfinite(samples).all():
        raise InputError(f"{label} contains NaN or infinite samples")
    if samples.size and not allow_silent and np.abs(samples).max() < SILENCE_LEVEL:
        raise InputError(f"{label} is digital silence (every sample below {SILENCE_LEVEL:g})")
    if source_rate != sample_rate and samples.size:
        samples = soxr.resample(samples, source_rate, sample_rate, quality="HQ")
    if samples.size == 0:
        raise InputError(f"{label} holds no samples")
    return np.ascontiguousarray(samples, dtype=np.float32)


def _decode(source: Path | io.BytesIO, label: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """Mono float32 samples of ``source`` (a path or bytes in memory) at its own rate, read by libsndfile."""
    try:
        # NaN / Inf samples are reported by _checked, not as numpy warnings while down-mixing.
        with sf.SoundFile(source) as audio, np.errstate(invalid="ignore", over="ignore"):
            _check_header(label, audio.frames, audio.samplerate, max_seconds)
            # Down-mix block by block so a many-channel file never sits in memory whole.
            blocks = [block.mean(axis=1) for block in
                      audio.blocks(_BLOCK_FRAMES, dtype="float32", always_2d=True)]
            return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), audio.samplerate
    except InputError:
        raise
    except sf.LibsndfileError as err:
        raise InputError(f"cannot decode {label}: {err.error_string}") from err
    except (RuntimeError, ValueError, TypeError, OSError, EOFError) as err:
        raise InputError(f"cannot decode {label}: {err}") from err


def _decode_with_pyav(data: bytes, label: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """Mono float32 samples of an in-memory container libsndfile cannot read, decoded by PyAV (FFmpeg)."""
    import av

    blocks: list[np.ndarray] = []
    rate = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InputError(f"cannot decode {label}: no audio stream in it")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono")
            total = 0
            for frame in container.decode(stream):
                rate = rate or frame.sample_rate
                for mono in resampler.resample(frame):
                    block = mono.to_ndarray().reshape(-1)
                    total += len(block)
                    blocks.append(block)
                _check_header(label, total, rate, max_seconds)
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError, RuntimeError) as err:
        raise InputError(f"cannot decode {label}: {err}") from err
    if not rate:
        raise InputError(f"{label} holds no samples")
    return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)).astype(np.float32), rate


def _decode_with_librosa(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns that it is falling back to audioread
            # Decode one second past the limit: enough to tell "too long" without decoding a huge file.
            samples, rate = librosa.load(path, sr=None, mono=False, duration=max_seconds + 1.0)
    except Exception as err:  # audioread raises backend-specific types; all mean "cannot decode"
        raise InputError(f"cannot decode audio file {path}: libsndfile cannot read {path.suffix} files and "
                         f"no audioread backend (ffmpeg, gstreamer) could ({type(err).__name__})") from err
    samples = np.asarray(samples, dtype=np.float32)
    mono = samples.mean(axis=0) if samples.ndim == 2 else samples
    _check_header(f"audio file {path}", len(mono), rate, max_seconds)
    return mono, int(rate)


def _check_header(label: str, frames: int, rate: int, max_seconds: float) -> None:
    if rate <= 0:
        raise InputError(f"{label} declares an invalid sample rate {rate}")
    if frames / rate > max_seconds:
        raise AudioTooLong(f"{label} lasts {frames / rate:.0f} s, over the {max_seconds:g} s limit")


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
