"""RawBoost (Tak et al., ICASSP 2022): three data-free distortions of the raw waveform, alone or combined.

Written from the paper's description, with its published default parameters (:class:`RawBoostParams`):

1. **Convolutive (linear and non-linear) noise**: a Hammerstein system. The waveform and its powers x^2 .. x^N_f
   each go through their own random multi-band FIR filter and are summed; every higher order is attenuated by a
   further random bias (in dB), so the linear term dominates. Models channel and coding colouration.
2. **Impulsive signal-dependent noise**: up to P % of the samples, at random positions, get a disturbance
   proportional to the sample itself (gain g_sd times a product of two uniforms in [-1, 1]). Models clipping,
   quantisation and transmission glitches.
3. **Coloured additive noise**: white noise through a random multi-band filter, added at a random SNR in
   [SNR_min, SNR_max] dB. Models stationary background and electronic noise.

A random multi-band filter is the sum of ``n_bands`` band-pass FIR filters (window method, scipy): each band's
centre frequency, bandwidth, number of taps and gain are drawn uniformly from the configured ranges.
``series`` applies the chosen algorithms one after another; ``parallel`` applies each to the clean input and
averages the results. The output is rescaled to the input's peak so RawBoost never changes the level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve, firwin

ALGORITHMS = ("convolutive", "impulsive", "coloured")


@dataclass(frozen=True)
class RawBoostParams:
    """The paper's default parameters (frequencies in Hz, gains and biases in dB, P in % of samples)."""

    n_f: int = 5  # orders of the non-linear (Hammerstein) convolutive model
    n_bands: int = 5
    min_f: float = 20.0
    max_f: float = 8000.0
    min_bw: float = 100.0
    max_bw: float = 1000.0
    min_coeff: int = 10
    max_coeff: int = 100
    min_g: float = 0.0
    max_g: float = 0.0
    min_bias_lin_nonlin: float = 5.0
    max_bias_lin_nonlin: float = 20.0
    p: float = 10.0
    g_sd: float = 2.0
    snr_min: float = 10.0
    snr_max: float = 40.0


def multiband_filter(rng: np.random.Generator, sample_rate: int, params: RawBoostParams,
                     gain_offset_db: float = 0.0) -> np.ndarray:
    """FIR taps of a random multi-band filter: the sum of ``n_bands`` random band-pass filters, each with a
    random gain (dB) lowered by ``gain_offset_db``."""
    nyquist = sample_rate / 2
    bands = []
    for _ in range(params.n_bands):
        centre = rng.uniform(params.min_f, params.max_f)
        width = rng.uniform(params.min_bw, params.max_bw)
        taps = int(rng.integers(params.min_coeff, params.max_coeff + 1)) | 1  # odd: a type-I linear-phase FIR
        gain = 10 ** ((rng.uniform(params.min_g, params.max_g) - gain_offset_db) / 20)
        low = min(max(centre - width / 2, 1.0), nyquist - 2.0)
        high = min(centre + width / 2, nyquist - 1.0)
        if high <= low + 1.0:
            low, high = nyquist - 2 * max(width, 2.0), nyquist - 1.0
        bands.append((taps, gain * firwin(taps, [low, high], pass_zero=False, fs=sample_rate)))
    length = max(taps for taps, _ in bands)
    total = np.zeros(length)
    for taps, band in bands:
        offset = (length - taps) // 2  # centre each band so all share one group delay
        total[offset:offset + taps] += band
    return total


def _filtered(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """``x`` through a linear-phase FIR, compensating its group delay so nothing shifts in time."""
    delay = (taps.size - 1) // 2
    return fftconvolve(x, taps)[delay:delay + x.size]


def convolutive_noise(x: np.ndarray, rng: np.random.Generator, sample_rate: int,
                      params: RawBoostParams = RawBoostParams()) -> np.ndarray:
    """Algorithm 1: linear and non-linear convolutive noise."""
    peak = np.abs(x).max() or 1.0
    unit = x / peak
    y = np.zeros_like(unit, dtype=np.float64)
    offset_db = 0.0
    power = np.ones_like(y)
    for order in range(1, params.n_f + 1):
        if order > 1:  # each higher order sits a further random bias below the previous one
            offset_db += rng.uniform(params.min_bias_lin_nonlin, params.max_bias_lin_nonlin)
        power *= unit  # unit ** order by repeated products: numpy's ** on arrays is several times slower
        y += _filtered(power, multiband_filter(rng, sample_rate, params, offset_db))
    return _rescale(y, peak)


def impulsive_noise(x: np.ndarray, rng: np.random.Generator, params: RawBoostParams = RawBoostParams()) -> np.ndarray:
    """Algorithm 2: impulsive signal-dependent noise at up to ``p`` % of the samples."""
    y = np.array(x, dtype=np.float64)
    count = int(rng.integers(0, int(params.p / 100 * x.size) + 1))
    positions = rng.choice(x.size, size=count, replace=False)
    disturbance = params.g_sd * rng.uniform(-1, 1, count) * rng.uniform(-1, 1, count)
    y[positions] += y[positions] * disturbance
    return _rescale(y, np.abs(x).max())


def coloured_noise(x: np.ndarray, rng: np.random.Generator, sample_rate: int,
                   params: RawBoostParams = RawBoostParams()) -> np.ndarray:
    """Algorithm 3: stationary signal-independent coloured noise at an SNR in [snr_min, snr_max] dB."""
    noise = _filtered(rng.standard_normal(x.size), multiband_filter(rng, sample_rate, params))
    snr_db = rng.uniform(params.snr_min, params.snr_max)
    signal_power = np.mean(np.square(x, dtype=np.float64))
    noise_power = np.mean(noise ** 2) or 1.0
    return x + noise * np.sqrt(signal_power / noise_power / 10 ** (snr_db / 10))


def rawboost(x: np.ndarray, rng: np.random.Generator, sample_rate: int,
             algorithms: tuple[str, ...] | list[str] = ("convolutive", "impulsive"), combine: str = "series",
             params: RawBoostParams = RawBoostParams()) -> np.ndarray:
    """Apply ``algorithms`` (names from :data:`ALGORITHMS`) in ``series`` or in ``parallel`` (averaged)."""
    source = np.asarray(x, dtype=np.float64)
    if not np.any(source):
        return np.asarray(x, dtype=np.float32)

    def one(name: str, signal: np.ndarray) -> np.ndarray:
        if name == "convolutive":
            return convolutive_noise(signal, rng, sample_rate, params)
        if name == "impulsive":
            return impulsive_noise(signal, rng, params)
        return coloured_noise(signal, rng, sample_rate, params)

    if combine == "series":
        y = source
        for name in algorithms:
            y = one(name, y)
    else:
        y = _rescale(np.mean([one(name, source) for name in algorithms], axis=0), np.abs(source).max())
    return y.astype(np.float32)


def _rescale(y: np.ndarray, peak: float) -> np.ndarray:
    top = np.abs(y).max()
    return y * (peak / top) if top > 0 else y
