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

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

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
    llr: float | None = None
    p_bonafide: float | None = None
    prior: float | None = None
    operating_point: str | None = None
    threshold: float | None = None
    duration_s: float | None = None
    model: str | None = None
    model_hash: str | None = None
    segments: list[dict[str, float | None]] | None = None
    note: str | None = None

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

    def use_calibration(self, calibration) -> None:
        """Score with ``calibration`` (a :class:`~plastispoof.calibration.Calibration` or a path to one); one
        fitted on other weights is refused."""
        from plastispoof.calibration import read_calibration

        if isinstance(calibration, (str, Path)):
            source = str(calibration)
            calibration = read_calibration(calibration)
        else:
            source = "the calibration"
        if calibration.model_hash != self.model_hash:
            raise InputError(f"{source} belongs to other weights (sha256 {str(calibration.model_hash)[:12]}...) "
                             f"than this {self.name} model ({self.model_hash[:12]}...); calibrate this model "
                             "with plastispoof calibrate")
        self.calibration = calibration

    def window_scores(self, waveform: np.ndarray) -> np.ndarray:
        """The score of every window of :meth:`windows` (their mean is :meth:`score_waveform`)."""
        windows = torch.from_numpy(np.ascontiguousarray(self.windows(waveform), dtype=np.float32))
        with torch.no_grad():
            scores = [model_scores(self.model, batch.to(self.device)).float().cpu()
                      for batch in windows.split(self.batch_size)]
        return torch.cat(scores).double().numpy()

    def iter_results(self, paths: list[str | Path], *, operating_point: str | None = None, prior: float = 0.5,
                     segments: bool = False) -> Iterator[ScoreResult]:
        """Score files and folders one at a time (a result is yielded as soon as its file is done).

        Each result has ``score`` (raw, higher = more bona fide), with a calibration ``llr`` and ``p_bonafide``
        at ``prior``, a ``decision`` at ``operating_point`` (``eer`` | ``fpr=X`` | ``bayes``; None = ``eer``
        when a threshold is known, else no decision), ``duration_s``, the model's name and weight hash, and with
        ``segments`` the timeline ``[{start_s, end_s, score, llr}]`` of its windows. An operating point that
        cannot be reached is an InputError before any file is scored.
        """
        from plastispoof.calibration import decision_threshold, logit

        logit(prior)
        if operating_point is None and self.calibration is None and self.threshold is None:
            domain, threshold, point = "score", None, None
        else:
            point = operating_point or "eer"
            domain, threshold = decision_threshold(point, self.calibration, self.threshold, prior)
        return self._results(expand_audio_paths(paths), point, domain, threshold, prior, segments)

    def _results(self, found: list[tuple[Path, str | None]], point: str | None, domain: str,
                 threshold: float | None, prior: float, segments: bool) -> Iterator[ScoreResult]:
        from plastispoof.calibration import logit, sigmoid

        for path, problem in found:
            base = {"model": self.name, "model_hash": self.model_hash, "operating_point": point,
                    "threshold": threshold, "prior": prior if self.calibration is not None else None}
            if problem:
                yield ScoreResult(str(path), None, None, problem, **base)
                continue
            try:
                waveform = load_audio(path, self.sample_rate)
                timeline = None
                if segments:
                    per_window = self.window_scores(waveform)
                    score = float(per_window.mean())
                    timeline = self._timeline(len(waveform), per_window)
                else:
                    score = self.score_waveform(waveform)
            except InputError as err:
                yield ScoreResult(str(path), None, None, str(err), **base)
                continue
            if not np.isfinite(score):
                yield ScoreResult(str(path), None, None, f"the model gave a NaN or infinite score for {path}", **base)
                continue
            llr = p_bonafide = None
            if self.calibration is not None:
                llr = float(self.calibration.llr(score))
                p_bonafide = sigmoid(llr + logit(prior))
            decision = None
            if threshold is not None:
                value = llr if domain == "llr" else score
                decision = "bonafide" if value > threshold else "spoof"
            note = None
            if segments and len(waveform) < self.num_samples:
                note = (f"shorter than one window ({len(waveform) / self.sample_rate:.3f} s < "
                        f"{self.num_samples / self.sample_rate:.3f} s): one repeat-padded segment")
            yield ScoreResult(str(path), score, decision, None, llr, p_bonafide, base["prior"], point, threshold,
                              len(waveform) / self.sample_rate, self.name, self.model_hash, timeline, note)

    def _timeline(self, length: int, per_window: np.ndarray) -> list[dict[str, float | None]]:
        starts = window_starts(length, self.num_samples)
        rate = self.sample_rate
        return [{"start_s": start / rate, "end_s": min(start + self.num_samples, max(length, 1)) / rate,
                 "score": float(score),
                 "llr": float(self.calibration.llr(float(score))) if self.calibration is not None else None}
                for start, score in zip(starts, per_window)]


def window_starts(length: int, window: int, hop: int | None = None) -> list[int]:
    """Start sample of each window :func:`plastispoof.audio.sliding_windows` cuts from ``length`` samples.

    >>> window_starts(10, 4), window_starts(9, 4, hop=4), window_starts(3, 4)
    ([0, 2, 4, 6], [0, 4, 5], [0])
    """
    hop = max(window // 2, 1) if hop is None else hop
    if length <= window:
        return [0]
    last = length - window
    starts = list(range(0, last + 1, hop))
    if starts[-1] != last:
        starts.append(last)
    return starts


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


def table_header(calibrated: bool) -> str:
    """Column names of :func:`format_row` (score: raw, higher = more bona fide)."""
    llr = f"{'llr':>9}  {'p_bonafide':>10}  " if calibrated else ""
    return f"{'score':>10}  {llr}{'decision':<8}  {'seconds':>8}  path"


def format_row(result: ScoreResult, calibrated: bool) -> str:
    """One table line for a person (the JSON Lines output carries everything)."""
    if result.error:
        return f"{'error':>10}  {'':<{23 if calibrated else 0}}{'':<8}  {'':>8}  {result.path}: {result.error}"
    llr = f"{result.llr:9.3f}  {result.p_bonafide:10.4f}  " if calibrated else ""
    line = f"{result.score:10.4f}  {llr}{result.decision or '-':<8}  {result.duration_s:8.2f}  {result.path}"
    if result.note:
        line += f"  ({result.note})"
    for segment in result.segments or []:
        seg_llr = f"  llr {segment['llr']:8.3f}" if segment["llr"] is not None else ""
        line += f"\n{'':>10}  {segment['start_s']:8.2f}-{segment['end_s']:<8.2f} s  score {segment['score']:9.4f}{seg_llr}"
    return line


def format_results(results: list[ScoreResult]) -> str:
    """One line per file: score, decision and path (or the error)."""
    lines = []
    for result in results:
        if result.error:
            lines.append(f"{'error':>10}  {'':<8}  {result.path}: {result.error}")
        else:
            lines.append(f"{result.score:10.4f}  {result.decision or '':<8}  {result.path}")
    return "\n".join(lines)
