"""DistributedDataParallel: two CPU processes (gloo) train one run; their replicas stay identical."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file
from tiny_run import tiny_config, write_tiny_corpus

from plastispoof.runs import read_jsonl
from plastispoof.training import train


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out: str, corpus: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)  # two processes share the test machine's cores
    strategy = {"name": "tiny-two-stage", "args": {"snapshot_to": out}}
    train(tiny_config(Path(out), Path(corpus), name="ddp", strategy=strategy, train={"epochs": 2, "device": "cpu"}))


def test_two_gloo_processes_keep_identical_replicas(tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), str(corpus)), nprocs=2, join=True)

    # Snapshots taken by each rank right after each training epoch (before any weights are loaded from disk).
    for stage in ("first", "widen"):
        for epoch in (0, 1):
            rank0, rank1 = (load_file(tmp_path / f"rank{r}-{stage}-{epoch}.safetensors") for r in (0, 1))
            params = [name for name in rank0 if "running" not in name and "num_batches" not in name]
            assert all(torch.equal(rank0[name], rank1[name]) for name in params), (stage, epoch)
    first, last = (load_file(tmp_path / f"rank0-first-{epoch}.safetensors") for epoch in (0, 1))
    assert not torch.equal(first["head.weight"], last["head.weight"])  # it did train

    run_dir = tmp_path / "ddp"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["finished"]
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["stage"] for r in records] == ["first", "first", "widen", "widen"]  # only rank 0 writes
    # 24 training trials over 2 ranks with batch 8: the DistributedSampler gives each rank 12 -> 1 full step.
    assert [r["step"] for r in records] == [1, 2, 3, 4]
