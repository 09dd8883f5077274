"""What every model is: waveform in, two logits out (index 1 = bona fide), plus its growth sites.

A :class:`GrowthSite` tells the capacity methods (dropin, plasticity, dynamic widths) where neurons live
without any graph tracing: the module that *produces* them, the norms that normalise them, and the modules
that *consume* them. A method that widens a site widens the producer's outputs, the norms, and the
consumers' inputs, and nothing else; so a model that declares its sites works with every method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from plastispoof.errors import InputError
from plastispoof.registry import MODELS

SiteKind = Literal["conv", "linear", "gru", "attention"]


@dataclass(frozen=True)
class GrowthSite:
    """One layer whose neurons a capacity method may add or remove.

    name: short stable id used in configs and reports (e.g. ``"layer2.0"``, ``"gru0"``, ``"encoder.3.ffn"``).
    kind: ``conv`` (Conv1d/Conv2d out-channels), ``linear`` (Linear out-features), ``gru`` (single-layer
        ``nn.GRU`` hidden units) or ``attention`` (q/k/v width of an attention module; its output projection
        is the consumer).
    producer: dotted module path of the layer that produces the neurons.
    norms: dotted paths of norm layers over the neuron dimension right after the producer.
    consumers: dotted paths of modules that read the neurons as (part of) their input channels / features.
    group: which stack the site belongs to (for per-stack options such as "all stacks dynamic").
    """

    name: str
    kind: SiteKind
    producer: str
    norms: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()
    group: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SpoofModel(nn.Module):
    """Base class: ``forward(waveform (B, T) float) -> logits (B, 2)``; index 1 is bona fide.

    Subclasses set ``registry_name`` via :func:`plastispoof.registry.MODELS.register`, keep their constructor
    arguments in ``self.config`` (JSON-able, so ``meta.json`` can rebuild them) and list their growth sites.
    """

    registry_name: ClassVar[str] = ""
    sample_rate: ClassVar[int] = 16000
    # What score() returns (card.json and `info` say it): every model's score is higher = more bona fide.
    score_convention: ClassVar[str] = "bona fide logit - spoof logit (logit index 1 = bona fide, 0 = spoof)"

    def __init__(self, **config: Any):
        super().__init__()
        self.config: dict[str, Any] = dict(config)

    def growth_sites(self) -> list[GrowthSite]:
        return []

    def site(self, name: str) -> GrowthSite:
        sites = {s.name: s for s in self.growth_sites()}
        if name not in sites:
            raise InputError(f"model {self.registry_name!r} has no growth site {name!r}; sites: {', '.join(sites)}")
        return sites[name]

    def rebuild_args(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this architecture from nothing but themselves (``meta.json``).

        The arguments given, unless they point at files: a model built from a pretrained folder returns the
        folder's architecture inline instead, so a run directory never depends on where its source lay.
        """
        return dict(self.config)

    def score(self, waveform: torch.Tensor) -> torch.Tensor:
        """Bona fide score per utterance (higher = more bona fide): the bona fide logit minus the spoof logit."""
        logits = self(waveform)
        return logits[:, 1] - logits[:, 0]


def model_class(name: str) -> type[SpoofModel]:
    """The class a registered model name builds (a registered ``functools.partial`` names its class too)."""
    factory = MODELS.get_or_fail(name)
    return getattr(factory, "func", factory)


def check_sample_rate(name: str, sample_rate: int) -> None:
    """InputError unless model ``name`` works at ``sample_rate`` (its front-end's filters are built for one rate)."""
    model_rate = model_class(name).sample_rate
    if sample_rate != model_rate:
        raise InputError(f"model {name} works on {model_rate} Hz audio but data.sample_rate is {sample_rate}: set "
                         f"data.sample_rate: {model_rate} (files at other rates are resampled when read)")


def build_model(name: str, **config: Any) -> SpoofModel:
    """Build a registered model by name (``config`` = its constructor arguments)."""
    cls = MODELS.get_or_fail(name)
    try:
        model = cls(**config)
    except TypeError as err:
        raise InputError(f"model {name!r}: {err}") from None
    model.registry_name = name  # aliases (resnet18/resnet34) share a class
    return model


def get_module(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule`` with a clear error."""
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise InputError(f"no module {path!r} in {type(root).__name__}") from None


def set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``path`` by ``module``."""
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and child.isdigit():
        parent[int(child)] = module
    else:
        setattr(parent, child, module)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
