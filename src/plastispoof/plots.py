"""Figures of one run as PNG files: DET curve, score histograms, training curves.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas, never pyplot, so plotting works
without a display, leaves no global state behind and is safe in worker processes. Files are written atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.stats import norm

from plastispoof.fileio import atomic_path
from plastispoof.metrics import compute_eer, det_curve

# DET axes are probit-scaled; these error rates (in %) are the usual ticks.
_DET_TICKS = [0.1, 0.5, 1, 2, 5, 10, 20, 40]


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Render ``figure`` to a PNG at ``path`` atomically."""
    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return Path(path)


def plot_det(bonafide_scores: Iterable[float], spoof_scores: Iterable[float], path: str | Path,
             title: str = "") -> Path:
    """DET curve (miss rate vs false-alarm rate on normal-deviate axes) with the EER point marked."""
    bonafide, spoof = np.asarray(list(bonafide_scores), float), np.asarray(list(spoof_scores), float)
    frr, far, _ = det_curve(bonafide, spoof)
    eer, _ = compute_eer(bonafide, spoof)
    # Rates of 0 or 1 sit at infinity on probit axes: clip to half a trial's worth inside the plot.
    low = 0.5 / max(bonafide.size, spoof.size)
    ticks = [t for t in _DET_TICKS if t / 100 >= low] or [100 * low]
    probit = lambda rate: norm.ppf(np.clip(rate, low, 1 - low))  # noqa: E731 - a one-line axis transform

    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot()
    axes.plot(probit(far), probit(frr), color="tab:blue", label="countermeasure")
    axes.plot(probit(eer), probit(eer), "o", color="tab:red", label=f"EER {100 * eer:.2f} %")
    axes.plot(probit(np.array([low, 1 - low])), probit(np.array([low, 1 - low])), ":", color="grey", lw=0.8)
    axes.set_xticks(probit(np.array(ticks) / 100), [f"{t:g}" for t in ticks])
    axes.set_yticks(probit(np.array(ticks) / 100), [f"{t:g}" for t in ticks])
    limits = probit(np.array([max(low, 0.0005), 0.6]))
    axes.set_xlim(*limits)
    axes.set_ylim(*limits)
    axes.set_xlabel("false alarm rate: spoof accepted (%)")
    axes.set_ylabel("miss rate: bona fide rejected (%)")
    axes.set_title(title or "DET curve")
    axes.grid(True, lw=0.3)
    axes.legend(loc="upper right")
    return save_figure(figure, path)


def plot_score_histograms(bonafide_scores: Iterable[float], spoof_scores: Iterable[float], path: str | Path,
                          threshold: float | None = None, title: str = "") -> Path:
    """Overlaid histograms of bona fide and spoof scores, with the decision threshold when given."""
    bonafide, spoof = np.asarray(list(bonafide_scores), float), np.asarray(list(spoof_scores), float)
    edges = np.histogram_bin_edges(np.concatenate([bonafide, spoof]), bins=50)
    figure = Figure(figsize=(6, 3.5))
    axes = figure.add_subplot()
    axes.hist(spoof, bins=edges, alpha=0.6, color="tab:red", label=f"spoof ({spoof.size})")
    axes.hist(bonafide, bins=edges, alpha=0.6, color="tab:green", label=f"bona fide ({bonafide.size})")
    if threshold is not None:
        axes.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    axes.set_xlabel("score (higher = more bona fide)")
    axes.set_ylabel("trials")
    axes.set_title(title or "score distributions")
    axes.legend()
    return save_figure(figure, path)


def plot_training_curves(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Train loss and dev EER per epoch from ``metrics.jsonl`` records, one line per stage."""
    epochs = [r for r in records if "train_loss" in r]
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    loss_axes, eer_axes = figure.subplots(1, 2)
    offset = 0
    for index in sorted({r["stage_index"] for r in epochs}):
        stage = [r for r in epochs if r["stage_index"] == index]
        x = [offset + r["epoch"] for r in stage]
        label = f"{index}-{stage[0]['stage']}"
        loss_axes.plot(x, [r["train_loss"] for r in stage], "o-", ms=3, label=label)
        eer_axes.plot(x, [100 * r["dev_eer"] for r in stage], "o-", ms=3, label=label)
        offset = x[-1]
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("train loss")
    eer_axes.set_xlabel("epoch")
    eer_axes.set_ylabel("dev EER (%)")
    eer_axes.set_ylim(bottom=0)
    for axes in (loss_axes, eer_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, lw=0.3)
        if epochs:
            axes.legend(fontsize=8)
    figure.suptitle(title or "training")
    return save_figure(figure, path)


def plot_layer_ablation(points: Sequence[tuple[str, float | None, float | None]], baseline_eer: float | None,
                        path: str | Path, title: str = "") -> Path:
    """EER (%) per layer that received the new neurons, with error bars over seeds and the baseline as a line."""
    figure = Figure(figsize=(max(4.0, 0.6 * len(points) + 2), 3.2))
    ax = figure.add_subplot()
    names = [name for name, _, _ in points]
    eers = [np.nan if eer is None else eer for _, eer, _ in points]
    errors = [0.0 if std is None else std for _, _, std in points]
    ax.errorbar(range(len(points)), eers, yerr=errors, marker="o", capsize=3, label="dropin at layer")
    if baseline_eer is not None:
        ax.axhline(baseline_eer, color="grey", linestyle="--", label="baseline")
    ax.set_xticks(range(len(points)), names, rotation=45, ha="right")
    ax.set_ylabel("test EER (%)")
    ax.set_title(title)
    ax.legend()
    return save_figure(figure, path)
