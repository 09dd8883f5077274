"""The ``dynamic-width`` strategy: learn widths under the FLOPs penalty, shrinking as it goes, then cut."""

from __future__ import annotations

from functools import partial

from pydantic import Field
from torch import nn

from plastispoof.capacity.base import Stage, Strategy
from plastispoof.capacity.dynamic_width.flops import BUDGET_NAME
from plastispoof.capacity.dynamic_width.gate import DYNAMIC_KINDS, can_shrink
from plastispoof.capacity.dynamic_width.transforms import DynamicWidthSettings, MakeWidthsDynamic, Shrink
from plastispoof.registry import STRATEGIES


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

    The run must end at ``kappa``, however few steps the penalty had: after each epoch of ``dynamic`` the kept
    FLOPs may be at most :meth:`flops_cap` (shrinking with a projection when the widths are above it), and the
    final shrink projects onto ``kappa`` itself (see :class:`Shrink`).

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
                      after_epoch=partial(self._shrink_now, epochs=epochs)),
                Stage("shrink", options.finetune_epochs, transforms=[Shrink(final=True)])]

    def flops_cap(self, epoch: int, epochs: int) -> float | None:
        """The most FLOPs (a fraction of the full model's) the model may keep after ``epoch`` (from 0) of an
        ``epochs``-epoch ``dynamic`` stage: falling linearly from 1 to ``kappa`` at the last epoch but one, so the
        last epoch trains the model at its final cost. ``None`` for a one-epoch stage (the final shrink's
        projection alone holds it to ``kappa``).

        >>> from plastispoof.capacity import build_strategy
        >>> strategy = build_strategy("dynamic-width", {"kappa": 0.25})
        >>> [strategy.flops_cap(epoch, 4) for epoch in range(4)], strategy.flops_cap(0, 1)
        ([0.75, 0.5, 0.25, 0.25], None)
        """
        if epochs < 2:
            return None
        kappa = self.options.kappa
        return max(kappa, 1.0 - (1.0 - kappa) * (epoch + 1) / (epochs - 1))

    def _shrink_now(self, model: nn.Module, epoch: int, epochs: int) -> Shrink | bool:
        """The ``after_epoch`` hook: every ``shrink_every`` epochs cut what the widths switched off, and in any
        epoch whose kept FLOPs exceed :meth:`flops_cap` cut down to the cap."""
        cap = self.flops_cap(epoch, epochs)
        over_cap = cap is not None and getattr(model, BUDGET_NAME).kept_ratio() > cap
        if not over_cap and ((epoch + 1) % self.options.shrink_every or not can_shrink(model)):
            return False
        shrink = Shrink(cap=cap)
        shrink.apply(model)
        return shrink

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        return any(site.kind in DYNAMIC_KINDS for site in getattr(model, "growth_sites", list)())
