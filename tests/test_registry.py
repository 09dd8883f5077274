"""The registry: every built-in module is imported, and a missing one is an error, not an empty table."""

from __future__ import annotations

import importlib

import pytest

from plastispoof import registry


def test_every_builtin_module_exists_and_registers_something():
    registry.load_builtins()
    tables = (registry.MODELS, registry.STRATEGIES, registry.DATASETS, registry.TRANSFORMS)
    registered = {getattr(getattr(obj, "func", obj), "__module__", "") for table in tables for obj in table.values()}
    for name in registry._BUILTIN_MODULES:
        importlib.import_module(name)  # raises if the file is gone
    assert {"plastispoof.models.resnet", "plastispoof.capacity.dropin", "plastispoof.data.protocols"} <= registered


def test_a_missing_builtin_module_is_an_error_every_time(monkeypatch):
    missing = "plastispoof.capacity.deleted_method"
    monkeypatch.setattr(registry, "_BUILTIN_MODULES", (*registry._BUILTIN_MODULES, missing))
    monkeypatch.setattr(registry, "_loaded", False)
    for _ in range(2):  # a failed load is not remembered as done
        with pytest.raises(ModuleNotFoundError, match="deleted_method"):
            registry.load_builtins()
        with pytest.raises(ModuleNotFoundError, match="deleted_method"):
            registry.STRATEGIES.get_or_fail("baseline")
