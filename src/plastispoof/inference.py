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

With a calibration (``plastispoof calibrate``; :mod:`plastispoof.calibration`) each file also gets ``llr`` (natural-log
likelihood ratio, bona fide vs spoof), ``p_bonafide`` at a stated prior, and a decision at a named operating point
(``eer``, ``fpr=X``, ``bayes``); :meth:`Detector.iter_results` yields them one file at a time (the CLI streams them
as JSON Lines), optionally with a per-window timeline (``segments``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from plastispoof.audio import ASVSPOOF_NUM_SAMPLES, load_audio, sliding_windows
from plastispoof.errors import InputError
from plastispoof.evaluate import model_scores
from plastispoof.results import (AUDIO_EXTENSIONS, CalibratedScoring, ScoreResult,  # noqa: F401 - re-exported
                                 expand_audio_paths, format_results, format_row, table_header,
                                 window_starts)

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


class Detector(CalibratedScoring):
    """A model ready to score files: input length, sample rate and decision threshold travel with it."""

    def __init__(self, model: nn.Module, num_samples: int, sample_rate: int = 16000,
                 threshold: float | None = None, batch_size: int = 16, device: str | torch.device | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.batch_size = batch_size
        self.name = getattr(model, "registry_name", None) or type(model).__name__
        self._model_hash: str | None = None
        self.calibration = None  # a plastispoof.calibration.Calibration once use_calibration() accepted it

    @classmethod
    def from_run(cls, run_dir: str | Path, **options: Any) -> "Detector":
        """The final model of a run directory, with the run's input length and its dev EER threshold of
        ``window-mean`` scores (None when the run has none: see the module notes)."""
        from plastispoof.runs import load_run_model

        model, meta = load_run_model(run_dir)
        detector = cls(model, meta["input"]["num_samples"], meta["input"]["sample_rate"], run_threshold(meta),
                       **options)
        detector.name = meta["model"]["name"]
        return detector

    @classmethod
    def from_weights(cls, model_name: str | None, weights_path: str | Path | None, **options: Any) -> "Detector":
        """A published model from a foreign ``.pth`` state_dict (e.g. official AASIST); no threshold is known."""
        if not model_name or not weights_path:
            raise InputError("say which model scores: --run RUN_DIR, or --model NAME with --weights FILE.pth")
        from plastispoof.models.aasist import load_official

        detector = cls(load_official(model_name, weights_path), ASVSPOOF_NUM_SAMPLES, **options)
        detector.name = model_name
        return detector

    @staticmethod
    def from_onnx(path: str | Path, **options: Any):
        """An ONNX export (``plastispoof export``) run by onnxruntime, no PyTorch: an
        :class:`~plastispoof.onnx_runtime.OnnxDetector` with the same scoring methods."""
        from plastispoof.onnx_runtime import OnnxDetector

        return OnnxDetector.from_onnx(path, **options)

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

        # Windows of several files share a batch (a dev set is mostly short files, one window each), and each
        # file's score is the mean of its windows' scores, as in score_waveform.
        per_file: list[list[torch.Tensor]] = [[] for _ in trials]
        pending: list[np.ndarray] = []
        owners: list[int] = []

        def flush() -> None:
            batch = torch.from_numpy(np.ascontiguousarray(np.stack(pending), dtype=np.float32))
            with torch.no_grad():
                scores = model_scores(self.model, batch.to(self.device)).float().cpu()
            for owner, score in zip(owners, scores):
                per_file[owner].append(score)
            pending.clear()
            owners.clear()

        for index, trial in enumerate(trials):
            for window in self.windows(load_audio(trial.path, self.sample_rate)):
                pending.append(window)
                owners.append(index)
                if len(pending) == self.batch_size:
                    flush()
        if pending:
            flush()
        means = [float(torch.stack(scores).mean()) for scores in per_file]
        eer, self.threshold = compute_eer([m for m, t in zip(means, trials) if t.label == "bonafide"],
                                          [m for m, t in zip(means, trials) if t.label != "bonafide"])
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


    # ------------------------------------------------------------------ calibrated results, timelines

    @property
    def model_hash(self) -> str:
        """SHA-256 of the weights (:func:`plastispoof.calibration.model_hash`), computed once."""
        if self._model_hash is None:
            from plastispoof.calibration import model_hash

            self._model_hash = model_hash(self.model)
        return self._model_hash

    def window_scores(self, waveform: np.ndarray) -> np.ndarray:
        """The score of every window of :meth:`windows` (their mean is :meth:`score_waveform`)."""
        windows = torch.from_numpy(np.ascontiguousarray(self.windows(waveform), dtype=np.float32))
        with torch.no_grad():
            scores = [model_scores(self.model, batch.to(self.device)).float().cpu()
                      for batch in windows.split(self.batch_size)]
        return torch.cat(scores).double().numpy()
