"""The model behind the service: THE one place ``serve``'s model options become a scorer (a PyTorch
:class:`~plastispoof.inference.Detector` or an ONNX :class:`~plastispoof.onnx_runtime.OnnxDetector`, both with
the ``score`` verb's results), its card, and what ``GET /v1/model`` says about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plastispoof.errors import InputError
from plastispoof.results import CalibratedScoring, DecisionRule


def load_scorer(run: str | Path | None = None, onnx: str | Path | None = None, model: str | None = None,
                weights: str | Path | None = None, calibration: str | Path | None = None, threads: int = 1
                ) -> tuple[CalibratedScoring, dict[str, Any] | None]:
    """The scorer and its model card (None for foreign weights, which have none). As ``score``: a run's own
    ``calibration.json`` is used unless ``calibration`` names another; an export carries its own. Exactly one
    of ``run``, ``onnx`` or ``model`` + ``weights``."""
    from plastispoof.card import read_card

    given = [name for name, value in (("--run", run), ("--onnx", onnx), ("--model/--weights", model or weights))
             if value is not None]
    if len(given) != 1:
        raise InputError("say which model serves, with exactly one of --run RUN, --onnx model.onnx or --model "
                         f"NAME --weights FILE (got {', '.join(given) or 'none'})")
    if onnx is not None:
        from plastispoof.onnx_runtime import OnnxDetector

        scorer = OnnxDetector.from_onnx(onnx, threads=threads, use_calibration=calibration is None)
        card = read_card(onnx)
    else:
        from plastispoof.inference import Detector

        scorer = Detector.from_run(run) if run is not None else Detector.from_weights(model, weights)
        card = read_card(run) if run is not None else None
        if calibration is None and run is not None and (Path(run) / "calibration.json").is_file():
            calibration = Path(run) / "calibration.json"
    if calibration is not None:
        scorer.use_calibration(calibration)
    return scorer, card


def model_info(scorer: CalibratedScoring, card: dict[str, Any] | None, rule: DecisionRule,
               limits: dict[str, Any]) -> dict[str, Any]:
    """What ``GET /v1/model`` answers: the card, the calibration in use, the default operating point, the
    input the model scores (windows, hop) and the service's limits."""
    from plastispoof.card import calibration_summary

    calibration = calibration_summary(scorer.calibration.as_dict()) if scorer.calibration is not None else None
    hop = max(scorer.num_samples // 2, 1)
    return {
        "model": scorer.name,
        "model_hash": scorer.model_hash,
        "card": card,
        "calibration": calibration,
        "operating_point": {"name": rule.point, "domain": rule.domain, "threshold": rule.threshold,
                            "prior": rule.prior, "rule": rule.text},
        "input": {"sample_rate": scorer.sample_rate, "window_samples": scorer.num_samples,
                  "window_s": scorer.num_samples / scorer.sample_rate, "hop_s": hop / scorer.sample_rate,
                  "pooling": "mean score over half-overlapping windows of the whole audio (as plastispoof score)"},
        "precision": scorer.precision,
        "limits": limits,
    }
