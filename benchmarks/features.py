"""Front-end speed: plastispoof's batched torch LogMel / LFCC vs a librosa loop over utterances, on CPU.

Both sides compute the same features (the script checks the largest difference) from the same batch, timed in
turn (torch, librosa, torch, ...) in this run; it prints the median time per batch over ``--repeats`` rounds and
the ratio.

    python benchmarks/features.py                 # batch 8 x 64600 samples (4 s at 16 kHz), one core each
    python benchmarks/features.py --threads 2     # two cores each

Both sides get the same number of threads: torch's intra-op threads, and the BLAS and OpenMP pools that numpy
and scipy use under librosa (through threadpoolctl; numpy's OpenBLAS would otherwise take every core for the
filterbank product). One thread is the default, so the ratio compares the two computations on equal hardware
and does not depend on how busy the other cores are.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from functools import partial
from typing import Callable

import librosa
import numpy as np
import scipy.fft
import torch
from threadpoolctl import threadpool_limits

from plastispoof.features import LFCC, LogMel, linear_filterbank
from plastispoof.runtime import keep_freed_memory

SR, N_FFT, HOP = 16000, 1024, 512


def librosa_logmel(batch: np.ndarray) -> np.ndarray:
    """The authors' recipe, one utterance at a time: 64-band mel power -> dB -> per-utterance normalisation."""
    out = []
    for utterance in batch:
        mel = librosa.feature.melspectrogram(y=utterance, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=64,
                                             pad_mode="reflect")
        decibels = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
        out.append((decibels - decibels.mean()) / (decibels.std() + 1e-5))
    return np.stack(out)


def librosa_lfcc(batch: np.ndarray) -> np.ndarray:
    """20 LFCC from 20 linear filters, with Δ and ΔΔ, one utterance at a time."""
    filters = linear_filterbank(SR, N_FFT, 20)
    out = []
    for utterance in batch:
        power = np.abs(librosa.stft(utterance, n_fft=N_FFT, hop_length=HOP, pad_mode="reflect")) ** 2
        cepstra = scipy.fft.dct(np.log(np.maximum(filters @ power, 1e-10)), type=2, norm="ortho", axis=0)
        out.append(np.concatenate([cepstra, librosa.feature.delta(cepstra), librosa.feature.delta(cepstra, order=2)]))
    return np.stack(out)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    return round_robin_medians([run], repeats)[0]


def round_robin_medians(runs: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each callable, timed in turn (a, b, a, b, ...) so that slow spells of a shared or
    virtual machine fall on every side alike."""
    for run in runs:
        run()  # warm-up: first-call allocations, FFT plans
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, series in zip(runs, times):
            start = time.perf_counter()
            run()
            series.append(time.perf_counter() - start)
    return [statistics.median(series) for series in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=64600)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1, help="threads for each side")
    args = parser.parse_args()
    keep_freed_memory()  # as the plastispoof command does
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)

    audio = (0.1 * np.random.default_rng(0).standard_normal((args.batch, args.samples))).astype(np.float32)
    waveform = torch.from_numpy(audio)
    cases = {
        "LogMel (64 mel)": (LogMel(), librosa_logmel),
        "LFCC (20 + Δ + ΔΔ)": (LFCC(delta_order=2), librosa_lfcc),
    }
    print(f"batch {args.batch} x {args.samples} samples, {args.repeats} repeats, torch {torch.__version__} "
          f"and librosa {librosa.__version__}, {args.threads} thread(s) each, {cpu_name()}")
    print(f"{'front-end':<20} {'torch ms':>9} {'librosa ms':>11} {'speed-up':>9} {'max |diff|':>11}")
    for name, (frontend, reference) in cases.items():
        with torch.inference_mode():
            difference = float(np.abs(frontend(waveform).numpy() - reference(audio)).max())
            ours, theirs = round_robin_medians([partial(frontend, waveform), partial(reference, audio)], args.repeats)
        print(f"{name:<20} {ours * 1e3:9.1f} {theirs * 1e3:11.1f} {theirs / ours:8.1f}x {difference:11.2e}")


if __name__ == "__main__":
    main()
