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


def conv_columns(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, start: int, stop: int, *,
                 length: int, offset: int = 0, row_padding: int = 0) -> torch.Tensor:
    """Columns ``start:stop`` of ``conv2d(map, weight, bias, padding=(row_padding, 1))`` for a kernel 3 wide in
    time, where ``x`` holds the map's columns from ``offset`` on and the map is ``length`` columns wide.

    Reads ``x`` in place: at the map's two ends the convolution pads (and the column it computes beyond the
    slice is dropped) instead of a zero-padded copy of the slice being made, which for a 32-channel slice costs
    about as much as a pass of SELU.

    >>> x, w = torch.randn(1, 2, 3, 10), torch.randn(4, 2, 2, 3)
    >>> whole = F.conv2d(x, w, padding=(1, 1))
    >>> all(torch.allclose(conv_columns(x, w, None, a, b, length=10, row_padding=1), whole[..., a:b], atol=1e-6)
    ...     for a, b in [(0, 4), (4, 8), (8, 10), (0, 10)])
    True
    >>> torch.allclose(conv_columns(x[..., 3:], w, None, 4, 10, length=10, offset=3, row_padding=1), whole[..., 4:])
    True
    """
    low, high = max(start - 1, 0), min(stop + 1, length)
    piece = x[..., low - offset:high - offset]
    if (low, high) == (start - 1, stop + 1):
        return F.conv2d(piece, weight, bias, padding=(row_padding, 0))
    return F.conv2d(piece, weight, bias, padding=(row_padding, 1))[..., start - low:stop - low]


def max_pool_3x3(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x[:, None], 3)[:, 0]`` of a (B, rows, columns) map into ``out`` (B, rows // 3, columns // 3):
    the same values (and NaN where a window has one), from element-wise maxima, about 8x faster than
    ``max_pool2d`` on a one-channel map.

    >>> x = torch.randn(2, 8, 13)
    >>> torch.equal(max_pool_3x3(x, torch.empty(2, 2, 4)), F.max_pool2d(x[:, None], 3)[:, 0])
    True
    """
    rows = x[:, :3 * out.shape[1], :3 * out.shape[2]].unflatten(1, (-1, 3))
    tall = torch.maximum(rows[:, :, 0], rows[:, :, 1])
    torch.maximum(tall, rows[:, :, 2], out=tall)
    torch.maximum(tall[..., 0::3], tall[..., 1::3], out=out)
    return torch.maximum(out, tall[..., 2::3], out=out)


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
    # Channels-last weights make oneDNN keep every output channels-last, even from a one-channel input. The
    # weights take the map's dtype (bfloat16 scoring: folded in float32, then rounded once).
    def weights(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(x.dtype).contiguous(memory_format=torch.channels_last)

    def bias(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor.to(x.dtype)

    weight1 = weights(conv1.weight * scale[:, None, None, None])
    bias1 = bias((conv1_bias - norm.running_mean) * scale + norm.bias)
    weight2, bias2 = weights(conv2.weight), bias(conv2.bias)
    down_weight = None if down is None else weights(down.weight)
    down_bias = None if down is None else bias(down.bias)

    batch, _, height, length = x.shape
    pooled_length = length // 3  # the max-pool drops the last length % 3 columns
    out = torch.empty((batch, conv2.out_channels, height, pooled_length), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    width = slice_width(batch * conv1.out_channels * (height + 1))
    for start in range(0, 3 * pooled_length, width):
        stop = min(start + width, 3 * pooled_length)
        # conv2 reads conv1's activations one column either side; outside the map they are conv2's zero padding.
        first, last = max(start - 1, 0), min(stop + 1, length)
        hidden = F.selu(conv_columns(x, weight1, bias1, first, last, length=length, row_padding=1), inplace=True)
        summed = conv_columns(hidden, weight2, bias2, start, stop, length=length, offset=first)
        if down is None:
            summed += x[..., start:stop]
        else:
            summed += conv_columns(x, down_weight, down_bias, start, stop, length=length)
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

