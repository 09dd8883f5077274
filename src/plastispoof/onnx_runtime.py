"""Score with an ONNX export (``plastispoof export``) through onnxruntime, without PyTorch::

    from plastispoof.onnx_runtime import OnnxDetector      # or Detector.from_onnx
    detector = OnnxDetector.from_onnx("model.onnx")
    for result in detector.iter_results(["clips/"]):      # the same results as a run's Detector
        print(result.path, result.score, result.llr, result.decision)

The graph takes raw 16 kHz waveforms ``(batch, num_samples)`` float32 (the features are inside it) and returns
the score per row (higher = more bona fide). Files are cut into the same windows as
:class:`plastispoof.inference.Detector` cuts them, and a file's score is the mean over its windows. The export's
metadata (key ``plastispoof``) carries the model name, the weights' hash, the input length and rate, the
window-mean dev EER threshold, the calibration (handed to the detector by
:func:`plastispoof.detectors.load_detector`) and the model card; a file without it is not an export and is
refused. Nothing here imports PyTorch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from plastispoof.errors import InputError
from plastispoof.results import CalibratedScoring

METADATA_KEY = "plastispoof"
EXPORT_KIND = "plastispoof-onnx"


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for files that are not ONNX models
        raise InputError(f"{path} is not an ONNX model onnxruntime can load ({str(err).splitlines()[0][:200]})"
                         ) from None


def read_export_metadata(path: str | Path, session=None) -> dict[str, Any]:
    """The metadata ``plastispoof export`` stored in an ONNX file (InputError for any other file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX file not found: {path}")
    session = session or _session(path)
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        metadata = json.loads(text) if text else None
    except json.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("kind") != EXPORT_KIND:
        raise InputError(f"{path} is not a plastispoof export (no {METADATA_KEY!r} metadata); make one with "
                         "plastispoof export RUN --out model.onnx")
    return metadata


class OnnxDetector(CalibratedScoring):
    """A scorer like :class:`plastispoof.inference.Detector`, running an ONNX export with onnxruntime."""

    def __init__(self, session, metadata: dict[str, Any], batch_size: int = 16):
        self.session = session
        self.metadata = metadata
        self.input_name = session.get_inputs()[0].name
        self.name = metadata["model"]
        self.model_hash = metadata["model_hash"]
        self.num_samples = int(metadata["num_samples"])
        self.sample_rate = int(metadata["sample_rate"])
        self.threshold = metadata.get("window_mean_threshold")
        self.batch_size = batch_size
        self.calibration = None
        self.dev_eer = (metadata.get("card") or {}).get("dev_eer")

    @classmethod
    def from_onnx(cls, path: str | Path, *, threads: int | None = None, batch_size: int = 16) -> "OnnxDetector":
        """Load an export, uncalibrated: :func:`plastispoof.detectors.load_detector` hands it the calibration
        stored in ``metadata["calibration"]``."""
        path = Path(path)
        session = _session(path, threads) if path.is_file() else None
        metadata = read_export_metadata(path, session)
        return cls(session, metadata, batch_size)

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        """Scores of a ``(n, num_samples)`` float32 batch."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
