"""Table I: every model x strategy x seed of ``configs/table1.yaml`` (finished runs are skipped), averaged over
seeds and written as Markdown, CSV and JSON; the demo is Table I on the embedded corpus."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plastispoof.analysis.recipes import RECIPE, load_recipe, run_cell, run_config, strategy_applies
from plastispoof.analysis.tables import csv_text, markdown_table, mean_std
from plastispoof.data.synthetic import write_corpus
from plastispoof.fileio import atomic_write_text
from plastispoof.scale.sharding import is_main_rank

DEMO_MODELS = ["resnet18", "grnn"]
DEMO_STRATEGIES = ["baseline", "dropin-unfrozen", "dropin-frozen", "plasticity"]
TABLE1_STRATEGIES = ["baseline", "dropin-unfrozen", "lora", "dropin-frozen", "plasticity"]


@dataclass
class Table1Row:
    """One line of Table I. Numbers are means over seeds; ``*_std`` are the standard deviations (0 for one seed).
    ``None`` means not applicable (the paper's "/"): a method that does not apply to the model, or a quantity
    that varies across the method's stages (plasticity's backward time and trainable parameters)."""

    dataset: str
    model: str
    strategy: str
    seeds: int
    eer: float | None
    eer_std: float | None
    backward_ms: float | None
    backward_ms_std: float | None
    params_m: float | None
    params_m_std: float | None
    trainable_m: float | None
    trainable_m_std: float | None
    runs: list[dict[str, Any]]  # per seed: its seed, growth transforms (sites differ by seed) and stage summaries


def aggregate_rows(dataset: str, model: str, strategy: str, per_seed: list[dict[str, Any]]) -> Table1Row:
    """Average the runs of one model x strategy over seeds. Each item: ``{"report": metrics, "meta": meta}``."""
    from plastispoof.registry import STRATEGIES

    if not per_seed:
        return Table1Row(dataset, model, strategy, 0, *[None] * 8, [])
    reported = STRATEGIES.get_or_fail(strategy).reported_stage
    summaries = [run["meta"]["stages"] for run in per_seed]
    eer, eer_std = mean_std([100.0 * run["report"]["eer"] for run in per_seed])
    # Randomly chosen growth sites differ between seeds, so sizes are averaged like the EER.
    params, params_std = mean_std([stages[-1]["params"] / 1e6 for stages in summaries])
    if reported is None:  # varies across stages: per-stage figures go to the JSON only
        backward, backward_std, trainable, trainable_std = None, None, None, None
    else:
        backward, backward_std = mean_std([stages[reported]["backward_ms"] for stages in summaries])
        trainable, trainable_std = mean_std([stages[reported]["trainable_params"] / 1e6 for stages in summaries])
    runs = [{"seed": run["meta"].get("seed"), "transforms": run["meta"].get("transforms", []),
             "stages": run["meta"]["stages"]} for run in per_seed]
    return Table1Row(dataset, model, strategy, len(per_seed), eer, eer_std, backward, backward_std,
                     params, params_std, trainable, trainable_std, runs)


def _cell(value: float | None, std: float | None = None, digits: int = 2) -> str:
    if value is None:
        return "/"
    return f"{value:.{digits}f} ± {std:.{digits}f}" if std else f"{value:.{digits}f}"


COLUMNS = ["Dataset", "Model", "Training strategy", "Test EER (%)", "Backward time per step (ms)",
           "Parameters (M)", "Trainable params (M)"]


def table_cells(row: Table1Row) -> list[str]:
    return [row.dataset, row.model, row.strategy, _cell(row.eer, row.eer_std),
            _cell(row.backward_ms, row.backward_ms_std),
            _cell(row.params_m, row.params_m_std), _cell(row.trainable_m, row.trainable_m_std)]


def format_markdown(rows: list[Table1Row]) -> str:
    """Table I as a Markdown table.

    >>> row = Table1Row("synthetic", "grnn", "baseline", 1, 12.5, 0.0, 3.2, 0.0, 0.06, 0.0, 0.06, 0.0, [])
    >>> print(format_markdown([row]).splitlines()[2])
    | synthetic | grnn | baseline | 12.50 | 3.20 | 0.06 | 0.06 |
    """
    return markdown_table(COLUMNS, map(table_cells, rows))


def write_table(rows: list[Table1Row], out: Path, stem: str) -> str:
    """Write ``<stem>.md``, ``.csv`` and ``.json`` under ``out`` (atomically); return the Markdown. Under torchrun
    every rank builds the same rows (each run's report is rank 0's, broadcast) and rank 0 alone writes them."""
    markdown = format_markdown(rows)
    if not is_main_rank():
        return markdown
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.md", markdown + "\n")
    atomic_write_text(out / f"{stem}.csv", csv_text(COLUMNS, map(table_cells, rows)))
    atomic_write_text(out / f"{stem}.json", json.dumps([asdict(r) for r in rows], indent=1))
    return markdown


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
                if not strategy_applies(cfg):
                    break
                if strategy != "baseline" and cfg.strategy.args.get("baseline_run"):
                    base_cfg = run_config(recipe, dataset, Path(root), model, "baseline", seed, out, epochs, overrides)
                    run_cell(base_cfg, base_cfg.data.eval_subset)
                per_seed.append(run_cell(cfg, cfg.data.eval_subset))
            rows.append(aggregate_rows(dataset, model, strategy, per_seed))
    return write_table(rows, out, "table1")


def run_demo(out: Path = Path("runs/demo"), epochs: int | None = None, profile: str = "demo",
             overrides: list[str] | None = None) -> str:
    """Embedded corpus (demo profile, cached) -> Table I for ResNet18 and GRNN with the four strategies
    (``profile="tiny"`` and ``overrides`` give a quick check of the whole path, not the demo's numbers)."""
    root = write_corpus(Path(out) / f"corpus-{profile}" if profile != "demo" else Path(out) / "corpus",
                        profile=profile, seed=42)
    return table1("synthetic", root, models=DEMO_MODELS, strategies=DEMO_STRATEGIES, seeds=[42],
                  out=Path(out), epochs=epochs, overrides=overrides)
