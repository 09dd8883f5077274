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

Handed a calibration (:meth:`use_calibration`; :func:`plastispoof.detectors.load_detector` reads the file) each
file also gets ``llr`` (natural-log
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

from plastispoof.audio import ASVSPOOF_NUM_SAMPLES
from plastispoof.errors import InputError
from plastispoof.metrics import trials_eer
from plastispoof.models.aasist import load_official
from plastispoof.results import CalibratedScoring, ScoreResult
from plastispoof.runs import load_run_model
from plastispoof.scoring import (
    file_score,
    model_scores,
    run_threshold,
    window_mean_scores,
)
from plastispoof.weights_hash import model_hash

# What a Detector computes in. ``bfloat16`` runs the model under autocast to bfloat16 (AASIST: its encoder blocks
# in bfloat16, see AASIST._sliced_inference_dtype): on CPUs with native bfloat16 (AVX-512 BF16, AMX) and on GPUs
# it is faster, and scores move by about 0.01, at most 0.1 (docs/decisions.md); thresholds and calibrations
# fitted on float32 scores still apply to within that.
PRECISIONS = ("float32", "bfloat16")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` has fast bfloat16 kernels: a CPU oneDNN runs bfloat16 on (AVX-512 or newer; native
    with AVX-512 BF16 or AMX), a GPU that supports it. Elsewhere bfloat16 falls back to slow reference code."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or newer torch without this check: say nothing
        return True


class Detector(CalibratedScoring):
    """A model ready to score files: input length, sample rate and decision threshold travel with it."""

    def __init__(self, model: nn.Module, num_samples: int, sample_rate: int = 16000,
                 threshold: float | None = None, batch_size: int = 16, device: str | torch.device | None = None,
                 precision: str = "float32"):
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = precision
        self.model = model.to(self.device).eval()
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.batch_size = batch_size
        self.name = getattr(model, "registry_name", None) or type(model).__name__
        self._model_hash: str | None = None
        self.calibration = None  # set by use_calibration()

    @classmethod
    def from_run(cls, run_dir: str | Path, **options: Any) -> "Detector":
        """The final model of a run directory, with the run's input length and its dev EER threshold of
        ``window-mean`` scores (None when the run has none: see the module notes)."""
        model, meta = load_run_model(run_dir)
        detector = cls(model, meta["input"]["num_samples"], meta["input"]["sample_rate"], run_threshold(meta),
                       **options)
        detector.name = meta["model"]["name"]
        detector.dev_eer = meta.get("dev_eer")
        return detector

    @classmethod
    def from_weights(cls, model_name: str | None, weights_path: str | Path | None, **options: Any) -> "Detector":
        """A published model from a foreign ``.pth`` state_dict (e.g. official AASIST); no threshold is known."""
        if not model_name or not weights_path:
            raise InputError("say which model scores: --run RUN_DIR, or --model NAME with --weights FILE.pth")

        detector = cls(load_official(model_name, weights_path), ASVSPOOF_NUM_SAMPLES, **options)
        detector.name = model_name
        return detector

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        """Scores of a ``(n, num_samples)`` float32 batch of windows (eval mode, no gradients; under bfloat16
        autocast when the detector's precision is ``bfloat16``)."""
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                             enabled=self.precision == "bfloat16"):
            return model_scores(self.model, torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def decide(self, score: float) -> str | None:
        if self.threshold is None:
            return None
        return "bonafide" if score > self.threshold else "spoof"

    def fit_threshold(self, trials: list[Any]) -> tuple[float, float]:
        """Score ``trials`` (:class:`~plastispoof.data.trials.Trial` s of a dev set) as this detector scores
        files, and decide from now on at the EER threshold of those scores. Returns ``(eer, threshold)``."""
        eer, self.threshold = trials_eer(trials, window_mean_scores(self, trials, show_progress=False))
        return eer, self.threshold

    def score_paths(self, paths: list[str | Path]) -> list[ScoreResult]:
        """Score files and folders (searched recursively for audio files); a file that fails is reported in
        its result's ``error`` and the others are still scored."""
        results = []
        for path, wave, per_window in self.scored_files(*self.found_files(paths)):
            if isinstance(wave, InputError):
                results.append(ScoreResult(str(path), None, None, str(wave)))
            else:
                score = file_score(per_window)
                results.append(ScoreResult(str(path), score, self.decide(score)))
        return results

    # ------------------------------------------------------------------ calibrated results, timelines

    @property
    def model_hash(self) -> str:
        """SHA-256 of the weights (:func:`plastispoof.weights_hash.model_hash`), computed once."""
        if self._model_hash is None:
            self._model_hash = model_hash(self.model)
        return self._model_hash
