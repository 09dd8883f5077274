"""Name -> factory tables for models, strategies and datasets.

A module registers itself with a decorator; ``load_builtins`` imports every built-in module once so the
tables are full (a missing built-in module is an error). Adding a model or a method is one file plus its
decorator line.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, TypeVar

from plastispoof.errors import InputError

T = TypeVar("T")


class Registry(dict):
    """A named table whose lookups fail with an :class:`InputError` listing the known names."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self[name] = obj
            return obj

        return decorate

    def get_or_fail(self, name: str) -> Any:
        load_builtins()
        if name not in self:
            raise InputError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self))}")
        return self[name]


MODELS = Registry("model")
STRATEGIES = Registry("strategy")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")

_BUILTIN_MODULES = (
    "plastispoof.models.resnet",
    "plastispoof.models.grnn",
    "plastispoof.models.wav2vec2",
    "plastispoof.models.aasist",
    "plastispoof.models.nes2net",
    "plastispoof.capacity.baseline",
    "plastispoof.capacity.finetune",
    "plastispoof.capacity.dropin",
    "plastispoof.capacity.plasticity",
    "plastispoof.capacity.lora",
    "plastispoof.capacity.molex",
    "plastispoof.capacity.dynamic_width",
    "plastispoof.data.protocols",
)
_loaded = False
_loading = False  # a built-in module may look a name up while it is being imported


def load_builtins() -> None:
    """Import every built-in module that registers something.

    A built-in module that is missing is an error (``ModuleNotFoundError``), not a skip: a deleted method or
    model file must fail loudly instead of quietly emptying its table. The tables count as loaded only once
    every import succeeded, so a call after a failure fails again.
    """
    global _loaded, _loading
    if _loaded or _loading:
        return
    _loading = True
    try:
        for name in _BUILTIN_MODULES:
            importlib.import_module(name)
    finally:
        _loading = False
    _loaded = True
