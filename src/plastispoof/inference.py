"""Score audio of any length with a trained model: the ``plastispoof score`` verb and its Python API::

    from plastispoof.inference import Detector
    detector = Detector.from_run("runs/grnn-baseline")
    detector.score_file("clip.flac")                      # -> float, higher = more bona fide
    detector.score_paths(["clips/"])                      # -> [ScoreResult(path, score, decision, error)]

A file is cut into windows of the model's input length (half-overlapping, the last one aligned to the end; a
short file is repeat-padded to one window) and its score is the mean of the window scores, higher = more bona
fide. The decision uses the run's dev EER threshold *of these scores*: above it = ``bonafide``.

A threshold only means something for scores made the same way. Training scores its dev set on the first
``num_samples`` of each file (``first-crop``, the ASVspoof convention, also used by ``evaluate``); a Detector
scores whole files by the mean over windows (``window-mean``). A finished run stores the dev EER threshold of
both (``meta.json``: ``dev_thresholds``, and ``dev_threshold`` = the ``first-crop`` one, named by
``dev_threshold_convention``), and :meth:`Detector.from_run` takes the ``window-mean`` one. A run without it
(trained before the convention was recorded) gives no decisions until :meth:`Detector.fit_threshold` computes
one on dev files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from plastispoof.audio import ASVSPOOF_NUM_SAMPLES, load_audio, sliding_windows
from plastispoof.errors import InputError
from plastispoof.evaluate import model_scores

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")

# How a score was made; stored beside every threshold, so a threshold is only compared with scores made alike.
FIRST_CROP = "first-crop"  # the first num_samples samples, repeat-padded (training's dev scores, evaluate)
WINDOW_MEAN = "window-mean"  # the mean over the half-overlapping windows of the whole file (Detector)


def run_threshold(meta: dict[str, Any], convention: str = WINDOW_MEAN) -> float | None:
    """A run's dev EER threshold for scores made by ``convention``, or None when the run has none.

    Runs that name no convention were all scored ``first-crop`` in training.

    >>> run_threshold({"dev_threshold": 0.3})  # an older run: its threshold is first-crop only
    >>> run_threshold({"dev_threshold": 0.3}, FIRST_CROP)
    0.3
    >>> run_threshold({"dev_threshold": 0.3, "dev_threshold_convention": "first-crop",
    ...                "dev_thresholds": {"first-crop": 0.3, "window-mean": 0.1}})
    0.1
    """
    thresholds = dict(meta.get("dev_thresholds") or {})
    if meta.get("dev_threshold") is not None:
        thresholds.setdefault(meta.get("dev_threshold_convention", FIRST_CROP), meta["dev_threshold"])
    return thresholds.get(convention)


@dataclass
class ScoreResult:
    """The outcome for one file: its score and decision, or the error that kept it from being scored."""

    path: str
    score: float | None
    decision: str | None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Detector:
    """A model ready to score files: input length, sample rate and decision threshold travel with it."""

    def __init__(self, model: nn.Module, num_samples: int, sample_rate: int = 16000,
                 threshold: float | None = None, batch_size: int = 16, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.batch_size = batch_size

    @classmethod
    def from_run(cls, run_dir: str | Path, **options: Any) -> "Detector":
        """The final model of a run directory, with the run's input length and its dev EER threshold of
        ``window-mean`` scores (None when the run has none: see the module notes)."""
        from plastispoof.runs import load_run_model

        model, meta = load_run_model(run_dir)
        return cls(model, meta["input"]["num_samples"], meta["input"]["sample_rate"], run_threshold(meta),
                   **options)

    @classmethod
    def from_weights(cls, model_name: str | None, weights_path: str | Path | None, **options: Any) -> "Detector":
        """A published model from a foreign ``.pth`` state_dict (e.g. official AASIST); no threshold is known."""
        if not model_name or not weights_path:
            raise InputError("say which model scores: --run RUN_DIR, or --model NAME with --weights FILE.pth")
        from plastispoof.models.aasist import load_official

        return cls(load_official(model_name, weights_path), ASVSPOOF_NUM_SAMPLES, **options)

    def windows(self, waveform: np.ndarray) -> np.ndarray:
        """The ``(n, num_samples)`` windows a waveform is scored on."""
        return sliding_windows(waveform, window=self.num_samples)

    def score_waveform(self, waveform: np.ndarray) -> float:
        """Mean score over the windows of a mono waveform at the detector's sample rate."""
        windows = torch.from_numpy(np.ascontiguousarray(self.windows(waveform), dtype=np.float32))
        with torch.no_grad():
            scores = [model_scores(self.model, batch.to(self.device)).float().cpu()
                      for batch in windows.split(self.batch_size)]
        return float(torch.cat(scores).mean())

    def score_file(self, path: str | Path) -> float:
        """Score one audio file of any length (:class:`InputError` when it cannot be decoded)."""
        return self.score_waveform(load_audio(path, self.sample_rate))

    def decide(self, score: float) -> str | None:
        if self.threshold is None:
            return None
        return "bonafide" if score > self.threshold else "spoof"

    def fit_threshold(self, trials: list[Any]) -> tuple[float, float]:
        """Score ``trials`` (:class:`~plastispoof.data.trials.Trial` s of a dev set) as this detector scores
        files, and decide from now on at the EER threshold of those scores. Returns ``(eer, threshold)``."""
        from plastispoof.metrics import compute_eer

        scores = [(trial.label == "bonafide", self.score_file(trial.path)) for trial in trials]
        eer, self.threshold = compute_eer([s for bonafide, s in scores if bonafide],
                                          [s for bonafide, s in scores if not bonafide])
        return eer, self.threshold

    def score_paths(self, paths: list[str | Path]) -> list[ScoreResult]:
        """Score files and folders (searched recursively for audio files); a file that fails is reported in
        its result's ``error`` and the others are still scored."""
        results = []
        for path, problem in expand_audio_paths(paths):
            if problem:
                results.append(ScoreResult(str(path), None, None, problem))
                continue
            try:
                score = self.score_file(path)
            except InputError as err:
                results.append(ScoreResult(str(path), None, None, str(err)))
                continue
            results.append(ScoreResult(str(path), score, self.decide(score)))
        return results


def expand_audio_paths(paths: list[str | Path]) -> list[tuple[Path, str | None]]:
    """Files as given, folders expanded to their audio files (sorted); a path that does not exist or a folder
    with no audio comes back with a problem instead."""
    found: list[tuple[Path, str | None]] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            found += [(p, None) for p in files] or [(path, f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in "
                                                          f"folder {path}")]
        elif path.exists():
            found.append((path, None))
        else:
            found.append((path, f"no such file or folder: {path}"))
    if not found:
        raise InputError("no audio files or folders were given to score")
    return found


def format_results(results: list[ScoreResult]) -> str:
    """One line per file: score, decision and path (or the error)."""
    lines = []
    for result in results:
        if result.error:
            lines.append(f"{'error':>10}  {'':<8}  {result.path}: {result.error}")
        else:
            lines.append(f"{result.score:10.4f}  {result.decision or '':<8}  {result.path}")
    return "\n".join(lines)
