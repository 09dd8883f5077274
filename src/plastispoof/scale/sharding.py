"""Scoring trials across the ranks of ``torchrun`` (``evaluate``, ``calibrate``, and the evaluations of
``reproduce``): each rank scores its shard, rank 0 gathers the scores and writes every file.

The shard of a rank is every ``world_size``-th *batch* of trials (batch ``i`` goes to rank ``i % world_size``):
no trial is scored twice or padded in, and each batch holds the same trials as in a single-process run, so the
model sees the same batches and the gathered scores are the same numbers, byte for byte in the score file.
Scores are gathered with ``torch.distributed.gather_object`` over a gloo group (any device: the objects are
Python dicts).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from plastispoof.errors import InputError

T = TypeVar("T")


def world_size() -> int:
    """How many processes ``torchrun`` started (1 outside it)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_rank() -> bool:
    """Whether this process prints and writes (rank 0, or the only process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def rank_device() -> torch.device:
    """This rank's GPU (``LOCAL_RANK`` under torchrun) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def join_process_group(backend: str) -> None:
    """Join the process group ``torchrun`` describes, once per process, and leave it when the process ends.

    One group serves every step of a verb: ``reproduce`` trains (DDP) and then evaluates (sharded) in the same
    processes, and a group destroyed after training cannot be joined again through torchrun's store (the second
    rendezvous waits forever)."""
    if not dist.is_initialized():
        dist.init_process_group(backend)
        atexit.register(_leave_process_group)


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_batches(items: Sequence[T], batch_size: int, rank: int, world: int) -> list[T]:
    """The items of the batches ``rank, rank + world, ...`` of ``items`` cut in ``batch_size`` batches.

    >>> shard_batches(list(range(7)), 2, 0, 2), shard_batches(list(range(7)), 2, 1, 2)
    ([0, 1, 4, 5], [2, 3, 6])
    """
    return [item for start in range(rank * batch_size, len(items), world * batch_size)
            for item in items[start:start + batch_size]]


@dataclass
class EvalGroup:
    """The ranks of a torchrun evaluation, with a gloo group for gathering Python objects."""

    rank: int = 0
    world_size: int = 1
    group: Any = None

    @classmethod
    def from_env(cls) -> "EvalGroup":
        if not dist.is_available() or world_size() <= 1:
            return cls()
        join_process_group("gloo")
        group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        return cls(dist.get_rank(), dist.get_world_size(), group)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def gather(self, part: dict[str, float]) -> dict[str, float] | None:
        """The union of every rank's ``part`` on rank 0 (None on the others)."""
        parts: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(part, parts, dst=0, group=self.group)
        if parts is None:
            return None
        merged: dict[str, float] = {}
        for one in parts:
            duplicated = merged.keys() & one.keys()
            if duplicated:  # a bug in the sharding, never bad input
                raise RuntimeError(f"{len(duplicated)} trials scored on two ranks")
            merged.update(one)
        return merged

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]



def sharded_scores(trials: Sequence[Any], score: Callable[[list[Any]], dict[str, float]], batch_size: int,
                   group: EvalGroup) -> dict[str, float] | None:
    """``score(trials)`` computed over the ranks of ``group``: ``{utt_id: score}`` in trial order on rank 0, None on
    the others. Outside torchrun it is ``score(trials)``. More ranks than trials is an :class:`InputError`."""
    if not group.enabled:
        return score(list(trials))
    if group.world_size > len(trials):
        raise InputError(f"torchrun started {group.world_size} ranks for {len(trials)} trials: every rank needs at "
                         f"least one trial; use --nproc_per_node {len(trials)} or fewer")
    merged = group.gather(score(shard_batches(list(trials), batch_size, group.rank, group.world_size)))
    if merged is None:
        return None
    missing = [t.utt_id for t in trials if t.utt_id not in merged]
    if missing or len(merged) != len(trials):
        raise RuntimeError(f"gathered {len(merged)} scores for {len(trials)} trials")  # a bug, never bad input
    return {t.utt_id: merged[t.utt_id] for t in trials}
