"""The transforms of dynamic widths: ``dynamic-width`` (wrap sites in gates, attach the FLOPs penalty) and
``shrink`` (cut switched-off channels; the final one folds the gates away)."""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from plastispoof.capacity.base import OptionsTransform, StrategyOptions, Transform
from plastispoof.capacity.dynamic_width.flops import BUDGET_NAME, FlopBudget, FlopsModel, project_widths
from plastispoof.capacity.dynamic_width.gate import (
    DYNAMIC_KINDS,
    DynamicWidth,
    dynamic_sites,
    dynamic_widths,
    gated_path,
)
from plastispoof.capacity.growth import select_sites, site_width
from plastispoof.capacity.surgery import narrow_site, replace_wrappers, unwrap
from plastispoof.errors import InputError
from plastispoof.models.base import GrowthSite, get_module, set_module
from plastispoof.registry import TRANSFORMS


@torch.no_grad()
def fold_gate(model: nn.Module, site: GrowthSite, gate: DynamicWidth) -> None:
    """Bake the gate's eval-mode scaling into plain weights, so removing the gate changes no output."""
    scale = gate.signal_scale().detach()
    base = gate.base
    if isinstance(base, nn.GRU):
        # The units' outputs are read by the recurrence and by the consumers: scale what reads them.
        base.weight_hh_l0.mul_(scale.to(base.weight_hh_l0.dtype))
        for path in site.consumers:
            consumer = unwrap(get_module(model, path))
            weight = consumer.weight_ih_l0 if isinstance(consumer, nn.GRU) else consumer.weight
            weight.mul_(scale.reshape(1, -1, *([1] * (weight.dim() - 2))).to(weight.dtype))
        return
    if isinstance(base, nn.modules.batchnorm._BatchNorm) and not base.affine:
        raise TypeError("dynamic widths need an affine norm to fold the boundary channel into")
    for name in ("weight", "bias"):
        tensor = getattr(base, name, None)
        if tensor is not None:
            tensor.mul_(scale.reshape(-1, *([1] * (tensor.dim() - 1))).to(tensor.dtype))


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
    """Wrap every chosen site in a :class:`DynamicWidth` gate and attach the model's :class:`FlopBudget`.

    A ``kappa`` below the model's floor (the FLOPs of what no gate shrinks, the front-end and head say, plus every
    site at its minimum width) cannot be met and is refused; a replay (:meth:`from_record`) rebuilds what a run
    recorded and does not judge it again.
    """

    kind = "dynamic-width"
    Options = DynamicWidthSettings

    def __init__(self, settings: DynamicWidthSettings | None = None, sites: list[str] | None = None,
                 groups: list[str] | None = None):
        super().__init__(settings)
        self.sites = sites
        self.groups = groups
        self.replay = False

    def _choose(self, model: nn.Module) -> list[GrowthSite]:
        chosen = select_sites(model, self.sites, layers="all")
        if self.groups is not None:
            known = {site.group for site in chosen}
            unknown = sorted(set(self.groups) - known)
            if unknown:
                raise InputError(f"dynamic-width groups {unknown} not in the model; its groups: "
                                 f"{', '.join(sorted(known))}")
            chosen = [site for site in chosen if site.group in self.groups]
        unsupported = [site.name for site in chosen if site.kind not in DYNAMIC_KINDS]
        if unsupported:
            raise InputError(f"dynamic widths support {', '.join(DYNAMIC_KINDS)} sites; {unsupported[0]!r} is "
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
        full_widths = {site.name: site_width(model, site) for site in sites}
        minimums = {name: max(1, math.ceil(settings.min_fraction * full)) for name, full in full_widths.items()}
        floor = flops_model.ratio(minimums)
        if settings.kappa < floor and not self.replay:
            shown = math.ceil(floor * 1000) / 1000  # rounded up, so asking for the number shown is accepted
            raise InputError(f"kappa {settings.kappa:g} is below this model's floor {shown:.3f} (the FLOPs of its "
                             f"front-end, head and other layers that dynamic widths cannot shrink, with every site "
                             f"at min_fraction {settings.min_fraction:g} of its width)")
        gates = {}
        for site in sites:
            gate = DynamicWidth(get_module(model, gated_path(site)), full_width=full_widths[site.name],
                                min_width=minimums[site.name], noise=settings.noise, speed=settings.width_speed)
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
        transform = cls(DynamicWidthSettings(**settings), sites=record["sites"])
        transform.replay = True
        return transform


@TRANSFORMS.register("shrink")
class Shrink(Transform):
    """Remove every dynamic site's channels ``>= ceil(K)``; ``final`` also folds and removes the gates.

    The widths are read from the gates on the first ``apply`` and recorded, so a replay cuts the same channels.
    ``record()`` also notes the continuous widths and the FLOPs ratio at that moment (for reading only).

    ``cap`` bounds the FLOPs (as a fraction of the full model's) of what is kept; a final shrink's cap is the
    budget's ``kappa`` unless given. When the learnt widths cost more, they are scaled down together
    (:func:`~plastispoof.capacity.dynamic_width.flops.project_widths`) until they fit, and the record says so
    under ``projection`` (the widths learnt, their FLOPs ratio, the cap and the common scale); ``kept_flops_ratio``
    is the FLOPs ratio of the widths kept. Both are for reading only: a replay reads ``widths`` and ``final``.
    """

    kind = "shrink"

    def __init__(self, final: bool = False, widths: dict[str, int] | None = None, cap: float | None = None):
        self.final = final
        self.widths = widths
        self.cap = cap
        self._seen: dict[str, Any] = {}

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        gated = dynamic_sites(model)
        if not gated:
            raise InputError("shrink: the model has no dynamic widths (was dynamic-width applied before?)")
        if self.widths is None:
            self._choose_widths(model, gated)
        for site, gate in gated:
            keep = self.widths[site.name]
            if keep < gate.channels:
                narrow_site(model, site, keep)
        if self.final:
            for site, gate in gated:
                fold_gate(model, site, gate)
            replace_wrappers(model, DynamicWidth, unwrap)
            delattr(model, BUDGET_NAME)
        return model

    def _choose_widths(self, model: nn.Module, gated: list[tuple[GrowthSite, DynamicWidth]]) -> None:
        """Read the widths the gates keep, projected under the cap, and note what was seen."""
        budget = getattr(model, BUDGET_NAME)
        flops_model = budget.flops_model
        learnt = {site.name: gate.kept() for site, gate in gated}
        self._seen = {"continuous": dynamic_widths(model), "flops_ratio": budget.ratio().item()}
        cap = budget.kappa if self.final and self.cap is None else self.cap
        self.widths = learnt
        if cap is not None:
            minimums = {site.name: gate.min_width for site, gate in gated}
            self.widths, scale = project_widths(flops_model, learnt, minimums, cap)
            if scale < 1.0:
                self._seen["projection"] = {"cap": cap, "learnt_widths": learnt, "scale": scale,
                                            "learnt_flops_ratio": float(flops_model.ratio(learnt))}
        self._seen["kept_flops_ratio"] = float(flops_model.ratio(self.widths))

    def record(self) -> dict[str, Any]:
        if self.widths is None:
            raise RuntimeError("a shrink is recorded after it is applied (its widths are read then)")
        return {"kind": self.kind, "widths": dict(self.widths), "final": self.final, **self._seen}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Shrink":
        return cls(final=record["final"], widths={name: int(width) for name, width in record["widths"].items()})
