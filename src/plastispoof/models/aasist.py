"""AASIST and AASIST-L (Jung et al., ICASSP 2022): raw waveform -> sinc filters -> residual encoder -> graphs.

The network, in the order data flows through it:

1. **Sinc front-end**: 70 fixed band-pass filters (129 taps, ``first_conv`` 128 made odd), band edges evenly
   spaced on the mel scale from 0 Hz to 8 kHz, each a Hamming-windowed difference of two sincs. Nothing is
   learnt, so nothing of it is in a state_dict. ``|x|`` -> 3x3 max-pool -> BatchNorm -> SELU gives a
   one-channel (filters x time) map.
2. **Residual encoder**: six blocks of ``conv1 (2x3) -> bn2 -> SELU -> conv2 (2x3)`` plus the (1x3-conv
   projected where the width changes) block input, then a 1x3 max-pool over time. Output (B, C, 23, T'),
   T' = 29 for 64600 samples.
3. **Graph back-end** (:class:`AASISTBackend`): the spectral graph (one node per frequency row, max |.| over
   time, plus a learnt positional embedding) and the temporal graph (one node per frame, max |.| over
   frequency) each go through a graph attention layer and a graph pooling layer; two parallel branches of
   heterogeneous stacking graph attention (HS-GAL: two layers, each with its own master node) combine them;
   the branches meet by element-wise max and the readout (max |.| and mean of each node type, plus the
   master node) feeds a linear layer giving two logits.

Graph attention, as in the paper: for nodes ``x_i``, the edge score is ``w . tanh(W (x_i * x_j) + b) / t``
(``*`` element-wise, ``t`` the temperature), normalised by a softmax over the neighbours ``j``; the new node
is ``P1 (sum_j a_ij x_j) + P2 x_i``, then BatchNorm and SELU. The heterogeneous layer first maps each node
type to a shared space, then uses one score vector ``w`` per edge type (temporal-temporal,
spectral-spectral, across); its master node attends to all nodes with its own ``W_M, w_M`` and is updated
as ``P1_M (sum_i a_i x_i) + P2_M m``. Graph pooling keeps the ``max(int(N * ratio), 1)`` nodes with the
highest ``sigmoid(p . x_i)`` gate, in descending gate order, each scaled by its gate.

Facts of the published network this file keeps so the official checkpoints score as published:

* Module and parameter names equal the official state_dict keys (they are the interface).
* Blocks 2-6 hold a ``bn1`` over their input, but the published network's ``conv1`` reads the block input
  itself: both checkpoints have ``bn1`` weights exactly 1 and biases exactly 0 (never trained). ``bn1`` is
  kept so the checkpoints load strictly; it takes no part in the forward pass.
* ``pool_ratios[3]`` and ``temperatures[3]`` are unused: all four HS-GAL pools use ``pool_ratios[2]`` and
  all four HS-GAL layers ``temperatures[2]``.
* The encoder's six blocks use ``filts[1]``, ``filts[2]``, ``filts[3]`` and then ``filts[4]`` three times.

Growth sites: in every encoder block ``conv1``'s output channels are private to the block (``conv1 -> bn2
-> SELU -> conv2``), so ``conv1`` is the producer, ``bn2`` the norm and ``conv2`` the consumer. ``conv2``'s
outputs are summed with the residual path and feed the next block, so they are not a site.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.errors import InputError
from plastispoof.models.base import GrowthSite, SpoofModel, build_model
from plastispoof.registry import MODELS

AASIST_CONFIG: dict[str, Any] = {
    "nb_samp": 64600,
    "first_conv": 128,
    "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
    "gat_dims": [64, 32],
    "pool_ratios": [0.5, 0.7, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}
AASIST_L_CONFIG: dict[str, Any] = {
    **AASIST_CONFIG,
    "filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]],
    "gat_dims": [24, 32],
    "pool_ratios": [0.4, 0.5, 0.7, 0.5],
}
# Models whose official checkpoints this file knows; used to say which model a mismatched file fits.
OFFICIAL_MODELS = ("aasist", "aasist-l")


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
                and not _has_hooks(self.bn2) and not _has_hooks(self.conv2))

    def is_plain(self) -> bool:
        """Whether the block still has its own layers (not grown, wrapped or hooked), so that
        :func:`_block_inference` computes exactly what :meth:`forward` does."""
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


# Inference fast path (CPU). The front-end and every encoder block are local in time apart from their zero
# padding at the two ends of the map, so in eval mode (BatchNorm = a fixed per-channel affine map) they can be
# computed a slice of columns at a time with the neighbouring columns each slice needs. Slices of about
# _SLICE_ELEMENTS values (16 MB: under glibc's 32 MB mmap ceiling, so freed slices are reused, never faulted in
# again; within the 32 MB L3) replace the whole-map path's 63 MB-per-utterance tensors of the first block, each a
# fresh mmap whose pages the kernel zeroes. 1 M and 4 M values ran equally fast on one thread; larger slices
# mean fewer operations, and fewer thread barriers when the cores are shared.
_SLICE_ELEMENTS = 1 << 22


def _columns(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Columns ``start:stop`` of ``x`` (time last), with zeros for columns outside the map (the convs' padding)."""
    length = x.shape[-1]
    piece = x[..., max(start, 0):min(stop, length)]
    left, right = max(0, -start), max(0, stop - length)
    return F.pad(piece, (left, right)) if left or right else piece


def _slice_width(values_per_column: int) -> int:
    """Block columns per slice: a multiple of 3 (the max-pool's stride), so slices pool independently."""
    return 3 * max(1, _SLICE_ELEMENTS // (3 * values_per_column))


def _block_inference(block: "ResidualBlock", x: torch.Tensor) -> torch.Tensor:
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
    width = _slice_width(batch * conv1.out_channels * (height + 1))
    for start in range(0, 3 * pooled_length, width):
        stop = min(start + width, 3 * pooled_length)
        # conv2 reads conv1's activations one column either side; outside the map they are conv2's zero padding.
        first, last = max(start - 1, 0), min(stop + 1, length)
        hidden = F.selu(F.conv2d(_columns(x, first - 1, last + 1), weight1, bias1, padding=(1, 0)), inplace=True)
        hidden = _columns(hidden, start - 1 - first, stop + 1 - first)
        summed = F.conv2d(hidden, weight2, conv2.bias)
        if down is None:
            summed += x[..., start:stop]
        else:
            summed += F.conv2d(_columns(x, start - 1, stop + 1), down_weight, down.bias)
        target = out[..., start // 3:stop // 3]
        torch.maximum(summed[..., 0::3], summed[..., 1::3], out=target)
        torch.maximum(target, summed[..., 2::3], out=target)
    return out


def _one_channel_as_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A contiguous (B, 1, H, W) map viewed with channels-last strides: the same memory (one channel), but oneDNN
    then keeps the convolutions' many-channel outputs channels-last instead of converting them for the next."""
    batch, channels, height, width = x.shape
    if channels != 1 or not x.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x.as_strided(x.shape, (height * width, 1, width, 1))


def _traced_or_observed() -> bool:
    """Whether the forward pass is being traced or exported (``torch.export``, ONNX, TorchScript), compiled, or
    watched by a dispatch mode such as ``FlopCounterMode``: they get the plain layers, the published graph."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or _get_current_dispatch_mode() is not None)


def _has_hooks(module: nn.Module) -> bool:
    """Whether any module in ``module`` (or every module, globally) has a hook the fast path would skip."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in module.modules())


def _node_batch_norm(norm: nn.BatchNorm1d, nodes: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the feature axis of (B, N, D) nodes, every node of every utterance one sample."""
    return norm(nodes.reshape(-1, nodes.shape[-1])).reshape(nodes.shape)


def _pairwise_products(nodes: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N, N, D) with entry [i, j] = x_i * x_j (element-wise)."""
    return nodes.unsqueeze(2) * nodes.unsqueeze(1)


def _new_score_vector(dim: int) -> nn.Parameter:
    weight = torch.empty(dim, 1)
    nn.init.xavier_normal_(weight)
    return nn.Parameter(weight)


class GraphAttentionLayer(nn.Module):
    """Graph attention over a fully connected graph of (B, N, in_dim) nodes -> (B, N, out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0, dropout: float = 0.2):
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _new_score_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(dropout)
        self.temperature = temperature

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        nodes = self.input_drop(nodes)
        scores = torch.tanh(self.att_proj(_pairwise_products(nodes))) @ self.att_weight  # (B, N, N, 1)
        attention = torch.softmax(scores.squeeze(-1) / self.temperature, dim=-1)  # over neighbours j
        updated = self.proj_with_att(attention @ nodes) + self.proj_without_att(nodes)
        return F.selu(_node_batch_norm(self.bn, updated))


class HeterogeneousGraphAttentionLayer(nn.Module):
    """HS-GAL layer: attention over two node types and a master node.

    forward(first (B, N1, in_dim), second (B, N2, in_dim), master (B or 1, 1, in_dim)) ->
    (first (B, N1, out_dim), second (B, N2, out_dim), master (B, 1, out_dim)). Edges within the first type,
    within the second and across each have their own score vector (``att_weight11``, ``22``, ``12``).
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0, dropout: float = 0.2):
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.att_weight11 = _new_score_vector(out_dim)
        self.att_weight22 = _new_score_vector(out_dim)
        self.att_weight12 = _new_score_vector(out_dim)
        self.att_weightM = _new_score_vector(out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(dropout)
        self.temperature = temperature

    def forward(self, first: torch.Tensor, second: torch.Tensor,
                master: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_first = first.shape[1]
        nodes = self.input_drop(torch.cat([self.proj_type1(first), self.proj_type2(second)], dim=1))

        # Edge type of (i, j): 0 within the first type, 1 within the second, 2 across.
        is_second = torch.arange(nodes.shape[1], device=nodes.device) >= n_first
        edge_type = torch.where(is_second[:, None] == is_second[None, :], is_second.long(), 2)
        score_vectors = torch.cat([self.att_weight11, self.att_weight22, self.att_weight12], dim=1)
        all_scores = torch.tanh(self.att_proj(_pairwise_products(nodes))) @ score_vectors  # (B, N, N, 3)
        scores = all_scores.gather(-1, edge_type.expand(*all_scores.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        attention = torch.softmax(scores / self.temperature, dim=-1)

        master_scores = torch.tanh(self.att_projM(nodes * master)) @ self.att_weightM  # (B, N, 1)
        master_attention = torch.softmax(master_scores / self.temperature, dim=1)
        new_master = (self.proj_with_attM(master_attention.transpose(1, 2) @ nodes)
                      + self.proj_without_attM(master))

        updated = self.proj_with_att(attention @ nodes) + self.proj_without_att(nodes)
        updated = F.selu(_node_batch_norm(self.bn, updated))
        return updated[:, :n_first], updated[:, n_first:], new_master


class GraphPool(nn.Module):
    """Keep the ``max(int(N * ratio), 1)`` nodes with the highest sigmoid gate, each scaled by its gate.

    Kept nodes come in descending gate order: the two HS-GAL branches are merged node by node, by rank.
    """

    def __init__(self, ratio: float, in_dim: int, dropout: float = 0.3):
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        gates = torch.sigmoid(self.proj(self.drop(nodes)))  # (B, N, 1)
        keep = max(int(nodes.shape[1] * self.ratio), 1)
        order = gates.topk(keep, dim=1).indices.expand(-1, -1, nodes.shape[-1])
        return (nodes * gates).gather(1, order)


class _GraphBackendLayers:
    """The graph back-end's layers and forward pass, shared by :class:`AASISTBackend` and :class:`AASIST`.

    A mixin (not a child module) because the official checkpoints hold these layers at the top level of the
    state_dict (``GAT_layer_S.*``, ``pos_S``, ``out_layer.*``), next to the encoder.
    """

    def _add_graph_layers(self, in_channels: int, gat_dims: Sequence[int], pool_ratios: Sequence[float],
                          temperatures: Sequence[float], spectral_nodes: int) -> None:
        if len(gat_dims) != 2 or len(pool_ratios) < 3 or len(temperatures) < 3:
            raise InputError(f"AASIST back-end needs 2 gat_dims, 3+ pool_ratios and 3+ temperatures; got "
                             f"{list(gat_dims)}, {list(pool_ratios)}, {list(temperatures)}")
        graph_dim, hsgal_dim = gat_dims
        self.pos_S = nn.Parameter(torch.randn(1, spectral_nodes, in_channels))
        self.master1 = nn.Parameter(torch.randn(1, 1, graph_dim))
        self.master2 = nn.Parameter(torch.randn(1, 1, graph_dim))
        self.GAT_layer_S = GraphAttentionLayer(in_channels, graph_dim, temperature=temperatures[0])
        self.GAT_layer_T = GraphAttentionLayer(in_channels, graph_dim, temperature=temperatures[1])
        for branch in ("1", "2"):
            setattr(self, f"HtrgGAT_layer_ST{branch}1",
                    HeterogeneousGraphAttentionLayer(graph_dim, hsgal_dim, temperature=temperatures[2]))
            setattr(self, f"HtrgGAT_layer_ST{branch}2",
                    HeterogeneousGraphAttentionLayer(hsgal_dim, hsgal_dim, temperature=temperatures[2]))
        self.pool_S = GraphPool(pool_ratios[0], graph_dim)
        self.pool_T = GraphPool(pool_ratios[1], graph_dim)
        for name in ("pool_hS1", "pool_hT1", "pool_hS2", "pool_hT2"):
            setattr(self, name, GraphPool(pool_ratios[2], hsgal_dim))
        self.drop_way = nn.Dropout(0.2)
        self.drop = nn.Dropout(0.5)
        self.out_layer = nn.Linear(5 * hsgal_dim, 2)

    def graph_logits(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Encoder map (B, C, F, T) -> logits (B, 2); F must equal the positional embedding's node count."""
        _, spectral_nodes, channels = self.pos_S.shape
        if feature_map.dim() != 4 or tuple(feature_map.shape[1:3]) != (channels, spectral_nodes):
            raise InputError(f"AASIST back-end expects a (batch, {channels}, {spectral_nodes}, time) feature map; "
                             f"got {tuple(feature_map.shape)}")
        magnitude = feature_map.abs()
        spectral = magnitude.amax(dim=3).transpose(1, 2) + self.pos_S  # (B, F, C): one node per row
        temporal = magnitude.amax(dim=2).transpose(1, 2)  # (B, T, C): one node per frame
        spectral = self.pool_S(self.GAT_layer_S(spectral))
        temporal = self.pool_T(self.GAT_layer_T(temporal))

        branches = [self._hsgal_branch(temporal, spectral, branch) for branch in ("1", "2")]
        temporal, spectral, master = (
            torch.maximum(self.drop_way(one), self.drop_way(two)) for one, two in zip(*branches))
        readout = torch.cat([temporal.abs().amax(dim=1), temporal.mean(dim=1),
                             spectral.abs().amax(dim=1), spectral.mean(dim=1), master.squeeze(1)], dim=1)
        return self.out_layer(self.drop(readout))

    def _hsgal_branch(self, temporal: torch.Tensor, spectral: torch.Tensor,
                      branch: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two stacked HS-GAL layers with a pooling between; the second layer's output is added (stacking)."""
        master = getattr(self, f"master{branch}")
        temporal, spectral, master = getattr(self, f"HtrgGAT_layer_ST{branch}1")(temporal, spectral, master)
        spectral = getattr(self, f"pool_hS{branch}")(spectral)
        temporal = getattr(self, f"pool_hT{branch}")(temporal)
        more_temporal, more_spectral, more_master = getattr(self, f"HtrgGAT_layer_ST{branch}2")(
            temporal, spectral, master)
        return temporal + more_temporal, spectral + more_spectral, master + more_master


class AASISTBackend(_GraphBackendLayers, nn.Module):
    """AASIST's graph back-end on any encoder: feature map (B, C, F, T) -> logits (B, 2).

    ``C`` = ``in_channels`` (channels of the encoder output), ``F`` = ``spectral_nodes`` (its frequency-like
    rows; each becomes a spectral-graph node with a learnt positional embedding), ``T`` = frames (any number;
    each becomes a temporal-graph node). Parameter names equal the official AASIST checkpoints' (without the
    encoder), so ``backend.load_state_dict`` accepts the graph part of an official state_dict.

    >>> backend = AASISTBackend(in_channels=16, gat_dims=[24, 32], pool_ratios=[0.5, 0.7, 0.5],
    ...                         temperatures=[2.0, 2.0, 100.0], spectral_nodes=12).eval()
    >>> backend(torch.randn(3, 16, 12, 40)).shape
    torch.Size([3, 2])
    """

    def __init__(self, in_channels: int, gat_dims: Sequence[int] = (64, 32),
                 pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
                 temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0), spectral_nodes: int = 23):
        super().__init__()
        self._add_graph_layers(in_channels, gat_dims, pool_ratios, temperatures, spectral_nodes)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.graph_logits(feature_map)


@MODELS.register("aasist")
class AASIST(_GraphBackendLayers, SpoofModel):
    """AASIST: waveform (B, L) at 16 kHz -> logits (B, 2), index 1 = bona fide.

    Constructor arguments are the published ``model_config``. ``nb_samp`` is the input length the model was
    trained and evaluated on (64600 samples, about 4 s); inputs of other lengths work (at least
    :attr:`min_samples`), the published evaluation crops or repeats to it. ``filts`` = [sinc filters,
    then the four [in, out] encoder widths].
    """

    def __init__(self, nb_samp: int = 64600, first_conv: int = 128,
                 filts: Sequence[Any] = (70, (1, 32), (32, 32), (32, 64), (64, 64)),
                 gat_dims: Sequence[int] = (64, 32), pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
                 temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0)):
        super().__init__(nb_samp=nb_samp, first_conv=first_conv, filts=_as_lists(filts), gat_dims=list(gat_dims),
                         pool_ratios=list(pool_ratios), temperatures=list(temperatures))
        n_filters, *widths = filts
        if len(widths) != 4:
            raise InputError(f"AASIST filts needs the sinc filter count and 4 [in, out] widths; got {filts!r}")
        self.sinc = SincFrontEnd(n_filters, first_conv, self.sample_rate)
        self.first_bn = nn.BatchNorm2d(1)
        block_widths = [widths[0], widths[1], widths[2], widths[3], widths[3], widths[3]]
        self.encoder = nn.Sequential(*(nn.Sequential(ResidualBlock(*width, first=index == 0))
                                       for index, width in enumerate(block_widths)))
        spectral_nodes = n_filters // 3  # rows left by the 3x3 max-pool; the encoder keeps the height
        self._add_graph_layers(widths[3][1], gat_dims, pool_ratios, temperatures, spectral_nodes)
        # On a CPU: the front-end is computed in slices of time without an autograd graph, and inference runs
        # the encoder in slices too, channels-last (same values to rounding; see _block_inference). False runs
        # every layer on whole maps (the reference the fast paths are tested against).
        self.cpu_fast_paths = True

    @property
    def min_samples(self) -> int:
        """Shortest input that leaves one frame after the front-end's and the six blocks' time pooling."""
        return self.sinc.kernel_size - 1 + 3 ** (1 + len(self.encoder))

    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform (B, L) -> encoder feature map (B, C, n_filters // 3, frames)."""
        if waveform.dim() != 2 or waveform.shape[1] < self.min_samples:
            raise InputError(f"AASIST needs a (batch, samples) waveform of at least {self.min_samples} samples; "
                             f"got shape {tuple(waveform.shape)}")
        if not (self.cpu_fast_paths and waveform.device.type == "cpu") or _traced_or_observed():
            filtered = self.sinc(waveform).unsqueeze(1)  # (B, 1, filters, time)
            pooled = F.max_pool2d(filtered.abs(), kernel_size=3)
            return self.encoder(F.selu(self.first_bn(pooled)))
        if self._can_encode_by_slices(waveform):
            return torch.cat([self._encode_by_slices(utterance[None]) for utterance in waveform]).contiguous()
        # Training keeps the default layout: torch's channels-last BatchNorm computes batch statistics about 700x
        # less accurately on these maps (6e-4 against 9e-7 for unit-variance data, float64 as truth).
        return self.encoder(F.selu(self.first_bn(self._pooled_filterbank(waveform))))

    def _pooled_filterbank(self, waveform: torch.Tensor) -> torch.Tensor:
        """``max_pool2d(|sinc(waveform)|, 3)`` as (B, 1, rows, columns), one slice of time at a time.

        Nothing in it is learnt, so without a gradient for the waveform no autograd graph is needed; the whole
        sinc output (70 x 64,472 values per utterance) is never held at once.
        """
        if waveform.requires_grad or type(self.sinc) is not SincFrontEnd or _has_hooks(self.sinc):
            return F.max_pool2d(self.sinc(waveform).unsqueeze(1).abs(), kernel_size=3)
        filters = self.sinc.filters.to(waveform.dtype)
        taps = filters.shape[-1]
        rows = filters.shape[0] // 3  # the 3x3 max-pool drops the last filters % 3 filters
        columns = (waveform.shape[1] - taps + 1) // 3
        width = _slice_width(3 * waveform.shape[0] * filters.shape[0])
        pooled = waveform.new_empty((waveform.shape[0], 1, rows, columns))
        with torch.no_grad():
            for start in range(0, columns, width):
                stop = min(start + width, columns)
                filtered = F.conv1d(waveform[:, None, 3 * start:3 * stop + taps - 1], filters)
                pooled[..., start:stop] = F.max_pool2d(filtered.abs_().unsqueeze(1), kernel_size=3)
        return pooled

    def _can_encode_by_slices(self, waveform: torch.Tensor) -> bool:
        """The sliced path is for inference on the published layers: no gradients, BatchNorm in eval mode,
        no grown or wrapped layer and no hook (which would not see the layers it watches run)."""
        return (not torch.is_grad_enabled() and not self.first_bn.training
                and type(self.first_bn) is nn.BatchNorm2d
                and all(type(stage) is nn.Sequential and len(stage) == 1 and type(stage[0]) is ResidualBlock
                        and not stage[0].bn2.training and stage[0].is_plain() for stage in self.encoder)
                and not any(_has_hooks(part) for part in (self.first_bn, self.encoder)))

    def _encode_by_slices(self, waveform: torch.Tensor) -> torch.Tensor:
        """:meth:`encode` of one utterance (1, L) in eval mode, without gradients, one slice of time at a time."""
        feature_map = _one_channel_as_channels_last(F.selu(self.first_bn(self._pooled_filterbank(waveform)),
                                                           inplace=True))
        for stage in self.encoder:
            feature_map = _block_inference(stage[0], feature_map)
        return feature_map

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.graph_logits(self.encode(waveform))

    def score(self, waveform: torch.Tensor) -> torch.Tensor:
        """The published AASIST score: the bona fide logit (index 1), higher = more bona fide."""
        return self(waveform)[:, 1]

    def growth_sites(self) -> list[GrowthSite]:
        return [GrowthSite(name=f"encoder.{index}", kind="conv", producer=f"encoder.{index}.0.conv1",
                           norms=(f"encoder.{index}.0.bn2",), consumers=(f"encoder.{index}.0.conv2",),
                           group="encoder")
                for index in range(len(self.encoder))]


@MODELS.register("aasist-l")
class AASISTLight(AASIST):
    """AASIST-L: the published light configuration (85,306 parameters); arguments override its defaults."""

    def __init__(self, **overrides: Any):
        super().__init__(**{**AASIST_L_CONFIG, **overrides})


def _as_lists(value: Any) -> Any:
    """Nested sequences -> nested lists, so the config is plain JSON."""
    return [_as_lists(item) for item in value] if isinstance(value, (list, tuple)) else value


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A foreign ``.pth`` state_dict, read without running any pickled code (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist or is not a file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # whatever torch.load trips over, the file is not a state_dict it can read safely
        raise InputError(f"{path} is not a PyTorch state_dict readable with weights_only=True "
                         f"(torch.load raised {type(err).__name__})") from None
    if not isinstance(loaded, Mapping):
        raise InputError(f"{path} is not a PyTorch state_dict: it holds a {type(loaded).__name__}")
    if not loaded:
        raise InputError(f"{path} is an empty state_dict")
    not_tensors = [str(key) for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise InputError(f"{path} is not a plain PyTorch state_dict: {len(not_tensors)} entries are not tensors, "
                         f"e.g. {', '.join(not_tensors[:3])}")
    return dict(loaded)


def state_dict_mismatches(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """One short line per key that is missing, unexpected or of another shape; empty when ``state`` fits."""
    expected = model.state_dict()
    problems = [f"missing {key}" for key in expected if key not in state]
    problems += [f"unexpected {key}" for key in state if key not in expected]
    problems += [f"{key}: file {tuple(state[key].shape)} vs model {tuple(tensor.shape)}"
                 for key, tensor in expected.items() if key in state and state[key].shape != tensor.shape]
    return problems


def load_official(model_name: str, path: str | Path) -> SpoofModel:
    """Build ``model_name`` with its default config and load a foreign ``.pth`` state_dict into it strictly.

    Returns the model in eval mode. A file that is not a state_dict, or one that does not fit the model exactly
    (a missing, unexpected or differently shaped tensor), raises :class:`InputError` saying which known
    official model it fits instead, if any.
    """
    model = build_model(model_name)
    state = read_state_dict(path)
    problems = state_dict_mismatches(model, state)
    if problems:
        fits = [name for name in OFFICIAL_MODELS
                if name != model_name and not state_dict_mismatches(build_model(name), state)]
        hint = f"it fits model {fits[0]!r} instead" if fits else "it fits no known official model either"
        raise InputError(f"{Path(path).name} does not fit model {model_name!r}: {len(problems)} of "
                         f"{len(state)} tensors mismatch (e.g. {'; '.join(problems[:2])}); {hint}")
    model.load_state_dict(state, strict=True)
    return model.eval()
