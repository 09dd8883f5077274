"""How weights move: the optimiser and its parameter groups, the learning-rate schedule, and one timed step.

A module may name some of its own parameters as not being weights (``no_weight_decay`` / ``no_clip``, e.g.
learnt widths; :func:`~plastispoof.capacity.base.marked_parameters`): they get weight decay 0 and stay out of
gradient clipping.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from plastispoof.capacity.base import marked_parameters
from plastispoof.config import TrainConfig
from plastispoof.errors import InputError
from plastispoof.training.distributed import Distributed
from plastispoof.training.losses import auxiliary_loss, classification_loss


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at optimizer step ``step`` of a stage: linear warmup, then the schedule.

    ``cosine`` decays to 0 over the stage's steps; ``step`` multiplies by ``gamma`` every ``step_size`` epochs.

    >>> cfg = TrainConfig(scheduler="cosine", warmup_steps=2)
    >>> [round(lr_factor(s, 10, 5, cfg), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    >>> lr_factor(7, 10, 5, TrainConfig(scheduler="step", step_size=1, gamma=0.1))
    0.1
    """
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.scheduler == "cosine":
        done = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    if cfg.scheduler == "step":
        return cfg.gamma ** ((step // max(1, steps_per_epoch)) // cfg.step_size)
    return 1.0


def build_optimizer(cfg: TrainConfig, parameters: list[nn.Parameter],
                    no_weight_decay: list[nn.Parameter] | tuple[()] = ()) -> torch.optim.Optimizer:
    """The configured optimiser over ``parameters``. Those also in ``no_weight_decay`` (parameters a method marked
    as not being weights, e.g. learnt widths: ``capacity.base.marked_parameters``) form a second parameter group
    with weight decay 0; the group order is fixed, so a checkpointed optimiser state loads back."""
    exempt = {id(p) for p in no_weight_decay}
    groups = [{"params": [p for p in parameters if id(p) not in exempt]},
              {"params": [p for p in parameters if id(p) in exempt], "weight_decay": 0.0}]
    groups = [group for group in groups if group["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def autocast_settings(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype, bool]:
    """``(autocast on, its dtype, loss scaling on)`` for ``train.amp`` / ``train.amp_dtype`` on ``device``: mixed
    precision on CUDA only; float16 needs a GradScaler, bfloat16 (float32's exponent range) does not.

    >>> autocast_settings(TrainConfig(amp_dtype="bfloat16"), torch.device("cuda"))
    (True, torch.bfloat16, False)
    >>> autocast_settings(TrainConfig(), torch.device("cuda")), autocast_settings(TrainConfig(), torch.device("cpu"))
    ((True, torch.float16, True), (False, torch.float16, False))
    """
    enabled = cfg.amp and device.type == "cuda"
    dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    return enabled, dtype, enabled and dtype == torch.float16


class Optimisation:
    """The optimiser of one stage's trainable parameters (rebuilt when the structure changes), the gradient
    scaler of the whole run, and the step: forward + loss, backward, clipping, update, each half timed."""

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: Distributed | None = None):
        self.cfg = cfg
        self.device = device
        self.dist = dist or Distributed()
        self.amp, self.amp_dtype, scaled = autocast_settings(cfg, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=scaled)
        self.optimizer: torch.optim.Optimizer | None = None
        self.network: nn.Module | None = None  # the model, or its DDP wrapper
        self.model: nn.Module | None = None
        self.clipped: list[nn.Parameter] = []  # the trainable parameters that gradient clipping sees
        self.lr = cfg.lr  # the stage's peak learning rate

    def build(self, model: nn.Module, num_samples: int, what: str, lr: float | None = None) -> None:
        """A fresh optimiser over ``model``'s trainable parameters (``what`` names the stage in errors) with peak
        learning rate ``lr`` (None: ``train.lr``)."""
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise InputError(f"{what} leaves no trainable parameters")
        self.model = model
        self.lr = self.cfg.lr if lr is None else lr
        self.network = self.dist.wrap(model, trainable, self.device, num_samples)
        self.optimizer = build_optimizer(self.cfg.model_copy(update={"lr": self.lr}), trainable,
                                         marked_parameters(model, "no_weight_decay"))
        unclipped = {id(p) for p in marked_parameters(model, "no_clip")}
        self.clipped = [p for p in trainable if id(p) not in unclipped]

    def close(self) -> None:
        self.optimizer = self.network = self.model = None

    def set_lr(self, step: int, total_steps: int, steps_per_epoch: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * lr_factor(step, total_steps, steps_per_epoch, self.cfg)

    def step(self, wave: torch.Tensor, target: torch.Tensor,
             weight: torch.Tensor | None) -> tuple[float, float, float]:
        """One training step; returns ``(loss, forward ms, backward ms)`` (forward includes the loss)."""
        wave = wave.to(self.device, non_blocking=True)
        target = target.to(self.device, non_blocking=True)
        self._synchronize()
        started = time.perf_counter()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            logits = self.network(wave)
            loss = classification_loss(self.cfg.loss, logits, target, weight)
            extra = auxiliary_loss(self.model)
            if extra is not None:
                loss = loss + extra
        self._synchronize()
        forward_done = time.perf_counter()
        self.scaler.scale(loss).backward()
        self._synchronize()
        backward_done = time.perf_counter()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.clipped, self.cfg.grad_clip)  # without parameters marked no_clip
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item(), 1000 * (forward_done - started), 1000 * (backward_done - forward_done)

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict() if self.optimizer else None,
                "scaler": self.scaler.state_dict()}

    def load_state(self, state: dict[str, Any], build) -> None:
        """Restore :meth:`state`; ``build()`` first rebuilds the optimiser when the checkpoint had one."""
        if state["optimizer"] is not None:
            build()
            self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
