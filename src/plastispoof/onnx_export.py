"""``plastispoof export RUN --out model.onnx``: a run (or foreign weights) as one ONNX graph, features inside.

The graph maps raw waveforms ``waveform: float32 (batch, num_samples)`` at the model's sample rate (16 kHz for
every built-in model) to ``score: float32 (batch,)`` (bona fide logit minus spoof logit, higher = more bona fide),
with a dynamic batch axis; the front-end (log-mel, LFCC, sinc filters or a wav2vec 2.0 encoder) is part of the
graph. It is traced by PyTorch's ``torch.export``-based ONNX exporter (``dynamo=True``), which turns the
front-ends' ``torch.fft.rfft`` into ONNX's ``DFT`` operator, so no hand-written STFT is needed; models with
CPU-only fast paths (AASIST) are exported through their reference path. After the export the graph is run
with onnxruntime on random input and compared with PyTorch; a difference above ``1e-3`` is an error.

``quantize=True`` applies onnxruntime's dynamic int8 quantisation (weights int8, activations quantised at run
time) to the exported graph's learnt weights; the front-end's fixed matrices stay float32
(:func:`fixed_feature_nodes`).

Beside ``model.onnx`` go ``model.card.json`` (the run's card plus ``export``) and, when the run is calibrated,
``model.calibration.json``; both also travel inside the file's metadata (key ``plastispoof``), which
:func:`plastispoof.onnx_runtime.read_export_metadata` reads and :class:`~plastispoof.onnx_runtime.OnnxDetector`
uses.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from plastispoof import runs
from plastispoof.calibration import CALIBRATION, read_calibration
from plastispoof.card import run_card, score_direction
from plastispoof.detectors import load_detector
from plastispoof.errors import InputError
from plastispoof.fileio import atomic_path, atomic_write_json
from plastispoof.models.base import count_parameters
from plastispoof.onnx_runtime import EXPORT_KIND, METADATA_KEY, OnnxDetector
from plastispoof.scoring import model_scores, run_threshold

OPSET = 18
TOLERANCE = 1e-3  # the export is refused beyond this; tests hold models to 1e-4


class ScoreGraph(nn.Module):
    """What is exported: waveform batch -> score per row (:func:`plastispoof.scoring.model_scores`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:

        return model_scores(self.model, waveform)


def _reference_paths(model: nn.Module) -> None:
    """Turn off CPU fast paths (in-place slicing, strided views) that ``torch.export`` cannot trace."""
    for module in model.modules():
        if hasattr(module, "cpu_fast_paths"):
            module.cpu_fast_paths = False


def export_onnx(run: str | Path | None, out: str | Path, *, model: str | None = None,
                weights: str | Path | None = None, quantize: bool = False, opset: int = OPSET,
                check: bool = True) -> dict[str, Any]:
    """Export the run's final model (or ``model`` + ``weights``) to ``out``; return the stored metadata."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"--out {out}: name the export *.onnx")
    if not out.parent.is_dir():  # a typo in the folder should not quietly create a new tree
        raise InputError(f"--out {out}: folder {out.parent} does not exist; create it first")
    detector = load_detector(run, model, weights, device="cpu", use_run_calibration=False)
    meta = runs.read_meta(run) if run is not None else None
    return export_detector(detector, out, run=run, meta=meta, quantize=quantize, opset=opset, check=check)


def export_detector(detector, out: str | Path, *, run: str | Path | None = None, meta: dict[str, Any] | None = None,
                    quantize: bool = False, opset: int = OPSET, check: bool = True) -> dict[str, Any]:
    """Export a :class:`~plastispoof.inference.Detector`'s model (``run`` / ``meta``: where its card, calibration
    and threshold come from; None for weights that are not a run)."""
    import onnx

    out = Path(out)
    network = detector.model.eval()
    _reference_paths(network)
    graph = ScoreGraph(network).eval()
    example = torch.zeros(2, detector.num_samples)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "model.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (example,), dynamo=True, opset_version=opset,
                                        input_names=["waveform"], output_names=["score"],
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                                        verbose=False)
            program.save(str(fp32))
        final = fp32
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            final = Path(scratch) / "model.int8.onnx"
            quantize_dynamic(str(fp32), str(final), weight_type=QuantType.QInt8,
                             nodes_to_exclude=fixed_feature_nodes(onnx.load(str(fp32)), network))
        proto = onnx.load(str(final))
        metadata = _metadata(detector, meta, run, opset, quantize, out)
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
        with atomic_path(out) as tmp:
            onnx.save(proto, str(tmp))
    seconds = time.perf_counter() - started
    if check:
        difference = max_difference(detector, out)
        if not quantize and difference > TOLERANCE:
            out.unlink(missing_ok=True)
            raise InputError(f"the ONNX graph of {detector.name} differs from PyTorch by {difference:.3g} "
                             f"(> {TOLERANCE}); not exported")
        metadata["check_max_abs_difference"] = difference
    stem = out.with_suffix("")
    atomic_write_json(Path(f"{stem}.card.json"), metadata["card"])
    if metadata.get("calibration"):
        atomic_write_json(Path(f"{stem}.calibration.json"), metadata["calibration"])
    metadata["seconds"] = round(seconds, 2)
    return metadata


def fixed_feature_nodes(proto, network: nn.Module) -> list[str]:
    """Matrix nodes (MatMul, Gemm, Conv) none of whose inputs is a trained parameter of ``network``: the
    front-end's fixed filterbanks, DFT and DCT matrices and delta kernels. Quantising them to int8 wrecks the
    features (log of a coarsely quantised power spectrum: the GRNN example went from 37 % to 46 % EER), so
    quantisation leaves them in float32 and quantises the learnt weights only."""
    parameters = {f"model.{name}" for name, _ in network.named_parameters()}
    return [node.name for node in proto.graph.node
            if node.op_type in ("MatMul", "Gemm", "Conv") and not parameters.intersection(node.input)]


def _metadata(detector, meta: dict[str, Any] | None, run, opset: int, quantize: bool, out: Path
              ) -> dict[str, Any]:

    calibration = None
    if run is not None and (Path(run) / CALIBRATION).is_file():
        stored = read_calibration(Path(run) / CALIBRATION)
        if stored.model_hash == detector.model_hash:
            calibration = stored.as_dict()
    if run is not None:
        card = run_card(run)
    else:
        card = {"card_version": 1, "model": detector.name, "params": count_parameters(detector.model),
                "training": None, "trained_here": False, "calibration": None,
                "input": {"sample_rate": detector.sample_rate, "num_samples": detector.num_samples,
                          "seconds": detector.num_samples / detector.sample_rate, "channels": 1},
                "score_direction": score_direction(detector.name), "weights_sha256": detector.model_hash}
    card["export"] = {"format": "onnx", "opset": opset, "precision": "int8 dynamic" if quantize else "float32",
                      "input": f"waveform float32 (batch, {detector.num_samples}) at {detector.sample_rate} Hz",
                      "output": "score float32 (batch,), higher = more bona fide", "file": out.name}
    return {"kind": EXPORT_KIND, "version": 1, "model": detector.name, "model_hash": detector.model_hash,
            "num_samples": detector.num_samples, "sample_rate": detector.sample_rate,
            "window_mean_threshold": run_threshold(meta) if meta else None,
            "quantized": quantize, "calibration": calibration, "card": card}


def max_difference(detector, path: str | Path, batch: int = 3, seed: int = 0) -> float:
    """Largest |ONNX score - PyTorch score| on a random batch of ``batch`` waveforms."""
    waves = np.random.default_rng(seed).standard_normal((batch, detector.num_samples)).astype(np.float32) * 0.1
    onnx_scores = OnnxDetector.from_onnx(path).score_batch(waves)
    with torch.no_grad():
        torch_scores = model_scores(detector.model, torch.from_numpy(waves)).numpy()
    return float(np.max(np.abs(onnx_scores - torch_scores)))


def format_export(out: Path, metadata: dict[str, Any]) -> str:
    lines = [f"exported {metadata['model']} to {out} ({'int8 dynamic' if metadata['quantized'] else 'float32'}, "
             f"input (batch, {metadata['num_samples']}) at {metadata['sample_rate']} Hz; "
             f"{metadata.get('seconds', 0):.1f} s)"]
    if "check_max_abs_difference" in metadata:
        lines.append(f"  max |score difference| vs PyTorch on random input: {metadata['check_max_abs_difference']:.2e}")
    stem = out.with_suffix("")
    lines.append(f"  card: {stem}.card.json" + (f"; calibration: {stem}.calibration.json"
                                                 if metadata.get("calibration") else " (no calibration in the run)"))
    return "\n".join(lines)
