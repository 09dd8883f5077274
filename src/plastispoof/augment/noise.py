"""Additive noise at a target SNR: from a local folder in the MUSAN layout, other utterances, or generated.

SNR is the ratio of the whole clip's power to the scaled noise's power, so the result is exact: the measured
SNR of ``add_at_snr(x, n, s) - x`` against ``x`` is ``s`` dB (to float precision).

MUSAN layout: ``ROOT/{noise,music,speech}/<source>/*.wav``; any audio file under a chosen category folder counts.
Generated noise has a power spectrum proportional to f^-beta: white (0), pink (1), brown (2), blue (-1), violet
(-2).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from plastispoof.audio import load_audio
from plastispoof.errors import InputError

COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0, "violet": -2.0}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of Gaussian noise with a 1/f^beta power spectrum, unit variance."""
    white = rng.standard_normal(n)
    beta = COLOURS[colour]
    if beta == 0 or n < 2:
        return white / (white.std() or 1.0)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]  # keep the DC bin finite
    shaped = np.fft.irfft(spectrum * freqs ** (-beta / 2), n)
    shaped -= shaped.mean()
    return shaped / (shaped.std() or 1.0)


def add_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x`` plus ``noise`` (same length) scaled so the clip's SNR is ``snr_db``."""
    signal_power = float(np.mean(np.square(x, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    if signal_power == 0 or noise_power == 0:
        return np.asarray(x, dtype=np.float32)
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (x + scale * noise).astype(np.float32)


def fit_segment(noise: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample stretch of ``noise``, looped when it is shorter."""
    if noise.size < n:
        noise = np.tile(noise, int(np.ceil(n / noise.size)) + 1)
    start = int(rng.integers(0, noise.size - n + 1))
    return noise[start:start + n]


@lru_cache(maxsize=None)
def noise_files(folder: str, categories: tuple[str, ...] = ("noise",)) -> tuple[Path, ...]:
    """Audio files of ``categories`` under a MUSAN-layout ``folder`` (a folder without those category folders is
    searched whole); :class:`InputError` when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"noise folder not found: {root}")
    roots = [root / c for c in categories if (root / c).is_dir()] or [root]
    files = sorted(p for r in roots for p in r.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"noise folder {root} holds no audio files ({', '.join(AUDIO_SUFFIXES)}) under "
                         f"{', '.join(categories)}")
    return tuple(files)


class NoiseBank:
    """Noise files decoded on first use and kept (per process: each DataLoader worker has its own)."""

    def __init__(self, files: tuple[Path, ...] | list[Path], sample_rate: int):
        self.files = list(files)
        self.sample_rate = sample_rate
        self._audio: dict[int, np.ndarray] = {}

    def audio(self, index: int) -> np.ndarray:
        """File ``index``, decoded at the bank's rate."""
        if index not in self._audio:
            self._audio[index] = load_audio(self.files[index], self.sample_rate, allow_silent=True)
        return self._audio[index]

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """A random ``n``-sample stretch of a random file."""
        return fit_segment(self.audio(int(rng.integers(len(self.files)))), n, rng)
