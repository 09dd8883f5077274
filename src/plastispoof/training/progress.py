"""Where a run stands (saved with every checkpoint, so a resumed run picks up exactly there), and the best
dev EER of the current stage with early stopping."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class BestTracker:
    """The best dev EER since the stage started (or since its structure last changed), and the epochs since.

    >>> best = BestTracker()
    >>> for epoch, eer in enumerate([0.3, 0.2, 0.25, 0.25], 1):
    ...     if best.improves(eer):
    ...         best.keep(eer, epoch)
    ...     else:
    ...         best.miss()
    >>> best.eer, best.epoch, best.bad_epochs, best.should_stop(patience=2), best.should_stop(patience=0)
    (0.2, 2, 2, True, False)
    """

    eer: float | None = None
    threshold: float | None = None
    epoch: int | None = None
    weights: str | None = None  # the best weights' file, relative to the run directory
    bad_epochs: int = 0  # epochs without dev improvement, for early stopping

    def improves(self, eer: float) -> bool:
        return self.eer is None or eer < self.eer

    def keep(self, eer: float, epoch: int, threshold: float | None = None, weights: str | None = None) -> None:
        self.eer, self.threshold, self.epoch, self.weights, self.bad_epochs = eer, threshold, epoch, weights, 0

    def miss(self) -> None:
        self.bad_epochs += 1

    def forget(self) -> None:
        """The structure changed: weights kept so far no longer load, so selection starts again."""
        self.eer = self.threshold = self.epoch = self.weights = None

    def should_stop(self, patience: int) -> bool:
        return bool(patience) and self.bad_epochs >= patience


@dataclass
class RunProgress:
    """Where a run stands; saved with every checkpoint so a resumed run picks up exactly here."""

    stage: int = 0  # index of the current stage
    started: bool = False  # the current stage's init_from + transforms are applied
    epoch: int = 0  # epochs finished in the current stage
    step: int = 0  # optimizer steps in the current stage (drives the learning rate)
    global_step: int = 0
    global_epoch: int = 0  # epochs over all stages (data order and crops depend on it)
    best: BestTracker = field(default_factory=BestTracker)
    transforms: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)  # summaries of finished stages
    metrics_lines: int = 0
    forward_ms: list[float] = field(default_factory=list)  # this stage's step timings
    backward_ms: list[float] = field(default_factory=list)

    def start_stage(self, reset_best: bool) -> None:
        self.started, self.epoch, self.step = True, 0, 0
        self.forward_ms, self.backward_ms = [], []
        self.best.bad_epochs = 0
        if reset_best:
            self.best.forget()

    def finish_stage(self, summary: dict[str, Any]) -> None:
        self.stages.append(summary)
        self.stage, self.started, self.epoch = self.stage + 1, False, 0

    def epoch_record(self, stage: str, index: int, loss: float, eer: float, threshold: float, lr: float,
                     steps: int, seconds: float) -> dict[str, Any]:
        """The metrics.jsonl line of the epoch just finished (``steps``: its steps, whose timings it reports)."""
        return {"stage": stage, "stage_index": index, "epoch": self.epoch, "step": self.global_step,
                "train_loss": loss, "dev_eer": eer, "dev_threshold": threshold, "lr": lr,
                "fwd_ms": median_ms(self.forward_ms[-steps:]), "bwd_ms": median_ms(self.backward_ms[-steps:]),
                "epoch_s": seconds, "time": time.time()}

    def stage_summary(self, index: int, stage: str, params: int, trainable: int, eer: float,
                      threshold: float) -> dict[str, Any]:
        """The stage's summary.json: its cost (parameters, median step times) and its dev result."""
        return {"index": index, "name": stage, "epochs": self.epoch, "params": params, "trainable_params": trainable,
                "forward_ms": median_ms(self.forward_ms), "backward_ms": median_ms(self.backward_ms),
                "steps": len(self.backward_ms), "best_epoch": self.best.epoch, "dev_eer": eer,
                "dev_threshold": threshold}

    def state(self) -> dict[str, Any]:
        state = asdict(self)
        # Step timings can be long lists: as tensors they go to safetensors instead of the JSON header.
        state["forward_ms"] = torch.tensor(self.forward_ms, dtype=torch.float64)
        state["backward_ms"] = torch.tensor(self.backward_ms, dtype=torch.float64)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "RunProgress":
        state = dict(state)
        state["forward_ms"] = state["forward_ms"].tolist()
        state["backward_ms"] = state["backward_ms"].tolist()
        if "best" in state:
            state["best"] = BestTracker(**state["best"])
        else:  # a checkpoint written before best tracking had its own object
            state["best"] = BestTracker(*(state.pop(f"best_{name}") for name in ("eer", "threshold", "epoch",
                                                                                  "weights")),
                                        state.pop("bad_epochs"))
        return cls(**state)


def median_ms(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
