"""Front-end features as ``nn.Module``s, so they run batched on the model's device.

Every front-end maps a waveform batch ``(B, T)`` to what its network reads:

* :class:`LogMel` -> ``(B, n_mels, frames)``: power mel spectrogram in dB (librosa's filterbank and dB
  convention), optionally normalised per utterance.
* :class:`LFCC` -> ``(B, n_lfcc * (1 + delta_order), frames)``: linear-frequency cepstral coefficients with
  optional librosa-compatible deltas.
* :class:`Raw` -> ``(B, T)``: the waveform itself, optionally pre-emphasised and normalised.

Filterbanks, windows and DCT matrices are non-persistent buffers: they follow ``.to(device)`` but are not
saved in checkpoints, because the constructor arguments rebuild them exactly.

>>> wave = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
>>> LogMel()(wave).shape
torch.Size([2, 64, 32])
>>> LFCC(delta_order=2)(wave).shape
torch.Size([2, 60, 32])
"""

from __future__ import annotations

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import torch
from torch import nn

from plastispoof.errors import InputError

# Added to a standard deviation before dividing, so silent (constant) input stays finite.
_STD_FLOOR = 1e-5


class _PowerSpectrogram(nn.Module):
    """|STFT|^2 with a periodic Hann window, centred frames and reflect padding (librosa's framing), as
    ``(B, frames, n_fft // 2 + 1)``: frequency last, so filterbanks apply as one ``power @ basis.T`` matmul.

    Framing by ``unfold`` and a batched ``rfft`` over the last axis gives the same numbers as ``torch.stft``
    and is faster on a CPU (8 x 4 s, one thread: 2.2 instead of 2.7 ms with the power; docs/benchmarks.md).
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        half = self.n_fft // 2
        if waveform.shape[-1] <= half:  # reflect padding needs more samples than it pads
            raise InputError(f"audio too short: {waveform.shape[-1]} samples, a {self.n_fft}-point STFT needs "
                             f"more than {half}")
        padded = torch.cat([waveform[..., 1:half + 1].flip(-1), waveform, waveform[..., -half - 1:-1].flip(-1)],
                           dim=-1)
        spectrum = torch.fft.rfft(padded.unfold(-1, self.n_fft, self.hop_length) * self.window)
        return spectrum.real.square() + spectrum.imag.square()


def linear_filterbank(sample_rate: int, n_fft: int, n_filters: int, f_min: float = 0.0,
                      f_max: float | None = None) -> np.ndarray:
    """Triangular filters with centres equally spaced in Hz, shape ``(n_filters, n_fft // 2 + 1)``.

    Filter ``i`` rises from edge ``i`` to a peak of 1 at edge ``i + 1`` and falls to 0 at edge ``i + 2``, with
    ``n_filters + 2`` edges spread evenly over ``[f_min, f_max]`` (no area normalisation, as in the ASVspoof
    LFCC baselines).

    >>> fb = linear_filterbank(16000, 512, 20)
    >>> fb.shape
    (20, 257)
    >>> round(float(fb[:, 100].sum()), 6)  # between the outer centres, neighbouring triangles sum to one
    1.0
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise InputError(f"linear filterbank needs 0 <= f_min < f_max <= {sample_rate / 2:g} Hz, "
                         f"got {f_min}..{f_max}")
    edges = np.linspace(f_min, f_max, n_filters + 2)
    bin_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_freqs - left) / (centre - left)
    falling = (right - bin_freqs) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class Deltas(nn.Module):
    """Appends time derivatives like ``librosa.feature.delta`` (Savitzky-Golay, ``mode="interp"``).

    Order ``k`` is the k-th derivative of a degree-k polynomial fitted over ``width`` frames. Because that
    derivative is constant over the fit, librosa's ``interp`` edges equal the first/last full-window value:
    a valid convolution followed by replicate padding reproduces it exactly.
    """

    def __init__(self, order: int, width: int = 9):
        super().__init__()
        if width < 3 or width % 2 == 0:
            raise InputError(f"delta width must be an odd number >= 3, got {width}")
        self.order = order
        self.width = width
        kernels = [scipy.signal.savgol_coeffs(width, polyorder=k, deriv=k, use="dot") for k in range(1, order + 1)]
        kernels = np.array(kernels, dtype=np.float32).reshape(order, width)
        self.register_buffer("kernels", torch.from_numpy(kernels), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C, frames) -> (B, C * (1 + order), frames)``: the input followed by each derivative."""
        if self.order == 0:
            return features
        batch, channels, frames = features.shape
        if frames < self.width:
            raise InputError(f"audio too short for deltas: {frames} frames, need at least {self.width}")
        rows = features.reshape(batch * channels, 1, frames)
        slopes = nn.functional.conv1d(rows, self.kernels[:, None, :])  # (B*C, order, frames - width + 1)
        slopes = nn.functional.pad(slopes, (self.width // 2, self.width // 2), mode="replicate")
        slopes = slopes.reshape(batch, channels, self.order, frames).transpose(1, 2)
        return torch.cat([features[:, None], slopes], dim=1).reshape(batch, channels * (1 + self.order), frames)


def _normalise(features: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    # Two passes by hand: torch's std over several dimensions is about 6x slower on a CPU for the same result.
    centred = features - features.mean(dim=dims, keepdim=True)
    std = centred.square().mean(dim=dims, keepdim=True).sqrt()
    return centred / (std + _STD_FLOOR)


class LogMel(nn.Module):
    """Log-mel spectrogram ``(B, T) -> (B, n_mels, frames)``, ``frames = 1 + T // hop_length``.

    Power STFT -> ``librosa.filters.mel`` (Slaney scale and norm) -> ``10 log10(max(S, eps))``, clipped to
    ``top_db`` below each utterance's peak (librosa's ``power_to_db`` defaults) -> optionally minus the
    utterance mean, divided by its standard deviation (over all bins and frames).
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 512, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None, normalize: bool = True, eps: float = 1e-10,
                 top_db: float | None = 80.0):
        super().__init__()
        self.spectrogram = _PowerSpectrogram(n_fft, hop_length)
        mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)  # (n_mels, bins)
        self.n_mels = n_mels
        self.normalize = normalize
        self.eps = eps
        self.top_db = top_db

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        # float32 even under AMP: half-precision power spectra underflow in the log
        with torch.autocast(waveform.device.type, enabled=False):
            power = self.spectrogram(waveform.float())
            mel_power = (power @ self.mel_basis.T).transpose(-1, -2)  # (B, n_mels, frames)
            decibels = 10.0 * torch.log10(torch.clamp(mel_power, min=self.eps))
            if self.top_db is not None:
                peak = decibels.amax(dim=(1, 2), keepdim=True)
                decibels = torch.maximum(decibels, peak - self.top_db)
            return _normalise(decibels, dims=(1, 2)) if self.normalize else decibels


class LFCC(nn.Module):
    """Linear-frequency cepstral coefficients ``(B, T) -> (B, n_lfcc * (1 + delta_order), frames)``.

    Power STFT -> :func:`linear_filterbank` -> natural log (floored at ``eps``) -> orthonormal DCT-II, first
    ``n_lfcc`` coefficients -> optional per-coefficient mean/variance normalisation over time (``cmvn``) ->
    optional deltas (``delta_order`` 1: append Δ; 2: append Δ and ΔΔ; librosa-compatible, ``delta_width``).
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 512, n_filters: int = 20,
                 n_lfcc: int = 20, f_min: float = 0.0, f_max: float | None = None, delta_order: int = 0,
                 delta_width: int = 9, cmvn: bool = False, eps: float = 1e-10):
        super().__init__()
        if n_lfcc > n_filters:
            raise InputError(f"LFCC: n_lfcc ({n_lfcc}) cannot exceed n_filters ({n_filters})")
        if delta_order not in (0, 1, 2) or isinstance(delta_order, bool):
            raise InputError(f"LFCC: delta_order must be 0, 1 or 2, got {delta_order!r}")
        self.spectrogram = _PowerSpectrogram(n_fft, hop_length)
        filters = linear_filterbank(sample_rate, n_fft, n_filters, f_min, f_max)
        self.register_buffer("filterbank", torch.from_numpy(filters), persistent=False)
        dct = scipy.fft.dct(np.eye(n_filters), type=2, norm="ortho", axis=0)[:n_lfcc]
        self.register_buffer("dct", torch.from_numpy(dct).float(), persistent=False)
        self.deltas = Deltas(delta_order, delta_width)
        self.n_lfcc = n_lfcc
        self.cmvn = cmvn
        self.eps = eps

    @property
    def out_features(self) -> int:
        return self.n_lfcc * (1 + self.deltas.order)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        with torch.autocast(waveform.device.type, enabled=False):
            power = self.spectrogram(waveform.float())
            filtered = (power @ self.filterbank.T).transpose(-1, -2)  # (B, n_filters, frames)
            cepstra = self.dct @ torch.log(torch.clamp(filtered, min=self.eps))
            if self.cmvn:
                cepstra = _normalise(cepstra, dims=(2,))
            return self.deltas(cepstra)


class Raw(nn.Module):
    """The waveform itself, for models that read samples: optional pre-emphasis and per-utterance normalisation.

    ``pre_emphasis`` = a gives ``y[t] = x[t] - a x[t-1]`` (``y[0] = x[0]``); ``normalize`` makes each utterance
    zero-mean, unit-variance (what wav2vec 2.0 expects).
    """

    def __init__(self, pre_emphasis: float = 0.0, normalize: bool = False):
        super().__init__()
        self.pre_emphasis = pre_emphasis
        self.normalize = normalize

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.pre_emphasis:
            waveform = torch.cat([waveform[:, :1], waveform[:, 1:] - self.pre_emphasis * waveform[:, :-1]], dim=1)
        return _normalise(waveform, dims=(1,)) if self.normalize else waveform
