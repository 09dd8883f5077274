"""Scoring speed of a ResNet18 detector on CPU, in times real time (seconds of audio per wall-clock second).

Two cases, both through :class:`plastispoof.inference.Detector` (random weights, eval mode, 64,600-sample
input): a set of short utterances, each fitted to one window and scored in batches as ``plastispoof evaluate``
does, and one long file scored by ``Detector.score_waveform`` (half-overlapping windows, so about twice its
length is computed). Each case is timed ``--repeats`` times after a warm-up; the median is reported.

A third case scores a folder of ``--files`` clips of 1-10 s (seeded lengths, 16-bit WAV written to a temporary
folder) through ``Detector.iter_results``, the ``plastispoof score`` path: windows of neighbouring files share
batches and files are decoded ahead in threads. It prints x real time and files/s beside the same folder scored
one file at a time (``score_file`` in a loop, each file its own batches), and the resident memory after 200
files and after the last.

    python benchmarks/scoring.py                  # 32 x 4 s utterances, a 60 s file, 2,000 clips; 2 threads
    python benchmarks/scoring.py --threads 1 --batch 8 --files 0
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from features import cpu_name, median_seconds

from plastispoof.audio import ASVSPOOF_NUM_SAMPLES, fix_length
from plastispoof.inference import Detector
from plastispoof.models.base import build_model
from plastispoof.runtime import keep_freed_memory
from plastispoof.scoring import model_scores

SAMPLE_RATE = 16000


def score_batched(detector: Detector, utterances: list[np.ndarray]) -> torch.Tensor:
    """One score per utterance: each fitted to the model's input length, scored ``batch_size`` at a time."""
    windows = torch.from_numpy(np.stack([fix_length(u, detector.num_samples) for u in utterances]))
    with torch.no_grad():  # as Detector.score_waveform
        return torch.cat([model_scores(detector.model, batch) for batch in windows.split(detector.batch_size)])


def resident_mb() -> float:
    """This process's resident memory now (Linux /proc), in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def write_clips(folder: Path, count: int, seed: int = 0) -> list[int]:
    """``count`` noise clips of 1-10 s as 16-bit WAV; returns their lengths in samples."""
    rng = np.random.default_rng(seed)
    lengths = []
    for index in range(count):
        lengths.append(int(rng.uniform(1.0, 10.0) * SAMPLE_RATE))
        sf.write(folder / f"{index:05d}.wav", 0.1 * rng.standard_normal(lengths[-1]), SAMPLE_RATE,
                 subtype="PCM_16")
    return lengths


def folder_case(detector: Detector, count: int) -> None:
    """The ``score`` path on a folder against one file at a time, with resident memory along the way."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lengths = write_clips(folder, count)
        audio_seconds = sum(lengths) / SAMPLE_RATE
        # Windows the model runs on: a clip shorter than one window is repeat-padded to it, a longer one is
        # covered by half-overlapping windows, so more audio is computed than the folder holds.
        computed = sum(len(detector.windows(np.zeros(n, dtype=np.float32))) for n in lengths) * detector.num_samples
        paths = sorted(folder.glob("*.wav"))
        detector.score_file(paths[0])  # warm-up
        memory = {}
        started = time.perf_counter()
        for index, result in enumerate(detector.iter_results([folder]), 1):
            assert result.error is None, result.error
            if index in (200, count):
                memory[index] = resident_mb()
        batched = time.perf_counter() - started
        started = time.perf_counter()
        for path in paths:
            detector.score_file(path)
        one_by_one = time.perf_counter() - started
    print(f"\n{count} clips of 1-10 s ({audio_seconds:.0f} s of audio), iter_results on the folder vs score_file "
          "one at a time:")
    print("| path | wall s | x real time | files/s |")
    print("|---|---:|---:|---:|")
    for name, wall in (("iter_results (batched across files, decoded ahead)", batched),
                       ("score_file per file", one_by_one)):
        print(f"| {name} | {wall:.1f} | {audio_seconds / wall:.0f}x | {count / wall:.1f} |")
    print(f"ratio one-by-one / batched: {one_by_one / batched:.2f}")
    print(f"windows computed: {computed / SAMPLE_RATE:.0f} s for {audio_seconds:.0f} s of audio "
          f"({computed / SAMPLE_RATE / audio_seconds:.2f}x): x real time of the folder = x real time of the windows "
          f"/ {computed / SAMPLE_RATE / audio_seconds:.2f}")
    if 200 in memory:
        print(f"resident memory: {memory[200]:.0f} MB after 200 files, {memory[count]:.0f} MB after {count} "
              f"(growth {memory[count] - memory[200]:+.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each utterance")
    parser.add_argument("--long-seconds", type=float, default=60.0, help="length of the file scored in windows")
    parser.add_argument("--batch", type=int, default=16, help="windows per forward pass (the Detector's default)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--files", type=int, default=2000, help="clips in the folder case (0: skip it)")
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
    if args.files:
        folder_case(detector, args.files)


if __name__ == "__main__":
    main()
