"""Continual adaptation to new attacks (seed 003, MoLEx): LoRA, MoLEx, MoLEx with an added expert and full
fine-tuning, each adapting one detector to attacks it never saw, measured on what it learns and what it forgets.

``plastispoof reproduce adaptation --root CORPUS`` (recipe ``configs/adaptation.yaml``) on an embedded corpus
written with ``synth --adaptation`` (:mod:`plastispoof.data.adaptation`):

1. ``base``: the recipe's wav2vec2-small trained on the corpus (seen attacks), seed 42; for the added-expert
   system also ``seen_molex``: MoLEx trained from the base on the same data, once, at the base's seed;
2. each system trains on ``CORPUS/adaptation`` from its start run, one run per seed (``none`` is the base as
   it is), and is scored on the held-out speakers: new attacks (``learning``, the split's eval) and old attacks
   (``forgetting``, ``adaptation/old-attacks``), first-crop as ``evaluate`` scores;
3. ``adaptation.{md,csv,json}`` under ``out``: EERs as mean ± std over seeds and the trainable parameters;
   for the MoLEx systems the expert usage per attack on the corpus's eval subset (``plastispoof experts``:
   ``<run>/reports/experts-synthetic-eval.{png,csv,json}``).

Finished runs and measured forgetting are reused, so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plastispoof.analysis.recipes import REPO, load_recipe, merge_dicts, run_cell
from plastispoof.analysis.tables import csv_text, markdown_table, mean_std
from plastispoof.config import ExperimentConfig, apply_overrides, load_config, validate
from plastispoof.data.adaptation import ADAPTATION, OLD_ATTACKS
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json, atomic_write_text

RECIPE = REPO / "configs" / "adaptation.yaml"
BASE = "base-wav2vec2-small"


@dataclass
class SystemRow:
    system: str
    start: str
    seeds: list[int]
    trainable_params: int
    learning: float | None  # EER (%) on the held-out speakers' new attacks, mean over seeds
    learning_std: float | None
    forgetting: float | None  # EER (%) on their old attacks
    forgetting_std: float | None
    runs: list[str] = field(default_factory=list)
    experts: list[str] = field(default_factory=list)  # expert-usage reports of MoLEx runs


COLUMNS = ["System", "Starts from", "Trainable params", "New attacks EER (%) (learning)",
           "Old attacks EER (%) (forgetting)", "Seeds"]
CSV_COLUMNS = ["system", "start", "trainable_params", "learning_eer", "learning_std", "forgetting_eer",
               "forgetting_std", "seeds"]


def _derived(base: ExperimentConfig, name: str, root: Path, out: Path, seed: int, strategy: dict[str, Any],
             train: dict[str, Any], data: dict[str, Any], epochs: int | None, overrides: list[str]) -> ExperimentConfig:
    """A run of the base's model under another strategy, corpus root and training settings."""
    config = merge_dicts(base.model_dump(mode="json"), {"name": name, "seed": seed, "output_dir": str(out),
                                                        "data": {**data, "root": str(root)}, "train": train})
    config["strategy"] = strategy
    if epochs is not None:
        config["train"]["epochs"] = epochs
    return apply_overrides(validate(config, f"adaptation recipe {name}"), overrides)


def eer_on(run_dir: Path, root: Path, what: str) -> float:
    """EER (%) of a run on ``root``'s eval subset, first-crop; measured once and kept in the run's
    ``scores/adaptation-<what>.json``."""
    from plastispoof.evaluate import load_run_and_trials
    from plastispoof.metrics import trials_eer
    from plastispoof.scoring import score_trials

    path = run_dir / "scores" / f"adaptation-{what}.json"
    if path.is_file():
        return json.loads(path.read_text())["eer_percent"]
    cfg, model, _, trials = load_run_and_trials(run_dir, "synthetic", root, "eval")
    scores = score_trials(model, trials, cfg.data.num_samples, cfg.data.eval_batch_size, "cpu",
                          sample_rate=cfg.data.sample_rate)
    eer = 100 * trials_eer(trials, scores)[0]
    atomic_write_json(path, {"root": str(root), "trials": len(trials), "eer_percent": eer})
    return eer


def seen_molex(recipe: dict[str, Any], base: ExperimentConfig, root: Path, out: Path, epochs: int | None,
               overrides: list[str]) -> Path:
    """The start of the added-expert system: MoLEx trained from the base on the seen attacks, once (at the base's
    seed), as the base itself: the seeds vary the adaptation, not the detector it starts from."""
    seen = recipe["seen_molex"]
    cfg = _derived(base, "seen-molex", root, out, base.seed,
                   {"name": "molex", "args": {"baseline_run": str(base.run_dir), **seen["args"]}},
                   {"epochs": seen["epochs"], "lr": seen["lr"]}, {}, epochs, overrides)
    run_cell(cfg, "eval")
    return cfg.run_dir


def format_markdown(rows: list[SystemRow]) -> str:
    def eer(mean: float | None, std: float | None) -> str:
        return "-" if mean is None else f"{mean:.2f} ± {std:.2f}"

    return markdown_table(COLUMNS, [[row.system, row.start, f"{row.trainable_params:,}",
                                     eer(row.learning, row.learning_std), eer(row.forgetting, row.forgetting_std),
                                     ",".join(map(str, row.seeds))] for row in rows])


def reproduce_adaptation(root: str | Path, out: str | Path = "runs/adaptation", seeds: tuple[int, ...] = (42, 43, 44),
                         epochs: int | None = None, systems: list[str] | None = None,
                         overrides: list[str] | None = None, base_overrides: list[str] | None = None) -> str:
    """Run the comparison (see the module notes) and return its Markdown table."""
    from plastispoof.analysis.expert_usage import expert_usage_report

    recipe = load_recipe(RECIPE)
    root, out = Path(root), Path(out)
    systems = systems or list(recipe["systems"])
    unknown = [name for name in systems if name not in recipe["systems"]]
    if unknown:
        raise InputError(f"system {unknown[0]!r} is not in the recipe; known: {', '.join(recipe['systems'])}")
    split = root / ADAPTATION
    if not (split / "split.json").is_file():
        raise InputError(f"{root} has no adaptation split; write it with plastispoof synth --out {root} "
                         "--profile demo --adaptation 0.25")
    overrides, base_overrides = list(overrides or []), list(base_overrides or [])
    base = load_config(REPO / recipe["base"], [f"data.root={root}", f"output_dir={out}", f"name={BASE}",
                                               *base_overrides])
    run_cell(base, "eval")
    adapt = recipe["adapt"]
    rows = []
    for system in systems:
        spec = recipe["systems"][system]
        start_name = "base" if spec is None or spec.get("start") is None else spec["start"]
        learning, forgetting, run_dirs, experts, trainable = [], [], [], [], 0
        system_seeds = list(seeds if spec is not None else seeds[:1])  # the base alone does not depend on the seed
        for seed in system_seeds:
            if spec is None:
                run_dir = base.run_dir
                learning.append(eer_on(run_dir, split, "learning"))
            else:
                start = base.run_dir if start_name == "base" else seen_molex(recipe, base, root, out, epochs,
                                                                            overrides)
                cfg = _derived(base, f"{system}-s{seed}", split, out, seed,
                               {"name": spec["strategy"], "args": {"baseline_run": str(start), **spec["args"]}},
                               merge_dicts(adapt["train"], spec.get("train", {})), adapt.get("data", {}), epochs,
                               overrides)
                cell = run_cell(cfg, "eval")
                run_dir, trainable = cfg.run_dir, cell["meta"]["trainable_params"]
                learning.append(100 * cell["report"]["eer"])
                if spec["strategy"] == "molex" and not experts:
                    expert_usage_report(run_dir, "synthetic", root, "eval")
                    experts.append(str(run_dir / "reports" / "experts-synthetic-eval.png"))
            forgetting.append(eer_on(run_dir, split / OLD_ATTACKS, "forgetting"))
            run_dirs.append(str(run_dir))
        rows.append(SystemRow(system, start_name, system_seeds, trainable,
                              *mean_std(learning), *mean_std(forgetting), run_dirs, experts))
    table = format_markdown(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "adaptation.md", table + "\n")
    atomic_write_text(out / "adaptation.csv", csv_text(CSV_COLUMNS, [
        [row.system, row.start, row.trainable_params, row.learning, row.learning_std, row.forgetting,
         row.forgetting_std, " ".join(map(str, row.seeds))] for row in rows]))
    atomic_write_json(out / "adaptation.json", {"corpus": str(root), "split": json.loads((split / "split.json")
                                                                                          .read_text()),
                                                "base": str(base.run_dir), "seeds": list(seeds), "epochs": epochs,
                                                "rows": [asdict(row) for row in rows]})
    return table
