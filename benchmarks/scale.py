"""How cost grows with corpus size: corpora of 1k, 4k and 16k short utterances (ASVspoof 2019 LA layout, 1 s
FLAC), and for each:

* ``prepare``: checking the corpus and writing its Parquet manifest; ``shards``: writing its WebDataset shards;
* loader throughput in utterances/s, from the files (TrialDataset) and from WebDataset shards;
* a ResNet18 training epoch (1 s crops), as seconds per 1k utterances;
* evaluation per 1k utterances, in one process and under torchrun with 2 ranks (the scoring time ``evaluate``
  logs, without start-up);
* Ray Data scoring with 1 and 2 actors (once Ray is up), and plain ``score`` on the same folder (once the
  model is loaded);
* the peak resident memory of each (every measurement runs in its own process: the largest process of its tree
  that was waited for, so torchrun's ranks count; Ray's workers are reaped by its raylet, so for Ray the figure
  is the driver's).

The goals it checks (the figures go to docs/benchmarks.md with the machine): time per 1k from 4k to 16k within
+-15 %, memory from 4k to 16k up by less than 10 %, 2 Ray actors >= 1.6x faster than 1, Ray >= 85 % of
``score`` on a folder at equal cores.

    python benchmarks/scale.py                          # 1k, 4k, 16k: an hour or more on 2 idle cores
    python benchmarks/scale.py --sizes 40,80 --quick    # proves it works in a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

HERE = Path(__file__).resolve().parent
SAMPLE_RATE = 16000
MEASURES = ("prepare", "shards", "loader-files", "loader-shards", "train-epoch", "evaluate-1", "evaluate-2", "ray-1",
            "ray-2", "score-folder")


def write_corpus(root: Path, n: int, seconds: float = 1.0, seed: int = 0) -> Path:
    """``n`` train, ``n // 4`` dev and ``n`` eval utterances (half bona fide), ASVspoof 2019 LA layout."""
    rng = np.random.default_rng(seed)
    samples = int(seconds * SAMPLE_RATE)
    t = np.arange(samples) / SAMPLE_RATE
    protocols = root / "LA" / "ASVspoof2019_LA_cm_protocols"
    protocols.mkdir(parents=True, exist_ok=True)
    for subset, count in (("train", n), ("dev", max(n // 4, 8)), ("eval", n)):
        audio = root / "LA" / f"ASVspoof2019_LA_{subset}" / "flac"
        audio.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            utt, spoof = f"LA_{subset[0].upper()}_{i:07d}", i % 2 == 1
            f0 = rng.uniform(120, 260)
            wave = 0.2 * rng.standard_normal(samples) if spoof else 0.3 * np.sin(2 * np.pi * f0 * t)
            sf.write(audio / f"{utt}.flac", wave.astype(np.float32), SAMPLE_RATE)
            lines.append(f"LA_{i % 20:04d} {utt} - {'A01' if spoof else '-'} {'spoof' if spoof else 'bonafide'}")
        suffix = "trn" if subset == "train" else "trl"
        (protocols / f"ASVspoof2019.LA.cm.{subset}.{suffix}.txt").write_text("\n".join(lines) + "\n")
    return root


def counts(n: int) -> dict[str, int]:
    return {"train": n, "dev": max(n // 4, 8), "eval": n}


# ------------------------------------------------------------------------------------------ one measurement


def _config(work: Path, root: Path, n: int, quick: bool) -> Path:
    config = {"name": "scale", "seed": 1, "output_dir": str(work / "runs"),
              "data": {"dataset": "asv19-la", "root": str(root), "num_samples": 16000, "batch_size": 32,
                       "eval_batch_size": 64, "num_workers": 1},
              "model": {"name": "resnet18", "args": {}},
              "train": {"epochs": 1, "lr": 1e-3, "device": "cpu"}}
    if quick:
        config["model"] = {"name": "grnn", "args": {"hidden_sizes": [4]}}
    path = work / "scale.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _cli(*args: str, ranks: int = 0) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)] \
        if ranks else [sys.executable]
    subprocess.run([*launcher, "-m", "plastispoof.cli", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def measure_one(name: str, root: Path, work: Path, n: int, quick: bool) -> dict:
    """Run one measurement in this process; ``seconds`` and the utterances it covered."""
    from plastispoof.data.prepare import prepare_corpus

    run = work / "runs" / "scale"
    started = time.perf_counter()
    if name == "prepare":
        prepare_corpus("asv19-la", root, expected=counts(n), out=work / "manifest.parquet", show_progress=False)
        return {"seconds": time.perf_counter() - started, "utterances": sum(counts(n).values())}
    if name == "shards":  # prepare --shards, in its own process: the loader measurement below only reads them
        shutil.rmtree(work / "shards", ignore_errors=True)
        prepare_corpus("asv19-la", root, expected=counts(n), shards=work / "shards",
                       shard_size=1000 if n >= 4000 else max(n // 8, 2), show_progress=False)
        return {"seconds": time.perf_counter() - started, "utterances": sum(counts(n).values())}
    if name.startswith("loader"):
        import torch
        from torch.utils.data import DataLoader

        from plastispoof.data.dataset import TrialDataset
        from plastispoof.data.protocols import read_dataset
        from plastispoof.data.shards import ShardTrainingSet

        torch.set_num_threads(1)
        trials = read_dataset("asv19-la", root, "train")
        if name == "loader-files":
            started = time.perf_counter()
            dataset = TrialDataset(trials, num_samples=16000, train=True)
            loader = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=2)
        else:
            if not (work / "shards").exists():
                raise RuntimeError("measure 'shards' before 'loader-shards'")
            started = time.perf_counter()
            dataset = ShardTrainingSet(work / "shards", "train", trials, num_samples=16000, num_workers=2)
            loader = DataLoader(dataset, batch_size=32, num_workers=2)
        seen = sum(len(batch[0]) for batch in loader)
        return {"seconds": time.perf_counter() - started, "utterances": seen}
    if name == "train-epoch":
        if run.exists():
            shutil.rmtree(run)
        _cli("train", str(_config(work, root, n, quick)))
        epoch = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][0]
        return {"seconds": epoch["epoch_s"], "utterances": n}
    if name.startswith("evaluate"):  # the scoring time evaluate logs (start-up and plots left out)
        ranks = 2 if name == "evaluate-2" else 0
        _cli("evaluate", str(run), "--dataset", "asv19-la", "--root", str(root), ranks=ranks)
        record = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
        return {"seconds": record["seconds"], "utterances": record["trials"]}
    folder = root / "LA" / "ASVspoof2019_LA_eval" / "flac"
    if name.startswith("ray"):
        from plastispoof.scale.ray_scoring import DetectorSpec, score_with_ray

        out = work / f"{name}.parquet"
        shutil.rmtree(out, ignore_errors=True)
        # One CPU per actor on a local instance with a CPU more for the decoding tasks (score_with_ray's default).
        result = score_with_ray([folder], out, DetectorSpec(run=str(run)), actors=int(name[-1]), cpus_per_actor=1)
        return {"seconds": result.pipeline_seconds, "utterances": result.files, "with_start_up": result.seconds}
    if name == "score-folder":  # what `plastispoof score FOLDER` does, timed once the model is loaded
        from plastispoof.inference import Detector

        detector = Detector.from_run(run)
        started = time.perf_counter()
        results = list(detector.iter_results([folder]))
        return {"seconds": time.perf_counter() - started, "utterances": len(results)}
    raise ValueError(name)


def run_measure(name: str, root: Path, work: Path, n: int, quick: bool) -> dict:
    """:func:`measure_one` in a child process: its result and the child's peak resident memory."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--root", str(root), "--work",
               str(work), "--n", str(n)] + (["--quick"] if quick else [])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"{name} at {n} failed (status {status})")
    return {**json.loads(output.strip().splitlines()[-1]), "peak_rss_mb": usage.ru_maxrss / 1024}


# ------------------------------------------------------------------------------------------------- goals


def goals(results: dict[int, dict[str, dict]]) -> dict[str, object]:
    sizes = sorted(results)
    if len(sizes) < 2:
        return {}
    small, large = results[sizes[-2]], results[sizes[-1]]
    per_1k = {name: (large[name]["seconds"] / large[name]["utterances"]) /
              (small[name]["seconds"] / small[name]["utterances"]) for name in large}
    memory = {name: large[name]["peak_rss_mb"] / small[name]["peak_rss_mb"] for name in large}
    found = {"time_per_1k_ratio": {k: round(v, 3) for k, v in per_1k.items()},
             "linear_within_15pct": all(abs(v - 1) <= 0.15 for v in per_1k.values()),
             "memory_ratio": {k: round(v, 3) for k, v in memory.items()},
             "memory_within_10pct": all(v < 1.10 for v in memory.values())}
    if {"ray-1", "ray-2"} <= large.keys():  # --measures may leave Ray out
        found["ray_2_vs_1_actors"] = round(large["ray-1"]["seconds"] / large["ray-2"]["seconds"], 3)
    if {"ray-2", "score-folder"} <= large.keys():
        found["ray_vs_score_folder"] = round(large["score-folder"]["seconds"] / large["ray-2"]["seconds"], 3)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,4000,16000")
    parser.add_argument("--quick", action="store_true", help="a tiny GRNN instead of ResNet18 (proof runs)")
    parser.add_argument("--measures", default=",".join(MEASURES))
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp folder)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.root, args.work, args.n, args.quick)))
        return
    base = args.keep or Path(tempfile.mkdtemp(prefix="scale-"))
    results: dict[int, dict[str, dict]] = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        root, work = write_corpus(base / f"corpus-{n}", n), base / f"work-{n}"
        work.mkdir(parents=True, exist_ok=True)
        results[n] = {}
        for name in args.measures.split(","):
            results[n][name] = run_measure(name, root, work, n, args.quick)
            one = results[n][name]
            print(f"{n:>6} {name:<14} {one['seconds']:9.2f} s  {1000 * one['seconds'] / one['utterances']:9.2f} "
                  f"s/1k  {one['utterances'] / one['seconds']:9.1f} utt/s  peak {one['peak_rss_mb']:8.1f} MB",
                  flush=True)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version(), "peak_rss_self_mb": resource.getrusage(
                   resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps({"machine": machine, "results": results, "goals": goals(results)}, indent=1))
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
