"""The noisy width gate :class:`DynamicWidth` and how to find the gates in a model.

>>> gate = DynamicWidth(nn.Linear(3, 4), min_width=1)
>>> gate.set_width(2.5)
>>> gate.eval()(torch.ones(1, 3)).abs().gt(0).sum().item()  # channels 0, 1 and the boundary channel 2
3
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from plastispoof.capacity.surgery import LayerWrapper, output_width
from plastispoof.models.base import GrowthSite, get_module

DYNAMIC_KINDS = ("conv", "linear", "gru")  # site kinds whose width can be learnt


class DynamicWidth(LayerWrapper):
    """A site's last module (``base``) whose output channels beyond a learnable width ``K`` are switched off.

    ``K = full_width * speed * scaled_width``: the parameter is stored divided by ``speed`` because Adam moves every
    parameter by about the learning rate per step, whatever its scale, so ``K`` moves ``speed`` times faster
    (as a fraction of the full width) than the weights do. Before every forward the parameter is projected back
    into ``[min_width, channels]`` (projected gradient descent), and ``width()`` clamps with a straight-through
    gradient, so the width never sticks at a bound.

    For an ``nn.GRU`` the output sequence is gated as above, and the recurrent weights read the hidden state
    through the deterministic gate (signal weights, no noise): switched-off units then influence nothing, which
    keeps shrinking exact.

    ``scaled_width`` is a width, not a weight: the trainer gives it no weight decay (which would pull every
    width towards zero on top of the FLOP penalty) and leaves it out of gradient clipping (the weights' gradient
    norm would otherwise throttle how fast widths move); see :mod:`plastispoof.capacity.base`.
    """

    no_weight_decay = ("scaled_width",)
    no_clip = ("scaled_width",)

    def __init__(self, base: nn.Module, min_width: int, full_width: int | None = None, noise: bool = True,
                 speed: float = 16.0):
        super().__init__(base)
        self.full_width = int(full_width or output_width(base))
        self.min_width = int(min_width)
        self.noise = noise
        self.speed = float(speed)
        self.channel_dim = -1 if isinstance(base, (nn.Linear, nn.GRU)) else 1
        reference = next(iter([*base.parameters(), *base.buffers()]))
        self.scaled_width = nn.Parameter(torch.tensor(1.0 / self.speed, device=reference.device))

    @property
    def channels(self) -> int:
        """Channels the base layer physically has now."""
        return output_width(self.base)

    def width(self) -> torch.Tensor:
        """The continuous width ``K`` (a differentiable scalar tensor)."""
        value = self.scaled_width * (self.speed * self.full_width)
        bounded = value.clamp(self.min_width, self.channels)
        return value + (bounded - value).detach()

    @torch.no_grad()
    def set_width(self, width: float) -> None:
        """Set ``K`` directly (tests, inspection)."""
        self.scaled_width.fill_(width / (self.speed * self.full_width))

    @torch.no_grad()
    def _project(self) -> None:
        scale = self.speed * self.full_width
        self.scaled_width.clamp_(self.min_width / scale, self.channels / scale)

    def boundary(self) -> tuple[int, torch.Tensor]:
        """``(b, f)``: the boundary channel ``ceil(K) - 1`` and the fraction ``f = K - b`` in ``(0, 1]``."""
        width = self.width()
        index = min(self.channels, max(1, math.ceil(width.item()))) - 1
        return index, (width - index).clamp(0.0, 1.0)

    def kept(self) -> int:
        """Channels a shrink keeps now: those below ``ceil(K)``."""
        return self.boundary()[0] + 1

    def signal_scale(self) -> torch.Tensor:
        """Deterministic per-channel gate: 1 below the boundary, ``sin(pi f / 2)`` at it, 0 above."""
        index, fraction = self.boundary()
        ones = fraction.new_ones(index)
        zeros = fraction.new_zeros(self.channels - index - 1)
        return torch.cat([ones, torch.sin(fraction * (math.pi / 2)).reshape(1), zeros])

    def _gate(self, x: torch.Tensor) -> torch.Tensor:
        index, fraction = self.boundary()
        dim = self.channel_dim % x.dim()
        boundary = x.narrow(dim, index, 1)
        mixed = torch.sin(fraction * (math.pi / 2)) * boundary
        if self.training and self.noise:
            spread = boundary.detach().float().std(correction=0)
            mixed = mixed + torch.cos(fraction * (math.pi / 2)) * spread * torch.randn_like(boundary)
        parts = [x.narrow(dim, 0, index), mixed.to(x.dtype)]
        if index + 1 < x.shape[dim]:
            shape = list(x.shape)
            shape[dim] = x.shape[dim] - index - 1
            parts.append(x.new_zeros(shape))
        return torch.cat(parts, dim)

    def forward(self, x: torch.Tensor, *args: Any) -> Any:
        self._project()
        if not isinstance(self.base, nn.GRU):
            return self._gate(self.base(x, *args))
        base = self.base
        hx = args[0] if args else None
        if hx is None:
            batch = x.shape[0] if base.batch_first else x.shape[1]
            hx = x.new_zeros(1, batch, base.hidden_size)
        weights = list(base._flat_weights)
        weights[1] = weights[1] * self.signal_scale().to(weights[1].dtype)  # columns = units read back
        output, hidden = torch.ops.aten.gru.input(x, hx, weights, base.bias, 1, base.dropout, self.training,
                                                  False, base.batch_first)
        return self._gate(output), hidden

    def extra_repr(self) -> str:
        return f"width={self.width().item():.2f}, channels={self.channels}, full_width={self.full_width}"


def gated_path(site: GrowthSite) -> str:
    """Where a site's gate sits: around its last norm, else around its producer."""
    return site.norms[-1] if site.norms else site.producer


def dynamic_sites(model: nn.Module) -> list[tuple[GrowthSite, DynamicWidth]]:
    """The model's sites that carry a :class:`DynamicWidth` gate, in model order."""
    found = []
    for site in model.growth_sites():
        module = get_module(model, gated_path(site))
        if isinstance(module, DynamicWidth):
            found.append((site, module))
    return found


def can_shrink(model: nn.Module) -> bool:
    """Whether some dynamic site has switched channels off that a shrink would remove."""
    return any(gate.kept() < gate.channels for _, gate in dynamic_sites(model))


def dynamic_widths(model: nn.Module) -> dict[str, float]:
    """Current continuous width ``K`` of every dynamic site."""
    return {site.name: gate.width().item() for site, gate in dynamic_sites(model)}
