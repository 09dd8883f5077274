"""ONNX (onnxruntime) vs eager PyTorch scoring speed, side by side in one process on the same input.

For each model (random weights, seed 0; the architecture, not the weights, sets the cost) the script exports the
score graph with ``plastispoof.onnx_export.export_detector`` (features inside), then times, in alternating
rounds, eager PyTorch (``model_scores`` under ``torch.no_grad``, ``torch.set_num_threads(T)``) and onnxruntime
(``intra_op_num_threads = T``) on the same batch of ``--batch`` x 64,600 samples (4 s at 16 kHz). It prints the
median seconds per batch, the ratio PyTorch / ONNX (the median of per-round ratios, so slow drifts in machine
load cancel), and the largest score difference. ``--quantize`` also times the int8 dynamic export.

    python benchmarks/onnx_speed.py --threads 2 --models resnet18,grnn,aasist,wav2vec2-small
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from features import cpu_name

from plastispoof.inference import Detector
from plastispoof.models.base import build_model
from plastispoof.onnx_export import export_detector
from plastispoof.onnx_runtime import OnnxDetector
from plastispoof.runtime import keep_freed_memory
from plastispoof.scoring import model_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18,grnn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quantize", action="store_true")
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}, {args.threads} threads each side, batch {args.batch} x 64600 samples, "
          f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}")
    print(f"{'model':<16} {'pytorch s':>10} {'onnx s':>10} {'speed-up':>9} {'max |diff|':>11}")
    waves = np.random.default_rng(1).standard_normal((args.batch, 64600)).astype(np.float32) * 0.1
    batch = torch.from_numpy(waves)
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = build_model(name).eval()
            detector = Detector(model, 64600, device="cpu")
            variants = [("float32", False)] + ([("int8", True)] if args.quantize else [])
            for label, quantize in variants:
                path = Path(scratch) / f"{name}-{label}.onnx"
                export_detector(detector, path, quantize=quantize, check=False)
                onnx = OnnxDetector.from_onnx(path, threads=args.threads)
                for module in model.modules():  # eager PyTorch as a user runs it (fast paths on)
                    if hasattr(module, "cpu_fast_paths"):
                        module.cpu_fast_paths = True
                eager_times, onnx_times, ratios = [], [], []
                with torch.no_grad():
                    reference = model_scores(model, batch).numpy()
                    produced = onnx.score_batch(waves)
                    for _ in range(args.repeats + 1):
                        started = time.perf_counter()
                        model_scores(model, batch)
                        eager = time.perf_counter() - started
                        started = time.perf_counter()
                        onnx.score_batch(waves)
                        runtime = time.perf_counter() - started
                        eager_times.append(eager)
                        onnx_times.append(runtime)
                        ratios.append(eager / runtime)
                eager_times, onnx_times, ratios = eager_times[1:], onnx_times[1:], ratios[1:]  # first: warm-up
                print(f"{name + ' ' + label:<16} {statistics.median(eager_times):10.4f} "
                      f"{statistics.median(onnx_times):10.4f} {statistics.median(ratios):8.2f}x "
                      f"{np.abs(reference - produced).max():11.2e}", flush=True)


if __name__ == "__main__":
    main()
