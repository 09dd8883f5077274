"""The ``plastispoof calibrate`` verb: score a dev set as ``score`` scores files, fit the score -> LLR map on it
(:func:`plastispoof.calibration.fit_calibration`) and write ``calibration.json`` (and, for a run, its card).
Under ``torchrun`` the dev files are scored in shards across the ranks and rank 0 fits and writes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from plastispoof.calibration import CALIBRATION, finite_scores, fit_calibration
from plastispoof.card import write_run_card
from plastispoof.data.protocols import read_dataset
from plastispoof.data.trials import BONAFIDE
from plastispoof.detectors import load_detector
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json
from plastispoof.metrics import logit
from plastispoof.scale.sharding import EvalGroup, rank_device, sharded_scores, world_size
from plastispoof.scoring import window_mean_scores


def calibrate(run: str | Path | None, dataset: str, root: str | Path, subset: str = "dev", *,
              model: str | None = None, weights: str | Path | None = None, out: str | Path | None = None,
              prior: float = 0.5, device: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Fit the calibration of a run (or of foreign ``model`` + ``weights``) on ``subset`` of ``dataset``.

    Writes ``out`` (default ``RUN/calibration.json``; required for foreign weights) only once everything has
    succeeded, and, for a run, refreshes its ``card.json``. Returns ``(path, calibration JSON)``.
    """
    logit(prior)
    if device is None and world_size() > 1:
        device = rank_device()  # each torchrun rank on its own GPU
    if run is None and out is None and model is not None:
        raise InputError("foreign weights have no run directory: say where the calibration goes with --out FILE")
    detector = load_detector(run=run, model=model, weights=weights, device=device, use_run_calibration=False)
    out = Path(out) if out is not None else Path(run) / CALIBRATION
    trials = read_dataset(dataset, str(root), subset)
    labels = {t.label for t in trials}
    if len(labels) < 2:
        raise InputError(f"{dataset} subset {subset!r} has only {next(iter(labels), 'no')} trials "
                         f"({len(trials)}); calibration needs bona fide and spoof trials")
    group = EvalGroup.from_env()  # under torchrun the dev trials are scored in shards
    started = time.perf_counter()
    show = group.rank == 0
    scores = sharded_scores(trials, lambda part: window_mean_scores(
        detector, part, description="calibrating: scoring dev files", show_progress=show),
        detector.batch_size, group)
    if scores is None:  # another rank than 0 under torchrun: rank 0 fits and writes
        return group.broadcast(None)
    bonafide_ids = [t.utt_id for t in trials if t.label == BONAFIDE]
    spoof_ids = [t.utt_id for t in trials if t.label != BONAFIDE]
    bonafide = finite_scores([scores[u] for u in bonafide_ids], "bona fide", bonafide_ids)
    spoof = finite_scores([scores[u] for u in spoof_ids], "spoof", spoof_ids)
    calibration = fit_calibration(
        bonafide, spoof, prior, model_hash=detector.model_hash, model=detector.name,
        extra={"dev": {"dataset": dataset, "subset": subset, "root": str(root)},
               "input": {"num_samples": detector.num_samples, "sample_rate": detector.sample_rate},
               "seconds": round(time.perf_counter() - started, 3),
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    data = calibration.as_dict()
    atomic_write_json(out, data)
    if run is not None and Path(out).resolve() == (Path(run) / CALIBRATION).resolve():
        write_run_card(run)
    return group.broadcast((Path(out), data)) if group.enabled else (Path(out), data)


def format_calibration(path: Path, data: dict[str, Any]) -> str:
    return "\n".join([
        f"calibration of {data.get('model')} written to {path}",
        f"  llr = {data['slope']:.6g} * score + {data['offset']:.6g}   (prior {data['prior']:g}; "
        f"{data['n_bonafide']} bona fide, {data['n_spoof']} spoof dev trials; {data['convention']})",
        f"  Cllr      {data['cllr_before']:.4f} -> {data['cllr_after']:.4f} bits",
        f"  min Cllr  {data['min_cllr_before']:.4f} -> {data['min_cllr_after']:.4f} bits",
        f"  dev EER   {100 * data['dev_eer']:.2f} % at score {data['eer_threshold']:.6g} (whole files, mean over "
        "windows: what `score` computes; `info` also shows training's first-crop dev EER)",
        f"  weights   sha256 {str(data.get('model_hash'))[:16]}...",
    ])
