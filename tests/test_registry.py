"""The registry: every built-in module is imported, and a missing one is an error, not an empty table."""

from __future__ import annotations

import importlib

import pytest

from plastispoof import registry
from plastispoof.errors import InputError


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


# A method written only where docs/design.md ("Where to put a new ...") says: one module, its decorators, and
# one line in registry._BUILTIN_MODULES. Nothing else in the toolkit learns about it.
THROWAWAY_METHOD = '''
from pydantic import Field

from plastispoof.capacity.base import OptionsTransform, Stage, Strategy, StrategyOptions
from plastispoof.registry import STRATEGIES, TRANSFORMS


class HeadOnlyOptions(StrategyOptions):
    head: str = Field("head", description="name of the one module that trains")


@TRANSFORMS.register("throwaway-head-only")
class HeadOnly(OptionsTransform):
    kind, Options = "throwaway-head-only", HeadOnlyOptions

    def apply(self, model, generator=None):
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.split(".")[0] == self.options.head
        return model


class HeadOnlyStrategyOptions(HeadOnlyOptions):
    baseline_run: str | None = None


@STRATEGIES.register("throwaway-head-only")
class HeadOnlyStrategy(Strategy):
    name, Options = "throwaway-head-only", HeadOnlyStrategyOptions

    def stages(self, epochs):
        return [Stage("head-only", epochs, [HeadOnly.from_strategy(self.options)], init_from=self.options.baseline_run)]
'''


def test_a_new_method_needs_only_its_module_and_one_registry_line(tmp_path, monkeypatch):
    import sys

    from tiny_run import tiny_config, write_tiny_corpus

    from plastispoof.capacity.base import build_strategy
    from plastispoof.errors import InputError
    from plastispoof.models.base import count_parameters
    from plastispoof.runs import load_run_model, read_meta
    from plastispoof.training import train

    (tmp_path / "throwaway_method.py").write_text(THROWAWAY_METHOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_BUILTIN_MODULES", (*registry._BUILTIN_MODULES, "throwaway_method"))
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        corpus = write_tiny_corpus(tmp_path / "corpus")
        cfg = tiny_config(tmp_path / "runs", corpus, strategy={"name": "throwaway-head-only", "args": {}})
        run_dir = train(cfg)
        meta = read_meta(run_dir)
        assert [record["kind"] for record in meta["transforms"]] == ["throwaway-head-only"]
        model, _ = load_run_model(run_dir)  # rebuilt by replaying the method's record
        head = sum(p.numel() for p in model.head.parameters())
        assert meta["trainable_params"] == count_parameters(model, True) == head < meta["params"]
        with pytest.raises(InputError, match="'nope'"):  # its options are checked like every method's
            build_strategy("throwaway-head-only", {"nope": 1})
    finally:
        registry.STRATEGIES.pop("throwaway-head-only", None)
        registry.TRANSFORMS.pop("throwaway-head-only", None)
        sys.modules.pop("throwaway_method", None)


def test_a_lookup_imports_only_what_it_needs_and_an_unknown_name_lists_every_module():
    import subprocess
    import sys

    probe = ("import sys; from plastispoof.registry import MODELS, STRATEGIES; MODELS.get_or_fail('grnn'); "
             "STRATEGIES.get_or_fail('dropin-frozen'); print('transformers' in sys.modules, 'peft' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]  # scoring a GRNN or ResNet run never imports them
    with pytest.raises(InputError) as error:
        registry.STRATEGIES.get_or_fail("nope")
    assert "molex" in str(error.value) and "lora" in str(error.value)  # the last modules were loaded to list all
