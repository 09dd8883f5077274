"""AASIST's sinc front-end: 70 fixed mel-spaced band-pass filters over the raw waveform."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mel_sinc_filters(n_filters: int, kernel_size: int, sample_rate: int = 16000) -> torch.Tensor:
    """Fixed band-pass filters (n_filters, kernel_size) with mel-spaced edges from 0 Hz to Nyquist.

    >>> bank = mel_sinc_filters(70, 129)
    >>> tuple(bank.shape), bool(torch.isfinite(bank).all())
    ((70, 129), True)
    """
    top_mel = 2595.0 * math.log10(1.0 + (sample_rate / 2) / 700.0)
    edges_mel = torch.linspace(0.0, top_mel, n_filters + 1, dtype=torch.float64)
    edges_hz = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    taps = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2

    def low_pass(cutoff_hz: torch.Tensor) -> torch.Tensor:  # ideal low-pass impulse response, unit DC gain
        normalised = 2.0 * cutoff_hz[:, None] / sample_rate
        return normalised * torch.sinc(normalised * taps)

    window = torch.hamming_window(kernel_size, periodic=False, dtype=torch.float64)
    return ((low_pass(edges_hz[1:]) - low_pass(edges_hz[:-1])) * window).float()


class SincFrontEnd(nn.Module):
    """Waveform (B, L) -> (B, n_filters, L - kernel_size + 1) through fixed mel-spaced sinc filters."""

    def __init__(self, n_filters: int, first_conv: int, sample_rate: int = 16000):
        super().__init__()
        kernel_size = first_conv + 1 if first_conv % 2 == 0 else first_conv  # odd: symmetric around tap 0
        # Not persistent: the filters are a function of the config, and the official state_dict has none.
        self.register_buffer("filters", mel_sinc_filters(n_filters, kernel_size, sample_rate)[:, None, :],
                             persistent=False)

    @property
    def kernel_size(self) -> int:
        return self.filters.shape[-1]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return F.conv1d(waveform.unsqueeze(1), self.filters.to(waveform.dtype))

