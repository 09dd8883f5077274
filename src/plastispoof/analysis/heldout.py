"""Held-out measurements of a calibrated detector on a copy-synthesis corpus: EER pooled, per attack family and per
speaker with 95 % bootstrap intervals, and what the detector decides at its default operating point.

Used by the default detector's card (English, never heard in training) and by ``plastispoof adapt`` (the user's
held-out part, before and after adapting). Scores are pooled over whole files as ``plastispoof score`` pools them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from plastispoof.data.trials import BONAFIDE
from plastispoof.metrics import compute_eer

SUBSETS = ("train", "dev", "eval")
RESAMPLES = 1000


def corpus_trials(root: str | Path, subsets: Sequence[str] = SUBSETS) -> list:
    """The trials of ``subsets`` of the copy-synthesis corpus at ``root`` (every subset: a test-only corpus)."""
    from plastispoof.data.protocols import read_dataset

    return [t for subset in subsets for t in read_dataset("asv19-la", str(root), subset)]


def family_of_attacks(root: str | Path) -> dict[str, str]:
    """{attack ID: family} from the corpus manifest."""
    from plastispoof.data.copysynth import read_manifest

    return {attack: name for name, family in read_manifest(root)["families"].items() for attack in family["attacks"]}


def score_trials(detector, trials: list) -> dict[str, float]:
    """Window-mean scores of ``trials`` (the way ``score`` pools a file)."""
    from plastispoof.scoring import window_mean_scores

    return window_mean_scores(detector, trials, show_progress=False)


def heldout_report(trials: list, scores: dict[str, float], families: dict[str, str], threshold: float | None,
                   resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """EERs (pooled, per family, per speaker) with 95 % bootstrap intervals, and at ``threshold`` (the default
    operating point, on scores) the share of bona fide files called bona fide and of spoofs called spoof."""
    from plastispoof.bootstrap import bootstrap_eer_cis

    trials = sorted(trials, key=lambda t: t.utt_id)
    values = np.array([scores[t.utt_id] for t in trials], dtype=float)
    bonafide = np.array([t.label == BONAFIDE for t in trials])
    family = np.array([families.get(t.attack, t.attack) if t.label != BONAFIDE else "" for t in trials])
    speaker = np.array([t.speaker for t in trials])
    subsets: dict[str, tuple[np.ndarray, np.ndarray]] = {"pooled": (bonafide, ~bonafide)}
    for name in sorted(set(family) - {""}):
        subsets[f"family:{name}"] = (bonafide, family == name)
    speakers = sorted(set(speaker))
    if len(speakers) > 1:
        for name in speakers:
            subsets[f"speaker:{name}"] = (bonafide & (speaker == name), ~bonafide & (speaker == name))
    intervals, _ = bootstrap_eer_cis(values, bonafide, subsets, resamples=resamples, seed=seed)

    def row(key: str) -> dict[str, Any]:
        b_mask, s_mask = subsets[key]
        b, s = values[b_mask], values[s_mask]
        eer = float(compute_eer(b, s)[0]) if b.size and s.size else None
        out = {"eer": eer, "ci95": intervals.get(key), "n_bonafide": int(b.size), "n_spoof": int(s.size)}
        if threshold is not None:
            out["spoof_called_spoof"] = float(np.mean(s <= threshold)) if s.size else None
            if key != "pooled" and key.startswith("family:"):
                return out
            out["bonafide_called_bonafide"] = float(np.mean(b > threshold)) if b.size else None
        return out

    return {"pooled": row("pooled"),
            "families": {k.split(":", 1)[1]: row(k) for k in subsets if k.startswith("family:")},
            "speakers": {k.split(":", 1)[1]: row(k) for k in subsets if k.startswith("speaker:")}
            or {speakers[0]: row("pooled")},
            "threshold": threshold, "resamples": resamples}


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def ci_text(interval: Sequence[float] | None) -> str:
    return "" if not interval else f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def comparison_rows(reports: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Rows ``trials | system A EER % [CI] | system B ...`` over the pooled, family and speaker breakdowns."""
    names = list(reports)
    first = reports[names[0]]
    rows = [["pooled", *(pct(r["pooled"]["eer"]) + ci_text(r["pooled"]["ci95"]) for r in reports.values())]]
    for family in first["families"]:
        rows.append([f"family {family}", *(pct(r["families"][family]["eer"]) + ci_text(r["families"][family]["ci95"])
                                           for r in reports.values())])
    if len(first["speakers"]) > 1:
        for speaker in first["speakers"]:
            rows.append([f"speaker {speaker}", *(pct(r["speakers"][speaker]["eer"])
                                                 + ci_text(r["speakers"][speaker]["ci95"]) for r in reports.values())])
    return rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
