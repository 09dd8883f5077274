"""Reproduce the paper's tables: every model x strategy x seed, skipping finished runs, then one table.

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
from plastispoof.reports import Table1Row, aggregate_rows, write_table

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "table1.yaml"
DEMO_MODELS = ["resnet18", "grnn"]
DEMO_STRATEGIES = ["baseline", "dropin-unfrozen", "dropin-frozen", "plasticity"]
TABLE1_STRATEGIES = ["baseline", "dropin-unfrozen", "lora", "dropin-frozen", "plasticity"]


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
    strategy_args = merge_dicts(recipe["strategies"][strategy] or {}, model_recipe.pop("strategies", {}).get(strategy, {}))
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


def _applies(model_cfg: ExperimentConfig) -> bool:
    from plastispoof.models.base import build_model
    from plastispoof.registry import STRATEGIES

    strategy_cls = STRATEGIES.get_or_fail(model_cfg.strategy.name)
    return strategy_cls.applies_to(build_model(model_cfg.model.name, **model_cfg.model.args))


def run_cell(cfg: ExperimentConfig, eval_subset: str) -> dict[str, Any]:
    """Train (or resume, or skip when finished) and evaluate one run; return its row's raw numbers."""
    from plastispoof.evaluate import evaluate_run
    from plastispoof.train import check_same_experiment, train

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


def table1(dataset: str, root: Path, models: list[str] | None = None, strategies: list[str] | None = None,
           seeds: list[int] | None = None, out: Path = Path("runs/table1"), epochs: int | None = None,
           overrides: list[str] | None = None, recipe_path: Path = RECIPE) -> str:
    """Run Table I and write it as Markdown, CSV and JSON under ``out``; return the Markdown."""
    recipe = load_recipe(recipe_path)
    models = models or list(recipe["models"])
    strategies = strategies or TABLE1_STRATEGIES
    seeds = seeds or [recipe["common"].get("seed", 42)]
    out = Path(out) / dataset
    rows: list[Table1Row] = []
    for model in models:
        for strategy in strategies:
            per_seed = []
            for seed in seeds:
                cfg = run_config(recipe, dataset, Path(root), model, strategy, seed, out, epochs, overrides)
                if not _applies(cfg):
                    break
                if strategy != "baseline" and cfg.strategy.args.get("baseline_run"):
                    base_cfg = run_config(recipe, dataset, Path(root), model, "baseline", seed, out, epochs, overrides)
                    run_cell(base_cfg, base_cfg.data.eval_subset)
                per_seed.append(run_cell(cfg, cfg.data.eval_subset))
            rows.append(aggregate_rows(dataset, model, strategy, per_seed))
    return write_table(rows, out, "table1")


def run_demo(out: Path = Path("runs/demo"), epochs: int | None = None) -> str:
    """Embedded corpus (demo profile, cached) -> Table I for ResNet18 and GRNN with the four strategies."""
    from plastispoof.data.synthetic import write_corpus

    root = write_corpus(Path(out) / "corpus", profile="demo", seed=42)
    return table1("synthetic", root, models=DEMO_MODELS, strategies=DEMO_STRATEGIES, seeds=[42],
                  out=Path(out), epochs=epochs)


def layer_key(site_name: str) -> str:
    """The layer a growth site belongs to: sites of one encoder layer (attention, FFN) share it.

    >>> layer_key("encoder.3.attention"), layer_key("layer2.1"), layer_key("gru0")
    ('encoder.3', 'layer2.1', 'gru0')
    """
    head, _, last = site_name.rpartition(".")
    return head if head and not last.isdigit() else site_name


def layer_ablation(dataset: str, root: Path, model: str = "wav2vec2-small", strategy: str = "dropin-frozen",
                   seeds: list[int] | None = None, out: Path = Path("runs/layers"), epochs: int | None = None,
                   overrides: list[str] | None = None, recipe_path: Path = RECIPE) -> str:
    """Fig. 5: drop in at each layer in turn (all of that layer's growth sites) and write EER per layer as a
    table (md/csv/json) and a PNG, with the baseline's EER as a reference line. Returns the Markdown."""
    from plastispoof.models.base import build_model
    from plastispoof.plots import plot_layer_ablation

    recipe = load_recipe(recipe_path)
    seeds = seeds or [recipe["common"].get("seed", 42)]
    out = Path(out) / dataset
    probe = run_config(recipe, dataset, Path(root), model, "baseline", seeds[0], out, epochs, overrides)
    layers: dict[str, list[str]] = {}
    for site in build_model(probe.model.name, **probe.model.args).growth_sites():
        layers.setdefault(layer_key(site.name), []).append(site.name)
    baseline = [run_cell(run_config(recipe, dataset, Path(root), model, "baseline", seed, out, epochs, overrides),
                         probe.data.eval_subset) for seed in seeds]
    rows = [aggregate_rows(dataset, model, "baseline", baseline)]
    for key, sites in layers.items():
        per_seed = [run_cell(run_config(recipe, dataset, Path(root), model, strategy, seed, out, epochs, overrides,
                                        strategy_extra={"sites": sites}, tag=f"-{key}"), probe.data.eval_subset)
                    for seed in seeds]
        rows.append(aggregate_rows(dataset, model, strategy, per_seed))
        rows[-1].strategy = f"{strategy} @ {key}"
    plot_layer_ablation([(row.strategy.split(" @ ")[-1], row.eer, row.eer_std) for row in rows[1:]],
                        rows[0].eer, out / "layers.png", title=f"{model} on {dataset}: {strategy} per layer")
    return write_table(rows, out, "layers")
