"""AASIST's residual encoder block, and the hook check every fast path makes before replacing its layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    """``conv1 -> bn2 -> SELU -> conv2`` plus the block input, then a 1x3 max-pool over time.

    ``bn1`` exists only in blocks after the first, to hold the checkpoint's (untrained) tensors, and is not
    applied; see the module docstring. ``conv1`` pads the frequency axis by one and ``conv2`` by none, so the
    height is unchanged. ``conv_downsample`` (a 1x3 conv) maps the block input where the width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, first: bool = False):
        super().__init__()
        self.bn1 = None if first else nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(2, 3), padding=(0, 1))
        self.conv_downsample = (nn.Conv2d(in_channels, out_channels, kernel_size=(1, 3), padding=(0, 1))
                                if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place where no other code holds the tensor: BatchNorm's backward reads its input, not its output,
        # and a convolution's backward its input, not its output. Saves two map-sized buffers per block.
        in_place = self._may_work_in_place()
        out = self.conv2(F.selu(self.bn2(self.conv1(x)), inplace=in_place))
        shortcut = x if self.conv_downsample is None else self.conv_downsample(x)
        out = out.add_(shortcut) if in_place else out + shortcut
        return F.max_pool2d(out, kernel_size=(1, 3))

    def _may_work_in_place(self) -> bool:
        """bn2's and conv2's outputs are nobody else's: plain layers, no hook that could keep them."""
        return (type(self.bn2) is nn.BatchNorm2d and type(self.conv2) is nn.Conv2d
                and not has_hooks(self.bn2) and not has_hooks(self.conv2))

    def is_plain(self) -> bool:
        """Whether the block still has its own layers (not grown, wrapped or hooked), so that
        :func:`block_inference` computes exactly what :meth:`forward` does."""
        layers = [("conv1", (2, 3), (1, 1)), ("conv2", (2, 3), (0, 1))]
        if self.conv_downsample is not None:
            layers.append(("conv_downsample", (1, 3), (0, 1)))
        for name, kernel, padding in layers:
            conv = getattr(self, name)
            if (type(conv) is not nn.Conv2d or conv.kernel_size != kernel or conv.padding != padding
                    or conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1
                    or conv.padding_mode != "zeros"):
                return False
        return (type(self.bn2) is nn.BatchNorm2d and self.bn2.track_running_stats and self.bn2.affine
                and self.conv1.out_channels == self.bn2.num_features == self.conv2.in_channels)


def has_hooks(module: nn.Module) -> bool:
    """Whether any module in ``module`` (or every module, globally) has a hook the fast path would skip."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in module.modules())

