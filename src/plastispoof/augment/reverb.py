"""Reverberation: convolve with a room impulse response from a local folder, or a generated one of a given RT60.

A generated RIR is a unit direct path followed by Gaussian noise under an exponential envelope whose energy falls
60 dB in RT60 seconds (the statistical model of a diffuse late field); :func:`measure_rt60` recovers RT60 from
Schroeder's backward integral. The convolved signal is cut at the direct path (no delay) and rescaled to the
input's RMS level, so reverberation changes the sound, not its level or timing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from plastispoof.augment.noise import AUDIO_SUFFIXES
from plastispoof.errors import InputError

DECAY_60_DB = np.log(1000.0)  # amplitude falls by 10^3 (60 dB) over RT60


def generated_rir(rt60: float, sample_rate: int, rng: np.random.Generator, direct_to_reverb_db: float = 0.0
                  ) -> np.ndarray:
    """An impulse response of ``rt60`` seconds: direct path at sample 0, then an exponentially decaying tail."""
    n = max(int(rt60 * sample_rate), 2)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-DECAY_60_DB * t / rt60)
    tail[0] = 0.0
    tail *= np.sqrt(10 ** (-direct_to_reverb_db / 10) / np.sum(tail ** 2))
    tail[0] = 1.0
    return tail


def measure_rt60(rir: np.ndarray, sample_rate: int) -> float:
    """RT60 from the Schroeder decay curve: the slope between -5 and -25 dB, extrapolated to -60 dB (T20)."""
    energy = np.cumsum(rir[::-1] ** 2)[::-1]
    decay_db = 10 * np.log10(energy / energy[0] + 1e-30)
    start, stop = np.argmax(decay_db <= -5), np.argmax(decay_db <= -25)
    slope = (decay_db[stop] - decay_db[start]) / ((stop - start) / sample_rate)
    return -60.0 / slope


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``rir`` from its strongest tap (the direct path), same length and RMS as ``x``."""
    onset = int(np.argmax(np.abs(rir)))
    y = fftconvolve(x, rir[onset:])[: x.size]
    rms_in, rms_out = np.sqrt(np.mean(np.square(x, dtype=np.float64))), np.sqrt(np.mean(y ** 2))
    return (y * (rms_in / rms_out) if rms_out > 0 else y).astype(np.float32)


@lru_cache(maxsize=None)
def rir_files(folder: str) -> tuple[Path, ...]:
    """Audio files under ``folder`` (recursively); :class:`InputError` when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"RIR folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"RIR folder {root} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return tuple(files)
