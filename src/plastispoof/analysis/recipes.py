"""Recipe cells: resolve one model x strategy x seed of a recipe into an experiment config, and train (or resume,
or skip when finished) and evaluate it. Table I, the layer sweep, the trade-off and the unseen-attack benchmark
all run their cells through here.

``configs/table1.yaml`` holds the recipe; a run's config is ``common <- datasets[d] <- models[m]`` plus the
strategy's options, so one file serves every dataset. Dropin, LoRA and plasticity start from the finished
baseline run of the same model and seed (``baseline_run: auto``), so the baseline is trained once.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from plastispoof.config import ExperimentConfig, apply_overrides, validate
from plastispoof.errors import InputError
from plastispoof.runs import with_encoder_folders

REPO = Path(__file__).resolve().parents[3]  # configs/ lives at the repository root
RECIPE = REPO / "configs" / "table1.yaml"


def load_recipe(path: Path = RECIPE) -> dict[str, Any]:
    if not path.exists():
        raise InputError(f"recipe not found: {path}")
    return yaml.safe_load(path.read_text())


def merge_dicts(base: dict, extra: dict) -> dict:
    """Deep-merge ``extra`` into a copy of ``base``.

    >>> merge_dicts({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": 4})
    {'a': {'b': 1, 'c': 3}, 'd': 4}
    """
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge_dicts(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run_config(recipe: dict, dataset: str, root: Path, model: str, strategy: str, seed: int, out: Path,
               epochs: int | None = None, overrides: list[str] | None = None,
               strategy_extra: dict[str, Any] | None = None, tag: str = "") -> ExperimentConfig:
    """The resolved experiment config of one Table I cell (``strategy_extra`` adds strategy options and ``tag``
    names the variant in the run name, as the layer ablation does)."""
    for section, key in (("datasets", dataset), ("models", model), ("strategies", strategy)):
        if key not in recipe[section]:
            raise InputError(f"{section[:-1]} {key!r} is not in the recipe; known: {', '.join(recipe[section])}")
    model_recipe = dict(recipe["models"][model])
    strategy_args = merge_dicts(recipe["strategies"][strategy] or {},
                                model_recipe.pop("strategies", {}).get(strategy, {}))
    strategy_args.update(strategy_extra or {})
    if strategy_args.get("baseline_run") == "auto":
        strategy_args["baseline_run"] = str(out / run_name(model, "baseline", seed))
    data = merge_dicts(merge_dicts(recipe["common"], recipe["datasets"][dataset]), model_recipe)
    data = merge_dicts(data, {"name": run_name(model, strategy + tag, seed), "seed": seed, "output_dir": str(out),
                         "data": {"root": str(root)}, "strategy": {"name": strategy, "args": strategy_args}})
    if epochs is not None:
        data["train"]["epochs"] = epochs
    return apply_overrides(validate(data, f"recipe {dataset}/{model}/{strategy}"), overrides or [])


def run_name(model: str, strategy: str, seed: int) -> str:
    return f"{model}-{strategy}-s{seed}"


def strategy_applies(model_cfg: ExperimentConfig) -> bool:
    """Whether the config's strategy applies to its model (LoRA needs an SSL encoder, for one)."""
    from plastispoof.models.base import build_model
    from plastispoof.registry import STRATEGIES

    strategy_cls = STRATEGIES.get_or_fail(model_cfg.strategy.name)
    return strategy_cls.applies_to(build_model(model_cfg.model.name, **with_encoder_folders(model_cfg.model.args)))


def run_cell(cfg: ExperimentConfig, eval_subset: str) -> dict[str, Any]:
    """Train (or resume, or skip when finished) and evaluate one run; return its row's raw numbers."""
    from plastispoof.evaluate import evaluate_run
    from plastispoof.runs import check_same_experiment
    from plastispoof.training import train

    run_dir = cfg.run_dir
    check_same_experiment(run_dir, cfg)  # a finished run of, say, fewer epochs must not stand in for this one
    report_path = run_dir / "scores" / f"{cfg.data.dataset}-{eval_subset}.json"
    if report_path.exists():
        report = json.loads(report_path.read_text())
    else:
        resume = (run_dir / "meta.json").exists() or (run_dir / "checkpoints").exists()
        train(cfg, resume=resume)
        report = evaluate_run(run_dir, dataset=cfg.data.dataset, root=Path(cfg.data.root), subset=eval_subset)
    meta = json.loads((run_dir / "meta.json").read_text())
    return {"report": report, "meta": meta}
