"""Plasticity (Algorithm 1 of Li et al. 2026): train, grow and train everything, prune the added neurons, train.

The final model has the original architecture and parameter count; what the grown phase learned lives on in
the original weights, which trained together with the added neurons.

>>> from plastispoof.capacity import build_strategy
>>> strategy = build_strategy("plasticity", {"epochs_prune": 1})
>>> [(stage.name, stage.epochs, [t.kind for t in stage.transforms]) for stage in strategy.stages(2)]
[('train', 2, []), ('grow', 2, ['dropin']), ('prune', 1, ['prune-added'])]
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from plastispoof.capacity.base import PlainTransform, Stage, Strategy
from plastispoof.capacity.dropin import Dropin, GrowthOptions
from plastispoof.capacity.growth import prune_added
from plastispoof.registry import STRATEGIES, TRANSFORMS


@TRANSFORMS.register("prune-added")
class PruneAdded(PlainTransform):
    """Remove exactly the neurons a dropin added; every parameter trains afterwards."""

    kind = "prune-added"

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        return prune_added(model)


class PlasticityOptions(GrowthOptions):
    baseline_run: str | None = Field(None, description="finished baseline run to use as stage 1 (train)")
    epochs_grow: int | None = Field(None, ge=0, description="epochs of the grown stage (default: the run's)")
    epochs_prune: int | None = Field(None, ge=0, description="epochs after pruning (default: the run's)")


@STRATEGIES.register("plasticity")
class Plasticity(Strategy):
    """Stages ``train`` (unless ``baseline_run``), ``grow`` (dropin, nothing frozen), ``prune``."""

    name = "plasticity"
    Options = PlasticityOptions
    # Backward time and trainable parameters vary across the stages: Table I shows "/" (per-stage in JSON).
    reported_stage = None

    def stages(self, epochs: int) -> list[Stage]:
        options = self.options
        first = [] if options.baseline_run else [Stage("train", epochs)]
        grow_epochs = epochs if options.epochs_grow is None else options.epochs_grow
        prune_epochs = epochs if options.epochs_prune is None else options.epochs_prune
        return [*first,
                Stage("grow", grow_epochs, transforms=[Dropin.from_strategy(options)], init_from=options.baseline_run),
                Stage("prune", prune_epochs, transforms=[PruneAdded()])]
