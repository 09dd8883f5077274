"""Stress test of a detector: score the eval subset under codecs, noise, reverberation, packet loss and level
changes; EER, ΔEER against clean and min t-DCF per condition (``plastispoof stress``)::

    from plastispoof.inference import Detector
    from plastispoof.analysis.stress import stress
    stress(Detector.from_run("runs/resnet18"), "synthetic", "data/synthetic")  # -> report; writes RUN/stress/

Each condition degrades the whole utterance, then the detector scores its first ``num_samples`` samples
(repeat-padded when shorter), the evaluation convention of :mod:`plastispoof.evaluate`. Degradations are
deterministic per utterance: every random draw comes from ``(crc32(utt_id), crc32(condition))``, so two detectors
(or two runs of the command) see the very same audio. Codecs reuse :mod:`plastispoof.augment.codecs`, noise and
reverberation :mod:`plastispoof.augment.noise` / :mod:`plastispoof.augment.reverb`. The babble noise is the sum of
four other bona fide utterances of the same subset (each at equal RMS), never the utterance itself.

Outputs (``--out``, default ``RUN/stress`` or ``runs/stress-<model>``): ``stress.md``, ``stress.csv``,
``stress.json`` and the bar chart ``stress.png``. :func:`score_conditions` scores several detectors on one pass of
the degraded audio (the robustness study of docs/robustness.md uses it).
"""

from __future__ import annotations

import csv
import io
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset

from plastispoof.audio import fix_length, load_audio
from plastispoof.augment import codecs
from plastispoof.augment.noise import add_at_snr, coloured_noise, fit_segment
from plastispoof.augment.pipeline import telephone_band
from plastispoof.augment.reverb import generated_rir, reverberate
from plastispoof.data.dataset import subsample
from plastispoof.data.protocols import read_dataset
from plastispoof.data.trials import BONAFIDE, Trial
from plastispoof.detectors import load_detector
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_write_json, atomic_write_text
from plastispoof.metrics import compute_report
from plastispoof.runs import read_run_config

BABBLE_TALKERS = 4
PACKET_MS = 20


@dataclass(frozen=True)
class Condition:
    """One degradation: ``apply(x, sample_rate, rng, babble)`` -> degraded ``x`` (same length)."""

    name: str
    group: str
    apply: Callable[..., np.ndarray]


def _codec(codec: str, bitrate: int | None = None) -> Callable[..., np.ndarray]:
    return lambda x, rate, rng, babble: codecs.codec_round_trip(x, rate, codec, bitrate)


def _white(snr: float) -> Callable[..., np.ndarray]:
    return lambda x, rate, rng, babble: add_at_snr(x, coloured_noise(x.size, "white", rng), snr)


def _babble(snr: float) -> Callable[..., np.ndarray]:
    return lambda x, rate, rng, babble: add_at_snr(x, babble(x.size, rng), snr)


def _reverb(rt60: float) -> Callable[..., np.ndarray]:
    return lambda x, rate, rng, babble: reverberate(x, generated_rir(rt60, rate, rng))


def packet_loss(x: np.ndarray, sample_rate: int, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """``x`` with ``round(fraction * frames)`` randomly chosen ``PACKET_MS`` frames set to zero."""
    frame = sample_rate * PACKET_MS // 1000
    frames = -(-x.size // frame)
    lost = rng.choice(frames, size=int(round(fraction * frames)), replace=False)
    y = np.array(x, dtype=np.float32)
    for index in lost:
        y[index * frame:(index + 1) * frame] = 0.0
    return y


def _loss(fraction: float) -> Callable[..., np.ndarray]:
    return lambda x, rate, rng, babble: packet_loss(x, rate, rng, fraction)


CONDITIONS: dict[str, Condition] = {c.name: c for c in [
    Condition("clean", "clean", lambda x, rate, rng, babble: x),
    Condition("mp3-32k", "lossy codec", _codec("mp3", 32_000)),
    Condition("mp3-64k", "lossy codec", _codec("mp3", 64_000)),
    Condition("opus-12k", "lossy codec", _codec("opus", 12_000)),
    Condition("opus-24k", "lossy codec", _codec("opus", 24_000)),
    Condition("aac-32k", "lossy codec", _codec("aac", 32_000)),
    Condition("g711-mulaw", "telephone codec", _codec("mulaw")),
    Condition("g726", "telephone codec", _codec("g726", 32_000)),
    Condition("g722", "telephone codec", _codec("g722")),
    Condition("amr-nb", "telephone codec", _codec("amr-nb", 12_200)),
    Condition("white-20db", "white noise", _white(20.0)),
    Condition("white-10db", "white noise", _white(10.0)),
    Condition("white-5db", "white noise", _white(5.0)),
    Condition("babble-10db", "babble noise", _babble(10.0)),
    Condition("reverb-0.3s", "reverberation", _reverb(0.3)),
    Condition("reverb-0.8s", "reverberation", _reverb(0.8)),
    Condition("loss-5pct", "packet loss", _loss(0.05)),
    Condition("loss-10pct", "packet loss", _loss(0.10)),
    Condition("gain-minus20db", "level and band", lambda x, rate, rng, babble: (x * 0.1).astype(np.float32)),
    Condition("band-8k", "level and band", lambda x, rate, rng, babble: telephone_band(x, rate, bandpass=False)),
]}
_CODEC_OF = {"mp3-32k": "mp3", "mp3-64k": "mp3", "opus-12k": "opus", "opus-24k": "opus", "aac-32k": "aac",
             "g711-mulaw": "mulaw", "g726": "g726", "g722": "g722", "amr-nb": "amr-nb"}


def check_conditions(names: Sequence[str] | None) -> list[str]:
    """The conditions to run, ``clean`` first (the reference of ΔEER); :class:`InputError` for an unknown name or
    a condition whose codec this machine lacks."""
    names = list(names) if names else list(CONDITIONS)
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise InputError(f"unknown stress condition {unknown[0]!r}; available: {', '.join(CONDITIONS)}")
    for name in names:
        if name in _CODEC_OF:
            codecs.check_codec(_CODEC_OF[name])
    return ["clean"] + [n for n in dict.fromkeys(names) if n != "clean"]


def _utterance_rng(utt_id: str, condition: str) -> np.random.Generator:
    return np.random.default_rng((zlib.crc32(utt_id.encode()), zlib.crc32(condition.encode())))


class _Babble:
    """Babble from other bona fide utterances of the subset (decoded on first use)."""

    def __init__(self, trials: Sequence[Trial], sample_rate: int):
        self.trials = [t for t in trials if t.label == BONAFIDE]
        self.sample_rate = sample_rate
        self._audio: dict[int, np.ndarray] = {}
        self.exclude: str | None = None

    def __call__(self, n: int, rng: np.random.Generator) -> np.ndarray:
        candidates = [i for i, t in enumerate(self.trials) if t.utt_id != self.exclude]
        if not candidates:
            raise InputError("babble noise needs other bona fide utterances in the subset; it has none")
        chosen = rng.choice(candidates, size=min(BABBLE_TALKERS, len(candidates)), replace=False)
        mix = np.zeros(n)
        for index in chosen:
            if index not in self._audio:
                self._audio[index] = load_audio(self.trials[index].path, self.sample_rate)
            talker = fit_segment(self._audio[index], n, rng).astype(np.float64)
            mix += talker / (np.sqrt(np.mean(talker ** 2)) or 1.0)
        return mix


class _DegradedDataset(Dataset):
    """Item ``i``: the trial's audio under ``condition``, cut to each detector's input length."""

    def __init__(self, trials: Sequence[Trial], condition: Condition, lengths: Sequence[int], sample_rate: int,
                 babble: _Babble):
        self.trials, self.condition, self.lengths = list(trials), condition, list(lengths)
        self.sample_rate, self.babble = sample_rate, babble

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, index: int):
        trial = self.trials[index]
        x = load_audio(trial.path, self.sample_rate)
        self.babble.exclude = trial.utt_id
        y = self.condition.apply(x, self.sample_rate, _utterance_rng(trial.utt_id, self.condition.name),
                                 self.babble)
        y = np.asarray(y, dtype=np.float32)
        if not np.isfinite(y).all():  # load_audio refuses non-finite files: a degradation made these, a bug
            raise RuntimeError(f"degradation {self.condition.name!r} made NaN or infinite samples from "
                               f"{trial.utt_id}; this is a bug, please report it")
        return tuple(torch.from_numpy(fix_length(y, n)) for n in self.lengths), index


def score_conditions(detectors: Mapping[str, Any], trials: Sequence[Trial], conditions: Sequence[str], *,
                     batch_size: int = 32, num_workers: int = 0, show_progress: bool = True
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """``{detector: {condition: {utt_id: score}}}``: each condition's audio is made once and scored by every
    detector (a :class:`plastispoof.inference.Detector`: ``model``, ``num_samples``, ``sample_rate``, ``device``)."""
    names = check_conditions(conditions)
    rates = {d.sample_rate for d in detectors.values()}
    if len(rates) != 1:
        raise InputError(f"detectors scored together must share one sample rate, not {sorted(rates)}")
    sample_rate = rates.pop()
    babble = _Babble(trials, sample_rate)
    scores: dict[str, dict[str, dict[str, float]]] = {d: {} for d in detectors}
    console = Console(stderr=True)
    progress = Progress(TextColumn("stress {task.fields[condition]:<15}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, transient=True,
                        disable=not (show_progress and console.is_terminal))
    for detector in detectors.values():
        if hasattr(detector, "model"):
            detector.model.eval()
    with torch.no_grad(), progress:
        task = progress.add_task("stress", total=len(names) * len(trials), condition="")
        for name in names:
            progress.update(task, condition=name)
            dataset = _DegradedDataset(trials, CONDITIONS[name], [d.num_samples for d in detectors.values()],
                                       sample_rate, babble)
            loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
            for detector in detectors:
                scores[detector][name] = {}
            for waves, indices in loader:
                for (label, detector), batch in zip(detectors.items(), waves):
                    values = _batch_scores(detector, batch)
                    scores[label][name].update((trials[i].utt_id, v) for i, v in zip(indices.tolist(), values))
                progress.advance(task, len(indices))
    return scores


def _batch_scores(detector: Any, batch: torch.Tensor) -> list[float]:
    """Scores of a ``(n, num_samples)`` batch by a PyTorch ``Detector`` or an ONNX export alike."""
    return np.asarray(detector.score_batch(batch.numpy()), dtype=np.float64).reshape(-1).tolist()


def condition_report(trials: Sequence[Trial], scores: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """One row per condition: EER and min t-DCF (fractions) and ΔEER against clean (percentage points)."""
    rows = []
    for name, condition_scores in scores.items():
        report = compute_report(trials, dict(condition_scores))
        rows.append({"condition": name, "group": CONDITIONS[name].group, "eer": report["eer"],
                     "min_tdcf": report.get("min_tdcf")})
    clean = rows[0]["eer"]
    for row in rows:
        row["delta_eer_points"] = 100 * (row["eer"] - clean)
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Clean EER and the mean EER over the stressed (non-clean) conditions, in %."""
    stressed = [r["eer"] for r in rows if r["condition"] != "clean"]
    return {"clean_eer": 100 * rows[0]["eer"],
            "mean_stressed_eer": 100 * float(np.mean(stressed)) if stressed else float("nan")}


def format_table(rows: Sequence[dict[str, Any]], title: str = "") -> str:
    """The Markdown table of ``stress.md``."""
    lines = [f"## {title}", ""] if title else []
    lines += ["| Condition | Group | EER (%) | ΔEER (points) | min t-DCF |", "|---|---|---|---|---|"]
    for row in rows:
        tdcf = "/" if row["min_tdcf"] is None else f"{row['min_tdcf']:.4f}"
        lines.append(f"| {row['condition']} | {row['group']} | {100 * row['eer']:.2f} | "
                     f"{row['delta_eer_points']:+.2f} | {tdcf} |")
    totals = summary(rows)
    lines += ["", f"Clean EER {totals['clean_eer']:.2f} %; mean EER over the {len(rows) - 1} stressed conditions "
                  f"{totals['mean_stressed_eer']:.2f} %."]
    return "\n".join(lines)


def plot_stress(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Bar chart: EER (%) per condition, coloured by group, clean EER as a dashed line."""
    from matplotlib.figure import Figure

    from plastispoof.plots import save_figure

    groups = list(dict.fromkeys(r["group"] for r in rows))
    colours = {g: f"C{i}" for i, g in enumerate(groups)}
    figure = Figure(figsize=(max(6.0, 0.42 * len(rows) + 2), 3.8), layout="constrained")
    axes = figure.add_subplot()
    axes.bar(range(len(rows)), [100 * r["eer"] for r in rows], color=[colours[r["group"]] for r in rows])
    axes.axhline(100 * rows[0]["eer"], color="black", ls="--", lw=0.8, label="clean")
    axes.set_xticks(range(len(rows)), [r["condition"] for r in rows], rotation=60, ha="right", fontsize=8)
    axes.set_ylabel("EER (%)")
    axes.set_ylim(0, max(50.0, 100 * max(r["eer"] for r in rows) * 1.05))
    for group in groups:
        axes.bar([0], [0], color=colours[group], label=group)
    axes.legend(fontsize=7, ncol=3)
    axes.grid(True, axis="y", lw=0.3)
    axes.set_title(title or "EER under stress")
    return save_figure(figure, path)


def write_stress(rows: Sequence[dict[str, Any]], out: str | Path, meta: dict[str, Any]) -> dict[str, str]:
    """``stress.{md,csv,json,png}`` in ``out``; returns what was written where."""
    out = Path(out)
    title = f"{meta.get('detector', 'detector')}: {meta.get('dataset', '')} {meta.get('subset', '')}".strip()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["condition", "group", "eer_percent", "delta_eer_points", "min_tdcf"])
    for row in rows:
        writer.writerow([row["condition"], row["group"], f"{100 * row['eer']:.4f}",
                         f"{row['delta_eer_points']:.4f}", "" if row["min_tdcf"] is None else f"{row['min_tdcf']:.6f}"])
    files = {"md": out / "stress.md", "csv": out / "stress.csv", "json": out / "stress.json",
             "png": out / "stress.png"}
    atomic_write_text(files["md"], format_table(rows, title) + "\n")
    atomic_write_text(files["csv"], buffer.getvalue())
    atomic_write_json(files["json"], {**meta, **summary(rows), "conditions": list(rows)})
    plot_stress(rows, files["png"], title)
    return {name: str(path) for name, path in files.items()}


def stress_trials(dataset: str, root: str | Path, subset: str = "eval", max_trials: int | None = None,
                  seed: int = 42) -> list[Trial]:
    """The trials of ``subset``, or a seeded, class-balanced subset of ``max_trials`` of them."""
    trials = read_dataset(dataset, str(root), subset)
    return subsample(trials, max_trials, seed) if max_trials else trials


def stress(detector: Any, dataset: str, root: str | Path, *, subset: str = "eval",
           conditions: Sequence[str] | None = None, out: str | Path = "runs/stress", name: str = "detector",
           max_trials: int | None = None, seed: int = 42, batch_size: int = 32, num_workers: int = 0,
           show_progress: bool = True) -> dict[str, Any]:
    """Score ``subset`` under each condition with one detector; write ``stress.*`` to ``out``; return the report
    (rows, summary, files)."""
    names = check_conditions(conditions)
    trials = stress_trials(dataset, root, subset, max_trials, seed)
    started = time.perf_counter()
    scores = score_conditions({name: detector}, trials, names, batch_size=batch_size, num_workers=num_workers,
                              show_progress=show_progress)[name]
    rows = condition_report(trials, scores)
    meta = {"detector": name, "dataset": dataset, "subset": subset, "trials": len(trials),
            "max_trials": max_trials, "seconds": round(time.perf_counter() - started, 1)}
    files = write_stress(rows, out, meta)
    return {**meta, **summary(rows), "conditions": rows, "files": files}


def format_stress(report: dict[str, Any]) -> str:
    """The command's output: the table, then the files written."""
    lines = [format_table(report["conditions"], f"{report['detector']}: {report['dataset']} {report['subset']} "
                                                f"({report['trials']} trials, {report['seconds']} s)")]
    lines += ["", "files"] + [f"  {k:<5} {v}" for k, v in report["files"].items()]
    return "\n".join(lines)


def stress_command(run: str | Path | None, model: str | None, weights: str | Path | None, dataset: str,
                   root: str | Path, *, conditions: Sequence[str] | None = None, out: str | Path | None = None,
                   subset: str = "eval", max_trials: int | None = None, num_workers: int = 0,
                   onnx: str | Path | None = None) -> dict[str, Any]:
    """What ``plastispoof stress`` does: a run (its ``data.max_eval`` applies unless ``max_trials`` is given),
    foreign weights or an ONNX export (``plastispoof export``), scored under each condition."""
    names = check_conditions(conditions)  # bad names fail before a model is loaded
    detector = load_detector(run, model, weights, onnx)
    if onnx is not None:
        seed, label, default_out = 42, Path(onnx).name, Path(onnx).parent / f"stress-{Path(onnx).stem}"
    elif run is not None:
        cfg = read_run_config(run)
        max_trials, seed = max_trials or cfg.data.max_eval, cfg.seed
        label, default_out = Path(run).name, Path(run) / "stress"
    else:
        seed, label, default_out = 42, f"{model} ({Path(str(weights)).name})", Path("runs") / f"stress-{model}"
    return stress(detector, dataset, root, subset=subset, conditions=names, out=out or default_out, name=label,
                  max_trials=max_trials, seed=seed, num_workers=num_workers)
