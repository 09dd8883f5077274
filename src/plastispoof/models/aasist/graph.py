"""AASIST's graph back-end: spectral and temporal graph attention, HS-GAL, graph pooling and the readout."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.errors import InputError


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


