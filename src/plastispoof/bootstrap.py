"""95 % percentile bootstrap intervals of an EER and of its per-condition EERs, from one set of resamples.

Utterances are resampled within each class (class sizes fixed); when the protocol names speakers, whole speakers
are resampled instead (their bona fide and spoof trials together), because trials of one speaker are not
independent. Each resample is a vector of integer weights over the trials, so the sweep is the grouped-ties sweep
of :func:`plastispoof.metrics.det_curve` with weights: with unit weights it gives
:func:`plastispoof.metrics.compute_eer` exactly. Pure maths on scores in memory, below :mod:`plastispoof.metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from plastispoof.data.trials import BONAFIDE

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def resampling_unit(speakers: Sequence[str | None]) -> str:
    """``speaker`` when the protocol names at least two speakers for every trial, else ``utterance``."""
    named = [s for s in speakers if s not in (None, "", "-")]
    return "speaker" if len(named) == len(speakers) and len(set(named)) >= 2 else "utterance"


def _weighted_eers(sorted_bonafide: np.ndarray, sorted_spoof: np.ndarray, bonafide_weights: np.ndarray,
                   spoof_weights: np.ndarray) -> np.ndarray:
    """EER of each row of weights (rows: resamples; columns in the sorted order), grouped-ties sweep."""
    thresholds = np.unique(np.concatenate([sorted_bonafide, sorted_spoof]))
    rejected_at = np.searchsorted(sorted_bonafide, thresholds, side="right")
    spoof_at = np.searchsorted(sorted_spoof, thresholds, side="right")
    bonafide_cum = np.concatenate([np.zeros((len(bonafide_weights), 1)), np.cumsum(bonafide_weights, 1)], 1)
    spoof_cum = np.concatenate([np.zeros((len(spoof_weights), 1)), np.cumsum(spoof_weights, 1)], 1)
    bonafide_total, spoof_total = bonafide_cum[:, -1:], spoof_cum[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        frr = np.concatenate([np.zeros_like(bonafide_total), bonafide_cum[:, rejected_at]], 1) / bonafide_total
        far = np.concatenate([spoof_total, spoof_total - spoof_cum[:, spoof_at]], 1) / spoof_total
    best = np.argmin(np.abs(frr - far), axis=1)
    rows = np.arange(len(best))
    eers = (frr[rows, best] + far[rows, best]) / 2
    eers[(bonafide_total[:, 0] == 0) | (spoof_total[:, 0] == 0)] = np.nan  # a resample missing a class
    return eers


def bootstrap_eer_cis(scores: np.ndarray, is_bonafide: np.ndarray, subsets: dict[str, tuple[np.ndarray, np.ndarray]],
                      speakers: Sequence[str | None] | None = None, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED, chunk: int = 50) -> tuple[dict[str, list[float] | None], str]:
    """95 % percentile intervals ``[low, high]`` of the EER of each subset, and the resampling unit.

    ``subsets[name] = (bona fide mask, spoof mask)`` over the trials (e.g. all trials, each attack's spoofs with
    all bona fide trials). A subset whose resamples mostly miss a class gets None.
    """
    scores = np.asarray(scores, dtype=float)
    is_bonafide = np.asarray(is_bonafide, dtype=bool)
    unit = resampling_unit(list(speakers)) if speakers is not None else "utterance"
    rng = np.random.default_rng(seed)
    if unit == "speaker":
        names, speaker_index = np.unique(np.asarray(speakers, dtype=str), return_inverse=True)
    prepared = {}
    for name, (bonafide_mask, spoof_mask) in subsets.items():
        b_idx, s_idx = np.flatnonzero(bonafide_mask), np.flatnonzero(spoof_mask)
        b_idx, s_idx = b_idx[np.argsort(scores[b_idx], kind="stable")], s_idx[np.argsort(scores[s_idx], kind="stable")]
        prepared[name] = (b_idx, s_idx)
    collected: dict[str, list[np.ndarray]] = {name: [] for name in subsets}
    bonafide_all, spoof_all = np.flatnonzero(is_bonafide), np.flatnonzero(~is_bonafide)
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        if unit == "speaker":
            counts = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=size)
            weights = counts[:, speaker_index].astype(float)
        else:  # utterances, within each class
            weights = np.zeros((size, scores.size))
            weights[:, bonafide_all] = rng.multinomial(bonafide_all.size, np.full(bonafide_all.size,
                                                                                  1 / bonafide_all.size), size=size)
            weights[:, spoof_all] = rng.multinomial(spoof_all.size, np.full(spoof_all.size, 1 / spoof_all.size),
                                                    size=size)
        for name, (b_idx, s_idx) in prepared.items():
            if b_idx.size and s_idx.size:
                collected[name].append(_weighted_eers(scores[b_idx], scores[s_idx], weights[:, b_idx],
                                                      weights[:, s_idx]))
        done += size
    intervals: dict[str, list[float] | None] = {}
    for name, parts in collected.items():
        values = np.concatenate(parts) if parts else np.array([])
        values = values[np.isfinite(values)]
        intervals[name] = ([float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
                           if values.size >= 0.5 * resamples else None)
    return intervals, unit


def eer_cis_for_trials(trials, scores: dict[str, float], breakdown: Sequence[str] = (),
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """The bootstrap intervals of every EER :func:`plastispoof.metrics.compute_report` reports: ``eer_ci95``,
    ``per_attack_ci95`` and ``per_<column>_ci95`` for each other column in ``breakdown``, plus ``bootstrap``."""
    trials = sorted(trials, key=lambda t: t.utt_id)  # resamples follow ids, not file order
    values = np.array([scores[t.utt_id] for t in trials], dtype=float)
    bonafide = np.array([t.label == BONAFIDE for t in trials])
    subsets: dict[str, tuple[np.ndarray, np.ndarray]] = {"eer": (bonafide, ~bonafide)}
    for attack in sorted({t.attack for t in trials if t.label != BONAFIDE}):
        subsets[f"attack\0{attack}"] = (bonafide, np.array([t.label != BONAFIDE and t.attack == attack
                                                             for t in trials]))
    for column in breakdown:
        if column == "attack":
            continue
        conditions = [str(getattr(t, column) if column in ("speaker", "subset") else t.meta.get(column, "-"))
                      for t in trials]
        for value in sorted(set(conditions)):
            inside = np.array([c == value for c in conditions])
            subsets[f"{column}\0{value}"] = (bonafide & inside, ~bonafide & inside)
    intervals, unit = bootstrap_eer_cis(values, bonafide, subsets, [t.speaker for t in trials], resamples, seed)
    out: dict[str, Any] = {"eer_ci95": intervals.pop("eer"),
                           "bootstrap": {"resamples": resamples, "unit": unit, "seed": seed, "interval": "95 % "
                                         "percentile"}}
    for key, interval in intervals.items():
        column, value = key.split("\0", 1)
        out.setdefault(f"per_{column}_ci95", {})[value] = interval
    return out
