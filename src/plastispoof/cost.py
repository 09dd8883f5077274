"""What a network costs: parameters, MACs and FLOPs, counted by PyTorch itself.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the matrix products and
convolutions a forward pass runs (2 FLOPs per multiply-accumulate); norms, activations, pooling and other
element-wise work are not counted, so MACs = FLOPs / 2 exactly. The SSL back-ends are costed alone, for one
``(1, D, frames)`` input (200 frames of a 20 ms SSL front-end = 4 s), as in the Nes2Net paper.

>>> cost = backend_cost("linear", input_dim=8, frames=10)
>>> cost["params"], cost["macs"], cost["flops"]
(18, 16, 32)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from plastispoof.errors import InputError
from plastispoof.models.flops import count_flops

# The comparison point of the relative column: the SSL-AASIST back-end (dimensionality reduction + AASIST).
REFERENCE_BACKEND = "reduction-aasist"


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts.

    >>> layer = nn.Linear(3, 4)
    >>> _ = layer.bias.requires_grad_(False)
    >>> parameter_counts(layer)
    (16, 12)
    """
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def backend_cost(name: str, input_dim: int = 1024, frames: int = 200) -> dict[str, Any]:
    """Parameters, MACs and FLOPs of the bare back-end ``name`` (see :data:`plastispoof.registry.BACKENDS`)
    on one ``(1, input_dim, frames)`` input, in eval mode."""
    from plastispoof.models.nes2net import build_backend

    if frames < 1 or input_dim < 1:
        raise InputError(f"cost needs a positive input width and frame count; got {input_dim} x {frames}")
    backend = build_backend(name, input_dim=input_dim).eval()
    if frames < backend.min_frames:
        raise InputError(f"back-end {name!r} needs at least {backend.min_frames} frames; got {frames}")
    features = torch.randn(1, input_dim, frames, generator=torch.Generator().manual_seed(0))
    flops = count_flops(backend, features)
    params, _ = parameter_counts(backend)
    return {"name": name, "input_dim": input_dim, "frames": frames, "params": params, "macs": flops // 2,
            "flops": flops}


def format_cost(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`backend_cost` rows; MACs are also given relative to the reduction + AASIST
    back-end when it is among the rows (and has the same input).

    >>> print(format_cost([{"name": "linear", "input_dim": 8, "frames": 10, "params": 18, "macs": 16, "flops": 32}]))
    | back-end | input | params | MACs | FLOPs |
    |---|---|---:|---:|---:|
    | linear | 8 x 10 | 18 | 16 | 32 |
    """
    reference = next((row for row in rows if row["name"] == REFERENCE_BACKEND), None)
    header = ["back-end", "input", "params", "MACs", "FLOPs"]
    align = ["---", "---", "---:", "---:", "---:"]
    if reference is not None:
        header += [f"params vs {REFERENCE_BACKEND}", f"MACs vs {REFERENCE_BACKEND}"]
        align += ["---:", "---:"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        cells = [row["name"], f"{row['input_dim']} x {row['frames']}", f"{row['params']:,}", _human(row["macs"]),
                 _human(row["flops"])]
        if reference is not None:
            same_input = (row["input_dim"], row["frames"]) == (reference["input_dim"], reference["frames"])
            cells += [_percent(row["params"], reference["params"]),
                      _percent(row["macs"], reference["macs"]) if same_input else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _human(count: int) -> str:
    """Three significant digits: ``123`` / ``45.6 k`` / ``789 M`` / ``1.23 G``."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            value = count / scale
            return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f} {unit}"
    return str(count)


def _percent(value: int, reference: int) -> str:
    return f"{100 * value / reference:.1f} %" if reference else "-"
