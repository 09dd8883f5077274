"""FLOPs of one forward pass, counted by PyTorch itself (:class:`torch.utils.flop_counter.FlopCounterMode`):
matrix products and convolutions, 2 FLOPs per multiply-accumulate. Below the methods (dynamic widths size their
gates by it) and the reports (:mod:`plastispoof.cost`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward pass of ``model`` on ``example_input`` (a tensor or a tuple of positional inputs).

    >>> count_flops(nn.Linear(3, 4), torch.zeros(5, 3))
    120
    """
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return int(counter.get_total_flops())
