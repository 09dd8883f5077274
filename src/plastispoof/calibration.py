"""Calibration: raw detector scores -> natural-log likelihood ratios (bona fide vs spoof), and the operating
points a decision is taken at.

A raw score (higher = more bona fide) says *which* file is more likely bona fide, not *how* likely. An affine
map ``llr = slope * score + offset``, fitted on dev scores by prior-weighted logistic regression (the BOSARIS
convention: the two classes weigh ``prior`` and ``1 - prior`` whatever their counts, and the fitted quantity is
the log-likelihood ratio, the prior's log-odds added back outside), turns it into a number with a meaning:
``p_bonafide = sigmoid(llr + logit(prior))`` at any prior, and the Bayes decision ``llr > -logit(prior)``.

The dev scores are computed exactly as ``plastispoof score`` computes them (:meth:`Detector.score_file`: the
whole file, half-overlapping windows of the model's input length, mean over windows), so a calibration and the
thresholds stored with it hold for what ``score`` returns. The file ``calibration.json`` names that convention,
the SHA-256 of the model weights it belongs to (:func:`model_hash`; scoring with other weights is refused),
the class counts, Cllr and min Cllr before and after, and the dev scores themselves (the ``eer`` and
``fpr=X`` operating points are thresholds on them).

Operating points (:func:`decision_threshold`):

* ``eer``: the dev EER threshold of these scores (:func:`plastispoof.metrics.compute_eer`, grouped ties);
* ``fpr=X``: the lowest threshold that accepts at most a fraction ``X`` of the dev spoofs;
* ``bayes``: ``llr > -logit(prior)``, i.e. ``p_bonafide > 0.5`` at the stated prior.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plastispoof.errors import InputError
from plastispoof.metrics import cllr, compute_eer, logit, min_cllr, sigmoid
from plastispoof.scoring import CONVENTION_TEXT, WINDOW_MEAN

CALIBRATION = "calibration.json"
KIND = "plastispoof-calibration"
OPERATING_POINTS = ("eer", "fpr=<X>", "bayes")


# ---------------------------------------------------------------------------------------- logistic fitting


def finite_scores(values: Iterable[float], what: str, names: Sequence[str] | None = None) -> np.ndarray:
    scores = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        where = f"utterance {names[bad[0]]}" if names is not None else f"position {bad[0]}"
        raise InputError(f"{bad.size} {what} score(s) are NaN or infinite, first at {where}")
    return scores


def fit_logistic(features: np.ndarray, is_bonafide: np.ndarray, prior: float = 0.5) -> tuple[np.ndarray, float]:
    """Weights ``w`` and offset ``b`` of ``llr = features @ w + b`` minimising the prior-weighted cross-entropy

    ``prior * mean_bonafide log(1 + e^-(llr + logit prior)) + (1 - prior) * mean_spoof log(1 + e^(llr + logit
    prior))``, the BOSARIS objective (its value over ``ln 2`` is Cllr at that prior). Solved by
    ``scipy.optimize.minimize`` (L-BFGS-B) with the exact gradient; one column = calibration, several = fusion.

    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(1, 1, 4000), rng.normal(-1, 1, 4000)])[:, None]
    >>> w, b = fit_logistic(x, np.r_[np.ones(4000), np.zeros(4000)])
    >>> round(float(w[0]), 1), abs(round(b, 1))     # two unit-variance Gaussians at +-1: llr = 2 x
    (2.0, 0.0)
    """
    from scipy.optimize import minimize

    features = np.asarray(features, dtype=float)
    labels = np.asarray(is_bonafide, dtype=bool)
    n_bonafide, n_spoof = int(labels.sum()), int((~labels).sum())
    if n_bonafide == 0 or n_spoof == 0:
        raise InputError(f"the dev set has only {'spoof' if n_bonafide == 0 else 'bona fide'} trials "
                         f"({labels.size}); calibration needs both classes")
    prior_log_odds = logit(prior)
    # Per-trial weight: each class sums to its prior; sign turns both terms into log(1 + e^-(sign * t)).
    weight = np.where(labels, prior / n_bonafide, (1 - prior) / n_spoof)
    sign = np.where(labels, 1.0, -1.0)
    design = np.column_stack([features, np.ones(len(features))])

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        margin = sign * (design @ params + prior_log_odds)
        loss = float(np.sum(weight * np.logaddexp(0.0, -margin)))
        # d/dm log(1 + e^-m) = -sigmoid(-m)
        gradient = design.T @ (weight * sign * -sigmoid(-margin))
        return loss, gradient

    start = np.zeros(design.shape[1])
    result = minimize(objective, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": 10000, "gtol": 1e-12, "ftol": 1e-15})
    if not np.all(np.isfinite(result.x)):
        raise InputError("the logistic fit did not converge (are the dev scores all equal?)")
    return result.x[:-1], float(result.x[-1])




# --------------------------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """An affine score -> LLR map and the dev scores it was fitted on (the file ``calibration.json``)."""

    slope: float
    offset: float
    prior: float
    model_hash: str | None
    bonafide_scores: list[float]
    spoof_scores: list[float]
    convention: str = WINDOW_MEAN
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def llr(self, score: float | np.ndarray) -> Any:
        return self.slope * np.asarray(score, dtype=float) + self.offset if isinstance(score, np.ndarray) \
            else self.slope * float(score) + self.offset

    @property
    def n_bonafide(self) -> int:
        return len(self.bonafide_scores)

    @property
    def n_spoof(self) -> int:
        return len(self.spoof_scores)

    def as_dict(self) -> dict[str, Any]:
        bonafide, spoof = np.asarray(self.bonafide_scores), np.asarray(self.spoof_scores)
        eer, threshold = compute_eer(bonafide, spoof)
        return {
            "kind": KIND, "version": 1, "model": self.model, "model_hash": self.model_hash,
            "slope": self.slope, "offset": self.offset, "prior": self.prior,
            "n_bonafide": self.n_bonafide, "n_spoof": self.n_spoof,
            "convention": self.convention, "convention_text": CONVENTION_TEXT[self.convention],
            "direction": "llr = slope * score + offset: natural-log likelihood ratio of bona fide vs spoof",
            "cllr_before": cllr(bonafide, spoof), "min_cllr_before": min_cllr(bonafide, spoof),
            "cllr_after": cllr(self.llr(bonafide), self.llr(spoof)),
            "min_cllr_after": min_cllr(self.llr(bonafide), self.llr(spoof)),
            "dev_eer": eer, "eer_threshold": threshold,
            "solver": "scipy.optimize.minimize (L-BFGS-B), prior-weighted logistic regression (BOSARIS)",
            **self.extra,
            "dev_scores": {"bonafide": [float(s) for s in self.bonafide_scores],
                           "spoof": [float(s) for s in self.spoof_scores]},
        }


def fit_calibration(bonafide_scores: Iterable[float], spoof_scores: Iterable[float], prior: float = 0.5, *,
                    model_hash: str | None = None, model: str | None = None, convention: str = WINDOW_MEAN,
                    extra: dict[str, Any] | None = None) -> Calibration:
    """Fit ``llr = slope * score + offset`` on dev scores (:func:`fit_logistic`)."""
    bonafide = finite_scores(bonafide_scores, "bona fide")
    spoof = finite_scores(spoof_scores, "spoof")
    labels = np.r_[np.ones(bonafide.size, bool), np.zeros(spoof.size, bool)]
    weights, offset = fit_logistic(np.concatenate([bonafide, spoof])[:, None], labels, prior)
    return Calibration(float(weights[0]), offset, prior, model_hash, bonafide.tolist(), spoof.tolist(),
                       convention, model, dict(extra or {}))


def read_calibration(path: str | Path) -> Calibration:
    """A ``calibration.json`` written by :func:`calibrate` (or an export); anything else is an InputError."""
    path = Path(path)
    if path.is_dir():
        path = path / CALIBRATION
    if not path.is_file():
        raise InputError(f"calibration file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is not a calibration file (not JSON)") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise InputError(f"{path} is not a plastispoof calibration (no \"kind\": \"{KIND}\")")
    return calibration_from_dict(data, str(path))


def calibration_from_dict(data: dict[str, Any], source: str = "the calibration") -> Calibration:
    """The :class:`Calibration` of a ``calibration.json`` object (also stored in ONNX exports' metadata)."""
    try:
        scores = data["dev_scores"]
        known = {"kind", "version", "model", "model_hash", "slope", "offset", "prior", "convention", "dev_scores"}
        return Calibration(float(data["slope"]), float(data["offset"]), float(data["prior"]), data.get("model_hash"),
                           [float(s) for s in scores["bonafide"]], [float(s) for s in scores["spoof"]],
                           data.get("convention", WINDOW_MEAN), data.get("model"),
                           {k: v for k, v in data.items() if k not in known})
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{source}: calibration field missing or malformed ({err})") from None


# ------------------------------------------------------------------------------------------ operating points


def parse_operating_point(text: str) -> tuple[str, float | None]:
    """``"eer"`` | ``"bayes"`` | ``"fpr=0.01"`` -> (kind, value)."""
    text = text.strip().lower()
    if text in ("eer", "bayes"):
        return text, None
    if text.startswith("fpr="):
        try:
            value = float(text[4:])
        except ValueError:
            value = float("nan")
        if not 0.0 < value < 1.0:
            raise InputError(f"operating point {text!r}: the false-positive rate must lie strictly between 0 and 1")
        return "fpr", value
    raise InputError(f"unknown operating point {text!r}; use eer, fpr=<rate> (e.g. fpr=0.01) or bayes")


def fpr_threshold(spoof_scores: Sequence[float], rate: float) -> float:
    """The lowest threshold t (a dev spoof score) with at most ``rate`` of the spoofs scoring above it.

    A rate finer than one dev spoof cannot be told apart from zero on that dev set: InputError.

    >>> fpr_threshold([0.1, 0.2, 0.3, 0.4], 0.25)   # 1 of 4 above 0.3
    0.3
    """
    spoof = np.sort(np.asarray(spoof_scores, dtype=float))
    if spoof.size == 0:
        raise InputError("no dev spoof scores to set a false-positive rate on")
    if rate < 1.0 / spoof.size:
        raise InputError(f"operating point fpr={rate:g} cannot be reached: the dev set has {spoof.size} spoofs, "
                         f"so the finest rate it measures is 1/{spoof.size} = {1 / spoof.size:.3g}")
    above = spoof.size - np.searchsorted(spoof, spoof, side="right")  # spoofs strictly above each candidate
    allowed = np.flatnonzero(above <= math.floor(rate * spoof.size + 1e-9))
    return float(spoof[allowed[0]])


def decision_threshold(operating_point: str, calibration: Calibration | None, run_threshold: float | None,
                       prior: float = 0.5) -> tuple[str, float | None]:
    """``(domain, threshold)``: ``score`` or ``llr`` is called bona fide when above ``threshold``.

    ``eer`` prefers the calibration's dev EER threshold (computed on scores pooled like ``score`` pools them)
    and falls back to the run's own threshold (``run_threshold``: None when the run has none of this
    convention); ``fpr=X`` and ``bayes`` need a calibration. No way to decide: InputError.
    """
    kind, value = parse_operating_point(operating_point)
    if kind == "bayes":
        if calibration is None:
            raise InputError("operating point bayes needs LLRs: pass --calibration FILE (plastispoof calibrate)")
        return "llr", -logit(prior)
    if kind == "fpr":
        if calibration is None:
            raise InputError(f"operating point {operating_point} needs dev spoof scores: pass --calibration FILE")
        return "score", fpr_threshold(calibration.spoof_scores, value)
    if calibration is not None:
        return "score", compute_eer(calibration.bonafide_scores, calibration.spoof_scores)[1]
    if run_threshold is None:
        raise InputError("operating point eer cannot be reached: this model has no dev EER threshold for scores "
                         "pooled over whole files; pass --calibration FILE (plastispoof calibrate)")
    return "score", run_threshold
