"""Training AASIST's encoder on a CPU with channels-last maps, with BatchNorm statistics as exact as the default's.

oneDNN runs these convolutions and torch the 1x3 max-pool much faster on channels-last maps than on the default
layout (the first block's max-pool about 7x, its ``conv2`` forward 1.3-2x on this project's CPU; see
docs/benchmarks.md). What kept training on the default layout was BatchNorm: torch's channels-last kernel adds
a channel's values one after another, so on AASIST's maps (a million values per channel and more) its batch
variance is off by up to 1e-3 relative, against 1e-7 in the default layout, and gradients move with it.

:func:`norm_selu` is ``selu(bn2(x))`` for a channels-last map in training mode with statistics from pairwise
(cascade) sums over a (positions, channels) view, two passes for the variance, and a backward of its own with
the same kind of sums. The first block, whose input has one channel, folds ``conv1 -> bn2 -> SELU`` into one
function whose statistics come from the input patches' moments (:func:`one_channel_conv_norm_selu`).
:func:`block_training` is :meth:`ResidualBlock.forward` built on them. tests/test_aasist.py checks a training
step against the default layout: equal to 1e-10 in float64, as accurate as it in float32 (against float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.models.aasist.cpu_inference import one_channel_as_channels_last
from plastispoof.models.aasist.encoder import ResidualBlock

CHANNELS_LAST = torch.channels_last
# torch.nn.SELU's constants (Klambauer et al., 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _rows(x: torch.Tensor) -> torch.Tensor:
    """A (B, C, H, W) map as (B * H * W, C) positions x channels: a view of a channels-last map."""
    x = x.contiguous(memory_format=CHANNELS_LAST)
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def batch_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of a (B, C, H, W) map, from cascade sums (mean first, then the
    squared deviations from it), so that neither the map's size nor its offset costs precision.

    >>> x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last) + 100.0
    >>> mean, var = batch_statistics(x)
    >>> bool(torch.allclose(var, x.var(dim=(0, 2, 3), unbiased=False), rtol=1e-5))
    True
    """
    values = _rows(x)
    mean = values.sum(0) / values.shape[0]
    return mean, (values - mean).square_().sum(0) / values.shape[0]


class _NormSelu(torch.autograd.Function):
    """``selu(weight * (x - mean) * invstd + bias)`` on a channels-last map, where ``mean`` and ``invstd`` are
    the batch statistics of ``x`` itself: the backward includes their dependence on ``x``, as BatchNorm's does."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd):  # noqa: D102 - torch.autograd.Function protocol
        scale = weight * invstd
        out = torch.empty_like(x, memory_format=CHANNELS_LAST)
        out_rows = _rows(out)
        torch.addcmul(bias - mean * scale, _rows(x), scale, out=out_rows)
        torch.selu_(out_rows)
        ctx.save_for_backward(x, out, weight, mean, invstd)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, out, weight, mean, invstd = ctx.saved_tensors
        values = _rows(x)
        count = values.shape[0]
        grad_norm = torch.empty_like(values)  # gradient after the SELU, read from its output
        torch.ops.aten.elu_backward.grad_input(_rows(grad_out), SELU_ALPHA, SELU_SCALE, 1.0, True, _rows(out),
                                               grad_input=grad_norm)
        grad_bias = grad_norm.sum(0)
        grad_weight = invstd * (torch.linalg.vecdot(grad_norm, values, dim=0) - mean * grad_bias)
        # dL/dx = scale * (g - mean(g) - xhat * mean(g * xhat)), as a per-channel a * g + b * x + c
        scale = weight * invstd
        b = -scale * invstd * grad_weight / count
        c = -scale * grad_bias / count - b * mean
        grad_x = torch.empty(x.shape, dtype=x.dtype, memory_format=CHANNELS_LAST)
        grad_rows = _rows(grad_x)
        torch.addcmul(c, values, b, out=grad_rows)
        grad_rows.addcmul_(grad_norm, scale)
        return grad_x, grad_weight, grad_bias, None, None


def _update_running_statistics(norm: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """What :class:`torch.nn.BatchNorm2d` does with a batch's statistics in training mode (the running variance
    is unbiased; momentum None means a cumulative average)."""
    if norm.track_running_stats:
        norm.num_batches_tracked += 1
        factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
        norm.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        norm.running_var.mul_(1 - factor).add_(var * (count / max(count - 1, 1)), alpha=factor)


def norm_selu(norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``F.selu(norm(x))`` for a BatchNorm in training mode, on a channels-last map; updates the running
    statistics as :class:`torch.nn.BatchNorm2d` does (momentum, or a cumulative average when it is None)."""
    with torch.no_grad():
        mean, var = batch_statistics(x)
        _update_running_statistics(norm, mean, var, x.numel() // x.shape[1])
        invstd = torch.rsqrt(var + norm.eps)
    return _NormSelu.apply(x, norm.weight, norm.bias, mean, invstd)


def _patches(x: torch.Tensor) -> torch.Tensor:
    """The 2x3 input patches of ``conv1`` (padding 1, 1) at each of its output positions, from a one-channel map
    (B, 1, H, W): (B, H + 1, W, 6), patch element ``3 * row + column``."""
    padded = F.pad(x[:, 0], (1, 1, 1, 1))
    height, width = x.shape[2] + 1, x.shape[3]
    return torch.stack([padded[:, row:row + height, column:column + width] for row in range(2)
                        for column in range(3)], dim=-1)


def _add_transposed_patches(grad_x: torch.Tensor, per_patch: torch.Tensor) -> None:
    """``grad_x`` (B, 1, H, W) += the transpose of :func:`_patches` applied to ``per_patch`` (B, H + 1, W, 6)."""
    height, width = grad_x.shape[2:]
    for element in range(6):
        # patch element (row, column) at output (r, c) is x[r + row - 1, c + column - 1]
        row, column = divmod(element, 3)
        top, left = max(row - 1, 0), max(column - 1, 0)
        bottom, right = min(height, height + row), min(width, width + column - 1)
        grad_x[:, 0, top:bottom, left:right] += per_patch[:, top - row + 1:bottom - row + 1,
                                                          left - column + 1:right - column + 1, element]


class _OneChannelConvNormSelu(torch.autograd.Function):
    """``selu(bn(conv1(x)))`` with batch statistics for a one-channel input (AASIST's first block).

    ``conv1`` reads six values per output (a 2x3 patch), so every statistic of its output is a function of the
    patches' 6 sums and 6 x 6 second moments (``moments``, float64), cheap to take from the small input. BatchNorm
    is folded into the convolution, and in the backward the part of the gradient that flows through the batch
    statistics, a per-channel ``a + b * xhat``, is again a function of the patches: one convolution backward on
    the 32-channel map instead of BatchNorm's own passes plus the convolution's.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, norm_weight, norm_bias, mean, invstd, moments):  # noqa: D102
        scale = norm_weight * invstd
        folded = (weight * scale[:, None, None, None]).contiguous(memory_format=CHANNELS_LAST)
        out = torch.selu_(F.conv2d(x, folded, (bias - mean) * scale + norm_bias, padding=(1, 1)))
        ctx.save_for_backward(x, out, weight, bias, norm_weight, mean, invstd, moments)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        x, out, weight, bias, norm_weight, mean, invstd, moments = ctx.saved_tensors
        grad_norm = torch.empty(out.shape, dtype=out.dtype, memory_format=CHANNELS_LAST)
        torch.ops.aten.elu_backward.grad_input(grad_out.contiguous(memory_format=CHANNELS_LAST), SELU_ALPHA,
                                               SELU_SCALE, 1.0, True, out, grad_input=grad_norm)
        scale = norm_weight * invstd
        folded = (weight * scale[:, None, None, None]).contiguous(memory_format=CHANNELS_LAST)
        needs_grad_x = ctx.needs_input_grad[0]  # not when everything before the encoder is frozen
        grad_x, patch_grad, grad_norm_bias = torch.ops.aten.convolution_backward(
            grad_norm, x, folded, [weight.shape[0]], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
            [needs_grad_x, True, True])
        # float64 from here: per-channel sums over a million positions and their differences
        count = out.numel() // out.shape[1]
        w = weight.double().reshape(weight.shape[0], 6)
        patch_grad = patch_grad.double().reshape(w.shape)  # sum of grad_norm * patch, per channel
        sum_grad = grad_norm_bias.double()
        inv, sc, offset = invstd.double(), scale.double(), bias.double() - mean.double()
        grad_norm_weight = inv * ((w * patch_grad).sum(1) + offset * sum_grad)  # sum of grad_norm * xhat
        # What the batch statistics take from conv1's output gradient: r = (mean(g) + mean(g xhat) xhat) * scale,
        # with xhat linear in the patch: r = patch . r_weight + r_bias
        r_weight = w * (inv * sc * grad_norm_weight / count)[:, None]
        r_bias = (offset * inv * grad_norm_weight / count + sum_grad / count) * sc
        second, first = moments[:, :6], moments[:, 6]
        grad_weight = sc[:, None] * patch_grad - (r_weight @ second + r_bias[:, None] * first[None, :])
        if needs_grad_x:
            per_patch = torch.addmm((r_bias @ w).to(x.dtype), _patches(x).reshape(-1, 6),
                                    (r_weight.t() @ w).to(x.dtype))
            grad_x = grad_x.contiguous()
            _add_transposed_patches(grad_x, -per_patch.view(x.shape[0], x.shape[2] + 1, x.shape[3], 6))
        return (grad_x, grad_weight.to(weight.dtype).reshape(weight.shape), torch.zeros_like(bias),
                grad_norm_weight.to(weight.dtype), sum_grad.to(weight.dtype), None, None, None)


def one_channel_conv_norm_selu(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """``selu(bn2(conv1(x)))`` of a block whose input has one channel, ``bn2`` in training mode; the running
    statistics are updated as in :func:`norm_selu`."""
    conv, norm = block.conv1, block.bn2
    with torch.no_grad():
        patches = _patches(x.double()).reshape(-1, 6)
        count = patches.shape[0]
        second, sums = patches.t() @ patches, patches.sum(0)
        moments = torch.cat([second, sums[:, None]], dim=1)  # (6, 7): second moments | sums
        w = conv.weight.double().reshape(conv.out_channels, 6)
        expected = sums / count
        covariance = second / count - torch.outer(expected, expected)
        mean = (w @ expected + conv.bias.double()).to(x.dtype)
        var = ((w @ covariance) * w).sum(1).clamp_min(0).to(x.dtype)
        _update_running_statistics(norm, mean, var, count)
        invstd = torch.rsqrt(var + norm.eps)
    return _OneChannelConvNormSelu.apply(x, conv.weight, conv.bias, norm.weight, norm.bias, mean, invstd, moments)


def block_training(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """:meth:`ResidualBlock.forward` with ``bn2`` in training mode, on channels-last maps (input and output).

    Channels-last weights make oneDNN keep every map channels-last; the weights' copies are part of the autograd
    graph, so their gradients reach the parameters. A one-channel input (the first block's) is viewed with
    channels-last strides first (:func:`one_channel_as_channels_last`, as for inference): otherwise oneDNN
    produces, and converts, the default layout (0.7 s more per step for AASIST, batch 4 x 4 s).
    """
    if x.shape[1] == 1:
        x = one_channel_as_channels_last(x)
    conv1, conv2, down = block.conv1, block.conv2, block.conv_downsample
    if x.shape[1] == 1 and conv1.bias is not None:
        hidden = one_channel_conv_norm_selu(block, x)
    else:
        hidden = norm_selu(block.bn2, F.conv2d(x, conv1.weight.contiguous(memory_format=CHANNELS_LAST), conv1.bias,
                                              padding=(1, 1)))
    out = F.conv2d(hidden, conv2.weight.contiguous(memory_format=CHANNELS_LAST), conv2.bias, padding=(0, 1))
    shortcut = x if down is None else F.conv2d(x, down.weight.contiguous(memory_format=CHANNELS_LAST), down.bias,
                                               padding=(0, 1))
    return F.max_pool2d(out.add_(shortcut), kernel_size=(1, 3))
