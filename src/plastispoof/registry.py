"""Name -> factory tables for models, strategies and datasets.

A module registers itself with a decorator; ``load_builtins`` imports every built-in module once so the
tables are full. Adding a model or a method is one file plus its decorator line.
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
    "plastispoof.capacity.dropin",
    "plastispoof.capacity.plasticity",
    "plastispoof.capacity.lora",
    "plastispoof.capacity.molex",
    "plastispoof.capacity.dynamic_width",
    "plastispoof.data.protocols",
)
_loaded = False


def load_builtins() -> None:
    """Import every built-in module that registers something (modules not written yet are skipped)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in _BUILTIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real missing dependency inside an existing module
                raise
