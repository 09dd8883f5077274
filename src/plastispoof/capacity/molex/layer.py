"""The MoLEx layer: a frozen ``nn.Linear`` plus ``N`` routed LoRA experts (:class:`MoLExLinear`), and the gate
statistics each forward leaves behind (:class:`GateUsage`). See the package docstring for the maths."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.capacity.molex.config import Routing


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator | None,
             like: torch.Tensor) -> torch.Tensor:
    """U(-bound, bound) drawn on the CPU from ``generator`` (reproducible anywhere), then placed like ``like``."""
    values = (torch.rand(shape, generator=generator) * 2 - 1) * bound
    return values.to(device=like.device, dtype=like.dtype)


class LoraExpert(nn.Module):
    """One low-rank update ``B A``; ``B`` starts at zero, so a new expert changes nothing until it trains."""

    def __init__(self, base: nn.Linear, rank: int, generator: torch.Generator | None = None):
        super().__init__()
        self.lora_A = nn.Parameter(_uniform((rank, base.in_features), 1 / math.sqrt(base.in_features), generator,
                                            base.weight))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device,
                                               dtype=base.weight.dtype))


@dataclass
class GateUsage:
    """Gate statistics of one forward, per utterance: mean gate value and share of tokens where each expert
    had the highest probability. Both ``(batch, experts)``, detached."""

    mean_gate: torch.Tensor
    top1_share: torch.Tensor


def _per_utterance(values: torch.Tensor) -> torch.Tensor:
    """``(B, ..., N) -> (B, N)``: the mean over every axis between batch and experts (2-D input: one row each)."""
    return values.flatten(1, -2).mean(1) if values.dim() >= 3 else values


class MoLExLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a routed mixture of LoRA experts (see the package docstring).

    >>> base = nn.Linear(6, 4)
    >>> layer = MoLExLinear(base, num_experts=3, rank=2)
    >>> x = torch.randn(2, 5, 6)  # (batch, time, features)
    >>> torch.equal(layer(x), base(x))  # every B starts at zero
    True
    >>> layer.usage.mean_gate.shape  # gate statistics of that forward: per utterance, per expert
    torch.Size([2, 3])
    """

    def __init__(self, base: nn.Linear, num_experts: int = 4, rank: int = 8, alpha: float = 16.0,
                 top_k: int | None = None, routing: Routing = "token", generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        self.rank, self.scaling = rank, alpha / rank
        self.top_k, self.routing = top_k, routing
        self.experts = nn.ModuleList(LoraExpert(base, rank, generator) for _ in range(num_experts))
        self.router = self._new_router(num_experts, generator)
        # Set by the transform; plain attributes so that they stay out of the state_dict.
        self.orth_weight = 0.0
        self.balance_weight = 0.0
        self.usage: GateUsage | None = None
        self._router_probs: torch.Tensor | None = None  # kept only while the balance loss needs it

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def _new_router(self, num_experts: int, generator: torch.Generator | None) -> nn.Linear:
        weight = self.base.weight
        router = nn.Linear(self.base.in_features, num_experts, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            router.weight.copy_(_uniform(tuple(router.weight.shape), 1 / math.sqrt(self.base.in_features),
                                         generator, weight))
            router.bias.zero_()
        return router

    def add_experts(self, count: int, generator: torch.Generator | None = None) -> list[LoraExpert]:
        """Append ``count`` zero-output experts and widen the router, keeping its existing rows; returns them."""
        new = [LoraExpert(self.base, self.rank, generator) for _ in range(count)]
        self.experts.extend(new)
        router = self._new_router(self.num_experts, generator)
        old = self.router.out_features
        with torch.no_grad():
            router.weight[:old].copy_(self.router.weight)
            router.bias[:old].copy_(self.router.bias)
        self.router = router
        return new

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Gate values ``(..., N)``: one row per token, or per utterance (``(B, 1, N)``) with utterance routing."""
        if self.routing == "utterance" and x.dim() >= 3:
            x = x.mean(dim=tuple(range(1, x.dim() - 1)), keepdim=True)
        probs = torch.softmax(self.router(x).float(), dim=-1)
        gates = probs
        if self.top_k is not None and self.top_k < self.num_experts:
            top, index = probs.topk(self.top_k, dim=-1)
            gates = torch.zeros_like(probs).scatter(-1, index, top / top.sum(-1, keepdim=True))
        with torch.no_grad():
            top1 = F.one_hot(probs.argmax(-1), self.num_experts).to(probs.dtype)
            self.usage = GateUsage(_per_utterance(gates).detach(), _per_utterance(top1))
        needs_balance = self.training and self.balance_weight > 0 and torch.is_grad_enabled()
        self._router_probs = probs if needs_balance else None
        return gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gates(x).to(x.dtype)
        down = torch.cat([expert.lora_A for expert in self.experts])  # (N*r, in)
        up = torch.cat([expert.lora_B for expert in self.experts], dim=1)  # (out, N*r)
        # Weighting each expert's r hidden units by its gate before the up-projection sums the experts in one
        # matmul, without an (N, out) intermediate per token.
        hidden = F.linear(x, down).unflatten(-1, (self.num_experts, self.rank)) * gates.unsqueeze(-1)
        return self.base(x) + F.linear(hidden.flatten(-2), up) * self.scaling

    def orthogonality(self) -> torch.Tensor:
        """Mean over expert pairs of the normalised squared overlap ``||A_i A_j^T||_F^2`` (0 = orthogonal)."""
        n = self.num_experts
        down = torch.stack([expert.lora_A for expert in self.experts]).float()
        if n < 2:
            return down.new_zeros(())
        down = down / down.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
        pairs = torch.einsum("arc,bsc->abrs", down, down).pow(2).sum((2, 3))
        return (pairs.sum() - pairs.diagonal().sum()) / (n * (n - 1))

    def load_balance(self) -> torch.Tensor:
        """Switch-style ``N * sum_e f_e P_e`` of the last training forward (0 when none was kept)."""
        if self._router_probs is None:
            return self.router.weight.new_zeros((), dtype=torch.float32)
        probs = self._router_probs.reshape(-1, self.num_experts)
        share = F.one_hot(probs.argmax(-1), self.num_experts).to(probs.dtype).mean(0)
        return self.num_experts * (share * probs.mean(0)).sum()

    def auxiliary_loss(self) -> torch.Tensor:
        """``orth_weight * orthogonality + balance_weight * load_balance``; the trainer adds it to the loss."""
        loss = self.router.weight.new_zeros((), dtype=torch.float32)
        if self.orth_weight:
            loss = loss + self.orth_weight * self.orthogonality()
        if self.balance_weight:
            loss = loss + self.balance_weight * self.load_balance()
        return loss

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, rank={self.rank}, top_k={self.top_k}, routing={self.routing}"


def molex_layers(model: nn.Module) -> list[tuple[str, MoLExLinear]]:
    """Every :class:`MoLExLinear` in ``model`` as ``(path, layer)``, in module order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, MoLExLinear)]
