"""Kill soak: a tiny training run is killed with SIGKILL at random moments and resumed (``train --resume``) after
each kill, until it finishes; the finished run must have the same weights hash and metrics as an uninterrupted
run, and no kill may leave the run directory unreadable.

Each kill aims at one moment in turn: anywhere (a random time), during a checkpoint write, during dev evaluation
or during a training step. ``_soak_train.py`` runs ``plastispoof train`` with those functions wrapped to write
their name to a phase file while they run; the soak kills when the phase it aims at comes up (after a random
number of sightings) and counts the phase each kill really hit. When a run finishes before the kills asked for,
a fresh run starts and is killed in turn (each finished run is compared).

    python benchmarks/kill_soak.py --kills 20 --out /tmp/soak      # about 3 minutes on one idle core
    python benchmarks/kill_soak.py --kills 20 --ray                 # also kill a Ray scoring actor

Prints one JSON object: kills by moment, runs compared, all equal, unreadable files (must be 0).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from safetensors import safe_open

# The tests' tiny corpus (harmonic tones vs noise, ASVspoof 2019 LA layout): one writer for both.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_run import write_tiny_corpus  # noqa: E402

TIMING_KEYS = {"fwd_ms", "bwd_ms", "epoch_s", "time", "forward_ms", "backward_ms", "seconds"}
MOMENTS = ("random", "checkpoint write", "dev evaluation", "training step")


def write_config(path: Path, corpus: Path, out: Path, name: str, epochs: int) -> Path:
    config = {"name": name, "seed": 3, "output_dir": str(out),
              "data": {"dataset": "asv19-la", "root": str(corpus), "num_samples": 4800, "batch_size": 8,
                       "eval_batch_size": 16},
              "model": {"name": "grnn", "args": {"hidden_sizes": [4]}},
              "train": {"epochs": epochs, "lr": 0.01, "device": "cpu", "warmup_steps": 1}}
    path.write_text(yaml.safe_dump(config))
    return path


WRAPPER = Path(__file__).with_name("_soak_train.py")  # train, writing the phase it is in to a file


def _command(config: Path, resume: bool) -> list[str]:
    return [sys.executable, str(WRAPPER), "train", str(config)] + (["--resume"] if resume else [])


def _env(phase_file: Path | None = None) -> dict[str, str]:
    phase = {"KILL_SOAK_PHASE_FILE": str(phase_file or Path(os.devnull))}
    return {**os.environ, "OMP_NUM_THREADS": "1", **phase}


def weights_hash(path: Path) -> str:
    """SHA-256 over the tensors of a safetensors file (names and bytes, in name order)."""
    digest = hashlib.sha256()
    with safe_open(str(path), framework="numpy") as handle:
        for name in sorted(handle.keys()):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(handle.get_tensor(name)).tobytes())
    return digest.hexdigest()


def run_summary(run_dir: Path) -> dict:
    """What must match between runs: the final weights' hash, the metrics log without clock times, the dev EERs
    and thresholds of meta.json."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    meta = json.loads((run_dir / "meta.json").read_text())
    return {"weights": weights_hash(run_dir / "model.safetensors"),
            "metrics": [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records],
            "dev": {k: meta.get(k) for k in ("dev_eer", "dev_threshold", "dev_thresholds", "finished")}}


def unreadable_files(run_dir: Path) -> list[str]:
    """Files of the run directory that do not parse (temp files of interrupted writes are not run files)."""
    bad = []
    for path in run_dir.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            elif path.suffix in (".yaml", ".yml"):
                yaml.safe_load(path.read_text())
            elif path.suffix == ".safetensors":
                with safe_open(str(path), framework="numpy") as handle:
                    [handle.get_tensor(name) for name in handle.keys()]
        except Exception as err:  # any failure to parse is what this soak looks for
            bad.append(f"{path}: {type(err).__name__}")
    return bad


def _phase(phase_file: Path) -> str:
    try:
        return phase_file.read_bytes().decode(errors="replace").strip() or "start-up"
    except OSError:
        return "start-up"


def kill_once(config: Path, phase_file: Path, resume: bool, aim: str, limit: float, rng: random.Random) -> str | None:
    """Start ``train`` (``--resume``), kill it at the ``aim`` moment (or a random time before ``limit`` s); the
    phase it was killed in, or None when it finished first."""
    phase_file.write_bytes(b"")
    process = subprocess.Popen(_command(config, resume), env=_env(phase_file), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    started = time.perf_counter()
    deadline = started + rng.uniform(0.5, limit) if aim == "random" else started + 3 * limit
    skip = rng.randrange(0, 6)  # aimed kills: let a few sightings pass, so kills land in different epochs
    seen = False
    while process.poll() is None and time.perf_counter() < deadline:
        if aim != "random":
            now_in = _phase(phase_file) == aim
            if now_in and not seen:
                if skip == 0:
                    break
                skip -= 1
            seen = now_in
        time.sleep(0.0002)
    if process.poll() is not None:
        return None
    os.kill(process.pid, signal.SIGKILL)  # the training process this soak started
    process.wait()
    return _phase(phase_file)


def finish(config: Path) -> None:
    subprocess.run(_command(config, True), env=_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def kill_soak(out: Path, kills: int = 20, epochs: int = 3, seed: int = 0) -> dict:
    """Kill and resume tiny runs until ``kills`` kills; compare every finished run with an uninterrupted one."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    corpus = write_tiny_corpus(out / "corpus", {"train": (12, 12), "dev": (16, 16), "eval": (2, 2)}, seconds=0.3)
    reference_config = write_config(out / "reference.yaml", corpus, out / "runs", "reference", epochs)
    started = time.perf_counter()
    subprocess.run(_command(reference_config, False), env=_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    reference_seconds = time.perf_counter() - started
    reference = run_summary(out / "runs" / "reference")
    moments: Counter = Counter()
    compared, equal, unreadable, cycle = 0, 0, [], 0
    while sum(moments.values()) < kills:
        cycle += 1
        name = f"soak{cycle}"
        config = write_config(out / f"{name}.yaml", corpus, out / "runs", name, epochs)
        run_dir = out / "runs" / name
        resume = False
        while sum(moments.values()) < kills:
            aim = MOMENTS[sum(moments.values()) % len(MOMENTS)]
            moment = kill_once(config, out / f"{name}.phase", resume, aim, reference_seconds, rng)
            if moment is None:
                break  # the run finished first
            moments[moment] += 1
            unreadable += unreadable_files(run_dir)
            resume = True
        finish(config)
        compared += 1
        equal += run_summary(run_dir) == reference
    return {"kills": sum(moments.values()), "moments": dict(moments), "runs_compared": compared,
            "runs_equal": equal, "unreadable_files": unreadable, "reference_seconds": round(reference_seconds, 1)}


def ray_actor_kill(out: Path) -> dict:
    """Score 240 files on a local Ray instance of 2 actors, SIGKILL one actor while they work: every file must
    come out exactly once."""
    import threading

    import pyarrow.parquet as pq

    from plastispoof.scale.ray_scoring import DetectorSpec, score_with_ray

    corpus = write_tiny_corpus(out / "ray-corpus", {"train": (8, 8), "dev": (8, 8), "eval": (2, 2)}, seconds=0.3)
    config = write_config(out / "ray.yaml", corpus, out / "runs", "ray-model", 1)
    subprocess.run(_command(config, False), env=_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    files = out / "ray-files"
    files.mkdir(exist_ok=True)
    sources = sorted((corpus / "LA" / "ASVspoof2019_LA_train" / "flac").glob("*.flac"))
    for i in range(240):
        shutil.copy(sources[i % len(sources)], files / f"{i:04d}.flac")
    killed: list[int] = []

    def kill_an_actor() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            pids = [int(p.name) for p in Path("/proc").iterdir()
                    if p.name.isdigit() and _cmdline_has(p, b"ScoreActor") and _descends_from_us(int(p.name))]
            if pids:
                time.sleep(1.0)
                os.kill(pids[0], signal.SIGKILL)  # a Ray actor process this soak started
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_an_actor, daemon=True)
    killer.start()
    result = score_with_ray([files], out / "ray-scores.parquet", DetectorSpec(run=str(out / "runs" / "ray-model")),
                            actors=2, cpus_per_actor=0.5, batch_size=2, num_cpus=2)
    killer.join(5)
    paths = pq.read_table(out / "ray-scores.parquet", columns=["path"]).column("path").to_pylist()
    return {"actors_killed": len(killed), "files": result.files, "rows": len(paths),
            "each_once": sorted(paths) == sorted(str(p) for p in files.iterdir())}


def _descends_from_us(pid: int) -> bool:
    """Whether ``pid`` is below this process (the local Ray instance this soak started)."""
    for _ in range(16):
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == os.getpid():
            return True
        if pid <= 1:
            return False
    return False


def _cmdline_has(proc: Path, needle: bytes) -> bool:
    try:
        return needle in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a new temp folder)")
    parser.add_argument("--ray", action="store_true", help="also kill a Ray scoring actor")
    args = parser.parse_args()
    import tempfile

    out = args.out or Path(tempfile.mkdtemp(prefix="kill-soak-"))
    report = kill_soak(out, args.kills, args.epochs, args.seed)
    if args.ray:
        report["ray"] = ray_actor_kill(out)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
