"""The SHA-256 of a model's weights: what a calibration, a card and an export name the weights by.

PyTorch is imported only when a state_dict is hashed, so scoring an ONNX export never loads it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


def model_hash(model: nn.Module) -> str:
    """SHA-256 of a model's weights: every state_dict tensor (name, dtype, shape, bytes) in name order.

    Equal weights give equal hashes whatever device or process they live in; a calibration stores it.

    >>> from torch import nn
    >>> a = nn.Linear(2, 2); b = nn.Linear(2, 2); _ = b.load_state_dict(a.state_dict())
    >>> model_hash(a) == model_hash(b), model_hash(a) == model_hash(nn.Linear(2, 2))
    (True, False)
    """
    return state_hash(model.state_dict())


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """:func:`model_hash` of a state_dict (e.g. the tensors of a run's ``model.safetensors``)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
