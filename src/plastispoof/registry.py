"""Name -> factory tables for models, strategies and datasets.

A module registers itself with a decorator; ``load_builtins`` imports every built-in module once so the
tables are full (a missing built-in module is an error). Adding a model or a method is one file plus its
decorator line.

A lookup imports built-in modules only until the name is registered, in the order of ``_BUILTIN_MODULES``
(light ones first, those that import transformers or peft last), so scoring a ResNet or GRNN run never pays
for importing transformers. Every built-in module is still checked to exist before the first lookup.
"""

from __future__ import annotations

import importlib
import importlib.util
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
        load_builtins(until=lambda: name in self)
        if name not in self:
            raise InputError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self))}")
        return self[name]


MODELS = Registry("model")
STRATEGIES = Registry("strategy")
DATASETS = Registry("dataset")
TRANSFORMS = Registry("transform")
BACKENDS = Registry("back-end")  # bare SSL back-ends by name (plastispoof cost, the ssl-* models)

_BUILTIN_MODULES = (  # light modules first: a lookup stops importing once its name is registered
    "plastispoof.models.aasist",  # the shipped default detector: AASIST grown by dropin (no librosa / scipy)
    "plastispoof.capacity.baseline",
    "plastispoof.capacity.finetune",
    "plastispoof.capacity.dropin",
    "plastispoof.models.resnet",  # features.py: librosa, scipy.signal
    "plastispoof.models.grnn",
    "plastispoof.capacity.plasticity",
    "plastispoof.capacity.dynamic_width",
    "plastispoof.data.protocols",
    "plastispoof.data.manifest",
    "plastispoof.models.wav2vec2",  # transformers from here on
    "plastispoof.models.nes2net",
    "plastispoof.capacity.lora",  # peft
    "plastispoof.capacity.molex",
)
_loaded = False
_next = 0  # how many of _BUILTIN_MODULES are imported
_checked_for: tuple[str, ...] | None = None  # the module list last found complete on disk
_loading = False  # a built-in module may look a name up while it is being imported


def load_builtins(until: Callable[[], bool] | None = None) -> None:
    """Import the built-in modules that register something: all of them, or only until ``until()`` is true.

    A built-in module that is missing is an error (``ModuleNotFoundError``) before anything is imported, not a
    skip: a deleted method or model file must fail loudly instead of quietly emptying its table. The check is
    remembered only once it passed, so a call after a failure fails again.
    """
    global _loaded, _next, _checked_for, _loading
    if _loaded or _loading:
        return
    if _checked_for is not _BUILTIN_MODULES:
        for name in _BUILTIN_MODULES:
            if importlib.util.find_spec(name) is None:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        _checked_for = _BUILTIN_MODULES
    _loading = True
    try:
        while _next < len(_BUILTIN_MODULES):
            if until is not None and until():
                return
            importlib.import_module(_BUILTIN_MODULES[_next])
            _next += 1
    finally:
        _loading = False
    _loaded = True
