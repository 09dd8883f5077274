"""Held-out-attack benchmark: ``plastispoof reproduce unseen``.

On a corpus written by ``plastispoof synth --bonafide/--recipe`` (its ``corpus.json`` names the attack families
and a leave-one-family-out root per family), every system of ``configs/unseen.yaml`` is trained on all families
but one and scored on the eval subset, in turn for each held-out family and seed. Each eval subset holds bona
fide speech and the spoofs of every family, so one score file gives both numbers of a row:

* **seen EER**: bona fide against the spoofs of the families the run trained on;
* **held-out EER**: bona fide against the spoofs of the family it never saw;

and, where the protocol names speakers, the held-out EER per speaker (copy-synthesis spoofs keep the speaker,
so a detector cannot win by telling speakers apart; a per-speaker collapse shows when it tries).

Systems start from scratch, or from a published checkpoint (``pretrained: true``: the ``--weights`` file is
imported once with :func:`plastispoof.pretrained.import_checkpoint` and becomes every such run's
``baseline_run``). ``zero_shot: true`` scores the imported model without training. Finished runs are skipped,
so an interrupted benchmark continues where it stopped. Output under ``out``: ``unseen.{md,csv,json}`` and
``unseen.png``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plastispoof.analysis.recipes import REPO, merge_dicts
from plastispoof.analysis.tables import csv_text, markdown_table, mean_std
from plastispoof.config import ExperimentConfig, apply_overrides, validate
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json, atomic_write_text
from plastispoof.metrics import trials_eer

RECIPE = REPO / "configs" / "unseen.yaml"
MANIFEST = "corpus.json"


def read_families(root: Path) -> tuple[dict[str, list[str]], dict[str, Path]]:
    """``({family: [attack ids]}, {family: leave-one-out root})`` from a synthesised corpus' ``corpus.json``."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise InputError(f"{root} has no {MANIFEST}: build the corpus with `plastispoof synth --bonafide DIR` or "
                         f"`plastispoof synth --recipe open-speech` (it writes the families and their protocols)")
    manifest = json.loads(path.read_text())
    families = {name: list(entry["attacks"]) for name, entry in manifest.get("families", {}).items()}
    roots = {name: Path(root) / relative for name, relative in manifest.get("lofo", {}).items()}
    if len(families) < 2:
        raise InputError(f"{path}: leave-one-family-out needs at least 2 attack families; it has "
                         f"{len(families)} ({', '.join(families) or 'none'})")
    missing = [name for name in families if name not in roots or not roots[name].is_dir()]
    if missing:
        raise InputError(f"{path}: no leave-one-out protocols for famil{'y' if len(missing) == 1 else 'ies'} "
                         f"{', '.join(missing)}; rebuild the corpus")
    return families, roots


def load_recipe(path: Path = RECIPE) -> dict[str, Any]:
    if not Path(path).is_file():
        raise InputError(f"recipe not found: {path}")
    recipe = yaml.safe_load(Path(path).read_text())
    if not isinstance(recipe, dict) or "systems" not in recipe:
        raise InputError(f"{path}: an unseen-attack recipe needs a `systems` section")
    return recipe


# ------------------------------------------------------------------------------------------------- scoring


def split_eers(trials, scores: dict[str, float], held_out: list[str]) -> dict[str, Any]:
    """Seen and held-out EER (fractions) of one eval score set, and the held-out EER per speaker.

    >>> from pathlib import Path
    >>> from plastispoof.data.trials import Trial
    >>> trials = [Trial("b1", Path("b1"), "bonafide", speaker="fr"), Trial("b2", Path("b2"), "bonafide", speaker="fr"),
    ...           Trial("s1", Path("s1"), "spoof", "A01", "fr"), Trial("s2", Path("s2"), "spoof", "A02", "fr")]
    >>> out = split_eers(trials, {"b1": 2.0, "b2": 1.0, "s1": -1.0, "s2": 2.5}, held_out=["A02"])
    >>> out["seen_eer"], out["held_out_eer"], out["per_speaker"]
    (0.0, 1.0, {'fr': 1.0})
    """
    held = set(held_out)
    bonafide = [t for t in trials if t.label == "bonafide"]
    seen = [t for t in trials if t.label != "bonafide" and t.attack not in held]
    unseen = [t for t in trials if t.label != "bonafide" and t.attack in held]

    def eer(genuine, spoofs) -> float | None:
        if not genuine or not spoofs:
            return None
        return trials_eer(genuine + spoofs, scores)[0]

    speakers = sorted({t.speaker for t in unseen if t.speaker})
    per_speaker = {s: eer([t for t in bonafide if t.speaker == s], [t for t in unseen if t.speaker == s])
                   for s in speakers}
    return {"seen_eer": eer(bonafide, seen), "held_out_eer": eer(bonafide, unseen),
            "per_speaker": {s: v for s, v in per_speaker.items() if v is not None},
            "n_bonafide": len(bonafide), "n_seen": len(seen), "n_held_out": len(unseen)}


# ------------------------------------------------------------------------------------------------- rows


@dataclass
class Cell:
    """One (system, held-out family, seed) result."""

    system: str
    held_out: str
    seed: int | None
    seen_eer: float | None
    held_out_eer: float | None
    per_speaker: dict[str, float]
    train_seconds: float | None
    params: int | None
    trainable_params: int | None
    run: str


@dataclass
class Row:
    """A system on one held-out family (or ``mean`` over families), over seeds."""

    system: str
    held_out: str
    seen: tuple[float | None, float | None]
    held: tuple[float | None, float | None]
    seeds: list[int | None] = field(default_factory=list)
    train_seconds: float | None = None
    trainable_params: float | None = None
    per_speaker: dict[str, float] = field(default_factory=dict)


def aggregate(cells: list[Cell]) -> list[Row]:
    """Per (system, family): mean ± std over seeds; then per system a ``mean`` row over every cell."""
    rows: list[Row] = []
    systems = list(dict.fromkeys(c.system for c in cells))
    for system in systems:
        mine = [c for c in cells if c.system == system]
        for family in dict.fromkeys(c.held_out for c in mine):
            group = [c for c in mine if c.held_out == family]
            speakers = sorted({s for c in group for s in c.per_speaker})
            rows.append(Row(system, family, mean_std([c.seen_eer for c in group]),
                            mean_std([c.held_out_eer for c in group]), [c.seed for c in group],
                            mean_std([c.train_seconds for c in group])[0],
                            mean_std([c.trainable_params for c in group])[0],
                            {s: mean_std([c.per_speaker.get(s) for c in group])[0] for s in speakers}))
        if len({c.held_out for c in mine}) > 1:
            rows.append(Row(system, "mean", mean_std([c.seen_eer for c in mine]),
                            mean_std([c.held_out_eer for c in mine]), sorted({c.seed for c in mine}, key=str),
                            mean_std([c.train_seconds for c in mine])[0],
                            mean_std([c.trainable_params for c in mine])[0]))
    return rows


def _pct(pair: tuple[float | None, float | None]) -> str:
    mean, std = pair
    if mean is None:
        return "—"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if std else f"{100 * mean:.1f}"


def format_markdown(rows: list[Row]) -> str:
    cells = []
    for row in rows:
        seeds = ",".join("-" if s is None else str(s) for s in row.seeds)
        trainable = "—" if row.trainable_params is None else f"{row.trainable_params:,.0f}"
        seconds = "—" if row.train_seconds is None else f"{row.train_seconds:.0f}"
        name = f"**{row.held_out}**" if row.held_out == "mean" else row.held_out
        cells.append([row.system, name, _pct(row.seen), _pct(row.held), seeds, trainable, seconds])
    return markdown_table(["system", "held-out family", "seen EER %", "held-out EER %", "seeds", "trainable params",
                           "train s/run"], cells)


def format_per_speaker(rows: list[Row]) -> str:
    """Held-out EER per speaker (mean over seeds): a detector that tells voices apart instead of artefacts shows
    up as one speaker far from the others."""
    speakers = sorted({s for row in rows for s in row.per_speaker})
    if not speakers:
        return ""
    def percent(eer: float | None) -> str:
        return "—" if eer is None else f"{100 * eer:.1f}"

    cells = [[row.system, row.held_out, *(percent(row.per_speaker.get(s)) for s in speakers)]
             for row in rows if row.per_speaker]
    return markdown_table(["system", "held-out family", *speakers], cells)


def verdicts(rows: list[Row], reference: str, candidates: list[str]) -> list[str]:
    """Per recipe starting from a published checkpoint and per held-out family both were run on: does it adapt
    (seen EER below the zero-shot ``reference``'s) and not forget (held-out EER at most 1 point above it)?"""
    base = {r.held_out: r for r in rows if r.system == reference and r.held_out != "mean"}
    lines = []
    for system in candidates:
        for row in (r for r in rows if r.system == system and r.held_out in base):
            ref = base[row.held_out]
            if None in (row.seen[0], row.held[0], ref.seen[0], ref.held[0]):
                continue
            adapts = row.seen[0] < ref.seen[0]
            change = 100 * (row.held[0] - ref.held[0])
            keeps = change <= 1.0
            lines.append(f"- {system}, {row.held_out} held out: seen {100 * row.seen[0]:.1f} % vs "
                         f"{100 * ref.seen[0]:.1f} % zero-shot ({'adapts' if adapts else 'does not adapt'}); "
                         f"held-out {change:+.1f} points ({'within' if keeps else 'beyond'} the 1-point budget) -> "
                         f"{'meets the goal' if adapts and keeps else 'misses the goal'}")
    return lines


def plot_unseen(rows: list[Row], path: Path, title: str = "") -> Path:
    """Grouped bars per system: seen and held-out EER (mean over families and seeds), std as error bars."""
    from matplotlib.figure import Figure

    from plastispoof.plots import save_figure

    summary = {}
    for row in rows:
        if row.held_out == "mean" or row.system not in summary:
            summary[row.system] = row
    systems = list(summary)
    figure = Figure(figsize=(max(6.0, 1.1 * len(systems) + 2), 4.2))
    axes = figure.add_subplot(1, 1, 1)
    width = 0.38
    for offset, key, label in ((-width / 2, "seen", "seen families"), (width / 2, "held", "held-out family")):
        means = [100 * (getattr(summary[s], key)[0] or 0.0) for s in systems]
        stds = [100 * (getattr(summary[s], key)[1] or 0.0) for s in systems]
        axes.bar([i + offset for i in range(len(systems))], means, width, yerr=stds, capsize=3, label=label)
    axes.axhline(50, color="grey", linewidth=0.8, linestyle=":")
    axes.set_xticks(range(len(systems)), systems, rotation=25, ha="right", fontsize=8)
    axes.set_ylabel("EER (%)")
    axes.set_title(title or "held-out-attack benchmark (mean over held-out families and seeds)", fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def previous_cells(out: Path) -> list[Cell]:
    """The cells an earlier invocation wrote to ``out/unseen.json`` (none when there is no report yet)."""
    path = Path(out) / "unseen.json"
    if not path.is_file():
        return []
    return [Cell(**cell) for cell in json.loads(path.read_text()).get("cells", [])]


def merge_cells(*groups: list[Cell]) -> list[Cell]:
    """One cell per (system, held-out family, seed): a later group's cell replaces an earlier one's."""
    merged: dict[tuple, Cell] = {}
    for group in groups:
        for cell in group:
            merged[(cell.system, cell.held_out, cell.seed)] = cell
    return list(merged.values())


def merge_reports(sources: list[Path], out: Path) -> str:
    """One table from the reports of several benchmark folders (e.g. runs made on two machines)."""
    cells = merge_cells(*(previous_cells(source) for source in sources))
    if not cells:
        raise InputError(f"no unseen.json with results in {', '.join(map(str, sources))}")
    settings = {"merged_from": [str(s) for s in sources], "systems": list(dict.fromkeys(c.system for c in cells)),
                "recipe": _merged_recipes(sources)}
    return write_report(cells, Path(out), settings)


def _merged_recipes(sources: list[Path]) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for source in sources:
        path = Path(source) / "unseen.json"
        if path.is_file():
            systems.update(json.loads(path.read_text()).get("settings", {}).get("recipe", {}).get("systems", {}))
    return {"systems": systems}


def write_report(cells: list[Cell], out: Path, settings: dict[str, Any]) -> str:
    rows = aggregate(cells)
    markdown = format_markdown(rows)
    specs = settings["recipe"]["systems"]
    present = list(dict.fromkeys(c.system for c in cells))
    zero_shot = [s for s in present if specs.get(s, {}).get("zero_shot")]
    adapted = [s for s in present if specs.get(s, {}).get("pretrained") and not specs.get(s, {}).get("zero_shot")]
    lines = verdicts(rows, zero_shot[0], adapted) if zero_shot else []
    text = markdown + ("\n\nGoal (adapt on seen families, lose at most 1 point on the held-out one):\n"
                       + "\n".join(lines) if lines else "")
    speakers = format_per_speaker(rows)
    if speakers:
        text += "\n\nHeld-out EER % per speaker:\n\n" + speakers
    atomic_write_text(out / "unseen.md", text + "\n")
    columns = ["system", "held_out", "seen_eer", "seen_std", "held_out_eer", "held_out_std", "seeds",
               "trainable_params", "train_seconds"]
    atomic_write_text(out / "unseen.csv", csv_text(columns, ([row.system, row.held_out, *row.seen, *row.held,
                                                               " ".join(map(str, row.seeds)), row.trainable_params,
                                                               row.train_seconds] for row in rows)))
    atomic_write_json(out / "unseen.json", {"settings": settings, "cells": [asdict(c) for c in cells],
                                            "rows": [asdict(r) for r in rows], "verdicts": lines})
    plot_unseen(rows, out / "unseen.png")
    return text


# ------------------------------------------------------------------------------------------------- running


def system_config(recipe: dict, system: str, family: str, root: Path, seed: int, out: Path,
                  baseline_run: Path | None, epochs: int | None, overrides: list[str]) -> ExperimentConfig:
    """The experiment config of one run: ``defaults <- systems[system]``, on ``family``'s leave-one-out root."""
    spec = {k: v for k, v in recipe["systems"][system].items() if k not in ("pretrained", "zero_shot")}
    data = merge_dicts(recipe.get("defaults", {}), spec)
    strategy_args = dict(data.get("strategy", {}).get("args", {}))
    if baseline_run is not None:
        strategy_args["baseline_run"] = str(baseline_run)
    data = merge_dicts(data, {"name": f"{system}-{family}-s{seed}", "seed": seed, "output_dir": str(out / "runs"),
                              "data": {"dataset": "asv19-la", "root": str(root)},
                              "strategy": {"args": strategy_args}})
    if epochs is not None:
        data.setdefault("train", {})["epochs"] = epochs
    return apply_overrides(validate(data, f"unseen recipe system {system!r}"), overrides)


def _evaluate(run_dir: Path, root: Path, held_out: list[str]) -> dict[str, Any]:
    from plastispoof.data.protocols import read_dataset
    from plastispoof.evaluate import evaluate_run
    from plastispoof.score_files import read_scores

    score_file = run_dir / "scores" / "asv19-la-eval.txt"
    if not score_file.is_file():
        evaluate_run(run_dir, dataset="asv19-la", root=root, subset="eval")
    return split_eers(read_dataset("asv19-la", root, "eval"), read_scores(score_file), held_out)


def _import_once(model: str, weights: Path, out: Path, num_samples: int, eval_batch_size: int) -> Path:
    """The imported checkpoint shared by every pretrained system (reused when it holds the same file)."""
    from plastispoof.pretrained import file_digest, import_checkpoint
    from plastispoof.runs import read_meta

    run_dir = out / "imported" / f"{model}-n{num_samples}"
    if (run_dir / "meta.json").is_file():
        if read_meta(run_dir).get("imported_from", {}).get("sha256") == file_digest(weights):
            return run_dir
        raise InputError(f"{run_dir} holds another import than {weights}; choose another --out")
    return import_checkpoint(model, weights, run_dir, overrides=[f"data.eval_batch_size={eval_batch_size}"],
                             num_samples=num_samples)


def reproduce_unseen(root: Path, systems: list[str] | None = None, seeds: list[int] | None = None,
                     families: list[str] | None = None, weights: Path | None = None,
                     out: Path = Path("runs/unseen"), epochs: int | None = None, overrides: list[str] | None = None,
                     recipe_path: Path = RECIPE) -> str:
    """Run every system x held-out family x seed (finished runs are skipped) and write the table."""
    from plastispoof.analysis.recipes import run_cell
    from plastispoof.runs import read_meta

    root, out = Path(root), Path(out)
    all_families, lofo = read_families(root)
    recipe = load_recipe(recipe_path)
    systems = systems or list(recipe.get("default_systems", recipe["systems"]))
    unknown = [s for s in systems if s not in recipe["systems"]]
    if unknown:
        raise InputError(f"unknown system {unknown[0]!r}; known: {', '.join(recipe['systems'])}")
    families = families or list(all_families)
    unknown = [f for f in families if f not in all_families]
    if unknown:
        raise InputError(f"unknown attack family {unknown[0]!r}; the corpus has: {', '.join(all_families)}")
    seeds = seeds or [42]
    pretrained = [s for s in systems if recipe["systems"][s].get("pretrained")]
    if pretrained and weights is None:
        raise InputError(f"system(s) {', '.join(pretrained)} start from a published checkpoint: pass --weights "
                         f"(e.g. the official AASIST.pth)")
    if weights is not None and not Path(weights).is_file():
        raise InputError(f"weights not found: {weights}")
    overrides = overrides or []
    started = time.perf_counter()
    cells: list[Cell] = []
    for system in systems:
        spec = recipe["systems"][system]
        for family in families:
            held_out = all_families[family]
            for seed in ([None] if spec.get("zero_shot") else seeds):
                cfg = system_config(recipe, system, family, lofo[family], seed or 0, out, None, epochs, overrides)
                base = (_import_once(cfg.model.name, Path(weights), out, cfg.data.num_samples, cfg.data.eval_batch_size)
                        if spec.get("pretrained") else None)
                if spec.get("zero_shot"):
                    run_dir, seconds = base, None
                else:
                    if base is not None:
                        cfg = system_config(recipe, system, family, lofo[family], seed, out, base, epochs, overrides)
                    run_cell(cfg, "eval")
                    run_dir = cfg.run_dir
                    seconds = _train_seconds(run_dir)
                result = _evaluate(run_dir, lofo[family], held_out)
                meta = read_meta(run_dir)
                cells.append(Cell(system, family, seed, result["seen_eer"], result["held_out_eer"],
                                  result["per_speaker"], seconds, meta.get("params"),
                                  meta.get("trainable_params") if not spec.get("zero_shot") else 0, str(run_dir)))
                # the table so far, so an interrupted benchmark still leaves one
                settings = {"root": str(root), "systems": systems, "families": families, "seeds": seeds,
                            "epochs": epochs, "overrides": overrides, "weights": str(weights) if weights else None,
                            "recipe": recipe, "wall_seconds": time.perf_counter() - started}
                text = _add_to_report(out, cells, settings)
    return text


def _add_to_report(out: Path, cells: list[Cell], settings: dict[str, Any]) -> str:
    """Merge ``cells`` into the folder's report as it is now and rewrite it. Read at each write, under a lock,
    not once at the start: two invocations into one folder (one per core) otherwise drop each other's cells."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".unseen.lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: the read-merge-write below is still short
            pass
        return write_report(merge_cells(previous_cells(out), cells), out, settings)


def _train_seconds(run_dir: Path) -> float | None:
    """Training wall time of a run (its epochs, dev scoring included), from its per-epoch log: the same number
    whether the run was trained now or skipped as finished."""
    from plastispoof.runs import read_jsonl

    seconds = [r["epoch_s"] for r in read_jsonl(run_dir / "metrics.jsonl") if "epoch_s" in r]
    return sum(seconds) if seconds else None
