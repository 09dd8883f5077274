"""Strategies, stages and transforms: the contract between capacity methods and the trainer.

* A :class:`Transform` changes a model's structure (grow, prune, wrap with adapters, make widths dynamic,
  shrink) and says what it did as a JSON record. Replaying the records of a run on a freshly built model
  gives a model of exactly the trained shape, so ``meta.json`` + ``model.safetensors`` rebuild any run.
* A :class:`Stage` is (transforms applied before it, epochs, which parameters train). Freezing is part of a
  transform: it sets ``requires_grad`` and, where backward time matters, splits frozen and trainable weights
  into separate tensors so frozen weight gradients are never computed.
* A :class:`Strategy` is a named list of stages built from its own pydantic options.

Optional hooks a method may put on its modules, which the trainer calls without knowing the method:
``auxiliary_loss() -> Tensor`` (summed into the loss: MoLEx regularisers, FLOP penalties), and
``after_epoch(model, epoch)`` on a stage (falsy = nothing changed; True or a :class:`Transform` = the structure
changed, rebuild the optimiser; a returned Transform is also recorded in ``meta.json``).

A module may also name some of its own parameters as not being weights (a learnt width, a gate position), so
the trainer treats them differently: ``no_weight_decay = ("name", ...)`` puts them in an optimiser group with
weight decay 0, and ``no_clip = ("name", ...)`` leaves them out of gradient-norm clipping (their gradients
neither count in the norm nor get scaled). :func:`marked_parameters` collects them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from plastispoof.errors import InputError


class Transform(ABC):
    """A structural change to a model, recorded so it can be replayed.

    ``apply`` may draw random numbers (which layers, new weights) from ``generator``; the record it returns
    from ``record()`` must pin down every structural choice, so ``from_record(record).apply(model)`` on a
    freshly built model yields the same shapes (weights then come from the checkpoint).
    """

    kind: ClassVar[str]

    @abstractmethod
    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        """Change ``model`` (in place where possible) and return it."""

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """JSON-able description; must contain ``"kind"``."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Transform":
        from plastispoof.registry import TRANSFORMS

        return TRANSFORMS.get_or_fail(record["kind"]).from_record(record)


class StrategyOptions(BaseModel):
    """Base for a strategy's options: unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid")


class OptionsTransform(Transform):
    """A transform whose choices are one pydantic ``Options`` object.

    It serves the step every strategy takes: its own options (a superset with stage fields such as
    ``baseline_run``) narrowed to the transform's (:meth:`from_strategy`), and the record written as the kind
    plus those options and read back (a subclass adds what ``apply`` resolved by overriding both).

    >>> from pydantic import Field
    >>> class ScaleOptions(StrategyOptions):
    ...     factor: float = Field(2.0, gt=0)
    >>> class Scale(OptionsTransform):
    ...     kind, Options = "scale", ScaleOptions
    ...     def apply(self, model, generator=None):
    ...         return model
    >>> class ScaleStrategyOptions(ScaleOptions):
    ...     baseline_run: str | None = None
    >>> scale = Scale.from_strategy(ScaleStrategyOptions(factor=3.0, baseline_run="runs/base"))
    >>> scale.record()
    {'kind': 'scale', 'factor': 3.0}
    >>> Scale.from_record(scale.record()).options == scale.options
    True
    """

    Options: ClassVar[type[StrategyOptions]]

    def __init__(self, options: StrategyOptions | None = None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def options_from(cls, strategy_options: BaseModel) -> StrategyOptions:
        """The transform's own fields of a strategy's (larger) options object."""
        return cls.Options(**strategy_options.model_dump(include=set(cls.Options.model_fields)))

    @classmethod
    def from_strategy(cls, strategy_options: BaseModel, **arguments: Any) -> "OptionsTransform":
        return cls(cls.options_from(strategy_options), **arguments)

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.options.model_dump()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "OptionsTransform":
        # Every key but the kind is an option, so a record with a key the options do not know is an error.
        return cls(cls.Options(**{key: value for key, value in record.items() if key != "kind"}))



class PlainTransform(Transform):
    """A transform without options (fold adapters away, prune what a dropin added): its record is its kind
    alone, and a replay builds it anew.

    >>> class Identity(PlainTransform):
    ...     kind = "identity"
    ...     def apply(self, model, generator=None):
    ...         return model
    >>> Identity().record()
    {'kind': 'identity'}
    >>> type(Identity.from_record({"kind": "identity"})).__name__
    'Identity'
    """

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "PlainTransform":
        return cls()

# What a stage's ``after_epoch`` hook returns: falsy (no change), True or the Transform it applied (changed).
AfterEpochResult = Union[bool, None, Transform]

ParameterMark = Literal["no_weight_decay", "no_clip"]


def marked_parameters(model: nn.Module, mark: ParameterMark) -> list[nn.Parameter]:
    """The parameters that modules of ``model`` name in their ``mark`` attribute (module notes), in
    ``model.parameters()`` order; a name that is not one of the module's own parameters is an error.

    >>> class Gate(nn.Module):
    ...     no_weight_decay = ("position",)
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.position, self.weight = nn.Parameter(torch.zeros(())), nn.Parameter(torch.ones(2))
    >>> model = nn.Sequential(nn.Linear(2, 2), Gate())
    >>> [tuple(p.shape) for p in marked_parameters(model, "no_weight_decay")], marked_parameters(model, "no_clip")
    ([()], [])
    """
    marked: set[int] = set()
    for path, module in model.named_modules():
        for name in getattr(module, mark, ()):
            parameter = module._parameters.get(name)
            if parameter is None:
                raise ValueError(f"{type(module).__name__} at {path or '<model>'!r} names {name!r} in {mark}, but "
                                 f"has no such parameter")
            marked.add(id(parameter))
    return [p for p in model.parameters() if id(p) in marked]


def apply_transforms(model: nn.Module, records: list[dict[str, Any]]) -> nn.Module:
    """Replay recorded transforms in order (used to rebuild a run's model from ``meta.json``)."""
    for record in records:
        model = Transform.from_record(record).apply(model)
    return model


@dataclass
class Stage:
    """One training phase of a strategy.

    name: e.g. ``"baseline"``, ``"grow"``, ``"prune"``.
    epochs: epochs to train in this stage (0 = apply the transforms only).
    transforms: applied, in order, to the model at the start of the stage.
    init_from: ``None`` continues from the previous stage's weights; a run directory path loads that run's
        weights first (dropin from a finished baseline).
    after_epoch: optional hook ``(model, epoch)``; it returns a falsy value when nothing changed, and True or the
        :class:`Transform` it applied when the structure changed (the trainer records a returned Transform).
    reset_best: whether best-checkpoint selection starts anew in this stage (the model changed shape).
    lr: the stage's peak learning rate in place of ``train.lr`` (None: ``train.lr``); warm-up and schedule apply
        to it as to ``train.lr``.
    """

    name: str
    epochs: int
    transforms: list[Transform] = field(default_factory=list)
    init_from: str | None = None
    after_epoch: Callable[[nn.Module, int], AfterEpochResult] | None = None
    reset_best: bool = True
    lr: float | None = None


class Strategy(ABC):
    """A named way to train: ``stages(epochs)`` turns the run's epoch budget into stages."""

    name: ClassVar[str]
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions

    def __init__(self, options: StrategyOptions):
        self.options = options

    @abstractmethod
    def stages(self, epochs: int) -> list[Stage]:
        """The stages of a run with ``epochs`` training epochs per stage."""

    # The stage whose step timing and trainable count stand for the strategy in Table I (None: they vary).
    reported_stage: ClassVar[int | None] = -1

    @classmethod
    def applies_to(cls, model: nn.Module) -> bool:
        """Whether the method makes sense for ``model`` (LoRA needs attention projections, say)."""
        return True


def build_strategy(name: str, options: dict[str, Any] | None = None) -> Strategy:
    """Build a registered strategy from its name and option dict (typos are :class:`InputError` s)."""
    from pydantic import ValidationError

    from plastispoof.registry import STRATEGIES

    cls = STRATEGIES.get_or_fail(name)
    try:
        parsed = cls.Options(**(options or {}))
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise InputError(f"strategy {name!r} option {key!r}: {first['msg']}") from None
    return cls(parsed)
