"""What ``plastispoof score`` returns for a file, without PyTorch: the result record, the calibrated-scoring logic
shared by :class:`plastispoof.inference.Detector` (PyTorch) and :class:`plastispoof.onnx_runtime.OnnxDetector`
(onnxruntime), folder expansion, timelines and the table people read.

A scorer mixes in :class:`CalibratedScoring` and provides ``name``, ``model_hash``, ``num_samples``,
``sample_rate``, ``batch_size``, ``threshold`` (its own dev EER threshold of window-mean scores, or None),
``calibration`` and ``score_batch(windows) -> scores`` (:class:`plastispoof.scoring.WindowScorer`: the windows
of neighbouring files share batches, and files are decoded ahead in threads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from plastispoof.audio import MAX_SECONDS, STREAM_SECONDS, StreamedAudio, audio_seconds, load_audio
from plastispoof.calibration import Calibration, decision_threshold
from plastispoof.errors import InputError
from plastispoof.metrics import logit, sigmoid
from plastispoof.scoring import WindowScorer, file_score

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".webm")
# Below this a clip holds too little speech for a trustworthy score (docs/decisions.md): its result says so.
MIN_RELIABLE_SECONDS = 1.0


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
    precision: str | None = None  # what a PyTorch model computed in (float32 | bfloat16); None for ONNX

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DecisionRule(NamedTuple):
    """How a score becomes a decision: the operating point, the domain its threshold is in (``score`` | ``llr``),
    the threshold (None: no decision), the prior of ``p_bonafide`` and the line that says it."""

    point: str | None
    domain: str
    threshold: float | None
    prior: float
    text: str


class CalibratedScoring(WindowScorer):
    """Calibrated, streamed scoring of files for any scorer (see the module notes)."""

    calibration: Calibration | None = None  # set by use_calibration()
    precision: str | None = None  # what the model computes in (a Detector's float32 | bfloat16); None for ONNX
    max_seconds: float = MAX_SECONDS  # longer files are refused (score --max-seconds)
    dev_eer: float | None = None  # the dev EER its run or export stored, when known
    on_note: Any = None  # called once per kind of conversion (stereo, resampled) with a line for a person

    def found_files(self, paths: list[str | Path]) -> tuple[list[Path], Any]:
        """The files to score (folders expanded, see :func:`expand_audio_paths`) and a loader that reads them
        at the scorer's rate, raising for a path that was not found as the decoding of a bad file would."""
        found = expand_audio_paths(paths)
        problems = {path: problem for path, problem in found if problem}
        told: set[str] = set()

        def converted(kind: str, text: str) -> None:  # once per kind and run, not once per file
            if kind not in told and self.on_note is not None:
                told.add(kind)
                self.on_note(f"note: {text}")

        def load(path: Path) -> np.ndarray | StreamedAudio:
            if path in problems:
                raise InputError(problems[path])
            seconds = audio_seconds(path)
            if seconds is not None and seconds > STREAM_SECONDS:  # long: read block by block, memory bounded
                if self.max_seconds and seconds > self.max_seconds:
                    raise InputError(f"audio file {path} lasts {seconds:.0f} s, over the {self.max_seconds:g} s "
                                     "limit (score --max-seconds)")
                return StreamedAudio(path, self.sample_rate, self.max_seconds, converted)
            return load_audio(path, self.sample_rate, max_seconds=self.max_seconds, on_conversion=converted)

        return [path for path, _ in found], load

    def use_calibration(self, calibration: Calibration, source: str = "the calibration") -> None:
        """Score with ``calibration``; one fitted on other weights is refused (``source`` names it)."""
        if calibration.model_hash != self.model_hash:
            raise InputError(f"{source} belongs to other weights (sha256 {str(calibration.model_hash)[:12]}...) "
                             f"than this {self.name} model ({self.model_hash[:12]}...); calibrate this model "
                             "with plastispoof calibrate")
        self.calibration = calibration

    def iter_results(self, paths: list[str | Path], *, operating_point: str | None = None, prior: float = 0.5,
                     segments: bool = False, load: Callable[[Any], np.ndarray] | None = None
                     ) -> Iterator[ScoreResult]:
        """Score files and folders one at a time (a result is yielded as soon as its file is done).

        Each result has ``score`` (raw, higher = more bona fide), with a calibration ``llr`` and ``p_bonafide``
        at ``prior``, a ``decision`` at ``operating_point`` (``eer`` | ``fpr=X`` | ``bayes``; None = ``eer``
        when a threshold is known, else no decision), ``duration_s``, the model's name and weight hash, and with
        ``segments`` the timeline ``[{start_s, end_s, score, llr}]`` of its windows. An operating point that
        cannot be reached is an InputError before any file is scored.

        ``load`` (for audio that is not in files, e.g. a service's uploads): ``paths`` are then only names,
        never looked up on disk, and ``load(name)`` returns each one's waveform at the scorer's rate or raises
        :class:`InputError`, which becomes that result's ``error``.
        """
        rule = self.decision_rule_for(operating_point, prior)
        self.decision_rule = rule.text
        found = (list(paths), load) if load is not None else self.found_files(paths)
        return (self.file_result(path, wave, per_window, rule, segments)
                for path, wave, per_window in self.scored_files(*found))

    def decision_rule_for(self, operating_point: str | None = None, prior: float = 0.5) -> DecisionRule:
        """How results are decided at ``operating_point`` and ``prior`` (see :meth:`iter_results`)."""
        logit(prior)
        if operating_point is None and self.calibration is None and self.threshold is None:
            domain, threshold, point = "score", None, None
        else:
            point = operating_point or "eer"
            domain, threshold = decision_threshold(point, self.calibration, self.threshold, prior)
        return DecisionRule(point, domain, threshold, prior, describe_rule(point, domain, threshold, prior))

    def verdict(self, score: float, rule: DecisionRule) -> tuple[float | None, float | None, str | None]:
        """``(llr, p_bonafide, decision)`` of a file-level ``score`` under ``rule``."""
        llr = p_bonafide = None
        if self.calibration is not None:
            llr = float(self.calibration.llr(score))
            p_bonafide = sigmoid(llr + logit(rule.prior))
        decision = None
        if rule.threshold is not None:
            value = llr if rule.domain == "llr" else score
            decision = "bonafide" if value > rule.threshold else "spoof"
        return llr, p_bonafide, decision

    def file_result(self, path: Any, wave: np.ndarray | InputError, per_window: np.ndarray | None,
                    rule: DecisionRule, segments: bool = False) -> ScoreResult:
        """The result of one file from its waveform (or decoding error) and its window scores: what
        :meth:`iter_results` yields, and what a live stream ends with."""
        base = {"model": self.name, "model_hash": self.model_hash, "operating_point": rule.point,
                "threshold": rule.threshold, "prior": rule.prior if self.calibration is not None else None,
                "precision": self.precision}
        if isinstance(wave, InputError):
            return ScoreResult(str(path), None, None, str(wave), **base)
        waveform, score = wave, file_score(per_window)
        timeline = self._timeline(len(waveform), per_window) if segments else None
        if not np.isfinite(score):
            return ScoreResult(str(path), None, None, f"the model gave a NaN or infinite score for {path}", **base)
        llr, p_bonafide, decision = self.verdict(score, rule)
        return ScoreResult(str(path), score, decision, None, llr, p_bonafide,
                           duration_s=len(waveform) / self.sample_rate, segments=timeline,
                           note=self._length_note(len(waveform)), **base)

    def _length_note(self, length: int) -> str | None:
        seconds, window = length / self.sample_rate, self.num_samples / self.sample_rate
        notes = []
        if seconds < MIN_RELIABLE_SECONDS:
            notes.append(f"only {seconds:.3f} s of audio, under the {MIN_RELIABLE_SECONDS:g} s minimum for a "
                         "trustworthy score")
        if length < self.num_samples:
            notes.append(f"shorter than one window ({seconds:.3f} s < {window:.3f} s): repeat-padded to one "
                         f"{window:.3f} s window")
        return "; ".join(notes) or None

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
    """Files as given, folders expanded to their audio files (sorted), a ``.parquet`` manifest to its files (refused
    when stale); a path that does not exist or a folder with no audio comes back with a problem instead."""
    found: list[tuple[Path, str | None]] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            found += [(p, None) for p in files] or [(path, f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in "
                                                          f"folder {path}")]
        elif path.suffix.lower() == ".parquet" and path.is_file():  # a manifest of plastispoof prepare
            from plastispoof.data.manifest import manifest_paths

            found += [(p, None) for p in manifest_paths(path)]
        elif path.exists():
            found.append((path, None))
        else:
            found.append((path, f"no such file or folder: {path}"))
    if not found:
        raise InputError("no audio files or folders were given to score")
    return found


def describe_rule(point: str | None, domain: str, threshold: float | None, prior: float) -> str:
    """One line saying how decisions are taken (the table's first line)."""
    if threshold is None:
        return "decision: none (no dev threshold of window-mean scores; calibrate the model or fit one)"
    if domain == "llr":
        return f"decision at {point}: bona fide when llr > {threshold + 0.0:.4g} (= -logit of prior {prior:g})"
    return f"decision at {point}: bona fide when score > {threshold:.6g}"


def table_header(calibrated: bool) -> str:
    """Column names of :func:`format_row` (score: raw, higher = more bona fide)."""
    llr = f"{'llr':>9}  {'p_bonafide':>10}  " if calibrated else ""
    return f"{'score':>10}  {llr}{'decision':<8}  {'audio_s':>8}  path"


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
        line += (f"\n{'':>10}  {segment['start_s']:8.2f}-{segment['end_s']:<8.2f} s  "
                 f"score {segment['score']:9.4f}{seg_llr}")
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
