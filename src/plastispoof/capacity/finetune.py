"""Plain fine-tuning of a finished run (an imported published detector, say), with named parts kept frozen.

``freeze`` lists parameter-name patterns (``fnmatch`` style, or a module path prefix): ``encoder`` freezes every
parameter under ``encoder.``, ``encoder.0.*`` the first block, ``*.bn*`` every batch norm's affine weights. A
pattern that matches nothing is an error listing the model's top-level parts, so a typo never trains the part
it meant to freeze. ``freeze_norm_statistics`` also keeps the batch norms inside frozen parts in eval mode, so
their running statistics stay those of the source run: frozen then means frozen, statistics included.

>>> from plastispoof.capacity import build_strategy
>>> strategy = build_strategy("finetune", {"baseline_run": "runs/aasist-official", "freeze": ["encoder"]})
>>> [(stage.name, stage.epochs, stage.init_from, [t.kind for t in stage.transforms]) for stage in strategy.stages(2)]
[('finetune', 2, 'runs/aasist-official', ['freeze'])]
"""

from __future__ import annotations

import fnmatch
from typing import Any

import torch
from pydantic import Field
from torch import nn

from plastispoof.capacity.base import Stage, Strategy, StrategyOptions, Transform
from plastispoof.errors import InputError
from plastispoof.registry import STRATEGIES, TRANSFORMS

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def matches(name: str, pattern: str) -> bool:
    """Whether parameter or module ``name`` falls under ``pattern`` (a glob, or a dotted prefix).

    >>> matches("encoder.0.0.conv1.weight", "encoder"), matches("encoder.0.0.conv1.weight", "encoder.1")
    (True, False)
    >>> matches("GAT_layer_S.bn.weight", "*.bn.*"), matches("out_layer.bias", "out_*")
    (True, True)
    """
    return name == pattern or name.startswith(pattern + ".") or fnmatch.fnmatchcase(name, pattern)


@TRANSFORMS.register("freeze")
class Freeze(Transform):
    """``requires_grad=False`` on every parameter matching one of ``patterns`` (weights stay as they are)."""

    kind = "freeze"

    def __init__(self, patterns: list[str], norm_statistics: bool = False):
        self.patterns = list(patterns)
        self.norm_statistics = norm_statistics

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        names = [name for name, _ in model.named_parameters()]
        unmatched = [p for p in self.patterns if not any(matches(name, p) for name in names)]
        if unmatched:
            parts = sorted({name.split(".")[0] for name in names})
            raise InputError(f"freeze pattern {unmatched[0]!r} matches no parameter of {type(model).__name__}; "
                             f"its parts: {', '.join(parts)}")
        for name, parameter in model.named_parameters():
            if any(matches(name, p) for p in self.patterns):
                parameter.requires_grad_(False)
        if self.norm_statistics:
            norms = [path for path, module in model.named_modules()
                     if isinstance(module, _NORMS) and any(matches(path, p) for p in self.patterns)]
            if norms:
                model.register_forward_pre_hook(lambda module, args: _keep_eval(module, norms))
        return model

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "patterns": self.patterns, "norm_statistics": self.norm_statistics}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Freeze":
        return cls(record["patterns"], record.get("norm_statistics", False))


def _keep_eval(model: nn.Module, paths: list[str]) -> None:
    """Before each forward: the frozen parts' batch norms normalise with, and never update, their statistics."""
    if model.training:
        for path in paths:
            model.get_submodule(path).eval()


class FineTuneOptions(StrategyOptions):
    baseline_run: str | None = Field(None, description="finished run to start from (e.g. made by `plastispoof "
                                                       "import`); without it the model trains from its init")
    freeze: list[str] = Field(default_factory=list, description="parameter-name patterns to keep frozen "
                                                                "(glob or dotted prefix, e.g. encoder, sinc, *.bn.*)")
    freeze_norm_statistics: bool = Field(False, description="batch norms inside frozen parts keep their "
                                                            "running statistics (eval mode)")


@STRATEGIES.register("finetune")
class FineTune(Strategy):
    """One stage: load ``baseline_run`` (if any), freeze the named parts, train the rest."""

    name = "finetune"
    Options = FineTuneOptions
    reported_stage = -1

    def stages(self, epochs: int) -> list[Stage]:
        options = self.options
        transforms = [Freeze(options.freeze, options.freeze_norm_statistics)] if options.freeze else []
        return [Stage("finetune", epochs, transforms=transforms, init_from=options.baseline_run)]
