"""What training minimises: the classification loss (class-weighted), plus the methods' own terms.

``hinge`` is the multi-class margin loss (margin 1) on the two logits, i.e. ``max(0, 1 - (z_true - z_other)) / 2``
per utterance (torch's ``multi_margin_loss``, which divides by the number of classes): the hinge loss the GRNN
authors trained with, written for two logits. A capacity method adds its regularisers through an
``auxiliary_loss()`` method on any of its modules (MoLEx, the dynamic-width FLOPs penalty).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.config import TrainConfig
from plastispoof.errors import InputError


def class_weights(cfg: TrainConfig, targets: list[int]) -> torch.Tensor | None:
    """Loss weights of (spoof, bona fide): ``balanced`` = n / (2 n_class), or the configured pair.

    >>> class_weights(TrainConfig(class_weights="balanced"), [0, 0, 0, 1])
    tensor([0.6667, 2.0000])
    """
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        counts = np.bincount(np.asarray(targets), minlength=2)
        return torch.tensor(len(targets) / (2.0 * counts), dtype=torch.float32)
    if len(cfg.class_weights) != 2:
        raise InputError(f"train.class_weights needs 2 numbers (spoof, bona fide), got {cfg.class_weights}")
    return torch.tensor(cfg.class_weights, dtype=torch.float32)


def classification_loss(kind: str, logits: torch.Tensor, target: torch.Tensor,
                        weight: torch.Tensor | None) -> torch.Tensor:
    """``ce``: weighted cross-entropy; ``hinge``: weighted multi-class margin loss (margin 1) on the logits."""
    logits = logits.float()  # losses in fp32 under autocast
    if kind == "hinge":
        return F.multi_margin_loss(logits, target, margin=1.0, weight=weight)
    return F.cross_entropy(logits, target, weight=weight)


def auxiliary_loss(model: nn.Module) -> torch.Tensor | None:
    """Sum of ``auxiliary_loss()`` over every module that defines it (method regularisers), or None."""
    terms = [m.auxiliary_loss() for m in model.modules() if callable(getattr(m, "auxiliary_loss", None))]
    terms = [t for t in terms if t is not None]
    return torch.stack([t.float() for t in terms]).sum() if terms else None
