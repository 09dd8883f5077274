"""Where training runs: the device, and the process group under ``torchrun`` (rank 0 writes every file)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from plastispoof.errors import InputError
from plastispoof.scale.sharding import join_process_group
from plastispoof.training.losses import auxiliary_loss


def local_rank() -> int:
    """This process's GPU index on its node (set by ``torchrun``; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str, rank: int = 0) -> torch.device:
    """``auto`` = the local rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"train.device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"train.device is {name!r} but CUDA is not available here; use train.device=auto")
        device = torch.device("cuda", rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    return device


@dataclass
class Distributed:
    """The process group under ``torchrun`` (or one set up by the caller); a no-op for one process."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls, device: torch.device) -> "Distributed":
        """Join the process group ``torchrun`` describes in the environment (nccl on CUDA, gloo on CPU)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        join_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, value: float, device: torch.device) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.item() / self.world_size

    def merge(self, part: dict[str, float]) -> dict[str, float]:
        """Union of every rank's dict (dev scores scored on shards)."""
        if not self.enabled:
            return part
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, part)
        return {k: v for p in parts for k, v in p.items()}

    def wrap(self, model: nn.Module, trainable: list[nn.Parameter], device: torch.device,
             num_samples: int) -> nn.Module:
        """The model itself, or its DistributedDataParallel wrapper when there are several processes."""
        if not self.enabled:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=has_unused_parameters(model, trainable, device,
                                                                                    num_samples))



def has_unused_parameters(model: nn.Module, trainable: list[nn.Parameter], device: torch.device,
                          num_samples: int) -> bool:
    """Whether some trainable parameter gets no gradient (then DDP must look for unused ones each step).

    Probed with one noise batch in eval mode under a forked RNG, so training itself is not disturbed.
    """
    was_training = model.training
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model.eval()
        noise = torch.randn(2, num_samples, generator=torch.Generator().manual_seed(0))
        output = model(noise.to(device)).float().sum()
        extra = auxiliary_loss(model)
        (output if extra is None else output + extra).backward()
    unused = any(p.grad is None for p in trainable)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return unused
