"""Augmentation throughput per worker vs a ResNet18 training step per utterance, side by side on one core.

Each augmentation (``plastispoof.augment``, applied with p = 1) runs on the same 2 s crops (32,000 samples at
16 kHz, the demo's crop) one utterance at a time, as a DataLoader worker does; the training step is the demo's
ResNet18 (log-mel, 64 mel) on a batch of ``--batch`` such crops: forward, cross-entropy, backward, Adam step.
Rounds run round-robin over all sides (machine load hits them alike); each round times ``--utterances``
augmented crops per augmentation and one training step. The table gives the median per-utterance time over
``--repeats`` rounds, utterances per second per worker, and how many times faster than the training step per
utterance each augmentation is. ``--threads 1`` (the default) is "one core": torch, numpy and FFmpeg each get one
thread. Times are the process's CPU time (``time.process_time``), which on one thread is the work done on one
core whatever else the machine runs; wall-clock medians are printed beside them.

    .venv/bin/python benchmarks/augment_throughput.py
    .venv/bin/python benchmarks/augment_throughput.py --repeats 3 --utterances 8
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--utterances", type=int, default=16, help="augmented crops per augmentation per round")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)

    import numpy as np
    import torch
    import torch.nn.functional as F
    from threadpoolctl import threadpool_limits

    from plastispoof.augment import codecs
    from plastispoof.augment.pipeline import AugmentPipeline
    from plastispoof.models.base import build_model

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    rate, samples = 16000, int(args.seconds * 16000)
    rng = np.random.default_rng(0)
    t = np.arange(samples) / rate
    crops = [(0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) * sum(np.sin(2 * np.pi * f0 * k * t) / k
                                                                    for k in range(1, 20))
              + 0.005 * rng.standard_normal(samples)).astype(np.float32)
             for f0 in rng.uniform(90, 250, args.utterances)]

    sides: dict[str, list[dict]] = {
        "rawboost (convolutive + impulsive, series; the recipe)": [{"name": "rawboost", "p": 1.0}],
        "rawboost (all three, series)": [{"name": "rawboost", "p": 1.0,
                                          "algorithms": ["convolutive", "impulsive", "coloured"]}],
        "rawboost (all three, parallel)": [{"name": "rawboost", "p": 1.0, "combine": "parallel",
                                            "algorithms": ["convolutive", "impulsive", "coloured"]}],
    }
    for codec in codecs.available_codecs():
        sides[f"codec {codec}"] = [{"name": "codec", "p": 1.0, "codecs": [codec]}]
    sides["codec (any, as in the recipe)"] = [{"name": "codec", "p": 1.0}]
    sides["rawboost + codec (any)"] = [{"name": "rawboost", "p": 1.0}, {"name": "codec", "p": 1.0}]
    sides["telephone band"] = [{"name": "telephone", "p": 1.0}]
    sides["noise (generated, 5-20 dB)"] = [{"name": "noise", "p": 1.0}]
    sides["reverb (generated, RT60 0.2-1 s)"] = [{"name": "reverb", "p": 1.0}]
    sides["gain"] = [{"name": "gain", "p": 1.0}]
    pipelines = {name: AugmentPipeline(options, rate) for name, options in sides.items()}

    model = build_model("resnet18", n_mels=64)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = torch.from_numpy(np.stack([crops[i % len(crops)] for i in range(args.batch)]))
    labels = torch.arange(args.batch) % 2

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch), labels).backward()
        optimizer.step()

    times: dict[str, list[float]] = {name: [] for name in [*sides, "train step"]}
    walls: dict[str, list[float]] = {name: [] for name in times}
    for round_index in range(args.repeats + 1):  # round 0 warms up (imports, codec libraries, allocator)
        for name, pipeline in pipelines.items():
            start, wall = time.process_time(), time.perf_counter()
            for i, crop in enumerate(crops):
                pipeline(crop, (round_index, 0, i))
            if round_index:
                times[name].append((time.process_time() - start) / len(crops))
                walls[name].append((time.perf_counter() - wall) / len(crops))
        start, wall = time.process_time(), time.perf_counter()
        train_step()
        if round_index:
            times["train step"].append((time.process_time() - start) / args.batch)
            walls["train step"].append((time.perf_counter() - wall) / args.batch)

    step = statistics.median(times["train step"])
    print(f"# {date.today()}  {platform.processor() or platform.machine()}  threads {args.threads}  "
          f"torch {torch.__version__}  av {__import__('av').__version__}  {args.seconds:g} s crops  "
          f"{args.repeats} rounds (median)")
    print("| side | CPU ms per utterance | utterances/s per worker (CPU) | × faster than the training step | "
          "wall ms per utterance |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        per = statistics.median(values)
        ratio = "1.0 (reference)" if name == "train step" else f"{step / per:.2f}"
        label = f"ResNet18 training step (batch {args.batch}), per utterance" if name == "train step" else name
        print(f"| {label} | {1000 * per:.2f} | {1 / per:.0f} | {ratio} | {1000 * statistics.median(walls[name]):.2f} |")


if __name__ == "__main__":
    main()
