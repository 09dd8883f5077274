"""Detection metrics of spoofing countermeasures, computed the way the ASVspoof scorers compute them.

Scores: higher = more bona fide. Every operating point is a threshold ``t`` taken from the scores themselves;
a trial is called bona fide when its score is **above** ``t``, so at ``t``

- miss rate (frr) = fraction of bona fide scores ``<= t``,
- false-alarm rate (far) = fraction of spoof scores ``> t``,

plus one point below every score (frr 0, far 1). Tied scores are handled by one of two rules (``ties``):

- ``grouped`` (the default): equal scores form *one* threshold, so every point is a threshold a detector could
  really use, and the result cannot depend on the order of the trials.
- ``official``: the sweep of the official ASVspoof 2019/2021 scorers (``compute_det_curve``), which has one
  point per *trial*: all scores in one stable ascending sort with the bona fide scores listed first, the counts
  taken after each trial. Among equal scores the bona fide trials are therefore passed first, and the points
  between them split a tie (no threshold gives them). Use it to compare a number with a published one digit
  for digit.

Without ties both rules give identical EERs and minimum costs.

- :func:`compute_eer`: the sweep point where frr and far are closest, EER = their mean; the official
  convention, no interpolation.
- :func:`min_tdcf`: ASVspoof 2019 (legacy) and ASVspoof 2021 (revised) tandem detection cost functions.
- :func:`min_dcf`, :func:`act_dcf`, :func:`cllr`: the ASVspoof 5 track-1 metrics.
- :func:`compute_report`: all of them for scores against protocol trials, as the metrics JSON of
  ``plastispoof metrics --json``.

Everything here is a pure function of scores already in memory; reading score files and protocols is
:mod:`plastispoof.score_files`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plastispoof.bootstrap import eer_cis_for_trials
from plastispoof.data.trials import BONAFIDE, Trial
from plastispoof.errors import InputError

TDCF_FORMS = ("2019", "2021")
TIE_RULES = ("grouped", "official")

# Cost model of the ASVspoof 2019 and 2021 t-DCF packages: the 2019 (legacy) one names the costs
# Cmiss_asv = Cmiss_cm = 1, Cfa_asv = 10, Cfa_cm = 10; the 2021 one Cmiss = 1, Cfa = 10, Cfa_spoof = 10.
# The ASVspoof 5 DCF uses the same Pspoof, Cmiss and Cfa.
P_SPOOF = 0.05
P_TARGET = (1 - P_SPOOF) * 0.99
P_NONTARGET = (1 - P_SPOOF) * 0.01
C_MISS = 1.0
C_FA = 10.0
C_FA_SPOOF = 10.0


@dataclass(frozen=True)
class AsvScores:
    """Scores of an ASV (speaker verification) system on target, non-target and spoof trials."""

    target: np.ndarray
    nontarget: np.ndarray
    spoof: np.ndarray


@dataclass(frozen=True)
class AsvErrorRates:
    """ASV error rates at its operating point: false alarms on non-targets, misses on targets, spoofs accepted."""

    pfa: float
    pmiss: float
    pfa_spoof: float


# Used when no ASV scores are given: the organisers' default ASV of the ASVspoof 5 evaluation package, rounded
# to 0.0188 / 0.0188 / 0.461 in docs/methods.md.
POOLED_ASV_RATES = AsvErrorRates(pfa=0.01881016557566423, pmiss=0.01880141010575793, pfa_spoof=0.4607082907604729)


def _as_scores(values: Iterable[float], what: str) -> np.ndarray:
    scores = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float).ravel()
    if scores.size == 0:
        raise InputError(f"no {what} scores were given; both classes are needed")
    if not np.isfinite(scores).all():
        raise InputError(f"{int((~np.isfinite(scores)).sum())} {what} scores are NaN or infinite")
    return scores


def check_ties(ties: str) -> str:
    if ties not in TIE_RULES:
        raise InputError(f"unknown tie rule {ties!r}; use one of {', '.join(TIE_RULES)}")
    return ties


def det_curve(bonafide_scores: Iterable[float], spoof_scores: Iterable[float], ties: str = "grouped"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss rates, false-alarm rates and thresholds of every operating point (see the module notes).

    The first point lies below all scores (frr 0, far 1); the last is the highest score (frr 1, far 0).
    ``ties="official"`` gives the per-trial sweep of the official scorers (:func:`_det_curve_per_trial`).

    >>> frr, far, thresholds = det_curve([0.4, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.5])
    >>> frr.tolist()
    [0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.5, 0.75, 1.0]
    >>> far.tolist()
    [1.0, 0.75, 0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0]
    >>> thresholds[1:].tolist()
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.8, 0.9]
    """
    if check_ties(ties) == "official":
        return _det_curve_per_trial(_as_scores(bonafide_scores, "bona fide"), _as_scores(spoof_scores, "spoof"))
    bonafide = np.sort(_as_scores(bonafide_scores, "bona fide"))
    spoof = np.sort(_as_scores(spoof_scores, "spoof"))
    thresholds = np.unique(np.concatenate([bonafide, spoof]))
    rejected = np.searchsorted(bonafide, thresholds, side="right")
    accepted = spoof.size - np.searchsorted(spoof, thresholds, side="right")
    # count / total, as the official scorer divides, so compute_eer picks the same point on equal distances
    frr = np.concatenate([[0], rejected]) / bonafide.size
    far = np.concatenate([[spoof.size], accepted]) / spoof.size
    return frr, far, np.concatenate([[np.nextafter(thresholds[0], -np.inf)], thresholds])


def _det_curve_per_trial(bonafide: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The official scorers' sweep: one point per trial, ties split with the bona fide trials first.

    Bona fide and spoof scores are joined (bona fide first) and put in ascending order by a *stable* sort, so
    equal scores keep that order. After the k-th trial of the sorted list, the miss rate is the share of bona
    fide trials among the first k and the false-alarm rate the share of spoof trials after them; a point before
    all trials (frr 0, far 1) comes first. Its threshold is the k-th score, and 0.001 below the lowest score for
    the first point. The arithmetic (float counts, one division each) is the official one, so the rates and
    everything derived from them agree to the last digit.

    >>> frr, far, thresholds = _det_curve_per_trial(np.array([1.0, 2.0]), np.array([2.0, 0.0]))
    >>> frr.tolist(), far.tolist()
    ([0.0, 0.0, 0.5, 1.0, 1.0], [1.0, 0.5, 0.5, 0.5, 0.0])
    >>> thresholds.tolist()
    [-0.001, 0.0, 1.0, 2.0, 2.0]
    """
    scores = np.concatenate([bonafide, spoof])
    is_bonafide = np.concatenate([np.ones(bonafide.size), np.zeros(spoof.size)])
    order = np.argsort(scores, kind="mergesort")  # stable: among equal scores, bona fide (listed first) first
    bonafide_so_far = np.cumsum(is_bonafide[order])
    spoof_after = spoof.size - (np.arange(1, scores.size + 1) - bonafide_so_far)
    frr = np.concatenate([[0], bonafide_so_far / bonafide.size])
    far = np.concatenate([[1], spoof_after / spoof.size])
    thresholds = np.concatenate([[scores[order[0]] - 0.001], scores[order]])
    return frr, far, thresholds


def compute_eer(bonafide_scores: Iterable[float], spoof_scores: Iterable[float], ties: str = "grouped"
                ) -> tuple[float, float]:
    """Equal error rate as a fraction, and its threshold (scores above it are called bona fide).

    Official ASVspoof convention: over the sweep, take the point where miss and false-alarm rates are closest
    and report their mean (no interpolation between points). The rates are computed and compared in floating
    point exactly as the official scorer does, so that equally close points resolve the same way. ``ties``
    chooses how equal scores are swept (module notes); ``"official"`` reproduces the official scorer's EER and
    threshold.

    Four bona fide and four spoof trials; one spoof (0.5) outscores one bona fide (0.4):

    >>> compute_eer([0.4, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.5])
    (0.25, 0.4)
    >>> compute_eer([1.0, 2.0], [-1.0, 0.0])  # perfectly separated
    (0.0, 0.0)

    With ties across the classes the two rules differ: grouped, the four trials at 2 move together; official,
    the two bona fide trials at 2 are passed before the two spoof ones.

    >>> bonafide, spoof = [1.0, 2.0, 2.0, 3.0], [0.0, 2.0, 2.0, 1.5]
    >>> compute_eer(bonafide, spoof), compute_eer(bonafide, spoof, ties="official")
    ((0.375, 1.5), (0.5, 2.0))
    """
    frr, far, thresholds = det_curve(bonafide_scores, spoof_scores, ties)
    best = int(np.argmin(np.abs(frr - far)))
    return float((frr[best] + far[best]) / 2), float(thresholds[best])


def trials_eer(trials: Iterable[Trial], scores: dict[str, float], ties: str = "grouped") -> tuple[float, float]:
    """:func:`compute_eer` of scored trials, split into the two classes by their labels: the one place that
    turns "a score per utterance id" into an EER (the trainer's dev EER, a detector's threshold, the recipes).

    >>> from pathlib import Path
    >>> trials = [Trial(u, Path(u), label) for u, label in (("b1", "bonafide"), ("b2", "bonafide"),
    ...                                                    ("s1", "spoof"), ("s2", "spoof"))]
    >>> trials_eer(trials, {"b1": 0.9, "b2": 0.2, "s1": 0.1, "s2": 0.4})
    (0.5, 0.2)
    """
    bonafide, spoof = [], []
    for trial in trials:
        (bonafide if trial.label == BONAFIDE else spoof).append(scores[trial.utt_id])
    return compute_eer(bonafide, spoof, ties)


def asv_error_rates(asv: AsvScores, ties: str = "grouped") -> AsvErrorRates:
    """ASV error rates at the ASV's own EER threshold, as the ASVspoof packages fix its operating point.

    Like those packages, a score equal to the threshold counts as accepted here.

    >>> asv = AsvScores(target=np.array([2.0, 3.0, 4.0, 0.5]), nontarget=np.array([-2.0, -1.0, 0.0, 1.0]),
    ...                 spoof=np.array([1.5, 2.5, -0.5, 3.5]))
    >>> asv_error_rates(asv)
    AsvErrorRates(pfa=0.25, pmiss=0.0, pfa_spoof=0.75)
    """
    target = _as_scores(asv.target, "ASV target")
    nontarget = _as_scores(asv.nontarget, "ASV non-target")
    spoof = _as_scores(asv.spoof, "ASV spoof")
    _, threshold = compute_eer(target, nontarget, ties)
    return AsvErrorRates(pfa=float(np.mean(nontarget >= threshold)), pmiss=float(np.mean(target < threshold)),
                         pfa_spoof=float(np.mean(spoof >= threshold)))


def check_tdcf_form(form: str) -> str:
    if str(form) not in TDCF_FORMS:
        raise InputError(f"unknown t-DCF form {form!r}; use one of {', '.join(TDCF_FORMS)}")
    return str(form)


def _tdcf_weights(rates: AsvErrorRates, form: str) -> tuple[float, float, float, float]:
    """(C0, C1, C2, normaliser) of t-DCF(t) = (C0 + C1 * Pmiss_cm(t) + C2 * Pfa_cm(t)) / normaliser."""
    if form == "2019":
        # Kinnunen et al., Odyssey 2018, as in the ASVspoof 2019 package: no constant term, normalised by the
        # cost of the better of the two trivial CMs (accept all, reject all).
        c0 = 0.0
        c1 = P_TARGET * (C_MISS - C_MISS * rates.pmiss) - P_NONTARGET * C_FA * rates.pfa
        c2 = C_FA_SPOOF * P_SPOOF * rates.pfa_spoof
        normaliser = min(c1, c2)
    else:
        # Kinnunen et al., TASLP 2020, as in the ASVspoof 2021 package: C0 is the cost of the ASV alone.
        c0 = P_TARGET * C_MISS * rates.pmiss + P_NONTARGET * C_FA * rates.pfa
        c1 = P_TARGET * C_MISS - c0
        c2 = P_SPOOF * C_FA_SPOOF * rates.pfa_spoof
        normaliser = c0 + min(c1, c2)
    if c1 < 0 or c2 < 0 or normaliser <= 0:
        raise InputError(f"the ASV error rates (Pfa {rates.pfa:.4g}, Pmiss {rates.pmiss:.4g}, spoof Pfa "
                         f"{rates.pfa_spoof:.4g}) give t-DCF weights C1 {c1:.4g}, C2 {c2:.4g} that cannot be "
                         "normalised; check the keys of the ASV score file")
    return c0, c1, c2, normaliser


def min_tdcf(bonafide_cm: Iterable[float], spoof_cm: Iterable[float], *, asv: AsvScores | None = None,
             form: str = "2019", ties: str = "grouped") -> float:
    """Minimum normalised tandem detection cost function of a CM in front of an ASV system.

    ``form="2019"``: the legacy ASVspoof 2019 formulation,
    ``C1 * Pmiss_cm(t) + C2 * Pfa_cm(t)`` over ``min(C1, C2)`` with
    ``C1 = Ptar (Cmiss_cm - Cmiss_asv Pmiss_asv) - Pnon Cfa_asv Pfa_asv`` and ``C2 = Cfa_cm Pspoof Pfa_spoof_asv``.
    ``form="2021"``: the revised ASVspoof 2021 formulation,
    ``C0 + C1 * Pmiss_cm(t) + C2 * Pfa_cm(t)`` over ``C0 + min(C1, C2)`` with the ASV-only cost
    ``C0 = Ptar Cmiss Pmiss_asv + Pnon Cfa Pfa_asv``, ``C1 = Ptar Cmiss - C0``, ``C2 = Pspoof Cfa_spoof Pfa_spoof_asv``.
    Cost model of both packages: Pspoof 0.05, Ptar 0.95 * 0.99, Pnon 0.95 * 0.01, miss cost 1, false-alarm
    costs 10. A CM that accepts or rejects everything scores 1 or more; lower is better.

    ``asv``: the organisers' ASV scores; its operating point is its EER threshold (:func:`asv_error_rates`).
    ``ties``: how equal scores are swept, for the CM and the ASV (module notes).
    Without them, the pooled fallback :data:`POOLED_ASV_RATES` is used: Pfa_asv = Pmiss_asv = 0.0188 and
    Pfa_spoof_asv = 0.461, the default ASV of the ASVspoof 5 evaluation package (docs/methods.md).

    >>> bonafide, spoof = [0.4, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.5]
    >>> round(min_tdcf(bonafide, spoof), 4)
    0.25
    >>> round(min_tdcf(bonafide, spoof, form="2021"), 4)
    0.3085
    """
    rates = asv_error_rates(asv, ties) if asv is not None else POOLED_ASV_RATES
    c0, c1, c2, normaliser = _tdcf_weights(rates, check_tdcf_form(form))
    pmiss_cm, pfa_cm, _ = det_curve(bonafide_cm, spoof_cm, ties)
    return float(np.min((c0 + c1 * pmiss_cm + c2 * pfa_cm) / normaliser))


def min_dcf(bonafide_scores: Iterable[float], spoof_scores: Iterable[float], p_spoof: float = P_SPOOF,
            c_miss: float = C_MISS, c_fa: float = C_FA, ties: str = "grouped") -> float:
    """ASVspoof 5 minimum detection cost over all thresholds of the sweep.

    ``[(1 - Pspoof) Cmiss Pmiss(t) + Pspoof Cfa Pfa(t)] / min((1 - Pspoof) Cmiss, Pspoof Cfa)``; with the
    defaults the normaliser is 0.5, so a system that accepts or rejects everything scores 1.

    >>> min_dcf([0.4, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.5])  # (0.95 * 0 + 0.5 * 0.25) / 0.5
    0.25
    """
    frr, far, _ = det_curve(bonafide_scores, spoof_scores, ties)
    return float(np.min(_dcf(frr, far, p_spoof, c_miss, c_fa)))


def act_dcf(bonafide_scores: Iterable[float], spoof_scores: Iterable[float], p_spoof: float = P_SPOOF,
            c_miss: float = C_MISS, c_fa: float = C_FA, threshold: float | None = None) -> float:
    """ASVspoof 5 actual detection cost at a fixed threshold (normalised as :func:`min_dcf`).

    ``threshold=None`` takes the Bayes threshold for log-likelihood-ratio scores,
    ``-ln[(1 - Pspoof) Cmiss / (Pspoof Cfa)]`` = ``-ln(1.9)`` with the defaults; so it measures calibration too.
    As in the ASVspoof 5 package, bona fide scores below the threshold are misses and spoof scores at or above
    it are false alarms.

    >>> round(act_dcf([2.0, 1.0, -1.0], [-3.0, -2.0, 0.5]), 4)  # (0.95 / 3 + 0.5 / 3) / 0.5
    0.9667
    """
    bonafide = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    if threshold is None:
        threshold = -math.log((1 - p_spoof) * c_miss / (p_spoof * c_fa))
    return float(_dcf(np.mean(bonafide < threshold), np.mean(spoof >= threshold), p_spoof, c_miss, c_fa))


def _dcf(frr: Any, far: Any, p_spoof: float, c_miss: float, c_fa: float) -> Any:
    cost = (1 - p_spoof) * c_miss * frr + p_spoof * c_fa * far
    return cost / min((1 - p_spoof) * c_miss, p_spoof * c_fa)


def cllr(bonafide_scores: Iterable[float], spoof_scores: Iterable[float]) -> float:
    """Log-likelihood-ratio cost in bits, reading scores as natural-log LLRs of bona fide vs spoof.

    ``0.5 [mean log2(1 + e^-s_bonafide) + mean log2(1 + e^s_spoof)]``: 0 for confident correct scores, 1 for an
    uninformative system that always says 0, more than 1 for miscalibrated or wrong scores.

    >>> cllr([0.0], [0.0])
    1.0
    >>> round(cllr([10.0, 12.0], [-10.0, -12.0]), 4)
    0.0
    """
    bonafide = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    # logaddexp(0, x) = log(1 + e^x) without overflow for large scores
    nats = np.mean(np.logaddexp(0.0, -bonafide)) + np.mean(np.logaddexp(0.0, spoof))
    return float(nats / (2 * math.log(2)))


# ------------------------------------------------------------------------------------- log-odds and Cllr


def logit(p: float) -> float:
    """Log-odds of a probability (a prior), refusing 0 and 1.

    >>> logit(0.5), round(logit(0.9), 4)
    (0.0, 2.1972)
    """
    if not 0.0 < p < 1.0:
        raise InputError(f"a prior must lie strictly between 0 and 1, got {p}")
    return math.log(p / (1.0 - p))


def sigmoid(x: float | np.ndarray) -> Any:
    """The logistic function, stable for large ``|x|``: a float for a float, an array for an array.

    >>> sigmoid(0.0), sigmoid(np.array([-800.0, 800.0])).tolist()
    (0.5, [0.0, 1.0])
    """
    values = np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=float)))
    return float(values) if values.ndim == 0 else values


def pav_llrs(bonafide_scores: Iterable[float], spoof_scores: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """The best monotone LLRs of these scores (pool-adjacent-violators, ``sklearn.isotonic``), as BOSARIS's
    "optimal calibration": the posterior fitted by isotonic regression, the empirical prior's log-odds taken out.
    Equal scores get the same value (sklearn pools ties)."""
    from sklearn.isotonic import IsotonicRegression  # scikit-learn is slow to import; only min Cllr needs it

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


def _condition(trial: Trial, column: str) -> Any:
    if column in ("attack", "speaker", "subset"):
        return getattr(trial, column)
    return trial.meta.get(column, "-")


def _check_ids(trials: Sequence[Trial], scores: dict[str, float]) -> None:
    protocol_ids = [trial.utt_id for trial in trials]
    known = set(protocol_ids)
    if len(known) != len(protocol_ids):
        repeated = [utt for utt, count in Counter(protocol_ids).items() if count > 1]
        raise InputError(f"the protocol lists {len(repeated)} utterances twice, e.g. {', '.join(repeated[:3])}")
    missing = [utt for utt in protocol_ids if utt not in scores]
    if missing:
        raise InputError(f"{len(missing)} of {len(protocol_ids)} protocol trials have no score, "
                         f"e.g. {', '.join(missing[:3])}")
    extra = [utt for utt in scores if utt not in known]
    if extra:
        raise InputError(f"{len(extra)} of {len(scores)} scores are for utterances not in the protocol, "
                         f"e.g. {', '.join(extra[:3])}")


def compute_report(trials: Sequence[Trial], scores: dict[str, float], *, asv: AsvScores | None = None,
                   tdcf_form: str = "2019", breakdown: Sequence[str] = ("attack",), ties: str = "grouped",
                   llr: bool = False, bootstrap: int = 0) -> dict[str, Any]:
    """Every metric of ``scores`` against the protocol ``trials``: the metrics JSON object.

    Keys: ``eer`` (fraction), ``threshold`` (scores above it are called bona fide), ``n_bonafide``, ``n_spoof``,
    ``min_tdcf`` with ``tdcf_form`` and ``tdcf_asv_source`` ("asv-scores" or "pooled-fallback") and
    ``asv_rates``, ``min_dcf``, ``act_dcf``, ``cllr``, ``per_attack`` ({attack: EER of all bona fide trials vs
    that attack's trials}, always present), and for every other column in ``breakdown`` (a Trial field or a
    ``Trial.meta`` key, e.g. "codec") ``per_<column>`` = {value: EER of the trials with that value, or None when
    one class is absent there}, and ``ties`` (the tie rule every figure was computed with, module notes).
    ``scores_are_llr`` says whether ``act_dcf`` and ``cllr`` mean anything: ``llr=True`` (the scores are
    natural-log LLRs) adds ``min_cllr``. ``bootstrap`` > 0 adds 95 % bootstrap intervals of every EER
    (``eer_ci95``, ``per_<column>_ci95``, ``bootstrap``: :func:`plastispoof.bootstrap.eer_cis_for_trials`).

    Every protocol trial needs a score and every score a protocol trial; both classes must be present.

    >>> from pathlib import Path
    >>> scores = {"b1": 0.4, "b2": 0.7, "b3": 0.8, "b4": 0.9, "s1": 0.1, "s2": 0.2, "s3": 0.3, "s4": 0.5}
    >>> trials = [Trial(utt, Path(f"{utt}.flac"), "bonafide") for utt in ("b1", "b2", "b3", "b4")] + [
    ...     Trial(utt, Path(f"{utt}.flac"), "spoof", attack=attack)
    ...     for utt, attack in (("s1", "A01"), ("s2", "A01"), ("s3", "A02"), ("s4", "A02"))]
    >>> report = compute_report(trials, scores)
    >>> report["eer"], report["n_bonafide"], report["per_attack"]
    (0.25, 4, {'A01': 0.0, 'A02': 0.375})
    """
    tdcf_form, ties = check_tdcf_form(tdcf_form), check_ties(ties)
    _check_ids(trials, scores)
    bonafide = np.array([scores[t.utt_id] for t in trials if t.label == BONAFIDE])
    spoof_trials = [t for t in trials if t.label != BONAFIDE]
    spoof = np.array([scores[t.utt_id] for t in spoof_trials])
    if bonafide.size == 0 or spoof.size == 0:
        raise InputError(f"the protocol's {len(trials)} trials are all {'spoof' if bonafide.size == 0 else 'bona fide'}"
                         "; metrics need both bona fide and spoof trials")
    eer, threshold = compute_eer(bonafide, spoof, ties)
    rates = asv_error_rates(asv, ties) if asv is not None else POOLED_ASV_RATES
    report: dict[str, Any] = {
        "eer": eer,
        "threshold": threshold,
        "n_bonafide": int(bonafide.size),
        "n_spoof": int(spoof.size),
        "min_tdcf": min_tdcf(bonafide, spoof, asv=asv, form=tdcf_form, ties=ties),
        "tdcf_form": tdcf_form,
        "tdcf_asv_source": "asv-scores" if asv is not None else "pooled-fallback",
        "asv_rates": {"pfa": rates.pfa, "pmiss": rates.pmiss, "pfa_spoof": rates.pfa_spoof},
        "min_dcf": min_dcf(bonafide, spoof, ties=ties),
        "act_dcf": act_dcf(bonafide, spoof),
        "cllr": cllr(bonafide, spoof),
        "scores_are_llr": llr,
        "ties": ties,
    }
    if llr:
        report["min_cllr"] = min_cllr(bonafide, spoof)
    by_attack: dict[str, list[float]] = defaultdict(list)
    for trial in spoof_trials:
        by_attack[trial.attack].append(scores[trial.utt_id])
    report["per_attack"] = {attack: compute_eer(bonafide, by_attack[attack], ties)[0]
                            for attack in sorted(by_attack)}
    for column in breakdown:
        if column != "attack":
            report[f"per_{column}"] = _eer_per_condition(trials, scores, column, ties)
    if bootstrap:
        report.update(eer_cis_for_trials(trials, scores, breakdown, resamples=bootstrap))
    return report


def _eer_per_condition(trials: Sequence[Trial], scores: dict[str, float], column: str, ties: str = "grouped"
                       ) -> dict[str, float | None]:
    if column not in ("speaker", "subset") and not any(column in trial.meta for trial in trials):
        raise InputError(f"no protocol trial has a {column!r} column to break the EER down by")
    classes: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for trial in trials:
        bonafide, spoof = classes[str(_condition(trial, column))]
        (bonafide if trial.label == BONAFIDE else spoof).append(scores[trial.utt_id])
    return {value: compute_eer(*classes[value], ties)[0] if all(classes[value]) else None
            for value in sorted(classes)}


def _table(title: str, column: str, rows: dict[str, float | None],
           intervals: dict[str, list[float] | None] | None = None) -> list[str]:
    width = max([len(column)] + [len(name) for name in rows])
    lines = ["", title, f"  {column:<{width}}  EER %" + ("   95 % CI" if intervals else "")]
    for name, eer in rows.items():
        interval = (intervals or {}).get(name)
        lines.append(f"  {name:<{width}}  " + ("n/a" if eer is None else f"{100 * eer:6.2f}")
                     + (f"   [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]" if interval else ""))
    return lines


def format_report(report: dict[str, Any]) -> str:
    """The metrics of :func:`compute_report` as a plain-text table (EER in %)."""
    interval = report.get("eer_ci95")
    boot = report.get("bootstrap", {})
    llr = report.get("scores_are_llr")
    llr_lines = [
        f"act DCF     {report['act_dcf']:.4f}   (threshold -ln 1.9, for LLR scores)",
        f"Cllr        {report['cllr']:.4f} bits",
    ] + ([f"min Cllr    {report['min_cllr']:.4f} bits"] if "min_cllr" in report else [])
    if llr is False:
        llr_lines = ["act DCF, Cllr: not shown (the scores are not LLRs; pass --llr for calibrated scores)"]
    lines = [
        f"EER         {100 * report['eer']:.2f} %   (threshold {report['threshold']:.6g}; higher = bona fide; "
        f"ties: {report.get('ties', 'grouped')})",
    ] + ([f"  95 % CI   [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}] %   (bootstrap, {boot.get('resamples')} "
          f"resamples of {boot.get('unit')}s, seed {boot.get('seed')})"] if interval else []) + [
        f"min t-DCF   {report['min_tdcf']:.4f}   ({report['tdcf_form']} form, ASV: {report['tdcf_asv_source']})",
        f"min DCF     {report['min_dcf']:.4f}",
    ] + llr_lines + [
        f"trials      {report['n_bonafide']} bona fide, {report['n_spoof']} spoof",
    ]
    lines += _table("per attack (all bona fide vs that attack)", "attack", report["per_attack"],
                    report.get("per_attack_ci95"))
    for key, rows in report.items():
        if key.startswith("per_") and key != "per_attack" and not key.endswith("_ci95"):
            column = key.removeprefix("per_")
            lines += _table(f"per {column} (trials with that {column})", column, rows, report.get(f"{key}_ci95"))
    return "\n".join(lines)
