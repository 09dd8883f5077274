"""Metrics for calibrated scores and the uncertainty of every EER.

* :func:`llr_report`: ``act_dcf``, ``cllr`` and ``min_cllr`` of scores read as natural-log LLRs (bona fide vs
  spoof), as ``metrics --llr`` and ``evaluate`` (with the run's calibration) report them.
* :func:`reliability` / :func:`plot_reliability`: the reliability diagram: the predicted probability of bona fide
  ``sigmoid(llr + logit(prior))``, in equal-width bins, against the observed share of bona fide trials in each bin,
  with the bin counts. The prior is the set's own proportion of bona fide trials unless one is given, so that a
  well-calibrated system lies on the diagonal.

The bootstrap intervals of every EER are :mod:`plastispoof.bootstrap`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from plastispoof.data.protocols import read_protocol_file
from plastispoof.data.trials import BONAFIDE
from plastispoof.errors import InputError
from plastispoof.metrics import act_dcf, cllr, logit, min_cllr
from plastispoof.score_files import read_scores

# ------------------------------------------------------------------------------------------ LLR metrics


def llr_report(bonafide_llr: Iterable[float], spoof_llr: Iterable[float]) -> dict[str, float]:
    """``act_dcf`` (ASVspoof 5 costs, Bayes threshold), ``cllr`` and ``min_cllr`` (bits) of LLR scores."""
    bonafide = np.asarray(list(bonafide_llr), dtype=float)
    spoof = np.asarray(list(spoof_llr), dtype=float)
    return {"act_dcf": act_dcf(bonafide, spoof), "cllr": cllr(bonafide, spoof), "min_cllr": min_cllr(bonafide, spoof)}


def reliability(bonafide_llr: Iterable[float], spoof_llr: Iterable[float], prior: float | None = None,
                bins: int = 10) -> dict[str, Any]:
    """Reliability diagram data: per equal-width bin of predicted p(bona fide), the mean prediction, the observed
    share of bona fide trials and the count (empty bins: None, None, 0).

    >>> data = reliability([3.0, 3.0, 3.0], [-3.0, -3.0, 3.0], prior=0.5, bins=2)
    >>> data["counts"], [round(p, 3) for p in data["predicted"]], data["observed"]
    ([2, 4], [0.047, 0.953], [0.0, 0.75])
    """
    bonafide = np.asarray(list(bonafide_llr), dtype=float)
    spoof = np.asarray(list(spoof_llr), dtype=float)
    if bonafide.size == 0 or spoof.size == 0:
        raise InputError("a reliability diagram needs bona fide and spoof trials")
    prior = bonafide.size / (bonafide.size + spoof.size) if prior is None else prior
    llr = np.concatenate([bonafide, spoof])
    truth = np.concatenate([np.ones(bonafide.size), np.zeros(spoof.size)])
    predicted = np.exp(-np.logaddexp(0.0, -(llr + logit(prior))))
    index = np.minimum((predicted * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    mean_predicted = np.bincount(index, weights=predicted, minlength=bins)
    observed = np.bincount(index, weights=truth, minlength=bins)
    return {"prior": prior, "edges": np.linspace(0, 1, bins + 1).tolist(), "counts": counts.tolist(),
            "predicted": [float(p / c) if c else None for p, c in zip(mean_predicted, counts)],
            "observed": [float(o / c) if c else None for o, c in zip(observed, counts)]}


def plot_reliability(bonafide_llr: Iterable[float], spoof_llr: Iterable[float], path: str | Path,
                     prior: float | None = None, bins: int = 10, title: str = "") -> Path:
    """Write the reliability diagram PNG (points on the diagonal = calibrated) with bin counts as bars."""
    from matplotlib.figure import Figure  # matplotlib (and plots, which imports it) stay lazy: `metrics` needs neither

    from plastispoof.plots import save_figure

    data = reliability(bonafide_llr, spoof_llr, prior, bins)
    figure = Figure(figsize=(5.5, 5))
    axes = figure.add_subplot()
    counts_axes = axes.twinx()
    edges = np.asarray(data["edges"])
    counts_axes.bar(edges[:-1], data["counts"], width=np.diff(edges), align="edge", color="tab:gray", alpha=0.25)
    counts_axes.set_ylabel("trials in bin")
    for left, count in zip(edges[:-1], data["counts"]):
        if count:
            counts_axes.annotate(str(count), (left + 0.5 / bins, count), ha="center", va="bottom", fontsize=7)
    filled = [(p, o) for p, o in zip(data["predicted"], data["observed"]) if p is not None]
    axes.plot([0, 1], [0, 1], ":", color="grey", lw=0.8, label="perfect calibration")
    axes.plot([p for p, _ in filled], [o for _, o in filled], "o-", color="tab:blue", label="system")
    axes.set_zorder(counts_axes.get_zorder() + 1)
    axes.patch.set_visible(False)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel(f"predicted p(bona fide) at prior {data['prior']:.3g}")
    axes.set_ylabel("observed share of bona fide")
    axes.set_title(title or "reliability diagram")
    axes.legend(loc="upper left", fontsize="small")
    return save_figure(figure, path)


def plot_reliability_of_files(scores_path: str | Path, protocol_path: str | Path, format: str,
                              out: str | Path) -> Path:
    """The reliability diagram of an LLR score file against a protocol (``metrics --llr --reliability``)."""
    trials = read_protocol_file(Path(protocol_path), format)
    scores = read_scores(scores_path)
    bonafide = [scores[t.utt_id] for t in trials if t.label == BONAFIDE and t.utt_id in scores]
    spoof = [scores[t.utt_id] for t in trials if t.label != BONAFIDE and t.utt_id in scores]
    return plot_reliability(bonafide, spoof, out, title=f"{Path(scores_path).name} (LLR scores)")
