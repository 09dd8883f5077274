"""The performance/complexity trade-off of dynamic widths: a baseline and one run per FLOPs target kappa.

``plastispoof reproduce tradeoff`` trains (or resumes, or skips when finished) the baseline and a
``dynamic-width`` run per kappa, evaluates each, and writes ``tradeoff.{md,csv,json}`` and ``tradeoff.png``
(EER against FLOPs per second of audio, and against parameters, with the Pareto front) under
``<out>/<dataset>/``. With several seeds every row is the mean ± std over them (EER, FLOPs ratio, parameters)
and the plot draws the EER's std as error bars. Each kappa also gets an equal-FLOPs control: the plain model
narrowed by hand to the uniform ``width`` whose FLOPs are nearest the kappa run's final FLOPs, trained as many
epochs as the kappa run's stages together. The final width of every dynamic site, grouped by stack (ResNet's
``layer1`` .. ``layer4``), is tabled under the main table. Configs come from ``configs/table1.yaml`` with
``configs/dynamic_width/tradeoff.yaml``
merged over it (extra models such as ``resnet34`` and the ``dynamic-width`` options), through the same
config resolution as Table I.

FLOPs are those of the final (shrunk, plain) model's forward pass on 4 s of audio, counted by
:func:`plastispoof.models.flops.count_flops`: front-end included, 2 FLOPs per multiply-accumulate.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from plastispoof.analysis.recipes import RECIPE, REPO, load_recipe, merge_dicts, run_cell, run_config, run_name
from plastispoof.analysis.tables import csv_text, markdown_table, mean_std
from plastispoof.capacity import build_strategy
from plastispoof.capacity.dynamic_width.flops import BUDGET_NAME
from plastispoof.capacity.dynamic_width.gate import DYNAMIC_KINDS, dynamic_sites
from plastispoof.capacity.dynamic_width.strategy import DynamicWidthOptions
from plastispoof.capacity.dynamic_width.transforms import MakeWidthsDynamic
from plastispoof.capacity.growth import site_width
from plastispoof.config import ExperimentConfig, apply_overrides
from plastispoof.cost import parameter_counts
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_path, atomic_write_text
from plastispoof.models.flops import count_flops

TRADEOFF_RECIPE = REPO / "configs" / "dynamic_width" / "tradeoff.yaml"
STRATEGY = "dynamic-width"
FLOPS_SECONDS = 4.0  # the paper's utterance length; GFLOP/s divides by it
CONTROL = "control"  # a kappa's equal-FLOPs control: the plain model at a uniform width, trained as long


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
    # Several seeds: the numbers above are means, these their sample stds, and per_seed holds each seed's row.
    eer_std: float = 0.0
    flops_vs_baseline_std: float = 0.0
    params_m_std: float = 0.0
    seeds: list[int] = field(default_factory=list)
    width: int | None = None  # the model's uniform ``width`` argument (baseline, control); None for kappa runs
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # site -> its stack (ResNet: layer1 .. layer4)

    @property
    def label(self) -> str:
        if self.strategy == CONTROL:
            return f"{CONTROL} (κ={self.kappa:g}), width {self.width if self.width is not None else 'varies'}"
        return self.strategy


COLUMNS = ["Model", "Strategy", "κ (FLOPs target)", "Test EER (%)", "GFLOPs per 4 s", "GFLOP/s of audio",
           "FLOPs vs baseline", "Parameters (M)"]


def _spread(value: float, std: float, digits: int, several: bool) -> str:
    return f"{value:.{digits}f} ± {std:.{digits}f}" if several else f"{value:.{digits}f}"


def row_cells(row: TradeoffRow) -> list[str]:
    kappa = "-" if row.kappa is None else f"{row.kappa:g}"
    several = len(row.seeds) > 1
    return [row.model, row.label, kappa, _spread(row.eer, row.eer_std, 2, several), f"{row.gflops_4s:.4g}",
            f"{row.gflops_per_s:.4g}", _spread(row.flops_vs_baseline, row.flops_vs_baseline_std, 3, several),
            _spread(row.params_m, row.params_m_std, 3, several)]


def format_markdown(rows: list[TradeoffRow]) -> str:
    """The trade-off table as Markdown.

    >>> row = TradeoffRow("resnet34", "baseline", None, 6.26, 22.56, 5.64, 1.0, 5.4, None, "runs/x")
    >>> print(format_markdown([row]).splitlines()[2])
    | resnet34 | baseline | - | 6.26 | 22.56 | 5.64 | 1.000 | 5.400 |
    """
    table = markdown_table(COLUMNS, map(row_cells, rows))
    seeds = sorted({seed for row in rows for seed in row.seeds})
    if len(seeds) > 1:
        table += f"\n\nMean ± sample std over seeds {', '.join(map(str, seeds))}."
    widths = format_stack_widths(rows)
    return table + (f"\n\nFinal width of each block's dynamic site (kept/full channels), per stack:\n\n{widths}"
                    if widths else "")


def stack_widths(widths: dict[str, int], groups: dict[str, str]) -> dict[str, list[int]]:
    """Site widths gathered by stack (``groups``: site -> stack), in site order.

    >>> stack_widths({"layer1.0": 3, "layer1.1": 5, "layer2.0": 8}, {"layer1.0": "layer1", "layer1.1": "layer1",
    ...                                                              "layer2.0": "layer2"})
    {'layer1': [3, 5], 'layer2': [8]}
    """
    stacks: dict[str, list[int]] = {}
    for name, width in widths.items():
        stacks.setdefault(groups.get(name, name), []).append(width)
    return stacks


def format_stack_widths(rows: list[TradeoffRow]) -> str:
    """One line per run and seed: each stack's block widths as ``kept/kept/...`` of the baseline's width;
    empty when no row recorded widths."""
    per_run = []  # (label, seed, widths)
    for row in rows:
        for seed_row in row.per_seed or [asdict(row)]:
            if seed_row.get("widths"):
                kappa = "-" if row.kappa is None else f"{row.kappa:g}"
                label = CONTROL if row.strategy == CONTROL else row.strategy
                per_run.append((f"{label} (κ={kappa})" if row.kappa is not None else label,
                                seed_row["seeds"][0] if seed_row.get("seeds") else "", seed_row["widths"],
                                seed_row.get("groups") or {}))
    if not per_run:
        return ""
    full = next((widths for label, _, widths, _ in per_run if label == "baseline"), per_run[0][2])
    groups = next((groups for _, _, _, groups in per_run if groups), {})
    full_stacks = stack_widths(full, groups)
    columns = ["Run", "Seed"] + [f"{stack} (of {max(ws)})" for stack, ws in full_stacks.items()] + ["Σ kept / Σ full"]
    lines = []
    for label, seed, widths, _ in per_run:
        stacks = stack_widths(widths, groups)
        lines.append([label, str(seed)] + ["/".join(map(str, stacks.get(stack, []))) for stack in full_stacks]
                     + [f"{sum(widths.values())}/{sum(full.values())}"])
    return markdown_table(columns, lines)


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
    """EER against GFLOP/s (with the Pareto front) and against parameters; the baseline is a star, kappa runs
    circles, equal-FLOPs controls squares; error bars are the EER's std over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    styles = {"baseline": ("*", 14, "tab:red"), STRATEGY: ("o", 8, "tab:blue"), CONTROL: ("s", 7, "tab:green")}
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    flops_axes, params_axes = figure.subplots(1, 2, sharey=True)
    for axes, cost, label in ((flops_axes, "gflops_per_s", "GFLOP/s of audio (forward pass)"),
                              (params_axes, "params_m", "parameters (M)")):
        front = pareto_front([(getattr(row, cost), row.eer) for row in rows])
        axes.plot([getattr(rows[i], cost) for i in front], [rows[i].eer for i in front], "--", color="grey",
                  lw=1, label="Pareto front")
        labels: dict[tuple[float, float], list[str]] = {}  # runs that ended at the same point share a label
        shown: set[str] = set()
        for row in rows:
            marker, size, colour = styles.get(row.strategy, ("o", 8, "tab:blue"))
            legend = {"baseline": "baseline", STRATEGY: "dynamic widths", CONTROL: "equal-FLOPs control"}.get(
                row.strategy, row.strategy)
            axes.errorbar(getattr(row, cost), row.eer, yerr=row.eer_std or None, fmt=marker, ms=size, color=colour,
                          capsize=3, lw=1, label=None if legend in shown else legend)
            shown.add(legend)
            name = "baseline" if row.kappa is None else (f"ctrl {row.kappa:g}" if row.strategy == CONTROL
                                                         else f"κ={row.kappa:g}")
            labels.setdefault((getattr(row, cost), row.eer), []).append(name)
        for point, names in labels.items():
            axes.annotate(", ".join(names), point, textcoords="offset points", xytext=(6, 4), fontsize=8)
        axes.set_xscale("log")
        # Plain numbers at 1, 2 and 5 of each decade: matplotlib's default minor labels overlap on narrow ranges.
        axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel(label)
        axes.grid(True, which="both", lw=0.3)
    seeds = sorted({seed for row in rows for seed in row.seeds})
    flops_axes.set_ylabel("test EER (%)" + (f", mean ± std over {len(seeds)} seeds" if len(seeds) > 1 else ""))
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


def _flops_example(sample_rate: int) -> torch.Tensor:
    return torch.randn(1, int(FLOPS_SECONDS * sample_rate), generator=torch.Generator().manual_seed(0))


def site_widths(model: torch.nn.Module) -> tuple[dict[str, int], dict[str, str]]:
    """The width of each of the model's width-learnable sites, read from the (rebuilt) model itself, and each
    site's stack; both empty for a model without such sites."""
    sites = [site for site in model.growth_sites() if site.kind in DYNAMIC_KINDS]
    return ({site.name: site_width(model, site) for site in sites},
            {site.name: site.group or site.name for site in sites})


def measure_run(cfg: ExperimentConfig, kappa: float | None, baseline_flops: float | None,
                strategy: str | None = None) -> TradeoffRow:
    """Train/evaluate one run (finished ones are read back) and cost its final model."""
    from plastispoof.runs import load_run_model

    result = run_cell(cfg, cfg.data.eval_subset)
    model, meta = load_run_model(cfg.run_dir)
    flops = float(count_flops(model, _flops_example(cfg.data.sample_rate)))
    params, _ = parameter_counts(model)
    widths, groups = site_widths(model)
    return TradeoffRow(model=cfg.model.name, strategy=strategy or cfg.strategy.name, kappa=kappa,
                       eer=100.0 * result["report"]["eer"], gflops_4s=flops / 1e9,
                       gflops_per_s=flops / 1e9 / FLOPS_SECONDS,
                       flops_vs_baseline=flops / (baseline_flops or flops), params_m=params / 1e6,
                       widths=widths or None, run=str(cfg.run_dir), seeds=[cfg.seed],
                       width=cfg.model.args.get("width") if cfg.strategy.name == "baseline" else None, groups=groups)


def model_width(model: str, model_args: dict[str, Any]) -> int | None:
    """The model's uniform ``width`` argument (given or default), or None when it has none (no control then)."""
    from plastispoof.models.base import build_model

    width = build_model(model, **model_args).config.get("width")  # models keep their constructor arguments
    return None if width is None else int(width)


def equal_flops_width(model: str, model_args: dict[str, Any], target_flops: float,
                      sample_rate: int) -> tuple[int, float]:
    """The uniform ``width`` (1 .. the model's own) whose plain model's FLOPs on 4 s are nearest ``target_flops``,
    and those FLOPs. FLOPs grow with the width, so a bisection finds the two widths around the target.

    The control can miss the target by at most half the FLOPs step between two adjacent widths (about
    ``2 / width`` of its FLOPs for convolutions, whose cost is quadratic in the width), plus nothing else.
    """
    from plastispoof.models.base import build_model

    example = _flops_example(sample_rate)
    cache: dict[int, float] = {}

    def flops(width: int) -> float:
        if width not in cache:
            cache[width] = float(count_flops(build_model(model, **{**model_args, "width": width}), example))
        return cache[width]

    low, high = 1, model_width(model, model_args) or 1
    while low < high:  # smallest width whose FLOPs reach the target
        middle = (low + high) // 2
        if flops(middle) >= target_flops:
            high = middle
        else:
            low = middle + 1
    candidates = [width for width in (low - 1, low) if width >= 1]
    best = min(candidates, key=lambda width: (abs(flops(width) - target_flops), width))
    return best, flops(best)


def aggregate(per_seed: list[TradeoffRow]) -> TradeoffRow:
    """One row of mean ± sample std over the seeds' rows of one strategy and kappa; each seed's row is kept."""
    if len(per_seed) == 1:
        return per_seed[0]
    first = per_seed[0]
    eer, eer_std = mean_std([row.eer for row in per_seed])
    ratio, ratio_std = mean_std([row.flops_vs_baseline for row in per_seed])
    params, params_std = mean_std([row.params_m for row in per_seed])
    gflops, _ = mean_std([row.gflops_4s for row in per_seed])
    widths_used = {row.width for row in per_seed}
    return TradeoffRow(model=first.model, strategy=first.strategy, kappa=first.kappa, eer=eer, gflops_4s=gflops,
                       gflops_per_s=gflops / FLOPS_SECONDS, flops_vs_baseline=ratio, params_m=params, widths=None,
                       run=first.run, eer_std=eer_std, flops_vs_baseline_std=ratio_std, params_m_std=params_std,
                       seeds=[seed for row in per_seed for seed in row.seeds],
                       width=widths_used.pop() if len(widths_used) == 1 else None,
                       per_seed=[asdict(row) for row in per_seed], groups=first.groups)


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
                       overrides: list[str] | None = None, seed: int = 42, seeds: list[int] | None = None,
                       controls: bool = True) -> str:
    """Train the baseline, a dynamic-width run per ``kappa`` and (``controls``) each kappa's equal-FLOPs control,
    for each of ``seeds`` (default: ``[seed]``); write the table and plot; return the Markdown.

    ``overrides`` (``key=value``) apply to every run, except ``strategy.*`` ones, which only the dynamic-width
    runs get (the baseline strategy has no options). Every kappa is checked against the model's floor
    (:func:`kappa_floor`) before anything trains, so a kappa that cannot be met costs no training and leaves
    no run directory. Seeds run one after the other (all of a seed's runs first), so an interrupted call leaves
    whole seeds that the next call reuses. A control is the baseline recipe at the uniform ``width``
    :func:`equal_flops_width` picks for that seed's kappa run, trained for the kappa run's epochs (its
    ``dynamic`` stage plus ``finetune_epochs``); models without a ``width`` argument get no control.
    """
    if not kappas or any(not 0 < k <= 1 for k in kappas):
        raise InputError(f"kappas must be FLOPs fractions in (0, 1], got {list(kappas)}")
    seeds = list(seeds or [seed])
    if len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must differ, got {seeds}")
    overrides = list(overrides or [])
    strategy_overrides = [item for item in overrides if item.strip().startswith("strategy.")]
    common = [item for item in overrides if item not in strategy_overrides]
    recipe = tradeoff_recipe()
    out = Path(out) / dataset

    def kappa_configs(run_seed: int) -> list[ExperimentConfig]:
        configs = []
        for kappa in kappas:
            cfg = run_config(recipe, dataset, Path(root), model, STRATEGY, run_seed, out, epochs, common)
            configs.append(apply_overrides(cfg, [*strategy_overrides, f"strategy.args.kappa={kappa}",
                                                 f"name={run_name(model, f'{STRATEGY}-k{kappa:g}', run_seed)}"]))
        return configs

    first = kappa_configs(seeds[0])
    # The floor depends on the model and the dynamic-width options, which every kappa's run shares.
    options = build_strategy(STRATEGY, first[0].strategy.args).options
    check_kappas(kappas, kappa_floor(first[0].model.name, first[0].model.args, options), model,
                 options.min_fraction)
    full_width = model_width(first[0].model.name, first[0].model.args) if controls else None
    per_seed: dict[tuple[str, float | None], list[TradeoffRow]] = {}
    for run_seed in seeds:
        baseline_cfg = run_config(recipe, dataset, Path(root), model, "baseline", run_seed, out, epochs, common)
        baseline = measure_run(baseline_cfg, None, None)
        per_seed.setdefault(("baseline", None), []).append(baseline)
        for kappa, cfg in zip(kappas, kappa_configs(run_seed)):
            dynamic = measure_run(cfg, kappa, baseline.gflops_4s * 1e9)
            per_seed.setdefault((STRATEGY, kappa), []).append(dynamic)
            if full_width is None:
                continue
            width, _ = equal_flops_width(baseline_cfg.model.name, baseline_cfg.model.args, dynamic.gflops_4s * 1e9,
                                         baseline_cfg.data.sample_rate)
            control_epochs = cfg.train.epochs + int(cfg.strategy.args.get("finetune_epochs", 0) or 0)
            control_cfg = run_config(recipe, dataset, Path(root), model, "baseline", run_seed, out, control_epochs,
                                     common)
            control_cfg = apply_overrides(control_cfg, [
                f"model.args.width={width}", f"name={run_name(model, f'{CONTROL}-k{kappa:g}-w{width}', run_seed)}"])
            control = measure_run(control_cfg, kappa, baseline.gflops_4s * 1e9, strategy=CONTROL)
            per_seed.setdefault((CONTROL, kappa), []).append(control)
    rows = [aggregate(group) for group in per_seed.values()]
    # The baseline, then each kappa (largest first) with its control right below it.
    rows.sort(key=lambda row: (row.kappa is not None, -(row.kappa or 0.0), row.strategy == CONTROL))
    seeds_text = f", {len(seeds)} seeds" if len(seeds) > 1 else ""
    return write_tradeoff(rows, out, title=f"{model} on {dataset}: dynamic widths at FLOPs targets κ{seeds_text}")
