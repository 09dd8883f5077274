"""Audio in and out: load any file as mono float32 at one rate, crop / pad to a fixed length, slide windows.

Decoding goes through soundfile (libsndfile reads WAV, FLAC, OGG/Vorbis and MP3); what libsndfile cannot read
(m4a / AAC, Opus, WebM, ...) is decoded by PyAV (FFmpeg's libraries in the ``av`` wheel, already a dependency
for the codec round trips). Resampling uses soxr, which is exact for any pair of rates. Bytes held in memory (a
service's uploads) are decoded the same way without a file (:func:`decode_audio`).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

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
    holds NaN/Inf, is digital silence (unless ``allow_silent``) or is longer than ``max_seconds`` (0: no limit;
    :class:`AudioTooLong`). ``on_conversion(kind, text)`` is told when channels were averaged (``"channels"``) or
    the rate changed (``"rate"``), so a caller can say so once.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file not found: {path}")
    label = f"audio file {path}"
    if path.suffix.lower() in _PYAV_SUFFIXES:
        samples, source_rate, channels = _decode_with_pyav(str(path), label, max_seconds or float("inf"))
    else:
        samples, source_rate, channels = _decode(path, label, max_seconds or float("inf"))
    _check_samples(samples, label, allow_silent)
    if on_conversion is not None and channels > 1:
        on_conversion("channels", f"{path.name} has {channels} channels: they were averaged to mono (and so were "
                                  "those of any other multi-channel file)")
    if source_rate != sample_rate and samples.size and on_conversion is not None:
        on_conversion("rate", f"{path.name} is at {source_rate} Hz: resampled to the model's {sample_rate} Hz "
                              "(and so is any other file at another rate)")
    return _at_rate(samples, source_rate, sample_rate, label)


def decode_audio(data: bytes, sample_rate: int = 16000, *, name: str = "the upload", max_seconds: float = MAX_SECONDS,
                 allow_silent: bool = False) -> np.ndarray:
    """:func:`load_audio` for encoded bytes held in memory (a service's uploads): nothing touches the filesystem.

    libsndfile reads WAV, FLAC, OGG and MP3 from memory; what it cannot read (m4a, Opus, WebM, ...) PyAV decodes,
    also from memory. ``name`` labels error messages. The same checks and errors as :func:`load_audio`.
    """
    if not data:
        raise InputError(f"{name} is empty (0 bytes)")
    samples, source_rate, _ = _decode(io.BytesIO(data), name, max_seconds or float("inf"))
    _check_samples(samples, name, allow_silent)
    return _at_rate(samples, source_rate, sample_rate, name)


class AudioTooLong(InputError):
    """Audio longer than the caller's limit (a service answers 413 for it rather than 422)."""


def _check_samples(samples: np.ndarray, label: str, allow_silent: bool) -> None:
    if not np.isfinite(samples).all():
        raise InputError(f"{label} contains NaN or infinite samples")
    if samples.size and not allow_silent and np.abs(samples).max() < SILENCE_LEVEL:
        raise InputError(f"{label} is digital silence (every sample below {SILENCE_LEVEL:g})")


def _at_rate(samples: np.ndarray, source_rate: int, sample_rate: int, label: str) -> np.ndarray:
    if source_rate != sample_rate and samples.size:
        samples = soxr.resample(samples, source_rate, sample_rate, quality="HQ")
    if samples.size == 0:
        raise InputError(f"{label} holds no samples")
    return np.ascontiguousarray(samples, dtype=np.float32)


def _decode(source: Path | io.BytesIO, label: str, max_seconds: float) -> tuple[np.ndarray, int, int]:
    """Mono float32 samples of ``source`` (a path, or bytes in memory) at its own rate, the rate and the number of
    channels averaged."""
    try:
        # NaN / Inf samples are reported by _check_samples, not as numpy warnings while down-mixing.
        with sf.SoundFile(source) as audio, np.errstate(invalid="ignore", over="ignore"):
            _check_header(label, audio.frames, audio.samplerate, max_seconds)
            # Down-mix block by block so a many-channel file never sits in memory whole.
            blocks = [block.mean(axis=1) for block in
                      audio.blocks(_BLOCK_FRAMES, dtype="float32", always_2d=True)]
            samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
            return samples, audio.samplerate, audio.channels
    except InputError:
        raise
    except sf.LibsndfileError as err:
        if "Format not recognised" in err.error_string:  # a container libsndfile lacks: PyAV may know it
            if isinstance(source, io.BytesIO):  # bytes of an upload: libsndfile's reason, if PyAV fails too
                source.seek(0)
                return _decode_with_pyav(source, label, max_seconds, err.error_string)
            return _decode_with_pyav(str(source), label, max_seconds)
        raise InputError(f"cannot decode {label}: {err.error_string}") from err
    except (RuntimeError, ValueError, TypeError, OSError, EOFError) as err:
        raise InputError(f"cannot decode {label}: {err}") from err


def _decode_with_pyav(source: str | io.BytesIO, label: str, max_seconds: float,
                      soundfile_error: str | None = None) -> tuple[np.ndarray, int, int]:
    import av  # FFmpeg's libraries load in ~0.1 s; only files libsndfile cannot read pay for them

    try:
        with av.open(source) as container:
            if not container.streams.audio:
                raise InputError(f"cannot decode {label}: it holds no audio stream")
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
                _check_header(label, frames, rate, max_seconds)
            for chunk in to_float.resample(None):
                blocks.append(chunk.to_ndarray().mean(axis=0))
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as err:
        # Uploaded bytes neither library reads: libsndfile's reason ("Format not recognised") reads better than
        # FFmpeg's ("Invalid data found when processing input: '<none>'").
        raise InputError(f"cannot decode {label}: {soundfile_error or err}") from err
    samples = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)
    return samples, int(rate or 0), int(channels or 1)


def _check_header(label: str, frames: int, rate: int, max_seconds: float) -> None:
    if rate <= 0:
        raise InputError(f"{label} declares an invalid sample rate {rate}")
    if frames / rate > max_seconds:
        raise AudioTooLong(f"{label} lasts {frames / rate:.0f} s, over the {max_seconds:g} s limit")


# ------------------------------------------------------------------------------------------- long files

STREAM_SECONDS = 120.0  # files longer than this are decoded, resampled and windowed block by block
_STREAM_BLOCK_SECONDS = 30.0


def audio_seconds(path: str | os.PathLike) -> float | None:
    """The duration a file's header declares (None when it declares none or cannot be read: decoding will say)."""
    path = Path(path)
    try:
        if path.suffix.lower() not in _PYAV_SUFFIXES:
            info = sf.info(str(path))
            return info.frames / info.samplerate if info.samplerate > 0 else None
    except (sf.LibsndfileError, RuntimeError, OSError):
        pass
    import av

    try:
        with av.open(str(path)) as container:
            return float(container.duration) / av.time_base if container.duration else None
    except (av.error.FFmpegError, OSError):
        return None


class StreamedAudio:
    """A long file read block by block: :meth:`windows` yields the windows :func:`sliding_windows` would cut from
    :func:`load_audio`'s waveform, equal to the sample (soxr's streaming resampler gives the one-shot result), while
    holding one block and one window in memory. ``len()`` is the number of samples once the windows are read;
    ``error`` holds the :class:`InputError` that stopped the reading (NaN, silence, a corrupt block), if any."""

    def __init__(self, path: Path, sample_rate: int, max_seconds: float = MAX_SECONDS,
                 on_conversion: Callable[[str, str], None] | None = None):
        self.path, self.sample_rate, self.max_seconds = Path(path), sample_rate, max_seconds
        self.on_conversion = on_conversion
        self.length = 0
        self.error: InputError | None = None

    def __len__(self) -> int:
        return self.length

    def blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks at the target rate."""
        path, limit = self.path, self.max_seconds or float("inf")
        resampler, peak, frames = None, 0.0, 0
        for block, rate, channels in _native_blocks(path):
            frames += block.size
            _check_header(f"audio file {path}", frames, rate, limit)
            if not np.isfinite(block).all():
                raise InputError(f"audio file {path} contains NaN or infinite samples")
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            if resampler is None:
                self._tell(channels, rate)
                if rate != self.sample_rate:
                    resampler = soxr.ResampleStream(rate, self.sample_rate, 1, dtype="float32", quality="HQ")
            yield resampler.resample_chunk(block) if resampler is not None else block
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        if frames == 0:
            raise InputError(f"audio file {path} holds no samples")
        if peak < SILENCE_LEVEL:
            raise InputError(f"audio file {path} is digital silence (every sample below {SILENCE_LEVEL:g})")

    def _tell(self, channels: int, rate: int) -> None:
        if self.on_conversion is not None and channels > 1:
            self.on_conversion("channels", f"{self.path.name} has {channels} channels: they were averaged to mono "
                                           "(and so were those of any other multi-channel file)")
        if self.on_conversion is not None and rate != self.sample_rate:
            self.on_conversion("rate", f"{self.path.name} is at {rate} Hz: resampled to the model's "
                                       f"{self.sample_rate} Hz (and so is any other file at another rate)")

    def windows(self, window: int, hop: int | None = None) -> Iterator[np.ndarray]:
        """The windows of the whole file, in order (see the class notes); stops early, with :attr:`error` set, when
        the file turns out to be bad."""
        hop = max(window // 2, 1) if hop is None else hop
        buffer = np.zeros(0, np.float32)  # samples from ``offset`` on
        offset = next_start = 0
        last_start = None
        console = Console(stderr=True)
        progress = Progress(TextColumn(f"{self.path.name}"), BarColumn(), TextColumn("{task.completed:.0f} of "
                            "{task.total:.0f} s"), TimeRemainingColumn(), console=console, transient=True,
                            disable=not console.is_terminal)
        try:
            with progress:
                task = progress.add_task("reading", total=audio_seconds(self.path))
                for block in self.blocks():
                    buffer = np.concatenate([buffer, block])
                    self.length += block.size
                    progress.update(task, completed=self.length / self.sample_rate)
                    while next_start + window <= self.length:
                        yield buffer[next_start - offset: next_start - offset + window].copy()
                        last_start, next_start = next_start, next_start + hop
                    keep_from = min(next_start, max(self.length - window, 0))  # what a later window may need
                    buffer, offset = buffer[keep_from - offset:], keep_from
        except InputError as err:
            self.error = err
            return
        if self.length <= window:
            yield fix_length(buffer, window)
        elif last_start != self.length - window:  # the last window, aligned to the end
            yield buffer[self.length - window - offset:].copy()


def _native_blocks(path: Path) -> Iterator[tuple[np.ndarray, int, int]]:
    """``(mono float32 block, rate, channels)`` of ``path`` at its own rate, about 30 s a block."""
    if path.suffix.lower() not in _PYAV_SUFFIXES:
        try:
            with sf.SoundFile(path) as audio, np.errstate(invalid="ignore", over="ignore"):
                size = int(_STREAM_BLOCK_SECONDS * audio.samplerate)
                for block in audio.blocks(size, dtype="float32", always_2d=True):
                    yield block.mean(axis=1), audio.samplerate, audio.channels
            return
        except sf.LibsndfileError as err:
            if "Format not recognised" not in err.error_string:
                raise InputError(f"cannot decode audio file {path}: {err.error_string}") from err
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
            to_float = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
            pending: list[np.ndarray] = []
            for frame in container.decode(stream):
                pending += [chunk.to_ndarray().mean(axis=0) for chunk in to_float.resample(frame)]
                if sum(p.size for p in pending) >= _STREAM_BLOCK_SECONDS * rate:
                    yield np.concatenate(pending).astype(np.float32), rate, channels
                    pending = []
            pending += [chunk.to_ndarray().mean(axis=0) for chunk in to_float.resample(None)]
            if pending:
                yield np.concatenate(pending).astype(np.float32), rate, channels
    except (av.error.FFmpegError, ValueError, OSError, IndexError) as err:
        raise InputError(f"cannot decode audio file {path}: {err}") from err


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
