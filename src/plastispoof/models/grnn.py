"""GRNN: a stack of single-layer GRUs over LFCC frames (the dropin paper's recurrent model).

Authors' settings: 20 LFCC from a 1024-point STFT with hop 512, GRU hidden sizes 64-64-32-32, hinge loss (the
loss is the trainer's option). Choices of ours, where the authors' code is not known: the LFCC come with
first-order deltas (40 inputs per frame) and per-coefficient mean/variance normalisation, and the last GRU's
outputs are averaged over time before ``Linear(32, 2)``. With deltas the model has 61,122 parameters (Table I:
0.06 M; without deltas it would be 57,282, with Δ and ΔΔ 64,962).

Each GRU is one growth site: its hidden units are read by the next GRU (input features) or by the head.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from plastispoof.errors import InputError
from plastispoof.features import LFCC
from plastispoof.models.base import GrowthSite, SpoofModel
from plastispoof.registry import MODELS


@MODELS.register("grnn")
class GRNN(SpoofModel):
    """LFCC front-end -> stacked ``nn.GRU`` (``grus.0`` ... ``grus.N-1``) -> pooling over time -> ``head``.

    hidden_sizes: hidden units of each single-layer GRU, in order.
    n_lfcc, n_filters, delta_order, cmvn, n_fft, hop_length: the :class:`~plastispoof.features.LFCC` front-end.
    pooling: ``"mean"`` averages the last GRU's outputs over time; ``"last"`` takes its final hidden state.
    """

    def __init__(self, hidden_sizes: Sequence[int] = (64, 64, 32, 32), n_lfcc: int = 20, n_filters: int = 20,
                 delta_order: int = 1, cmvn: bool = True, pooling: Literal["mean", "last"] = "mean",
                 n_fft: int = 1024, hop_length: int = 512):
        hidden_sizes = [int(h) for h in hidden_sizes]
        if not hidden_sizes or min(hidden_sizes) < 1:
            raise InputError(f"GRNN needs at least one GRU with >= 1 hidden unit, got hidden_sizes={hidden_sizes}")
        if pooling not in ("mean", "last"):
            raise InputError(f"GRNN pooling must be 'mean' or 'last', got {pooling!r}")
        super().__init__(hidden_sizes=hidden_sizes, n_lfcc=n_lfcc, n_filters=n_filters, delta_order=delta_order,
                         cmvn=cmvn, pooling=pooling, n_fft=n_fft, hop_length=hop_length)
        self.frontend = LFCC(sample_rate=self.sample_rate, n_fft=n_fft, hop_length=hop_length, n_filters=n_filters,
                             n_lfcc=n_lfcc, delta_order=delta_order, cmvn=cmvn)
        inputs = [self.frontend.out_features] + hidden_sizes[:-1]
        self.grus = nn.ModuleList(nn.GRU(i, h, batch_first=True) for i, h in zip(inputs, hidden_sizes))
        self.head = nn.Linear(hidden_sizes[-1], 2)
        self.pooling = pooling

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.frontend(waveform).transpose(1, 2)  # (B, frames, features)
        for gru in self.grus:
            x, _ = gru(x)
        pooled = x.mean(dim=1) if self.pooling == "mean" else x[:, -1]
        return self.head(pooled)

    def growth_sites(self) -> list[GrowthSite]:
        last = len(self.grus) - 1
        return [
            GrowthSite(name=f"gru{i}", kind="gru", producer=f"grus.{i}",
                       consumers=("head",) if i == last else (f"grus.{i + 1}",), group="grus")
            for i in range(len(self.grus))
        ]
