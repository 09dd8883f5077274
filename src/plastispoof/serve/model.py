"""The model behind the service: the scorer ``serve``'s model options name (through
:func:`plastispoof.detectors.load_detector`, as every scoring verb), its card, and what ``GET /v1/model`` says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plastispoof.results import CalibratedScoring, DecisionRule


def load_scorer(run: str | Path | None = None, onnx: str | Path | None = None, model: str | None = None,
                weights: str | Path | None = None, calibration: str | Path | None = None, precision: str = "float32"
                ) -> tuple[CalibratedScoring, dict[str, Any] | None]:
    """The scorer (:func:`plastispoof.detectors.load_detector`: exactly one of ``run``, ``onnx`` or ``model`` +
    ``weights``, with ``calibration`` or the run's / export's own, as ``score``) and its model card (None for
    foreign weights, which have none)."""
    from plastispoof.card import read_card
    from plastispoof.detectors import load_detector

    scorer = load_detector(run, model, weights, onnx, calibration, precision)
    card = read_card(run if run is not None else onnx) if run is not None or onnx is not None else None
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
