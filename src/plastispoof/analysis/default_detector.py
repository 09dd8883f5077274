"""The shipped default detector's recipe (``plastispoof reproduce default-detector``, configs/default-detector.yaml).

Steps, each skipped when its output is already there with the same settings:

1. the training corpus (``synth --recipe asterisk-world``: non-English Asterisk voices and their spoofs) and the
   English test corpus (``synth --recipe asterisk-en``);
2. the official AASIST imported as a run (its SHA-256 must be the config's ``weights_sha256``);
3. dropin-frozen + augmentation training on the training corpus' ``lofo/<held-out copy family>`` root;
4. calibration on that root's dev subset (non-English);
5. the held-out report (:mod:`plastispoof.analysis.heldout`): English bona fide vs English spoofs of every family,
   pooled, per family, per speaker, with bootstrap intervals, for the trained detector and the zero-shot AASIST;
6. the shipped files (:func:`plastispoof.shipped.package_run`) written to ``OUT/shipped``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from plastispoof.analysis.recipes import REPO, merge_dicts
from plastispoof.config import ExperimentConfig, validate
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json

RECIPE = REPO / "configs" / "default-detector.yaml"


def load_default_recipe(path: str | Path = RECIPE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"recipe not found: {path}")
    recipe = yaml.safe_load(path.read_text())
    for key in ("train_corpus", "test_corpus", "held_out_families", "train", "weights_sha256"):
        if key not in recipe:
            raise InputError(f"{path} has no {key!r}")
    return recipe


def build_corpora(recipe: dict[str, Any], base: Path = Path(".")) -> tuple[Path, Path]:
    """Write (or reuse) the training and the English test corpus; returns their roots."""
    from plastispoof.data.copysynth import build_copysynth_corpus

    roots = []
    for key in ("train_corpus", "test_corpus"):
        spec = recipe[key]
        out = base / spec["out"]
        roots.append(build_copysynth_corpus(
            out, recipe=spec["recipe"], voices=spec.get("voices"),
            sound_roots=spec.get("sound_roots"), max_utterances=spec.get("max_utterances"),
            seed=int(recipe.get("seed", 42))))
    return roots[0], roots[1]


def training_root(recipe: dict[str, Any], train_corpus: Path) -> Path:
    """The leave-one-family-out root the detector trains on: the first held-out family the corpus has."""
    from plastispoof.data.copysynth import read_manifest

    families = read_manifest(train_corpus)["families"]
    in_corpus = [f for f in recipe["held_out_families"] if f in families]
    if not in_corpus:
        return train_corpus
    if len(in_corpus) > 1:
        raise InputError(f"the recipe holds out {', '.join(in_corpus)} of the training corpus; a corpus has one "
                         "leave-one-family-out root per family, so hold out one of its families")
    return train_corpus / read_manifest(train_corpus)["lofo"][in_corpus[0]]


def import_official(weights: str | Path, out: Path, recipe: dict[str, Any]) -> Path:
    """The official AASIST as a run under ``out/imported`` (checked against the recipe's SHA-256)."""
    from plastispoof.pretrained import file_digest, import_checkpoint

    weights = Path(weights)
    if not weights.is_file():
        raise InputError(f"weights not found: {weights} (the official AASIST.pth)")
    digest = file_digest(weights)
    if digest != recipe["weights_sha256"]:
        raise InputError(f"{weights} has SHA-256 {digest[:16]}..., not the official AASIST.pth the recipe names "
                         f"({recipe['weights_sha256'][:16]}...)")
    run_dir = out / "imported-aasist"
    if (run_dir / "model.safetensors").is_file():
        return run_dir
    cfg = recipe["train"]
    return import_checkpoint(cfg["model"]["name"], weights, run_dir,
                             overrides=[f"data.eval_batch_size={cfg['data'].get('eval_batch_size', 8)}"],
                             num_samples=cfg["data"]["num_samples"])


def training_config(recipe: dict[str, Any], root: Path, baseline_run: Path, out: Path,
                    overrides: list[str] | None = None) -> ExperimentConfig:
    from plastispoof.config import apply_overrides

    spec = recipe["train"]
    args = dict(spec.get("strategy", {}).get("args", {}), baseline_run=str(baseline_run))
    data = merge_dicts(spec, {"seed": int(recipe.get("seed", 42)), "output_dir": str(out),
                              "data": {"root": str(root)}, "strategy": {"args": args}})
    return apply_overrides(validate(data, "configs/default-detector.yaml train"), overrides or [])


def train_default(recipe: dict[str, Any], weights: str | Path, out: Path, base: Path = Path("."),
                  overrides: list[str] | None = None) -> tuple[Path, Path, Path]:
    """Steps 1-3: corpora, import, training. Returns ``(run_dir, training root, English test root)``."""
    from plastispoof.training import train

    train_corpus, test_corpus = build_corpora(recipe, base)
    root = training_root(recipe, train_corpus)
    imported = import_official(weights, out, recipe)
    cfg = training_config(recipe, root, imported, out, overrides)
    started = time.perf_counter()
    run_dir = cfg.run_dir
    if not (run_dir / "model.safetensors").is_file() or not _finished(run_dir):
        resume = (run_dir / "meta.json").exists() or (run_dir / "checkpoints").exists()
        train(cfg, resume=resume)
        atomic_write_json(run_dir / "wall_time.json", {"train_seconds": round(time.perf_counter() - started, 1)})
    return run_dir, root, test_corpus


def _finished(run_dir: Path) -> bool:
    from plastispoof.runs import read_meta

    return bool(read_meta(run_dir).get("finished"))
