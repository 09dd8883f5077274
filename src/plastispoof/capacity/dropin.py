"""Dropin (Li et al. 2026): add neurons to selected layers of a trained model, then train.

* ``dropin-frozen``: the original weights stay frozen and only the connections of the new neurons train
  (the paper's method; it cuts backward time because frozen weights get no weight gradient).
* ``dropin-unfrozen``: the enlarged network trains as a whole.
* ``dropin``: the same with ``frozen`` as an option.

Each starts from a finished baseline run (``baseline_run``) or trains the baseline as its first stage. The
growth itself (which sites, how many neurons, how they start) is :class:`GrowthOptions`; the mechanism is in
:mod:`plastispoof.capacity.growth`.

>>> from plastispoof.capacity import build_strategy
>>> strategy = build_strategy("dropin-frozen", {"layers": "last", "num_layers": 2})
>>> [(stage.name, stage.epochs) for stage in strategy.stages(3)]
[('baseline', 3), ('dropin', 3)]
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from plastispoof.capacity.base import OptionsTransform, Stage, Strategy, StrategyOptions
from plastispoof.capacity.growth import (
    InitName,
    LayerChoice,
    NeuronInit,
    freeze_original,
    grow_site,
    resolve_count,
    select_sites,
)
from plastispoof.registry import STRATEGIES, TRANSFORMS


class GrowthOptions(StrategyOptions):
    """Where neurons are added, how many, and how their weights start."""

    sites: list[str] | None = Field(None, min_length=1,
                                    description="growth site names to grow; overrides `layers`")
    layers: LayerChoice = Field("random", description="random (seeded, the paper's), all, or last (the deepest)")
    num_layers: int = Field(1, ge=1, description="how many sites `random` / `last` pick")
    count: int | None = Field(None, ge=1, description="neurons added per site (default: ratio)")
    ratio: float | None = Field(None, gt=0, description="neurons added per site as a fraction of its width "
                                                        "(default 1.0: doubles the site, as in the paper)")
    init: InitName = Field("normal", description="normal: N(0, sigma^2) as in the paper; xavier: Xavier-uniform")
    sigma: float = Field(0.02, gt=0, description="standard deviation of `normal` init")
    function_preserving: bool = Field(False, description="weights from new to old neurons start at 0, so the "
                                                         "grown model first computes what the original did")

    @field_validator("ratio")
    @classmethod
    def _count_or_ratio(cls, ratio: float | None, info: ValidationInfo) -> float | None:
        if ratio is not None and info.data.get("count") is not None:
            raise ValueError("give either count or ratio, not both")
        return ratio


@TRANSFORMS.register("dropin")
class Dropin(OptionsTransform):
    """Grow the selected sites; optionally freeze every original parameter.

    Sites and counts are resolved on the first ``apply`` (random choices use the given generator) and the
    record lists them, so a replay grows exactly the same sites by the same counts.
    """

    kind = "dropin"
    Options = GrowthOptions

    def __init__(self, options: GrowthOptions | None = None, *, freeze_original: bool = False,
                 train_head: bool = False, planned: list[tuple[str, int]] | None = None):
        super().__init__(options)
        self.freeze_original = freeze_original
        self.train_head = train_head
        self.planned = planned

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        options = self.options
        if self.planned is None:
            chosen = select_sites(model, options.sites, options.layers, options.num_layers, generator)
            self.planned = [(site.name, resolve_count(model, site, options.count, options.ratio)) for site in chosen]
        init = NeuronInit(options.init, options.sigma, options.function_preserving, generator)
        for name, count in self.planned:
            grow_site(model, model.site(name), count, init)
        if self.freeze_original:
            freeze_original(model, self.train_head)
        return model

    def record(self) -> dict[str, Any]:
        if self.planned is None:
            raise RuntimeError("a dropin is recorded after it is applied (its sites are chosen then)")
        options = self.options
        return {"kind": self.kind, "sites": [[name, count] for name, count in self.planned], "init": options.init,
                "sigma": options.sigma, "function_preserving": options.function_preserving,
                "freeze_original": self.freeze_original, "train_head": self.train_head}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Dropin":
        options = GrowthOptions(init=record["init"], sigma=record["sigma"],
                                function_preserving=record["function_preserving"])
        return cls(options, freeze_original=record["freeze_original"], train_head=record["train_head"],
                   planned=[(str(name), int(count)) for name, count in record["sites"]])


class DropinOptions(GrowthOptions):
    train_head: bool = Field(False, description="frozen mode: the logit layer's original weights train too")
    baseline_run: str | None = Field(None, description="finished baseline run directory to start from; "
                                                       "without it the first stage trains the baseline")
    lr: float | None = Field(None, gt=0, description="peak learning rate of the dropin stage (default: train.lr)")


class DropinSwitchOptions(DropinOptions):
    frozen: bool = Field(True, description="freeze the original weights (only new neurons' connections train)")


@STRATEGIES.register("dropin")
class DropinStrategy(Strategy):
    """Baseline (unless ``baseline_run``), then grow and train frozen or unfrozen."""

    name = "dropin"
    Options = DropinSwitchOptions
    preset_frozen: ClassVar[bool | None] = None  # the presets fix it; "dropin" reads its option

    @property
    def frozen(self) -> bool:
        return self.options.frozen if self.preset_frozen is None else self.preset_frozen

    def stages(self, epochs: int) -> list[Stage]:
        options = self.options
        grow = Dropin.from_strategy(options, freeze_original=self.frozen, train_head=options.train_head)
        baseline = [] if options.baseline_run else [Stage("baseline", epochs)]
        return [*baseline, Stage("dropin", epochs, transforms=[grow], init_from=options.baseline_run, lr=options.lr)]


@STRATEGIES.register("dropin-frozen")
class DropinFrozen(DropinStrategy):
    name = "dropin-frozen"
    Options = DropinOptions
    preset_frozen = True


@STRATEGIES.register("dropin-unfrozen")
class DropinUnfrozen(DropinStrategy):
    name = "dropin-unfrozen"
    Options = DropinOptions
    preset_frozen = False
