"""Score a dataset with a trained run: score file, metrics JSON, DET curve and score histograms.

By default every trial is scored on its first ``num_samples`` samples (repeat-padded when shorter), the ASVspoof
evaluation convention (``first-crop``); ``full=True`` (``evaluate --full``) scores whole files exactly as
``plastispoof score`` does (``window-mean``: the mean over half-overlapping windows). The report names its
convention, and its outputs carry a ``-window-mean`` suffix in that case; the score is the model's ``score()`` (its
``score_convention``: bona fide logit minus spoof logit, or AASIST's bona fide logit alone), higher = more bona fide.
:func:`plastispoof.scoring.score_trials` is also the trainer's dev evaluation, so dev and
test numbers come from one code path.

Outputs in the run directory, for ``<dataset>-<subset>``: ``scores/<..>.txt`` (``utt_id score`` lines),
``scores/<..>.json`` (the metrics JSON of :func:`plastispoof.metrics.compute_report`), ``plots/det-<..>.png``,
``plots/hist-<..>.png``, and one ``metrics.jsonl`` line.

Under ``torchrun`` the trials are sharded across the ranks (:mod:`plastispoof.scale.sharding`) and rank 0 writes
the same files a single process would.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from plastispoof import runs
from plastispoof.calibration import CALIBRATION, read_calibration
from plastispoof.data.dataset import subsample
from plastispoof.data.feature_cache import first_crop_features
from plastispoof.data.protocols import read_dataset
from plastispoof.data.trials import BONAFIDE, Trial
from plastispoof.fileio import atomic_write_json
from plastispoof.inference import Detector
from plastispoof.llr_metrics import llr_report, plot_reliability, reliability
from plastispoof.metrics import compute_report, format_report
from plastispoof.scale.sharding import EvalGroup, rank_device, sharded_scores
from plastispoof.score_files import write_scores
from plastispoof.scoring import (
    CONVENTION_TEXT,
    FIRST_CROP,
    WINDOW_MEAN,
    run_threshold,
    score_trials,
    window_mean_scores,
)
from plastispoof.weights_hash import model_hash


def load_run_and_trials(run_dir: str | Path, dataset: str, root: str | Path, subset: str):
    """A run's config, rebuilt model and meta, and the trials to score: ``data.max_eval`` (a seeded subset)
    applies when the run set it. Shared by evaluation and the MoLEx expert-usage report."""
    cfg = runs.read_run_config(run_dir)
    model, meta = runs.load_run_model(run_dir)
    trials = read_dataset(dataset, str(root), subset)
    if cfg.data.max_eval:
        trials = subsample(trials, cfg.data.max_eval, cfg.seed)
    return cfg, model, meta, trials


def cached_first_crop_scores(cfg: Any, model: nn.Module, trials: Sequence[Trial]) -> dict[str, float] | None:
    """First-crop scores read through the run's feature cache (a frozen SSL front-end trained with
    ``data.feature_cache``): the scores of the waveforms, with the encoder run only for utterances not cached yet
    (several back-ends on one encoder share its features). None for any other run."""
    frontend = getattr(model, "frontend", None)
    if not cfg.data.feature_cache or not getattr(frontend, "freeze", False) or not hasattr(frontend, "cache_key"):
        return None

    features = first_crop_features(trials, frontend, cfg.data.feature_cache, cfg.data.num_samples,
                                   cfg.data.sample_rate, dtype=cfg.data.feature_cache_dtype)
    return features.scores(model, cfg.data.eval_batch_size)


def evaluate_run(run_dir: str | Path, dataset: str, root: str | Path, subset: str = "eval", *,
                 full: bool = False, bootstrap: int = 1000) -> dict[str, Any]:
    """Score ``subset`` of ``dataset`` under ``root`` with a run's final model; write and return its metrics.

    Uses the run's input length, evaluation batch size and workers, and its ``data.max_eval`` (a seeded subset)
    when set. ``full``: score whole files as ``plastispoof score`` does instead of the first ``num_samples``.
    The returned report is the metrics JSON plus ``convention`` (``first-crop`` | ``window-mean``) and its
    wording, and ``files`` (what was written where). ``bootstrap``: resamples of the EER intervals (0: none).

    When the run holds a ``calibration.json`` of these weights and this convention, the calibrated scores are
    LLRs: ``calibrated`` reports their ``act_dcf``, ``cllr`` and ``min_cllr``, and the LLR score file and a
    reliability diagram are written too; otherwise ``calibrated`` says why not.
    """
    return _evaluate(Path(run_dir), dataset, root, subset, full, bootstrap, EvalGroup.from_env())


def _evaluate(run_dir: Path, dataset: str, root: str | Path, subset: str, full: bool, bootstrap: int,
              group: EvalGroup) -> dict[str, Any]:
    """:func:`evaluate_run` on one rank of ``group``: every rank scores its shard, rank 0 writes the files and
    every rank returns rank 0's report."""
    from plastispoof.plots import plot_det, plot_score_histograms

    cfg, model, meta, trials = load_run_and_trials(run_dir, dataset, root, subset)
    device = rank_device()
    started = time.perf_counter()
    convention = WINDOW_MEAN if full else FIRST_CROP
    show = group.rank == 0
    if full:
        detector = Detector(model, cfg.data.num_samples, cfg.data.sample_rate, batch_size=cfg.data.eval_batch_size,
                            device=device)

        def score(part: list[Trial]) -> dict[str, float]:
            return window_mean_scores(detector, part, show_progress=show)
    else:
        model = model.to(device)

        def score(part: list[Trial]) -> dict[str, float]:
            cached = cached_first_crop_scores(cfg, model, part)
            return cached if cached is not None else score_trials(
                model, part, cfg.data.num_samples, cfg.data.eval_batch_size, device,
                sample_rate=cfg.data.sample_rate, num_workers=cfg.data.num_workers, show_progress=show)
    scores = sharded_scores(trials, score, cfg.data.eval_batch_size, group)
    if scores is None:  # another rank than 0: rank 0 writes and reports
        return group.broadcast(None)
    report = {**compute_report(trials, scores, bootstrap=bootstrap), "convention": convention,
              "convention_text": CONVENTION_TEXT[convention]}

    stem = f"{dataset}-{subset}" + ("-window-mean" if full else "")
    files = {"scores": run_dir / "scores" / f"{stem}.txt", "metrics": run_dir / "scores" / f"{stem}.json",
             "det": run_dir / "plots" / f"det-{stem}.png", "hist": run_dir / "plots" / f"hist-{stem}.png"}
    write_scores(files["scores"], scores)
    atomic_write_json(files["metrics"], report)
    bonafide = [scores[t.utt_id] for t in trials if t.label == BONAFIDE]
    spoof = [scores[t.utt_id] for t in trials if t.label != BONAFIDE]
    plot_det(bonafide, spoof, files["det"], title=f"{run_dir.name}: {stem}")
    plot_score_histograms(bonafide, spoof, files["hist"], threshold=run_threshold(meta, convention),
                          title=f"{run_dir.name}: {stem} (line: dev EER threshold, {convention})")
    calibrated = _calibrated_metrics(run_dir, model, convention, trials, scores, stem, files)
    if calibrated is not None:
        report["calibrated"] = calibrated
        atomic_write_json(files["metrics"], {k: v for k, v in report.items() if k != "files"})
    runs.append_jsonl(run_dir / runs.METRICS, {
        "event": "evaluate", "dataset": dataset, "subset": subset, "convention": convention,
        "trials": len(trials), "eer": report["eer"],
        "min_tdcf": report["min_tdcf"], "threshold": report["threshold"],
        "seconds": time.perf_counter() - started, "time": time.time(), "ranks": group.world_size})
    report = {**report, "files": {name: str(path) for name, path in files.items()}}
    return group.broadcast(report) if group.enabled else report


def _calibrated_metrics(run_dir: Path, model: nn.Module, convention: str, trials: Sequence[Trial],
                        scores: dict[str, float], stem: str, files: dict[str, Path]) -> dict[str, Any] | None:
    """LLR metrics of the run's calibration applied to ``scores`` (None when the run has no calibration)."""
    path = run_dir / CALIBRATION
    if not path.is_file():
        return None
    calibration = read_calibration(path)
    if calibration.model_hash != model_hash(model):
        return {"applied": False, "why": f"{path} belongs to other weights (recalibrate the run)"}
    if calibration.convention != convention:
        return {"applied": False, "why": f"{path} was fitted on {calibration.convention} scores; these are "
                                         f"{convention} (evaluate --full applies it)"}
    llrs = {utt: float(calibration.llr(score)) for utt, score in scores.items()}
    bonafide = [llrs[t.utt_id] for t in trials if t.label == BONAFIDE]
    spoof = [llrs[t.utt_id] for t in trials if t.label != BONAFIDE]
    files["llr_scores"] = run_dir / "scores" / f"{stem}-llr.txt"
    files["reliability"] = run_dir / "plots" / f"reliability-{stem}.png"
    write_scores(files["llr_scores"], llrs)
    plot_reliability(bonafide, spoof, files["reliability"], title=f"{run_dir.name}: {stem} (calibrated)")
    return {"applied": True, "calibration": str(path), **llr_report(bonafide, spoof),
            "reliability": reliability(bonafide, spoof)}


def format_metrics(report: dict[str, Any]) -> str:
    """The report of :func:`evaluate_run` as text: the metrics table, then the files written."""
    lines = [format_report(report)]
    if report.get("convention"):
        lines += ["", f"scored     {report['convention']}: {report['convention_text']}"]
    calibrated = report.get("calibrated")
    if calibrated and calibrated.get("applied"):
        lines += [f"calibrated act DCF {calibrated['act_dcf']:.4f}, Cllr {calibrated['cllr']:.4f} bits, "
                  f"min Cllr {calibrated['min_cllr']:.4f} bits ({calibrated['calibration']})"]
    elif calibrated:
        lines += [f"calibration not applied: {calibrated['why']}"]
    if report.get("files"):
        lines += ["", "files"] + [f"  {name:<8} {path}" for name, path in report["files"].items()]
    return "\n".join(lines)
