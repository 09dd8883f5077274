"""The model card (``card.json``): what a model is, what it was trained on, how good it was on dev, how to feed
it and how to read its score. Every run directory carries one (the trainer writes it when a run finishes, the
importer when weights are imported, ``calibrate`` refreshes it), and so does every ONNX export (beside the file
and inside its metadata). ``plastispoof info RUN|model.onnx|card.json`` prints it.

Fields: ``model`` and ``params`` / ``trainable_params``; ``training`` (dataset, root, train and dev subsets, their
sizes' caps, seed; None for imported weights, which have ``source`` instead); ``strategy`` with its ``stages``
(name, epochs, parameters, dev EER); ``dev_eer`` and ``dev_thresholds`` (each named by its scoring convention);
``calibration`` (a summary of ``calibration.json``, or None); ``input`` (sample rate, samples, seconds);
``score_direction``; ``toolkit`` version and ``git_commit``; ``weights_sha256`` (the weights' hash of
:func:`plastispoof.weights_hash.model_hash`, which a calibration must match).
Fields written by the importer (``source``, ``imported``, ``trained_here``) are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plastispoof.calibration import CALIBRATION
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json
from plastispoof.models.base import model_class
from plastispoof.onnx_runtime import read_export_metadata
from plastispoof.scoring import run_threshold
from plastispoof.weights_hash import state_hash

CARD = "card.json"
def score_direction(model_name: str) -> str:
    """What a model's score means, for its card: the direction, the model's own convention, what llr means.

    >>> score_direction("aasist").split("; ")[0]
    'higher = more bona fide: score = the bona fide logit alone (index 1), as the published AASIST code scores'
    >>> score_direction("grnn").split("; ")[0]
    'higher = more bona fide: score = bona fide logit - spoof logit (logit index 1 = bona fide, 0 = spoof)'
    """
    convention = model_class(model_name).score_convention
    return (f"higher = more bona fide: score = {convention}; llr = natural-log likelihood ratio bona fide vs spoof "
            "after calibration")
CARD_METADATA_KEY = "plastispoof_card"


def calibration_summary(calibration: dict[str, Any] | None) -> dict[str, Any] | None:
    """The card's view of a calibration JSON (no dev scores)."""
    if not calibration:
        return None
    keys = ("slope", "offset", "prior", "n_bonafide", "n_spoof", "convention", "cllr_before", "cllr_after",
            "min_cllr_before", "min_cllr_after", "dev_eer", "eer_threshold", "model_hash", "dev")
    return {key: calibration.get(key) for key in keys if key in calibration}


def run_card(run_dir: str | Path, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card of a run directory, from its meta.json, config.yaml and calibration.json; ``base`` (default:
    the card already there) supplies fields the run files do not hold (e.g. an import's ``source``)."""
    from plastispoof import runs  # PyTorch (safetensors.torch): only a run's card needs it, not an export's

    run_dir = Path(run_dir)
    meta = runs.read_meta(run_dir)
    if base is None and (run_dir / CARD).is_file():
        base = read_card(run_dir / CARD)
    imported = meta.get("strategy", {}).get("name") == "import"
    training = None
    if not imported and (run_dir / runs.CONFIG).is_file():
        data = runs.read_run_config(run_dir).data
        training = {"dataset": data.dataset, "root": str(data.root), "train_subset": data.train_subset,
                    "dev_subset": data.dev_subset, "max_train": data.max_train, "max_dev": data.max_dev,
                    "seed": meta.get("seed")}
    weights_hash = state_hash(runs.read_weights(run_dir / runs.MODEL)) if (run_dir / runs.MODEL).is_file() else None
    calibration = None
    if (run_dir / CALIBRATION).is_file():
        calibration = calibration_summary(json.loads((run_dir / CALIBRATION).read_text()))
        if calibration.get("model_hash") != weights_hash:  # the run was retrained after calibrating
            calibration = {"stale": f"{CALIBRATION} belongs to other weights; run plastispoof calibrate again"}
    stages = [{"name": s.get("name"), "epochs": s.get("epochs"), "params": s.get("params"),
               "trainable_params": s.get("trainable_params"), "dev_eer": s.get("dev_eer")}
              for s in meta.get("stages", [])]
    thresholds = {convention: run_threshold(meta, convention) for convention in ("first-crop", "window-mean")}
    inputs = meta.get("input", {})
    card = {
        **(base or {}),
        "card_version": 1,
        "model": meta["model"]["name"],
        "params": meta.get("params"),
        "trainable_params": meta.get("trainable_params"),
        "training": training,
        "trained_here": not imported,
        "strategy": {"name": meta.get("strategy", {}).get("name"), "args": meta.get("strategy", {}).get("args"),
                     "stages": stages},
        "dev_eer": meta.get("dev_eer"),
        "dev_thresholds": {k: v for k, v in thresholds.items() if v is not None},
        "calibration": calibration,
        "input": {"sample_rate": inputs.get("sample_rate"), "num_samples": inputs.get("num_samples"),
                  "seconds": (inputs["num_samples"] / inputs["sample_rate"]) if inputs.get("sample_rate") else None,
                  "channels": 1, "pooling": "whole file: mean score over half-overlapping windows of num_samples"},
        "score_direction": score_direction(meta["model"]["name"]),
        "toolkit": (meta.get("versions") or {}).get("plastispoof"),
        "git_commit": meta.get("git_commit"),
        "weights_sha256": weights_hash,  # plastispoof.weights_hash.model_hash of the weights
    }
    return card


def write_run_card(run_dir: str | Path, base: dict[str, Any] | None = None) -> Path:
    """Write (or refresh) ``RUN/card.json`` atomically."""
    path = Path(run_dir) / CARD
    atomic_write_json(path, run_card(run_dir, base))
    return path


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of a run directory, a ``card.json`` or an ONNX export (its metadata)."""
    path = Path(path)
    if path.is_dir():
        if (path / CARD).is_file():
            return read_card(path / CARD)
        return run_card(path, base={})  # a run from before cards: computed, not written
    if not path.is_file():
        raise InputError(f"no run directory, card.json or ONNX file at {path}")
    if path.suffix == ".onnx":
        return read_export_metadata(path)["card"]
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is not a model card (not JSON)") from None
    if not isinstance(card, dict) or "model" not in card:
        raise InputError(f"{path} is not a model card (no \"model\")")
    return card


def format_card(card: dict[str, Any]) -> str:
    """The card as text for ``plastispoof info``."""
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f} %"

    lines = [f"model        {card.get('model')}  ({card.get('params') or 0:,} parameters, "
             f"{card.get('trainable_params') or 0:,} trained in the last stage)"]
    training = card.get("training")
    if training:
        lines.append(f"trained on   {training['dataset']} {training['train_subset']} (dev: {training['dev_subset']}) "
                     f"at {training['root']}, seed {training.get('seed')}")
    if card.get("source"):
        source = card["source"]
        lines.append(f"imported     {source.get('kind')} from {source.get('path')} (sha256 "
                     f"{str(source.get('sha256'))[:12]}...)")
    strategy = card.get("strategy") or {}
    lines.append(f"strategy     {strategy.get('name')}: " + ", ".join(
        f"{s['name']} ({s['epochs']} epochs, dev EER {pct(s.get('dev_eer'))})" for s in strategy.get("stages", [])))
    lines.append(f"dev EER      {pct(card.get('dev_eer'))} (first crop of each dev file, as training selects; "
                 f"the calibration's is over whole files, as score computes); thresholds " + (", ".join(
        f"{k} {v:.4g}" for k, v in (card.get("dev_thresholds") or {}).items()) or "-"))
    calibration = card.get("calibration")
    if calibration and calibration.get("stale"):
        lines.append(f"calibration  stale: {calibration['stale']}")
    elif calibration:
        cllr_before = calibration.get("cllr_before", float("nan"))
        cllr_after = calibration.get("cllr_after", float("nan"))
        lines.append(f"calibration  llr = {calibration['slope']:.4g} * score + {calibration['offset']:.4g} "
                     f"(prior {calibration['prior']:g}, {calibration.get('convention')}; Cllr {cllr_before:.3f} -> "
                     f"{cllr_after:.3f}; dev EER {pct(calibration.get('dev_eer'))} over whole files)")
    else:
        lines.append("calibration  none (plastispoof calibrate)")
    inputs = card.get("input") or {}
    lines.append(f"input        {inputs.get('sample_rate')} Hz mono, windows of {inputs.get('num_samples')} samples "
                 f"({inputs.get('seconds') or 0:.2f} s)")
    lines.append(f"score        {card.get('score_direction')}")
    if card.get("export"):
        export = card["export"]
        lines.append(f"export       ONNX opset {export.get('opset')}, {export.get('precision')}, input "
                     f"{export.get('input')}")
    lines.append(f"toolkit      plastispoof {card.get('toolkit')}, git {card.get('git_commit')}")
    return "\n".join(lines)
