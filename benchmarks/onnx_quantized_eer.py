"""EER of a run scored three ways on one evaluation set: eager PyTorch, its float32 ONNX export and its int8
(dynamic quantisation) export, all pooled as ``plastispoof score`` pools a file (window mean).

Prints the EER of each, the largest |score difference| against PyTorch, and the wall time of each pass.

    python benchmarks/onnx_quantized_eer.py runs/grnn-baseline --dataset synthetic --root data/synthetic-demo
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from plastispoof.data.protocols import read_dataset
from plastispoof.inference import Detector
from plastispoof.metrics import compute_eer
from plastispoof.onnx_export import export_onnx
from plastispoof.onnx_runtime import OnnxDetector
from plastispoof.runtime import keep_freed_memory
from plastispoof.scoring import window_mean_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--subset", default="eval")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    trials = read_dataset(args.dataset, args.root, args.subset)
    labels = np.array([t.label == "bonafide" for t in trials])
    with tempfile.TemporaryDirectory() as scratch:
        export_onnx(args.run, Path(scratch) / "fp32.onnx")
        export_onnx(args.run, Path(scratch) / "int8.onnx", quantize=True)
        scorers = {"pytorch": Detector.from_run(args.run, device="cpu"),
                   "onnx float32": OnnxDetector.from_onnx(Path(scratch) / "fp32.onnx", threads=args.threads),
                   "onnx int8": OnnxDetector.from_onnx(Path(scratch) / "int8.onnx", threads=args.threads)}
        results = {}
        for name, scorer in scorers.items():
            started = time.perf_counter()
            scores = window_mean_scores(scorer, trials, show_progress=False)
            values = np.array([scores[t.utt_id] for t in trials])
            results[name] = (values, time.perf_counter() - started)
    reference = results["pytorch"][0]
    print(f"{len(trials)} {args.subset} trials ({labels.sum()} bona fide), {args.threads} threads")
    print(f"{'scorer':<14} {'EER %':>7} {'max |diff| vs pytorch':>22} {'seconds':>8}")
    for name, (values, seconds) in results.items():
        eer = compute_eer(values[labels], values[~labels])[0]
        print(f"{name:<14} {100 * eer:7.2f} {np.abs(values - reference).max():22.2e} {seconds:8.1f}")


if __name__ == "__main__":
    main()
