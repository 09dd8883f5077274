"""Noise-injection dynamic widths (Gómez & Bäckström 2026): learn layer widths and FLOPs jointly with SGD.

Every dynamic growth site gets a learnable continuous width ``K`` in ``[min_width, full_width]``
(:class:`DynamicWidth`, wrapped around the site's last module: its last norm, else its producer). With
``b = ceil(K) - 1`` and ``f = K - b`` in ``(0, 1]``:

* channels ``< b`` pass unchanged, channels ``> b`` are zero;
* the boundary channel ``b`` becomes ``sqrt(1 - lam) * x + sqrt(lam) * sigma_x * nu`` with ``nu ~ N(0, 1)``,
  ``sigma_x`` the channel's standard deviation over the batch and time/space (a statistic, not differentiated)
  and ``lam = cos^2(pi f / 2)``, i.e. signal weight ``sin(pi f / 2)``, noise weight ``cos(pi f / 2)``.
  The mix keeps the channel's variance, and the task loss reaches ``K`` through both weights: noise hurts, so
  the task pushes ``K`` up. (The paper's ``lam = 1 - frac(K)`` has the same end points; the sine/cosine pair
  keeps the gradient finite where ``f`` is 0 or 1, e.g. at the start, ``K = full_width``.)
* in eval mode there is no noise: the boundary channel is scaled by its signal weight ``sin(pi f / 2)`` (the
  noise's expectation is zero), so evaluation is deterministic.

A :class:`FlopBudget` (one per model, ``auxiliary_loss()`` hook) adds
``flops_weight * relu(FLOPs(K) / FLOPs_full - kappa)``: the FLOPs of the whole forward pass written as a
differentiable function of every continuous width (:class:`FlopsModel`), so the widths fall until the model
costs at most ``kappa`` of the original, where the task's pull balances them.

Every ``shrink_every`` epochs :class:`Shrink` physically removes channels ``>= ceil(K)`` from the producer, the
norms and the consumers (``K`` is kept). The last shrink also folds each boundary channel's signal weight into
the weights and removes the wrappers, so the final model is a plain, smaller instance of the same class. The
``dynamic-width`` and ``shrink`` records in ``meta.json`` replay that shape on a freshly built model.

>>> gate = DynamicWidth(nn.Linear(3, 4), min_width=1)
>>> gate.set_width(2.5)
>>> gate.eval()(torch.ones(1, 3)).abs().gt(0).sum().item()  # channels 0, 1 and the boundary channel 2
3
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from plastispoof.capacity.base import OptionsTransform, Stage, Strategy, StrategyOptions, Transform
from plastispoof.capacity.growth import select_sites, site_width
from plastispoof.cost import count_flops
from plastispoof.errors import InputError
from plastispoof.models.base import GrowthSite, get_module, set_module
from plastispoof.registry import STRATEGIES, TRANSFORMS

BUDGET_NAME = "dynamic_width_budget"  # attribute of the model holding its FlopBudget
_DYNAMIC_KINDS = ("conv", "linear", "gru")
_GATES = 3  # nn.GRU stacks its reset, update and new-gate rows


# ------------------------------------------------------------------------------------------ the gate


def _channels(module: nn.Module) -> int:
    """Output channels / features / hidden units of a plain layer."""
    if isinstance(module, nn.GRU):
        return module.hidden_size
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels
    raise TypeError(f"dynamic widths do not support {type(module).__name__}")


class DynamicWidth(nn.Module):
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
        super().__init__()
        self.base = base
        self.full_width = int(full_width or _channels(base))
        self.min_width = int(min_width)
        self.noise = noise
        self.speed = float(speed)
        self.channel_dim = -1 if isinstance(base, (nn.Linear, nn.GRU)) else 1
        reference = next(iter([*base.parameters(), *base.buffers()]))
        self.scaled_width = nn.Parameter(torch.tensor(1.0 / self.speed, device=reference.device))

    @property
    def channels(self) -> int:
        """Channels the base layer physically has now."""
        return _channels(self.base)

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


def _plain(module: nn.Module) -> nn.Module:
    return module.base if isinstance(module, DynamicWidth) else module


def dynamic_sites(model: nn.Module) -> list[tuple[GrowthSite, DynamicWidth]]:
    """The model's sites that carry a :class:`DynamicWidth` gate, in model order."""
    found = []
    for site in model.growth_sites():
        module = get_module(model, gated_path(site))
        if isinstance(module, DynamicWidth):
            found.append((site, module))
    return found


def can_shrink(model: nn.Module) -> bool:
    """Whether some dynamic site has switched channels off that a :class:`Shrink` would remove."""
    return any(gate.boundary()[0] + 1 < gate.channels for _, gate in dynamic_sites(model))


def dynamic_widths(model: nn.Module) -> dict[str, float]:
    """Current continuous width ``K`` of every dynamic site."""
    return {site.name: gate.width().item() for site, gate in dynamic_sites(model)}


# ------------------------------------------------------------------------------------------ FLOPs


@dataclass(frozen=True)
class LayerCost:
    """FLOPs of one layer as a function of its input and output widths.

    ``per_unit * n_in * n_out`` for convolutions and linear layers (``per_unit`` = 2 x kernel size x output
    positions), ``per_unit * n_out * (n_in + n_out)`` for a GRU (``per_unit`` = 2 x 3 gates x time steps: input
    and recurrent products). ``inputs`` / ``outputs`` are a fixed width or the name of the dynamic site that
    sets it. Counting follows :mod:`torch.utils.flop_counter` (2 FLOPs per multiply-accumulate, biases free).
    """

    path: str
    per_unit: float
    inputs: int | str
    outputs: int | str
    recurrent: bool = False

    def flops(self, widths: Mapping[str, Any]) -> Any:
        n_in = widths[self.inputs] if isinstance(self.inputs, str) else self.inputs
        n_out = widths[self.outputs] if isinstance(self.outputs, str) else self.outputs
        return self.per_unit * (n_in + n_out if self.recurrent else n_in) * n_out


@dataclass(frozen=True)
class FlopsModel:
    """Forward FLOPs of a whole model as a differentiable function of its dynamic widths.

    ``layers`` are the layers whose width depends on a dynamic site; ``fixed`` is everything else (front-end,
    stem, residual convs, ...), measured by :func:`plastispoof.cost.count_flops`; ``full`` the total at the
    original widths.
    """

    layers: tuple[LayerCost, ...]
    fixed: float
    full: float

    def __call__(self, widths: Mapping[str, Any]) -> Any:
        return self.fixed + sum(layer.flops(widths) for layer in self.layers)

    @classmethod
    def trace(cls, model: nn.Module, sites: list[GrowthSite], num_samples: int) -> "FlopsModel":
        """Measure ``model`` (at its current, plain widths) on one utterance of ``num_samples`` samples."""
        roles: dict[str, dict[str, str]] = {}
        for site in sites:
            roles.setdefault(site.producer, {})["outputs"] = site.name
            for consumer in site.consumers:
                roles.setdefault(consumer, {})["inputs"] = site.name
        per_unit: dict[str, tuple[float, bool]] = {}

        def record(path: str):
            def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
                per_unit[path] = _per_unit(module, output)
            return hook

        modules = {path: _plain(get_module(model, path)) for path in roles}
        handles = [module.register_forward_hook(record(path)) for path, module in modules.items()]
        reference = next(model.parameters())
        example = torch.randn(1, num_samples, generator=torch.Generator().manual_seed(0)).to(reference.device)
        was_training = model.training
        try:
            total = count_flops(model.eval(), example)
        finally:
            model.train(was_training)
            for handle in handles:
                handle.remove()
        layers = []
        for path, role in roles.items():
            if path not in per_unit:
                raise InputError(f"dynamic widths: layer {path!r} did not run in the model's forward pass")
            module = modules[path]
            factor, recurrent = per_unit[path]
            layers.append(LayerCost(path, factor, role.get("inputs", _in_width(module)),
                                    role.get("outputs", _channels(module)), recurrent))
        full_widths = {site.name: site_width(model, site) for site in sites}
        dependent = sum(layer.flops(full_widths) for layer in layers)
        return cls(tuple(layers), float(total - dependent), float(total))


def _in_width(module: nn.Module) -> int:
    if isinstance(module, nn.GRU):
        return module.input_size
    return module.weight.shape[1] * getattr(module, "groups", 1)


def _per_unit(module: nn.Module, output: Any) -> tuple[float, bool]:
    """FLOPs per (input width x output width) of one call, and whether it is recurrent."""
    if isinstance(module, nn.GRU):
        sequence = output[0]
        steps = sequence.numel() // (sequence.shape[0 if module.batch_first else 1] * module.hidden_size)
        return 2.0 * _GATES * steps, True
    if isinstance(module, nn.Linear):
        return 2.0 * output.numel() / module.out_features, False
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups != 1:
            raise InputError(f"dynamic widths need plain convolutions, not groups={module.groups}")
        positions = output.numel() / module.out_channels
        return 2.0 * math.prod(module.kernel_size) * positions, False
    raise InputError(f"dynamic widths cannot cost a {type(module).__name__}")


class FlopBudget(nn.Module):
    """The FLOPs penalty ``weight * relu(FLOPs(K) / FLOPs_full - kappa)``, summed into the loss by the trainer.

    Holds no parameters: it reads the gates' widths (kept as plain references, since the gates are already
    submodules of the model and must not be saved twice).
    """

    def __init__(self, flops_model: FlopsModel, gates: dict[str, DynamicWidth], kappa: float, weight: float):
        super().__init__()
        self.flops_model = flops_model
        self.kappa = kappa
        self.weight = weight
        object.__setattr__(self, "_gates", gates)

    def flops(self) -> torch.Tensor:
        return self.flops_model({name: gate.width() for name, gate in self._gates.items()})

    def ratio(self) -> torch.Tensor:
        """FLOPs now as a fraction of the original model's."""
        return self.flops() / self.flops_model.full

    def auxiliary_loss(self) -> torch.Tensor:
        return self.weight * F.relu(self.ratio() - self.kappa)

    def extra_repr(self) -> str:
        return f"kappa={self.kappa}, weight={self.weight}, flops_ratio={self.ratio().item():.3f}"


# ------------------------------------------------------------------------------------------ slicing


def _replace_parameter(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value.detach().clone(), requires_grad=old.requires_grad))
    else:
        setattr(module, name, value.detach().clone())


def _gate_rows(tensor: torch.Tensor, keep: int) -> torch.Tensor:
    """The first ``keep`` units of each of a GRU weight's three gate blocks of rows."""
    blocks = tensor.reshape(_GATES, tensor.shape[0] // _GATES, *tensor.shape[1:])
    return blocks[:, :keep].reshape(_GATES * keep, *tensor.shape[1:])


def _keep_outputs(module: nn.Module, keep: int) -> nn.Module:
    """A copy of a plain layer with only its first ``keep`` output channels (hidden units, features)."""
    sliced = copy.deepcopy(module)
    if isinstance(module, nn.GRU):
        for name in module._flat_weights_names:
            value = _gate_rows(getattr(module, name), keep)
            _replace_parameter(sliced, name, value[:, :keep] if name.startswith("weight_hh") else value)
        sliced.hidden_size = keep
        sliced.flatten_parameters()  # one contiguous weight buffer again, as cuDNN wants
        return sliced
    names = ["weight", "bias"]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        names += ["running_mean", "running_var"]
        sliced.num_features = keep
    elif isinstance(module, nn.Linear):
        sliced.out_features = keep
    else:
        sliced.out_channels = keep
    for name in names:
        if getattr(module, name, None) is not None:
            _replace_parameter(sliced, name, getattr(module, name)[:keep])
    return sliced


def _keep_inputs(module: nn.Module, keep: int) -> nn.Module:
    """A copy of a plain layer that reads only its first ``keep`` input channels."""
    sliced = copy.deepcopy(module)
    if isinstance(module, nn.GRU):
        _replace_parameter(sliced, "weight_ih_l0", module.weight_ih_l0[:, :keep])
        sliced.input_size = keep
    else:
        _replace_parameter(sliced, "weight", module.weight[:, :keep])
        if isinstance(module, nn.Linear):
            sliced.in_features = keep
        else:
            sliced.in_channels = keep
    return sliced


def _change_plain(model: nn.Module, path: str, change) -> None:
    """Replace the plain layer at ``path`` by ``change(layer)``, inside its gate when it has one."""
    module = get_module(model, path)
    if isinstance(module, DynamicWidth):
        module.base = change(module.base)
    else:
        set_module(model, path, change(module))


def shrink_site(model: nn.Module, site: GrowthSite, keep: int) -> None:
    """Keep the first ``keep`` neurons of ``site``: producer outputs, norm channels, consumer inputs."""
    _change_plain(model, site.producer, lambda layer: _keep_outputs(layer, keep))
    for path in site.norms:
        _change_plain(model, path, lambda layer: _keep_outputs(layer, keep))
    for path in site.consumers:
        _change_plain(model, path, lambda layer: _keep_inputs(layer, keep))


@torch.no_grad()
def _fold_gate(model: nn.Module, site: GrowthSite, gate: DynamicWidth) -> None:
    """Bake the gate's eval-mode scaling into plain weights, so removing the gate changes no output."""
    scale = gate.signal_scale().detach()
    base = gate.base
    if isinstance(base, nn.GRU):
        # The units' outputs are read by the recurrence and by the consumers: scale what reads them.
        base.weight_hh_l0.mul_(scale.to(base.weight_hh_l0.dtype))
        for path in site.consumers:
            consumer = _plain(get_module(model, path))
            weight = consumer.weight_ih_l0 if isinstance(consumer, nn.GRU) else consumer.weight
            weight.mul_(scale.reshape(1, -1, *([1] * (weight.dim() - 2))).to(weight.dtype))
        return
    if isinstance(base, nn.modules.batchnorm._BatchNorm) and not base.affine:
        raise TypeError("dynamic widths need an affine norm to fold the boundary channel into")
    for name in ("weight", "bias"):
        tensor = getattr(base, name, None)
        if tensor is not None:
            tensor.mul_(scale.reshape(-1, *([1] * (tensor.dim() - 1))).to(tensor.dtype))


# ------------------------------------------------------------------------------------------ transforms


class DynamicWidthSettings(StrategyOptions):
    """How widths are learnt (recorded with the ``dynamic-width`` transform)."""

    kappa: float = Field(0.25, gt=0, le=1, description="FLOPs target as a fraction of the full model's "
                                                       "(the paper's 0.5, 0.25, 0.125, 0.0625)")
    flops_weight: float = Field(20.0, ge=0, description="weight of relu(FLOPs / FLOPs_full - kappa) in the loss; "
                                                        "it must outweigh the noisy task gradient on K")
    min_fraction: float = Field(0.0625, gt=0, le=1, description="smallest width of a site, as a fraction of its "
                                                               "full width (at least one channel)")
    noise: bool = Field(True, description="noise on the boundary channel in training (off: a plain soft mask)")
    width_speed: float = Field(16.0, gt=0, description="widths move this many times faster than weights under "
                                                       "Adam (about lr x width_speed of the full width per step)")
    seconds: float = Field(4.0, gt=0, description="utterance length at which the FLOPs model is measured")


@TRANSFORMS.register("dynamic-width")
class MakeWidthsDynamic(OptionsTransform):
    """Wrap every chosen site in a :class:`DynamicWidth` gate and attach the model's :class:`FlopBudget`."""

    kind = "dynamic-width"
    Options = DynamicWidthSettings

    def __init__(self, settings: DynamicWidthSettings | None = None, sites: list[str] | None = None,
                 groups: list[str] | None = None):
        super().__init__(settings)
        self.sites = sites
        self.groups = groups

    def _choose(self, model: nn.Module) -> list[GrowthSite]:
        chosen = select_sites(model, self.sites, layers="all")
        if self.groups is not None:
            known = {site.group for site in chosen}
            unknown = sorted(set(self.groups) - known)
            if unknown:
                raise InputError(f"dynamic-width groups {unknown} not in the model; its groups: "
                                 f"{', '.join(sorted(known))}")
            chosen = [site for site in chosen if site.group in self.groups]
        unsupported = [site.name for site in chosen if site.kind not in _DYNAMIC_KINDS]
        if unsupported:
            raise InputError(f"dynamic widths support {', '.join(_DYNAMIC_KINDS)} sites; {unsupported[0]!r} is "
                             f"not one")
        return chosen

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        if hasattr(model, BUDGET_NAME):
            raise InputError("the model's widths are already dynamic")
        settings = self.options
        sites = self._choose(model)
        # The model says at which rate it reads audio (SpoofModel.sample_rate); no constructor argument holds it.
        sample_rate = getattr(model, "sample_rate", None)
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise InputError(f"dynamic widths measure FLOPs on {settings.seconds} s of audio and need the model's "
                             f"sample_rate; {type(model).__name__} has none")
        flops_model = FlopsModel.trace(model, sites, round(settings.seconds * sample_rate))
        gates = {}
        for site in sites:
            full = site_width(model, site)
            gate = DynamicWidth(get_module(model, gated_path(site)), full_width=full,
                                min_width=max(1, math.ceil(settings.min_fraction * full)), noise=settings.noise,
                                speed=settings.width_speed)
            set_module(model, gated_path(site), gate)
            gates[site.name] = gate
        setattr(model, BUDGET_NAME, FlopBudget(flops_model, gates, settings.kappa, settings.flops_weight))
        self.sites, self.groups = [site.name for site in sites], None
        return model

    def record(self) -> dict[str, Any]:
        return {**super().record(), "sites": self.sites}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "MakeWidthsDynamic":
        settings = {key: value for key, value in record.items() if key not in ("kind", "sites")}
        return cls(DynamicWidthSettings(**settings), sites=record["sites"])


@TRANSFORMS.register("shrink")
class Shrink(Transform):
    """Remove every dynamic site's channels ``>= ceil(K)``; ``final`` also folds and removes the gates.

    The widths are read from the gates on the first ``apply`` and recorded, so a replay cuts the same channels.
    ``record()`` also notes the continuous widths and the FLOPs ratio at that moment (for reading only).
    """

    kind = "shrink"

    def __init__(self, final: bool = False, widths: dict[str, int] | None = None):
        self.final = final
        self.widths = widths
        self._seen: dict[str, Any] = {}

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        gated = dynamic_sites(model)
        if not gated:
            raise InputError("shrink: the model has no dynamic widths (was dynamic-width applied before?)")
        if self.widths is None:
            self.widths = {site.name: gate.boundary()[0] + 1 for site, gate in gated}
            budget = getattr(model, BUDGET_NAME)
            self._seen = {"continuous": dynamic_widths(model), "flops_ratio": budget.ratio().item()}
        for site, gate in gated:
            keep = self.widths[site.name]
            if keep < gate.channels:
                shrink_site(model, site, keep)
        if self.final:
            for site, gate in gated:
                _fold_gate(model, site, gate)
                set_module(model, gated_path(site), gate.base)
            delattr(model, BUDGET_NAME)
        return model

    def record(self) -> dict[str, Any]:
        if self.widths is None:
            raise RuntimeError("a shrink is recorded after it is applied (its widths are read then)")
        return {"kind": self.kind, "widths": dict(self.widths), "final": self.final, **self._seen}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Shrink":
        return cls(final=record["final"], widths={name: int(width) for name, width in record["widths"].items()})


# ------------------------------------------------------------------------------------------ strategy


class DynamicWidthOptions(DynamicWidthSettings):
    sites: list[str] | None = Field(None, min_length=1, description="sites with dynamic widths (default: all)")
    groups: list[str] | None = Field(None, min_length=1, description="only sites of these stacks (e.g. layer3)")
    shrink_every: int = Field(1, ge=1, description="physically remove switched-off channels every N epochs")
    finetune_epochs: int = Field(0, ge=0, description="epochs after the final shrink, widths fixed")
    baseline_run: str | None = Field(None, description="finished baseline run to start from (default: scratch)")


@STRATEGIES.register("dynamic-width")
class DynamicWidthStrategy(Strategy):
    """Stage ``dynamic`` (learn widths under the FLOPs penalty, shrinking as it goes), then ``shrink``
    (final cut to a plain model, optionally fine-tuned for ``finetune_epochs``).

    >>> from plastispoof.capacity import build_strategy
    >>> strategy = build_strategy("dynamic-width", {"kappa": 0.125})
    >>> [(stage.name, stage.epochs, [t.kind for t in stage.transforms]) for stage in strategy.stages(3)]
    [('dynamic', 3, ['dynamic-width']), ('shrink', 0, ['shrink'])]
    """

    name = "dynamic-width"
    Options = DynamicWidthOptions

    def stages(self, epochs: int) -> list[Stage]:
        options = self.options
        dynamic = MakeWidthsDynamic.from_strategy(options, sites=options.sites, groups=options.groups)
        return [Stage("dynamic", epochs, transforms=[dynamic], init_from=options.baseline_run,
                      after_epoch=self._shrink_now),
                Stage("shrink", options.finetune_epochs, transforms=[Shrink(final=True)])]

    def _shrink_now(self, model: nn.Module, epoch: int) -> Shrink | bool:
        """The ``after_epoch`` hook: every ``shrink_every`` epochs, cut what the widths switched off."""
        if (epoch + 1) % self.options.shrink_every or not can_shrink(model):
            return False
        shrink = Shrink()
        shrink.apply(model)
        return shrink

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        return any(site.kind in _DYNAMIC_KINDS for site in getattr(model, "growth_sites", list)())
