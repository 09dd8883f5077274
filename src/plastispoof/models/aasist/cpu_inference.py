"""Inference on a CPU one slice of time at a time (eval mode, no gradients): same values as the whole maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plastispoof.models.aasist.encoder import ResidualBlock

# Inference fast path (CPU). The front-end and every encoder block are local in time apart from their zero
# padding at the two ends of the map, so in eval mode (BatchNorm = a fixed per-channel affine map) they can be
# computed a slice of columns at a time with the neighbouring columns each slice needs. Slices of about
# SLICE_ELEMENTS values (16 MB: under glibc's 32 MB mmap ceiling, so freed slices are reused, never faulted in
# again; within the 32 MB L3) replace the whole-map path's 63 MB-per-utterance tensors of the first block, each a
# fresh mmap whose pages the kernel zeroes. 1 M and 4 M values ran equally fast on one thread; larger slices
# mean fewer operations, and fewer thread barriers when the cores are shared.
SLICE_ELEMENTS = 1 << 22


def columns(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Columns ``start:stop`` of ``x`` (time last), with zeros for columns outside the map (the convs' padding)."""
    length = x.shape[-1]
    piece = x[..., max(start, 0):min(stop, length)]
    left, right = max(0, -start), max(0, stop - length)
    return F.pad(piece, (left, right)) if left or right else piece


def slice_width(values_per_column: int) -> int:
    """Block columns per slice: a multiple of 3 (the max-pool's stride), so slices pool independently."""
    return 3 * max(1, SLICE_ELEMENTS // (3 * values_per_column))


def block_inference(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """:meth:`ResidualBlock.forward` in eval mode, one slice of columns at a time (same values to rounding).

    ``bn2`` is folded into ``conv1`` (a per-output-channel scale and shift), SELU and the residual sum work in
    place, and the 1x3 max-pool is two element-wise maxima. Input and output are channels-last: oneDNN runs
    these convolutions on it without converting layouts and the max-pool reads contiguous channels.
    """
    conv1, norm, conv2, down = block.conv1, block.bn2, block.conv2, block.conv_downsample
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    conv1_bias = conv1.bias if conv1.bias is not None else torch.zeros_like(norm.running_mean)
    # Channels-last weights make oneDNN keep every output channels-last, even from a one-channel input.
    weight1 = (conv1.weight * scale[:, None, None, None]).contiguous(memory_format=torch.channels_last)
    bias1 = (conv1_bias - norm.running_mean) * scale + norm.bias
    weight2 = conv2.weight.contiguous(memory_format=torch.channels_last)
    down_weight = None if down is None else down.weight.contiguous(memory_format=torch.channels_last)

    batch, _, height, length = x.shape
    pooled_length = length // 3  # the max-pool drops the last length % 3 columns
    out = torch.empty((batch, conv2.out_channels, height, pooled_length), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    width = slice_width(batch * conv1.out_channels * (height + 1))
    for start in range(0, 3 * pooled_length, width):
        stop = min(start + width, 3 * pooled_length)
        # conv2 reads conv1's activations one column either side; outside the map they are conv2's zero padding.
        first, last = max(start - 1, 0), min(stop + 1, length)
        hidden = F.selu(F.conv2d(columns(x, first - 1, last + 1), weight1, bias1, padding=(1, 0)), inplace=True)
        hidden = columns(hidden, start - 1 - first, stop + 1 - first)
        summed = F.conv2d(hidden, weight2, conv2.bias)
        if down is None:
            summed += x[..., start:stop]
        else:
            summed += F.conv2d(columns(x, start - 1, stop + 1), down_weight, down.bias)
        target = out[..., start // 3:stop // 3]
        torch.maximum(summed[..., 0::3], summed[..., 1::3], out=target)
        torch.maximum(target, summed[..., 2::3], out=target)
    return out


def one_channel_as_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A contiguous (B, 1, H, W) map viewed with channels-last strides: the same memory (one channel), but oneDNN
    then keeps the convolutions' many-channel outputs channels-last instead of converting them for the next."""
    batch, channels, height, width = x.shape
    if channels != 1 or not x.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x.as_strided(x.shape, (height * width, 1, width, 1))


def traced_or_observed() -> bool:
    """Whether the forward pass is being traced or exported (``torch.export``, ONNX, TorchScript), compiled, or
    watched by a dispatch mode such as ``FlopCounterMode``: they get the plain layers, the published graph."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or _get_current_dispatch_mode() is not None)

