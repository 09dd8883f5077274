"""Scoring speed of a ResNet18 detector on CPU, in times real time (seconds of audio per wall-clock second).

Two cases, both through :class:`plastispoof.inference.Detector` (random weights, eval mode, 64,600-sample
input): a set of short utterances, each fitted to one window and scored in batches as ``plastispoof evaluate``
does, and one long file scored by ``Detector.score_waveform`` (half-overlapping windows, so about twice its
length is computed). Each case is timed ``--repeats`` times after a warm-up; the median is reported.

    python benchmarks/scoring.py                  # 32 x 4 s utterances and a 60 s file, 2 threads
    python benchmarks/scoring.py --threads 1 --batch 8
"""

from __future__ import annotations

import argparse
from datetime import date

import numpy as np
import torch

from features import cpu_name, median_seconds
from plastispoof.audio import ASVSPOOF_NUM_SAMPLES, fix_length
from plastispoof.scoring import model_scores
from plastispoof.inference import Detector
from plastispoof.models.base import build_model
from plastispoof.runtime import keep_freed_memory

SAMPLE_RATE = 16000


def score_batched(detector: Detector, utterances: list[np.ndarray]) -> torch.Tensor:
    """One score per utterance: each fitted to the model's input length, scored ``batch_size`` at a time."""
    windows = torch.from_numpy(np.stack([fix_length(u, detector.num_samples) for u in utterances]))
    with torch.no_grad():  # as Detector.score_waveform
        return torch.cat([model_scores(detector.model, batch) for batch in windows.split(detector.batch_size)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each utterance")
    parser.add_argument("--long-seconds", type=float, default=60.0, help="length of the file scored in windows")
    parser.add_argument("--batch", type=int, default=16, help="windows per forward pass (the Detector's default)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    keep_freed_memory()  # as the plastispoof command does
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    detector = Detector(build_model("resnet18"), ASVSPOOF_NUM_SAMPLES, SAMPLE_RATE, batch_size=args.batch,
                        device="cpu")
    rng = np.random.default_rng(0)
    utterances = [(0.1 * rng.standard_normal(int(args.seconds * SAMPLE_RATE))).astype(np.float32)
                  for _ in range(args.utterances)]
    long_file = (0.1 * rng.standard_normal(int(args.long_seconds * SAMPLE_RATE))).astype(np.float32)
    cases = {
        f"{args.utterances} x {args.seconds:g} s, batched": (lambda: score_batched(detector, utterances),
                                                              args.utterances * args.seconds, args.utterances),
        f"{args.long_seconds:g} s file, sliding windows": (lambda: detector.score_waveform(long_file),
                                                           args.long_seconds, len(detector.windows(long_file))),
    }
    print(f"# {date.today()}  torch {torch.__version__}  {cpu_name()}, {args.threads} threads  resnet18 "
          f"(random weights), input {ASVSPOOF_NUM_SAMPLES} samples, batch {args.batch}, median of {args.repeats}")
    print("| case | windows | audio s | wall s | x real time |")
    print("|---|---:|---:|---:|---:|")
    for name, (run, audio_seconds, windows) in cases.items():
        wall = median_seconds(run, args.repeats)
        print(f"| {name} | {windows} | {audio_seconds:g} | {wall:.3f} | {audio_seconds / wall:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
