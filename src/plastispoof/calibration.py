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

import hashlib
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json
from plastispoof.scoring import CONVENTION_TEXT, WINDOW_MEAN

if TYPE_CHECKING:  # PyTorch only for hashing weights: scoring an ONNX export imports this module without it
    import torch
    from torch import nn

CALIBRATION = "calibration.json"
KIND = "plastispoof-calibration"
OPERATING_POINTS = ("eer", "fpr=<X>", "bayes")


# ------------------------------------------------------------------------------------------------- hashing


def model_hash(model: nn.Module) -> str:
    """SHA-256 of a model's weights: every state_dict tensor (name, dtype, shape, bytes) in name order.

    Equal weights give equal hashes whatever device or process they live in; a calibration stores it.

    >>> from torch import nn
    >>> a = nn.Linear(2, 2); b = nn.Linear(2, 2); _ = b.load_state_dict(a.state_dict())
    >>> model_hash(a) == model_hash(b), model_hash(a) == model_hash(nn.Linear(2, 2))
    (True, False)
    """
    return state_hash(model.state_dict())


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """:func:`model_hash` of a state_dict (e.g. the tensors of a run's ``model.safetensors``)."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------- logistic fitting


def logit(p: float) -> float:
    if not 0.0 < p < 1.0:
        raise InputError(f"a prior must lie strictly between 0 and 1, got {p}")
    return math.log(p / (1.0 - p))


def _checked(values: Iterable[float], what: str, names: Sequence[str] | None = None) -> np.ndarray:
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
        gradient = design.T @ (weight * sign * -_sigmoid(-margin))
        return loss, gradient

    start = np.zeros(design.shape[1])
    result = minimize(objective, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": 10000, "gtol": 1e-12, "ftol": 1e-15})
    if not np.all(np.isfinite(result.x)):
        raise InputError("the logistic fit did not converge (are the dev scores all equal?)")
    return result.x[:-1], float(result.x[-1])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def sigmoid(x: float) -> float:
    return float(_sigmoid(np.asarray(x, dtype=float)))


def cllr(bonafide_llr: np.ndarray, spoof_llr: np.ndarray) -> float:
    from plastispoof.metrics import cllr as metrics_cllr

    return metrics_cllr(bonafide_llr, spoof_llr)


def pav_llrs(bonafide_scores: Iterable[float], spoof_scores: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """The best monotone LLRs of these scores (pool-adjacent-violators, ``sklearn.isotonic``), as BOSARIS's
    "optimal calibration": the posterior fitted by isotonic regression, the empirical prior's log-odds taken out.
    Equal scores get the same value (sklearn pools ties)."""
    from sklearn.isotonic import IsotonicRegression

    bonafide = np.asarray(list(bonafide_scores), dtype=float)
    spoof = np.asarray(list(spoof_scores), dtype=float)
    scores = np.concatenate([bonafide, spoof])
    labels = np.concatenate([np.ones(bonafide.size), np.zeros(spoof.size)])
    posterior = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit_transform(scores, labels)
    with np.errstate(divide="ignore"):
        llr = np.log(posterior) - np.log1p(-posterior) - math.log(bonafide.size / spoof.size)
    return llr[: bonafide.size], llr[bonafide.size:]


def min_cllr(bonafide_scores: Iterable[float], spoof_scores: Iterable[float]) -> float:
    """Cllr after the best monotone calibration (:func:`pav_llrs`): the discrimination part of Cllr, in bits.

    >>> min_cllr([1.0, 2.0], [-1.0, 0.0])       # perfectly separated
    0.0
    >>> round(min_cllr([0.0, 0.0], [0.0, 0.0]), 4)  # no information
    1.0
    """
    bonafide_llr, spoof_llr = pav_llrs(bonafide_scores, spoof_scores)
    # An infinite LLR on the right side costs nothing; log(1 + e^-inf) = 0 exactly.
    nats = np.mean(np.logaddexp(0.0, -bonafide_llr)) + np.mean(np.logaddexp(0.0, spoof_llr))
    return float(nats / (2 * math.log(2)))


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
        from plastispoof.metrics import compute_eer

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
    bonafide = _checked(bonafide_scores, "bona fide")
    spoof = _checked(spoof_scores, "spoof")
    labels = np.r_[np.ones(bonafide.size, bool), np.zeros(spoof.size, bool)]
    weights, offset = fit_logistic(np.concatenate([bonafide, spoof])[:, None], labels, prior)
    return Calibration(float(weights[0]), offset, prior, model_hash, bonafide.tolist(), spoof.tolist(),
                       convention, model, dict(extra or {}))


def read_calibration(path: str | Path) -> Calibration:
    """A ``calibration.json`` written by :func:`calibrate` (or an export); anything else is an InputError."""
    import json

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
    try:
        scores = data["dev_scores"]
        known = {"kind", "version", "model", "model_hash", "slope", "offset", "prior", "convention", "dev_scores"}
        return Calibration(float(data["slope"]), float(data["offset"]), float(data["prior"]), data.get("model_hash"),
                           [float(s) for s in scores["bonafide"]], [float(s) for s in scores["spoof"]],
                           data.get("convention", WINDOW_MEAN), data.get("model"),
                           {k: v for k, v in data.items() if k not in known})
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}: calibration field missing or malformed ({err})") from None


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
    from plastispoof.metrics import compute_eer

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


# ------------------------------------------------------------------------------------------- the verb


def calibrate(run: str | Path | None, dataset: str, root: str | Path, subset: str = "dev", *,
              model: str | None = None, weights: str | Path | None = None, out: str | Path | None = None,
              prior: float = 0.5, device: str | None = None) -> tuple[Path, dict[str, Any]]:
    """Fit the calibration of a run (or of foreign ``model`` + ``weights``) on ``subset`` of ``dataset``.

    Writes ``out`` (default ``RUN/calibration.json``; required for foreign weights) only once everything has
    succeeded, and, for a run, refreshes its ``card.json``. Returns ``(path, calibration JSON)``.
    """
    from plastispoof.data.protocols import read_dataset
    from plastispoof.data.trials import BONAFIDE
    from plastispoof.inference import Detector
    from plastispoof.scale.sharding import EvalGroup, rank_device, sharded_scores, world_size
    from plastispoof.scoring import window_mean_scores

    logit(prior)
    if device is None and world_size() > 1:
        device = rank_device()  # each torchrun rank on its own GPU
    if run is not None:
        detector = Detector.from_run(run, device=device)
        out = Path(out) if out is not None else Path(run) / CALIBRATION
    else:
        if out is None:
            raise InputError("foreign weights have no run directory: say where the calibration goes with --out FILE")
        detector = Detector.from_weights(model, weights, device=device)
        out = Path(out)
    trials = read_dataset(dataset, str(root), subset)
    labels = {t.label for t in trials}
    if len(labels) < 2:
        raise InputError(f"{dataset} subset {subset!r} has only {next(iter(labels), 'no')} trials "
                         f"({len(trials)}); calibration needs bona fide and spoof trials")
    group = EvalGroup.from_env()  # under torchrun the dev trials are scored in shards
    try:
        started = time.perf_counter()
        show = group.rank == 0
        scores = sharded_scores(trials, lambda part: window_mean_scores(detector, part, show_progress=show),
                                detector.batch_size, group)
        if scores is None:  # another rank than 0 under torchrun: rank 0 fits and writes
            return group.broadcast(None)
        bonafide_ids = [t.utt_id for t in trials if t.label == BONAFIDE]
        spoof_ids = [t.utt_id for t in trials if t.label != BONAFIDE]
        bonafide = _checked([scores[u] for u in bonafide_ids], "bona fide", bonafide_ids)
        spoof = _checked([scores[u] for u in spoof_ids], "spoof", spoof_ids)
        calibration = fit_calibration(
            bonafide, spoof, prior, model_hash=detector.model_hash, model=detector.name,
            extra={"dev": {"dataset": dataset, "subset": subset, "root": str(root)},
                   "input": {"num_samples": detector.num_samples, "sample_rate": detector.sample_rate},
                   "seconds": round(time.perf_counter() - started, 3),
                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        data = calibration.as_dict()
        atomic_write_json(out, data)
        if run is not None and Path(out).resolve() == (Path(run) / CALIBRATION).resolve():
            from plastispoof.card import write_run_card

            write_run_card(run)
        return group.broadcast((Path(out), data)) if group.enabled else (Path(out), data)
    finally:
        group.close()


def format_calibration(path: Path, data: dict[str, Any]) -> str:
    return "\n".join([
        f"calibration of {data.get('model')} written to {path}",
        f"  llr = {data['slope']:.6g} * score + {data['offset']:.6g}   (prior {data['prior']:g}; "
        f"{data['n_bonafide']} bona fide, {data['n_spoof']} spoof dev trials; {data['convention']})",
        f"  Cllr      {data['cllr_before']:.4f} -> {data['cllr_after']:.4f} bits",
        f"  min Cllr  {data['min_cllr_before']:.4f} -> {data['min_cllr_after']:.4f} bits",
        f"  dev EER   {100 * data['dev_eer']:.2f} % at score {data['eer_threshold']:.6g}",
        f"  weights   sha256 {str(data.get('model_hash'))[:16]}...",
    ])
