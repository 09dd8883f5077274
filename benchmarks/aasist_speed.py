"""AASIST speed on a CPU: one training step against the published implementation, and scoring in x real time.

``train``: forward + cross-entropy + backward of our AASIST on a batch of ``--batch`` x 64,600 samples of noise
(training mode, official weights). With ``--reference PATH`` (``models/AASIST.py`` of a clone of
clovaai/aasist, loaded with importlib, never copied here) the published ``Model`` is built with the published
config, gets the same official weights and the same batch, and the two steps alternate in one process
(``--repeats`` rounds after one warm-up round each); it prints medians, user and system CPU seconds
(``resource.getrusage``) and the ratio ours / reference (the median of the per-round ratios, so that load
from other processes, which drifts slowly, cancels). Gradients are dropped after each step, untimed.

``score``: ``--clips`` clips of 1-6 s (durations and content from ``--seed``) are written as 16 kHz WAV files
and scored as ``plastispoof score --model aasist --weights FILE`` scores them (``Detector.from_weights`` and
``score_paths``: each file is loaded, cut into 64,600-sample windows and its windows scored). Prints seconds
of audio per wall-clock second (x real time), and user vs system CPU seconds of the whole process.
``--whole-maps`` (both parts) also runs our model with its CPU fast paths off (``cpu_fast_paths = False``);
``--bfloat16`` (score) also scores with ``Detector(precision="bfloat16")`` (``plastispoof score --precision
bfloat16``) and prints the largest score difference from float32.

    python benchmarks/aasist_speed.py train --reference /path/to/aasist/models/AASIST.py
    python benchmarks/aasist_speed.py score
    python benchmarks/aasist_speed.py score --clips 40 --whole-maps
    python benchmarks/aasist_speed.py score --bfloat16
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from features import cpu_name
from torch import nn

from plastispoof.inference import Detector
from plastispoof.models.aasist import AASIST_CONFIG, load_official, read_state_dict
from plastispoof.runtime import keep_freed_memory

SAMPLE_RATE = 16000
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/data/aasist/AASIST.pth"


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def load_reference(path: Path, weights: Path) -> nn.Module:
    """The published ``Model`` from the user's copy of ``models/AASIST.py``, with the official weights."""
    spec = importlib.util.spec_from_file_location("reference_aasist", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Model({key: value for key, value in AASIST_CONFIG.items()})
    model.load_state_dict(read_state_dict(weights), strict=True)
    return model


def train_step(model: nn.Module, waveform: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Forward + CE loss, then backward; wall seconds of each and CPU seconds of both."""
    user, system = cpu_seconds()
    started = time.perf_counter()
    loss = F.cross_entropy(model(waveform), target)
    forward_done = time.perf_counter()
    loss.backward()
    done = time.perf_counter()
    user_after, system_after = cpu_seconds()
    model.zero_grad(set_to_none=True)
    return {"forward": forward_done - started, "backward": done - forward_done, "step": done - started,
            "user": user_after - user, "sys": system_after - system}


def run_train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    models = {"ours": load_official("aasist", args.weights).train()}
    if args.whole_maps:
        models["ours, whole maps"] = load_official("aasist", args.weights).train()
        models["ours, whole maps"].cpu_fast_paths = False
    if args.reference:
        models["reference"] = load_reference(args.reference, args.weights).train()
    generator = torch.Generator().manual_seed(args.seed)
    waveform = 0.1 * torch.randn(args.batch, AASIST_CONFIG["nb_samp"], generator=generator)
    target = torch.arange(args.batch) % 2
    for model in models.values():  # warm-up: oneDNN primitives, allocator
        train_step(model, waveform, target)
    rounds = [{name: train_step(model, waveform, target) for name, model in models.items()}
              for _ in range(args.repeats)]

    print(f"# {date.today()}  torch {torch.__version__}  {cpu_name()}, {args.threads} threads  AASIST train step "
          f"(forward + CE + backward), batch {args.batch} x {AASIST_CONFIG['nb_samp']} samples, official weights, "
          f"median of {args.repeats} alternating rounds")
    print("| model | step s | forward s | backward s | forward ms / utt. | backward ms / utt. | user s | sys s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in models:
        med = {key: statistics.median(r[name][key] for r in rounds) for key in rounds[0][name]}
        print(f"| {name} | {med['step']:.2f} | {med['forward']:.2f} | {med['backward']:.2f} | "
              f"{1000 * med['forward'] / args.batch:.0f} | {1000 * med['backward'] / args.batch:.0f} | "
              f"{med['user']:.2f} | {med['sys']:.2f} |")
    if "reference" in models:
        ratios = [r["ours"]["step"] / r["reference"]["step"] for r in rounds]
        cpu_ratios = [(r["ours"]["user"] + r["ours"]["sys"]) / (r["reference"]["user"] + r["reference"]["sys"])
                      for r in rounds]
        print(f"\nours / reference, step wall time: median {statistics.median(ratios):.2f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}); CPU time: {statistics.median(cpu_ratios):.2f}")


def write_clips(folder: Path, count: int, seed: int) -> float:
    """``count`` WAV clips of 1-6 s (a gliding harmonic tone with an envelope, plus noise); total seconds."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for index in range(count):
        seconds = rng.uniform(1.0, 6.0)
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) ** 2
        clip = 0.1 * voiced * envelope + 0.01 * rng.standard_normal(len(t))
        sf.write(folder / f"clip{index:04d}.wav", (0.9 * clip / np.abs(clip).max()).astype(np.float32),
                 SAMPLE_RATE, subtype="PCM_16")
        total += len(t) / SAMPLE_RATE
    return total


def time_scoring(detector: Detector, folder: Path) -> tuple[list[float], float, float, float]:
    user, system = cpu_seconds()
    started = time.perf_counter()
    results = detector.score_paths([folder])
    wall = time.perf_counter() - started
    user_after, system_after = cpu_seconds()
    failed = [r for r in results if r.error]
    if failed:
        raise SystemExit(f"{len(failed)} clips failed, e.g. {failed[0].path}: {failed[0].error}")
    return [r.score for r in results], wall, user_after - user, system_after - system


def run_score(args: argparse.Namespace) -> None:
    detector = Detector.from_weights("aasist", args.weights, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        audio_seconds = write_clips(folder, args.clips, args.seed)
        windows = sum(len(detector.windows(np.zeros(sf.info(p).frames))) for p in sorted(folder.glob("*.wav")))
        detector.score_waveform(np.zeros(SAMPLE_RATE, dtype=np.float32))  # warm-up: oneDNN primitives
        variants = ([("fast paths (default)", True, "float32")]
                    + ([("fast paths, --precision bfloat16", True, "bfloat16")] if args.bfloat16 else [])
                    + ([("whole maps", False, "float32")] if args.whole_maps else []))
        print(f"# {date.today()}  torch {torch.__version__}  {cpu_name()}, {args.threads} threads  AASIST "
              f"(official weights) scoring {args.clips} clips of 1-6 s ({audio_seconds:.0f} s of audio, "
              f"{windows} windows of 64,600 samples), Detector.score_paths")
        print("| path | wall s | x real time | user s | sys s | sys / user |")
        print("|---|---:|---:|---:|---:|---:|")
        scores = {}
        for name, fast, precision in variants:
            detector.model.cpu_fast_paths, detector.precision = fast, precision
            scores[name], wall, user, system = time_scoring(detector, folder)
            print(f"| {name} | {wall:.1f} | {audio_seconds / wall:.1f}x | {user:.1f} | {system:.1f} | "
                  f"{100 * system / user:.1f} % |", flush=True)
        first, *others = scores
        reference = np.array(scores[first])
        for name in others:
            print(f"\nlargest score difference, {name} against {first}: "
                  f"{np.abs(np.array(scores[name]) - reference).max():.2e} "
                  f"(scores span {reference.min():.3f} .. {reference.max():.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["train", "score"])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="official AASIST.pth")
    parser.add_argument("--reference", type=Path, help="models/AASIST.py of a clone of clovaai/aasist (train)")
    parser.add_argument("--batch", type=int, default=4, help="utterances per training step")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds (train)")
    parser.add_argument("--clips", type=int, default=240, help="clips to score (score)")
    parser.add_argument("--whole-maps", action="store_true", help="also run ours with its CPU fast paths off")
    parser.add_argument("--bfloat16", action="store_true", help="also score with --precision bfloat16 (score)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    keep_freed_memory()  # as the plastispoof command does
    torch.set_num_threads(args.threads)
    if args.part == "train":
        run_train(args)
    else:
        run_score(args)


if __name__ == "__main__":
    main()
