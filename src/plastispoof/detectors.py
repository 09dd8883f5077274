"""From a person's model options to a ready scorer, and the scoring job behind ``plastispoof score``.

Every verb that scores (``score``, ``calibrate``, ``export``, ``stress``) and the service build their scorer with
:func:`load_detector`, so the same options mean the same model everywhere: a run directory (``run``), an ONNX
export (``onnx``) or published weights (``model`` + ``weights``), exactly one of them; two at once are refused
rather than one silently winning. The scorer is handed its calibration here (a file given, else the run's own
``calibration.json`` or the one stored in the export): detectors never read calibration files themselves.

:func:`start_scoring` is ``plastispoof score`` as a library call: the scorer, the table's header lines, the notes
a person should read (on stderr in the CLI), the results streamed one file at a time (timeline PNGs written as
they go) and the failure count::

    job = start_scoring(["calls/"], run="runs/resnet18-baseline", operating_point="eer")
    for result in job.results:
        print(result.path, result.decision)
    job.failed  # files that could not be scored
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plastispoof.calibration import CALIBRATION, calibration_from_dict, read_calibration
from plastispoof.errors import InputError
from plastispoof.metrics import compute_eer
from plastispoof.results import ScoreResult, table_header

# A detector whose dev EER is at least this is close to a coin flip: its decisions are reported with a warning.
NEAR_CHANCE_EER = 0.40


def check_model_options(run: str | Path | None = None, model: str | None = None,
                        weights: str | Path | None = None, onnx: str | Path | None = None) -> str:
    """Which one source of a model the options name: ``run``, ``onnx`` or ``weights``; InputError when they name
    two (``--run`` with ``--weights``, ``--onnx`` with ``--run``, ...) or none.

    >>> check_model_options(run="runs/a")
    'run'
    >>> check_model_options(run="runs/a", model="aasist", weights="AASIST.pth")
    Traceback (most recent call last):
    ...
    plastispoof.errors.InputError: give one model: --run runs/a and --model aasist --weights AASIST.pth name two
    """
    given = {name: text for name, text in (
        ("run", run is not None and f"--run {run}"),
        ("onnx", onnx is not None and f"--onnx {onnx}"),
        ("weights", (model is not None or weights is not None)
         and " ".join(part for part in (model and f"--model {model}", weights and f"--weights {weights}") if part)),
    ) if text}
    if len(given) > 1:
        raise InputError(f"give one model: {' and '.join(given.values())} name two")
    if not given:
        raise InputError("say which model scores: --run RUN_DIR, --onnx FILE.onnx, or --model NAME with "
                         "--weights FILE.pth")
    return next(iter(given))


def load_detector(run: str | Path | None = None, model: str | None = None, weights: str | Path | None = None,
                  onnx: str | Path | None = None, calibration: str | Path | None = None, precision: str = "float32",
                  *, device: str | None = None, use_run_calibration: bool = True, shipped: str | None = None):
    """A :class:`~plastispoof.inference.Detector` (or an :class:`~plastispoof.onnx_runtime.OnnxDetector`) from one
    model source, scoring with ``calibration`` (a file), else with the run's or the export's own calibration
    (unless ``use_run_calibration=False``, as ``calibrate`` wants before it fits one). ``shipped``: a detector
    shipped in the package (plastispoof.shipped), with its own calibration."""
    if shipped is not None:
        if any(option is not None for option in (run, model, weights, onnx)):
            raise InputError("--shipped names a detector shipped in the package: drop --run, --model, --weights, "
                             "--onnx")
        from plastispoof.shipped import load_shipped

        detector = load_shipped(shipped, precision=precision, device=device)
        if calibration is not None:
            detector.use_calibration(read_calibration(calibration), source=str(calibration))
        return detector
    source = check_model_options(run, model, weights, onnx)
    if source == "onnx":
        from plastispoof.onnx_runtime import OnnxDetector  # onnxruntime is heavy; only exports need it

        if precision != "float32":
            raise InputError("--precision is for PyTorch models; an ONNX export runs in the precision it was "
                             "exported in (plastispoof export --quantize for int8)")
        detector = OnnxDetector.from_onnx(onnx)
        stored = detector.metadata.get("calibration")
        own = calibration_from_dict(stored, f"the calibration stored in {onnx}") if stored else None
    else:
        from plastispoof.inference import Detector  # PyTorch: not loaded for an ONNX export

        options = {"precision": precision, "device": device}
        detector = Detector.from_run(run, **options) if run else Detector.from_weights(model, weights, **options)
        own_path = Path(run) / CALIBRATION if run else None
        own = read_calibration(own_path) if own_path is not None and own_path.is_file() else None
    if calibration is not None:
        detector.use_calibration(read_calibration(calibration), source=str(calibration))
    elif own is not None and use_run_calibration:
        detector.use_calibration(own, source=f"the calibration of {run or onnx}")
    return detector


@dataclass
class ScoringJob:
    """What :func:`start_scoring` returns: iterate ``results``; ``failed`` and ``total`` count as they go."""

    detector: Any
    header: list[str]
    calibrated: bool
    results: Iterator[ScoreResult] = field(repr=False)
    total: int = 0
    failed: int = 0
    model_line: str | None = None  # a shipped detector: the line that names it (the header's first)

    @property
    def summary(self) -> str:
        return f"{self.failed} of {self.total} files could not be scored"


def start_scoring(paths: list[str | Path], *, run: str | Path | None = None, model: str | None = None,
                  weights: str | Path | None = None, onnx: str | Path | None = None,
                  calibration: str | Path | None = None, prior: float = 0.5, operating_point: str | None = None,
                  segments: bool = False, plot: str | Path | None = None, precision: str = "float32",
                  max_seconds: float | None = None, device: str | None = None,
                  note: Callable[[str], None] = lambda text: None, shipped: str | None = None) -> ScoringJob:
    """``plastispoof score`` as a library call (see the module notes). ``note`` receives what a person should be
    told once (a slow precision here, a model near chance, stereo or resampled input) as it is known; ``plot``
    writes one timeline PNG per file into that folder (named so two files of one name do not collide). With no
    model option at all, the shipped default detector scores (``shipped`` names another)."""
    model_line = None
    if shipped is not None or all(option is None for option in (run, model, weights, onnx)):
        from plastispoof.shipped import DEFAULT
        from plastispoof.shipped import model_line as shipped_model_line

        shipped = shipped or DEFAULT
        model_line = shipped_model_line(shipped)
    detector = load_detector(run, model, weights, onnx, calibration, precision, device=device, shipped=shipped)
    if max_seconds is not None:
        detector.max_seconds = max_seconds
    detector.on_note = note
    if precision == "bfloat16":
        from plastispoof.inference import native_bfloat16

        if not native_bfloat16(detector.device):
            note("note: oneDNN has no bfloat16 kernels for this CPU (they need AVX-512): --precision bfloat16 will "
                 "be slower than float32 here")
    dev_eer = detector_dev_eer(detector)
    if dev_eer is not None and dev_eer >= NEAR_CHANCE_EER:
        note(f"warning: this model's dev EER is {100 * dev_eer:.1f} %, close to chance (50 %): its decisions are "
             "little better than a coin flip")
    calibrated = detector.calibration is not None
    results = detector.iter_results(paths, operating_point=operating_point, prior=prior,
                                    segments=segments or plot is not None)
    header = [f"# {detector.name}: {detector.decision_rule}; score: higher = more bona fide"
              + (f"; p_bonafide at prior {prior:g}" if calibrated else "")
              + ("; computed in bfloat16" if precision == "bfloat16" else ""),
              table_header(calibrated)]
    if model_line is not None:
        header.insert(0, model_line)
    job = ScoringJob(detector, header, calibrated, iter(()), model_line=model_line)
    job.results = _counted(job, results, plot)
    return job


def detector_dev_eer(detector) -> float | None:
    """The dev EER of the scores a detector gives (its calibration's window-mean dev scores; else the run's or the
    export's stored dev EER), or None when nothing says."""
    if detector.calibration is not None:
        return compute_eer(detector.calibration.bonafide_scores, detector.calibration.spoof_scores)[0]
    return getattr(detector, "dev_eer", None)


def _counted(job: ScoringJob, results: Iterator[ScoreResult], plot: str | Path | None) -> Iterator[ScoreResult]:
    written: set[Path] = set()
    for result in results:
        job.total += 1
        job.failed += bool(result.error)
        if plot is not None and not result.error:
            from plastispoof.timeline import plot_timeline, timeline_path  # matplotlib only when plotting

            path = timeline_path(plot, result.path, taken=written)
            written.add(path)
            plot_timeline(job.detector, result, path)
        yield result
