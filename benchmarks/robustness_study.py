"""Stress tables of runs trained without and with augmentation, mean ± std over seeds (docs/robustness.md).

The runs not scored yet are scored in one pass over the degraded audio
(``plastispoof.analysis.stress.score_conditions``:
each condition's audio is made once and scored by every run); per-utterance scores go to
``RUN/stress/scores.json`` (so a later call with more seeds reuses them), each run's ``stress.{md,csv,json,png}``
to ``RUN/stress/``; then the table of mean ± std EER per condition and group is printed, with the mean EER over the
stressed conditions and its relative change. ``--subset-trials N`` adds the same table on a seeded subset of N
trials (to set beside a reference scored on that subset only, e.g. ``plastispoof stress --model aasist
--max-trials N``).

    .venv/bin/python benchmarks/robustness_study.py --dataset synthetic --root data/synthetic-demo \\
        --plain runs/robustness/resnet18-baseline-s42,... --augmented runs/robustness/resnet18-augment-s42,...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--subset", default="eval")
    parser.add_argument("--plain", required=True, help="comma list of run directories trained without augmentation")
    parser.add_argument("--augmented", required=True, help="comma list of run directories trained with it")
    parser.add_argument("--conditions", default=None, help="comma list (default: all)")
    parser.add_argument("--subset-trials", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--reference", default=None, help="stress.json of a reference detector to print beside")
    parser.add_argument("--png", default=None, help="bar chart of mean ± std EER per condition, plain vs augmented "
                        "(and the reference, when given), on the whole subset")
    args = parser.parse_args()

    from plastispoof.analysis.stress import (
        CONDITIONS,
        check_conditions,
        condition_report,
        score_conditions,
        stress_trials,
        summary,
        write_stress,
    )
    from plastispoof.data.dataset import subsample
    from plastispoof.fileio import atomic_write_json
    from plastispoof.inference import Detector

    groups = {"plain": args.plain.split(","), "augmented": args.augmented.split(",")}
    runs = [run for group in groups.values() for run in group]
    names = check_conditions(args.conditions.split(",") if args.conditions else None)
    trials = stress_trials(args.dataset, args.root, args.subset)
    # Runs scored before (RUN/stress/scores.json holding every condition) are read back, the others scored now.
    scores = {}
    for run in runs:
        path = Path(run) / "stress" / "scores.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            if all(c in saved for c in names):
                scores[run] = saved
    todo = [run for run in runs if run not in scores]
    if todo:
        started = time.perf_counter()
        fresh = score_conditions({run: Detector.from_run(run) for run in todo}, trials, names,
                                 num_workers=args.workers)
        print(f"# scored {len(todo)} runs x {len(names)} conditions x {len(trials)} trials in "
              f"{time.perf_counter() - started:.0f} s")
        for run in todo:
            atomic_write_json(Path(run) / "stress" / "scores.json", fresh[run])
            scores[run] = fresh[run]

    def tables(chosen, label: str) -> dict:
        rows = {run: condition_report(chosen, {c: {t.utt_id: scores[run][c][t.utt_id] for t in chosen}
                                               for c in names}) for run in runs}
        print(f"\n## {label}: {len(chosen)} trials "
              f"({sum(t.label == 'bonafide' for t in chosen)} bona fide)\n")
        print("| Condition | Group | " + " | ".join(f"{g} EER (%)" for g in groups) + " | "
              + " | ".join(f"{g} min t-DCF" for g in groups) + " |")
        print("|---|---|" + "---:|" * (2 * len(groups)))
        for index, condition in enumerate(names):
            eers = [" {:.2f} ± {:.2f}".format(*stat([100 * rows[r][index]["eer"] for r in members]))
                    for members in groups.values()]
            tdcfs = [" {:.3f} ± {:.3f}".format(*stat([rows[r][index]["min_tdcf"] for r in members]))
                     for members in groups.values()]
            print(f"| {condition} | {CONDITIONS[condition].group} |" + " |".join(eers) + " |" + " |".join(tdcfs)
                  + " |")
        totals = {g: [summary(rows[r]) for r in members] for g, members in groups.items()}
        for key, text in (("clean_eer", "clean EER"), ("mean_stressed_eer", "mean EER over stressed conditions")):
            values = {g: stat([t[key] for t in totals[g]]) for g in groups}
            print(f"| **{text}** | |" + " |".join(f" **{m:.2f} ± {s:.2f}**" for m, s in values.values()) + " |"
                  + " |" * len(groups))
        plain = np.mean([t["mean_stressed_eer"] for t in totals["plain"]])
        augmented = np.mean([t["mean_stressed_eer"] for t in totals["augmented"]])
        clean_change = np.mean([t["clean_eer"] for t in totals["augmented"]]) - \
            np.mean([t["clean_eer"] for t in totals["plain"]])
        print(f"\nmean stressed EER: {plain:.2f} % -> {augmented:.2f} % "
              f"({100 * (augmented - plain) / plain:+.1f} % relative); clean EER change {clean_change:+.2f} points")
        per_seed = [f"{summary(rows[p])['mean_stressed_eer']:.2f} -> {summary(rows[a])['mean_stressed_eer']:.2f}"
                    for p, a in zip(groups["plain"], groups["augmented"])]
        print("per seed (plain -> augmented mean stressed EER): " + "; ".join(per_seed))
        return rows

    rows = tables(trials, "whole subset")
    if args.png:
        reference = json.loads(Path(args.reference).read_text()) if args.reference else None
        plot_groups(groups, rows, names, args.png, reference)
    for run in runs:
        write_stress(rows[run], Path(run) / "stress", {"detector": Path(run).name, "dataset": args.dataset,
                                                       "subset": args.subset, "trials": len(trials)})
    if args.subset_trials:
        tables(subsample(trials, args.subset_trials, 42), f"seeded subset (seed 42) of {args.subset_trials}")
    if args.reference:
        reference = json.loads(Path(args.reference).read_text())
        print(f"\nreference {reference['detector']} ({reference['trials']} trials): "
              + "; ".join(f"{r['condition']} {100 * r['eer']:.2f}" for r in reference["conditions"]))


def plot_groups(groups: dict[str, list[str]], rows: dict, names: list[str], path: str,
                reference: dict | None) -> None:
    """EER (%) per condition: one bar per group (mean over its runs, sample std as the error bar), and the
    reference detector's EER as a third bar when given (it may be scored on fewer trials: its label says how many)."""
    from matplotlib.figure import Figure

    from plastispoof.plots import save_figure

    series = {group: [stat([100 * rows[run][index]["eer"] for run in members]) for index in range(len(names))]
              for group, members in groups.items()}
    labels = {group: f"{group} ({len(members)} seeds)" for group, members in groups.items()}
    if reference:
        by_condition = {row["condition"]: 100 * row["eer"] for row in reference["conditions"]}
        series["reference"] = [(by_condition.get(name, np.nan), 0.0) for name in names]
        labels["reference"] = f"{reference['detector']} ({reference['trials']} trials)"
    width = 0.8 / len(series)
    figure = Figure(figsize=(max(7.0, 0.55 * len(names) + 2), 4.0), layout="constrained")
    axes = figure.add_subplot()
    for offset, (group, values) in enumerate(series.items()):
        positions = np.arange(len(names)) + (offset - (len(series) - 1) / 2) * width
        axes.bar(positions, [m for m, _ in values], width, yerr=[s for _, s in values], capsize=1.5,
                 label=labels[group], color=f"C{offset}")
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axes.set_ylabel("EER (%)")
    axes.set_ylim(0, 70)  # room for the legend above the bars
    axes.axhline(50, color="grey", ls=":", lw=0.8)
    axes.grid(True, axis="y", lw=0.3)
    axes.legend(fontsize=7, ncol=len(series))
    axes.set_title("EER per stress condition, mean ± std over seeds")
    save_figure(figure, path)
    print(f"wrote {path}")


def stat(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


if __name__ == "__main__":
    main()
