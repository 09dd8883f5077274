"""The performance/complexity trade-off of dynamic widths: a baseline and one run per FLOPs target kappa.

``plastispoof reproduce tradeoff`` trains (or resumes, or skips when finished) the baseline and a
``dynamic-width`` run per kappa, evaluates each, and writes ``tradeoff.{md,csv,json}`` and ``tradeoff.png``
(EER against FLOPs per second of audio, and against parameters, with the Pareto front) under
``<out>/<dataset>/``. Configs come from ``configs/table1.yaml`` with ``configs/dynamic_width/tradeoff.yaml``
merged over it (extra models such as ``resnet34`` and the ``dynamic-width`` options), through the same
config resolution as Table I.

FLOPs are those of the final (shrunk, plain) model's forward pass on 4 s of audio, counted by
:func:`plastispoof.cost.count_flops`: front-end included, 2 FLOPs per multiply-accumulate.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from plastispoof.analysis.recipes import RECIPE, load_recipe, merge_dicts, run_cell, run_config, run_name
from plastispoof.analysis.tables import csv_text, markdown_table
from plastispoof.capacity import build_strategy
from plastispoof.capacity.dynamic_width.flops import BUDGET_NAME
from plastispoof.capacity.dynamic_width.gate import dynamic_sites
from plastispoof.capacity.dynamic_width.strategy import DynamicWidthOptions
from plastispoof.capacity.dynamic_width.transforms import MakeWidthsDynamic
from plastispoof.config import ExperimentConfig, apply_overrides
from plastispoof.cost import count_flops, parameter_counts
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_path, atomic_write_text

TRADEOFF_RECIPE = Path(__file__).resolve().parents[3] / "configs" / "dynamic_width" / "tradeoff.yaml"
STRATEGY = "dynamic-width"
FLOPS_SECONDS = 4.0  # the paper's utterance length; GFLOP/s divides by it


@dataclass
class TradeoffRow:
    """One point of the trade-off: a finished run, its test EER (%) and the cost of its final model."""

    model: str
    strategy: str
    kappa: float | None
    eer: float
    gflops_4s: float
    gflops_per_s: float
    flops_vs_baseline: float
    params_m: float
    widths: dict[str, int] | None
    run: str


COLUMNS = ["Model", "Strategy", "κ (FLOPs target)", "Test EER (%)", "GFLOPs per 4 s", "GFLOP/s of audio",
           "FLOPs vs baseline", "Parameters (M)"]


def row_cells(row: TradeoffRow) -> list[str]:
    kappa = "-" if row.kappa is None else f"{row.kappa:g}"
    return [row.model, row.strategy, kappa, f"{row.eer:.2f}", f"{row.gflops_4s:.4g}", f"{row.gflops_per_s:.4g}",
            f"{row.flops_vs_baseline:.3f}", f"{row.params_m:.3f}"]


def format_markdown(rows: list[TradeoffRow]) -> str:
    """The trade-off table as Markdown.

    >>> row = TradeoffRow("resnet34", "baseline", None, 6.26, 22.56, 5.64, 1.0, 5.4, None, "runs/x")
    >>> print(format_markdown([row]).splitlines()[2])
    | resnet34 | baseline | - | 6.26 | 22.56 | 5.64 | 1.000 | 5.400 |
    """
    return markdown_table(COLUMNS, map(row_cells, rows))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost and error (lower is better), by cost.

    >>> pareto_front([(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (0.5, 9.0)])
    [3, 0, 1]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], float("inf")
    for index in order:
        if points[index][1] < best:
            front.append(index)
            best = points[index][1]
    return front


def plot_tradeoff(rows: list[TradeoffRow], path: Path, title: str = "") -> Path:
    """EER against GFLOP/s (with the Pareto front) and against parameters; the baseline is a star."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    flops_axes, params_axes = figure.subplots(1, 2, sharey=True)
    for axes, cost, label in ((flops_axes, "gflops_per_s", "GFLOP/s of audio (forward pass)"),
                              (params_axes, "params_m", "parameters (M)")):
        front = pareto_front([(getattr(row, cost), row.eer) for row in rows])
        axes.plot([getattr(rows[i], cost) for i in front], [rows[i].eer for i in front], "--", color="grey",
                  lw=1, label="Pareto front")
        labels: dict[tuple[float, float], list[str]] = {}  # runs that ended at the same point share a label
        for row in rows:
            baseline = row.kappa is None
            axes.plot(getattr(row, cost), row.eer, "*" if baseline else "o", ms=14 if baseline else 8,
                      color="tab:red" if baseline else "tab:blue")
            labels.setdefault((getattr(row, cost), row.eer), []).append("baseline" if baseline else f"{row.kappa:g}")
        for point, names in labels.items():
            text = ", ".join(names) if names == ["baseline"] else "κ=" + ", ".join(names)
            axes.annotate(text, point, textcoords="offset points", xytext=(6, 4), fontsize=8)
        axes.set_xscale("log")
        axes.set_xlabel(label)
        axes.grid(True, which="both", lw=0.3)
    flops_axes.set_ylabel("test EER (%)")
    flops_axes.legend(loc="upper right", fontsize=8)
    figure.suptitle(title or "performance / complexity trade-off")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def write_tradeoff(rows: list[TradeoffRow], out: Path, title: str = "") -> str:
    """Write ``tradeoff.md``, ``.csv``, ``.json`` and ``.png`` under ``out``; return the Markdown."""
    markdown = format_markdown(rows)
    atomic_write_text(out / "tradeoff.md", markdown + "\n")
    atomic_write_text(out / "tradeoff.csv", csv_text(COLUMNS, map(row_cells, rows)))
    atomic_write_text(out / "tradeoff.json", json.dumps([asdict(row) for row in rows], indent=1) + "\n")
    plot_tradeoff(rows, out / "tradeoff.png", title)
    return markdown


def _final_widths(meta: dict[str, Any]) -> dict[str, int] | None:
    shrinks = [record for record in meta.get("transforms", []) if record["kind"] == "shrink"]
    return shrinks[-1]["widths"] if shrinks else None


def measure_run(cfg: ExperimentConfig, kappa: float | None, baseline_flops: float | None) -> TradeoffRow:
    """Train/evaluate one run (finished ones are read back) and cost its final model."""
    from plastispoof.runs import load_run_model

    result = run_cell(cfg, cfg.data.eval_subset)
    model, meta = load_run_model(cfg.run_dir)
    example = torch.randn(1, int(FLOPS_SECONDS * cfg.data.sample_rate), generator=torch.Generator().manual_seed(0))
    flops = float(count_flops(model, example))
    params, _ = parameter_counts(model)
    return TradeoffRow(model=cfg.model.name, strategy=cfg.strategy.name, kappa=kappa,
                       eer=100.0 * result["report"]["eer"], gflops_4s=flops / 1e9,
                       gflops_per_s=flops / 1e9 / FLOPS_SECONDS,
                       flops_vs_baseline=flops / (baseline_flops or flops), params_m=params / 1e6,
                       widths=_final_widths(meta), run=str(cfg.run_dir))


def tradeoff_recipe(path: Path = TRADEOFF_RECIPE) -> dict[str, Any]:
    """``configs/table1.yaml`` with the trade-off file merged over it."""
    return merge_dicts(load_recipe(RECIPE), load_recipe(path))


def kappa_floor(model: str, model_args: dict[str, Any], options: DynamicWidthOptions) -> float:
    """The lowest kappa a dynamic-width run of ``model`` with ``options`` can meet: the FLOPs fraction of the model
    with every dynamic site at its minimum width, measured as :class:`MakeWidthsDynamic` measures the floor it
    refuses a kappa below (same sites, ``min_fraction`` and ``seconds``)."""
    from plastispoof.models.base import build_model

    spoof_model = build_model(model, **model_args)
    # kappa 1 is above every floor, so the transform builds its FLOPs model and gates instead of refusing.
    at_one = options.model_copy(update={"kappa": 1.0})
    MakeWidthsDynamic.from_strategy(at_one, sites=options.sites, groups=options.groups).apply(spoof_model)
    minimums = {site.name: gate.min_width for site, gate in dynamic_sites(spoof_model)}
    return float(getattr(spoof_model, BUDGET_NAME).flops_model.ratio(minimums))


def check_kappas(kappas: list[float] | tuple[float, ...], floor: float, model: str, min_fraction: float) -> None:
    """Refuse, in one line, the kappas below ``floor``; the message names the floor and the kappas allowed.

    >>> check_kappas([0.5, 0.25], 0.1628, "grnn", 0.0625)
    >>> try:
    ...     check_kappas([0.5, 0.25, 0.125, 0.0625], 0.1628, "grnn", 0.0625)
    ... except InputError as error:
    ...     print(str(error).split(" (")[0], str(error).split("; ")[-1], sep="\\n")
    kappas 0.125, 0.0625 are below grnn's floor 0.163
    kappas >= 0.163 are allowed, e.g. --kappas 0.5,0.25
    """
    below = [kappa for kappa in kappas if kappa < floor]
    if not below:
        return
    shown = math.ceil(floor * 1000) / 1000  # rounded up, as MakeWidthsDynamic shows it: the number shown is allowed
    allowed = [f"{kappa:g}" for kappa in kappas if kappa >= floor] or [f"{shown:.3f}"]
    subject = f"kappa {below[0]:g} is" if len(below) == 1 else f"kappas {', '.join(f'{k:g}' for k in below)} are"
    raise InputError(f"{subject} below {model}'s floor {shown:.3f} (the FLOPs fraction it keeps with every "
                     f"dynamic-width site at min_fraction {min_fraction:g} of its width, front-end and head "
                     f"included); kappas >= {shown:.3f} are allowed, e.g. --kappas {','.join(allowed)}")


def reproduce_tradeoff(dataset: str, root: Path, model: str = "resnet34",
                       kappas: list[float] | tuple[float, ...] = (0.5, 0.25, 0.125),
                       out: Path = Path("runs/tradeoff"), epochs: int | None = None,
                       overrides: list[str] | None = None, seed: int = 42) -> str:
    """Train the baseline and a dynamic-width run per ``kappa``; write the table and plot; return the Markdown.

    ``overrides`` (``key=value``) apply to every run, except ``strategy.*`` ones, which only the dynamic-width
    runs get (the baseline strategy has no options). Every kappa is checked against the model's floor
    (:func:`kappa_floor`) before anything trains, so a kappa that cannot be met costs no training and leaves
    no run directory.
    """
    if not kappas or any(not 0 < k <= 1 for k in kappas):
        raise InputError(f"kappas must be FLOPs fractions in (0, 1], got {list(kappas)}")
    overrides = list(overrides or [])
    strategy_overrides = [item for item in overrides if item.strip().startswith("strategy.")]
    common = [item for item in overrides if item not in strategy_overrides]
    recipe = tradeoff_recipe()
    out = Path(out) / dataset
    configs = []
    for kappa in kappas:
        cfg = run_config(recipe, dataset, Path(root), model, STRATEGY, seed, out, epochs, common)
        configs.append(apply_overrides(cfg, [*strategy_overrides, f"strategy.args.kappa={kappa}",
                                             f"name={run_name(model, f'{STRATEGY}-k{kappa:g}', seed)}"]))
    # The floor depends on the model and the dynamic-width options, which every kappa's run shares.
    options = build_strategy(STRATEGY, configs[0].strategy.args).options
    check_kappas(kappas, kappa_floor(configs[0].model.name, configs[0].model.args, options), model,
                 options.min_fraction)
    baseline_cfg = run_config(recipe, dataset, Path(root), model, "baseline", seed, out, epochs, common)
    baseline = measure_run(baseline_cfg, None, None)
    rows = [baseline]
    for kappa, cfg in zip(kappas, configs):
        rows.append(measure_run(cfg, kappa, baseline.gflops_4s * 1e9))
    return write_tradeoff(rows, out, title=f"{model} on {dataset}: dynamic widths at FLOPs targets κ")
