"""The trainer: runs a strategy's stages on a model and leaves a run directory behind.

It knows nothing about any capacity method. A stage may start from another finished run (``init_from``: that
run's recorded transforms are replayed and its weights loaded), applies its transforms (recorded in ``meta.json`` so the final model can be rebuilt), trains for its epochs, keeps its
best weights on dev EER, and reports its cost: parameters, trainable parameters and the median forward and
backward time per step. Methods reach into training only through two hooks: ``auxiliary_loss()`` on any
module (summed into the loss) and the stage's ``after_epoch`` (True = the parameter set changed; a
:class:`~plastispoof.capacity.base.Transform` returned there is also recorded, so structural changes made
during a stage can be replayed when the model is rebuilt). A module may also name parameters that are not
weights (``no_weight_decay`` / ``no_clip``, e.g. learnt widths): they get weight decay 0 and skip gradient
clipping (:func:`~plastispoof.capacity.base.marked_parameters`).

Loss: class-weighted cross-entropy, or ``hinge`` = the multi-class margin loss (margin 1) on the two logits,
i.e. ``max(0, 1 - (z_true - z_other)) / 2`` per utterance (torch's ``multi_margin_loss``, which divides by the
number of classes) -- the hinge loss the GRNN authors trained with, written for two logits.

Resuming (``train(cfg, resume=True)``) continues from ``checkpoints/last`` (written after every epoch and
stage) and reproduces an uninterrupted run exactly on CPU: weights, optimizer, scaler, every RNG and the data
order are restored. Under ``torchrun`` the model is wrapped in DistributedDataParallel; rank 0 writes files.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from plastispoof import runs
from plastispoof.capacity.base import Stage, Transform, apply_transforms, build_strategy, marked_parameters
from plastispoof.config import ExperimentConfig, TrainConfig, dump_config
from plastispoof.data.trials import Trial
from plastispoof.errors import InputError
from plastispoof.scoring import score_trials
from plastispoof.fileio import atomic_write_json, atomic_write_text
from plastispoof.inference import Detector
from plastispoof.scoring import FIRST_CROP, WINDOW_MEAN
from plastispoof.metrics import compute_eer
from plastispoof.models.base import build_model, count_parameters


def train(cfg: ExperimentConfig, resume: bool = False) -> Path:
    """Train ``cfg`` (all of its strategy's stages) and return the run directory.

    ``resume`` continues a killed run from its last checkpoint; on a finished run it does nothing.
    """
    return Trainer(cfg).run(resume)


# ------------------------------------------------------------------------------------------- pieces


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch (all devices); optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this when it first initialises; without it deterministic matmuls raise on CUDA >= 10.2.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Set both ways: an earlier run in this process may have switched determinism on.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic  # inputs have a fixed size: autotuning pays off


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: derive numpy/python seeds from the per-worker torch seed the loader assigned."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _local_rank() -> int:
    """This process's GPU index on its node (set by ``torchrun``; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
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
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    return device


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


def class_weights(cfg: TrainConfig, targets: list[int]) -> torch.Tensor | None:
    """Loss weights of (spoof, bona fide): ``balanced`` = n / (2 n_class), or the configured pair.

    >>> class_weights(TrainConfig(class_weights="balanced"), [0, 0, 0, 1])
    tensor([0.6667, 2.0000])
    """
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        counts = np.bincount(np.asarray(targets), minlength=2)
        return torch.tensor(len(targets) / (2.0 * counts), dtype=torch.float32)
    if len(cfg.class_weights) != 2:
        raise InputError(f"train.class_weights needs 2 numbers (spoof, bona fide), got {cfg.class_weights}")
    return torch.tensor(cfg.class_weights, dtype=torch.float32)


def classification_loss(kind: str, logits: torch.Tensor, target: torch.Tensor,
                        weight: torch.Tensor | None) -> torch.Tensor:
    """``ce``: weighted cross-entropy; ``hinge``: weighted multi-class margin loss (margin 1) on the logits."""
    logits = logits.float()  # losses in fp32 under autocast
    if kind == "hinge":
        return F.multi_margin_loss(logits, target, margin=1.0, weight=weight)
    return F.cross_entropy(logits, target, weight=weight)


def auxiliary_loss(model: nn.Module) -> torch.Tensor | None:
    """Sum of ``auxiliary_loss()`` over every module that defines it (method regularisers), or None."""
    terms = [m.auxiliary_loss() for m in model.modules() if callable(getattr(m, "auxiliary_loss", None))]
    terms = [t for t in terms if t is not None]
    return torch.stack([t.float() for t in terms]).sum() if terms else None


def _median_ms(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Distributed:
    """The process group under ``torchrun`` (or one set up by the caller); a no-op for one process."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @classmethod
    def from_env(cls, device: torch.device) -> "Distributed":
        """Join the process group ``torchrun`` describes in the environment (nccl on CUDA, gloo on CPU)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), owns_group=True)

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

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


@dataclass
class RunProgress:
    """Where a run stands; saved with every checkpoint so a resumed run picks up exactly here."""

    stage: int = 0  # index of the current stage
    started: bool = False  # the current stage's init_from + transforms are applied
    epoch: int = 0  # epochs finished in the current stage
    step: int = 0  # optimizer steps in the current stage (drives the learning rate)
    global_step: int = 0
    global_epoch: int = 0  # epochs over all stages (data order and crops depend on it)
    best_eer: float | None = None
    best_threshold: float | None = None
    best_epoch: int | None = None
    best_weights: str | None = None  # relative to the run directory
    bad_epochs: int = 0  # epochs without dev improvement, for early stopping
    transforms: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)  # summaries of finished stages
    metrics_lines: int = 0
    forward_ms: list[float] = field(default_factory=list)  # this stage's step timings
    backward_ms: list[float] = field(default_factory=list)

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
        return cls(**state)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _flat_items(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flat_items(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def _config_difference(stored: ExperimentConfig, given: ExperimentConfig) -> str | None:
    """First key whose value differs between two configs, as ``key: stored -> given``."""
    old, new = _flat_items(stored.model_dump(mode="json")), _flat_items(given.model_dump(mode="json"))
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
    return None


def check_same_experiment(run_dir: Path, cfg: ExperimentConfig) -> None:
    """Refuse to resume or reuse ``run_dir`` when it holds a run of another config (say, fewer epochs)."""
    if (run_dir / runs.CONFIG).is_file():
        difference = _config_difference(runs.read_run_config(run_dir), cfg)
        if difference:
            raise InputError(f"{run_dir} holds a run of another config ({difference}); use the same config, or "
                             f"another run name or output folder")


# ------------------------------------------------------------------------------------------- the trainer


class Trainer:
    """One training run of ``cfg``. Use :func:`train`."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.run_dir = cfg.run_dir
        self.device = resolve_device(cfg.train.device, _local_rank())
        self.dist = Distributed.from_env(self.device)
        self.amp = cfg.train.amp and self.device.type == "cuda"
        # soft_wrap: a log line stays one line whatever the terminal width (or none, in a log file).
        self.console = Console(stderr=True, quiet=not self.dist.is_main, highlight=False, soft_wrap=True)
        self.progress = RunProgress()
        self.model: nn.Module | None = None
        self.network: nn.Module | None = None  # the model, or its DDP wrapper
        self.optimizer: torch.optim.Optimizer | None = None
        self.clipped: list[nn.Parameter] = []  # the trainable parameters that gradient clipping sees
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self._meta_base: dict[str, Any] = {}

    # ------------------------------------------------------------------ run

    def run(self, resume: bool) -> Path:
        try:
            if not self._prepare_run_dir(resume):
                return self.run_dir
            self._train_all_stages()
            return self.run_dir
        finally:
            self.dist.close()

    def _prepare_run_dir(self, resume: bool) -> bool:
        """Check the run directory against ``resume``; False when there is nothing left to do."""
        run_dir = self.run_dir
        occupied = run_dir.is_dir() and any(run_dir.iterdir())
        meta = runs.read_meta(run_dir) if (run_dir / runs.META).is_file() else {}
        if occupied and not resume:
            raise InputError(f"run directory {run_dir} already exists and is not empty; pass --resume to continue "
                             f"it, or choose another name (name: in the config, or --set name=...)")
        if resume:
            check_same_experiment(run_dir, self.cfg)
        if resume and meta.get("finished"):
            self.console.print(f"run {run_dir} already finished; nothing to resume")
            return False
        self.dist.barrier()  # every rank has looked before rank 0 writes
        return True

    def _train_all_stages(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed, cfg.train.deterministic)
        strategy = build_strategy(cfg.strategy.name, cfg.strategy.args)
        stages = strategy.stages(cfg.train.epochs)
        self.model = build_model(cfg.model.name, **cfg.model.args)
        self._load_data()
        checkpoint = runs.load_checkpoint(self.run_dir)
        if checkpoint is not None:
            self._restore(*checkpoint, stages)
        elif self.dist.is_main:
            atomic_write_text(self.run_dir / runs.CONFIG, dump_config(cfg))
            runs.truncate_jsonl(self.run_dir / runs.METRICS, 0)
        self._meta_base = self._describe(strategy)
        for index, stage in enumerate(stages):
            if index < self.progress.stage:
                continue
            if not self.progress.started:
                self._start_stage(index, stage)
            self._train_stage(index, stage)
            self._finish_stage(index, stage)
        self._finish_run()

    # ------------------------------------------------------------------ data

    def _load_data(self) -> None:
        from plastispoof.data.dataset import TrialDataset, subsample
        from plastispoof.data.protocols import read_dataset

        data = self.cfg.data
        train_trials = read_dataset(data.dataset, data.root, data.train_subset)
        dev_trials = read_dataset(data.dataset, data.root, data.dev_subset)
        if data.max_train:
            train_trials = subsample(train_trials, data.max_train, self.cfg.seed)
        if data.max_dev:
            dev_trials = subsample(dev_trials, data.max_dev, self.cfg.seed)
        for subset, trials in ((data.train_subset, train_trials), (data.dev_subset, dev_trials)):
            missing = {"bonafide", "spoof"} - {t.label for t in trials}
            if missing:
                raise InputError(f"{data.dataset} subset {subset!r} ({len(trials)} trials after subsampling) has no "
                                 f"{' or '.join(sorted(missing))} trials; training needs both classes")
        self.dev_trials: list[Trial] = dev_trials
        self.class_weights = class_weights(self.cfg.train, [t.target for t in train_trials])
        if self.class_weights is not None:
            self.class_weights = self.class_weights.to(self.device)
        self.dataset = TrialDataset(train_trials, num_samples=data.num_samples, sample_rate=data.sample_rate,
                                    train=not data.feature_cache, seed=self.cfg.seed, augment=data.augment)
        if data.feature_cache:
            self.dataset = self._cached_features(self.dataset, data.feature_cache)
        self.loader_generator = torch.Generator().manual_seed(self.cfg.seed)
        if self.dist.enabled:
            sampler = DistributedSampler(self.dataset, shuffle=True, seed=self.cfg.seed)
        else:
            sampler = RandomSampler(self.dataset, generator=self.loader_generator)
        # A last batch of one utterance breaks BatchNorm in training mode: drop the ragged batch when a full
        # one exists.
        per_rank = len(sampler)
        self.loader = DataLoader(self.dataset, batch_size=data.batch_size, sampler=sampler,
                                 num_workers=data.num_workers, worker_init_fn=_seed_worker,
                                 generator=self.loader_generator, drop_last=per_rank >= data.batch_size,
                                 pin_memory=self.device.type == "cuda")
        steps = len(self.loader)
        self.steps_per_epoch = min(steps, self.cfg.train.max_steps_per_epoch or steps)

    def _cached_features(self, dataset, directory: str):
        """Train on the frozen SSL front-end's features, encoded once and read from disk afterwards."""
        from plastispoof.data.feature_cache import CachedFeatureDataset
        from plastispoof.models.ssl import SSLFrontend

        frontend = getattr(self.model, "frontend", None)
        if not isinstance(frontend, SSLFrontend):
            raise InputError(f"data.feature_cache needs a model with an SSL front-end; {self.cfg.model.name!r} has none")
        # Keyed later (_bind_feature_cache): init_from weights or a checkpoint may still replace the encoder's.
        return CachedFeatureDataset(dataset, frontend, directory, bind=False)

    def _bind_feature_cache(self) -> None:
        """Key the feature cache by the front-end's weights as they are now, once they are final for the stage
        (after ``init_from``, the stage's transforms, or a restored checkpoint), so a run started from another
        run reads and writes the features of the weights it really trains with."""
        if self.cfg.data.feature_cache:
            self.dataset.bind(self.model.frontend)

    # ------------------------------------------------------------------ stages

    def _start_stage(self, index: int, stage: Stage) -> None:
        """Load ``init_from`` weights, apply and record the stage's transforms, reset per-stage state."""
        model = self.model
        if stage.init_from:
            model = self._adopt_run(stage.init_from, stage)
        generator = torch.Generator().manual_seed(self.cfg.seed + index)
        for transform in stage.transforms:
            model = transform.apply(model, generator)
            self.progress.transforms.append(transform.record())
        self.model = model
        progress = self.progress
        progress.started, progress.epoch, progress.step, progress.bad_epochs = True, 0, 0, 0
        progress.forward_ms, progress.backward_ms = [], []
        if stage.reset_best:
            progress.best_eer = progress.best_threshold = progress.best_epoch = progress.best_weights = None

    def _adopt_run(self, run_dir: str, stage: Stage) -> nn.Module:
        """Turn the current model into a finished run's model: replay the transforms it has beyond ours
        (recording them, so this run rebuilds too), then load its final weights strictly."""
        source_meta = runs.read_meta(run_dir)
        source_records = source_meta.get("transforms", [])
        ours = self.progress.transforms
        if source_records[:len(ours)] != ours:
            raise InputError(f"stage {stage.name!r}: init_from run {run_dir} was transformed differently from this "
                             f"model ({len(source_records)} vs {len(ours)} transforms); it cannot be loaded here")
        model = apply_transforms(self.model, source_records[len(ours):])
        ours.extend(source_records[len(ours):])
        weights = Path(run_dir) / runs.MODEL
        if not weights.is_file():
            raise InputError(f"stage {stage.name!r}: init_from run {run_dir} has not finished (no {runs.MODEL})")
        runs.load_state_strict(model, runs.read_weights(weights), f"init_from {weights}")
        return model

    def _train_stage(self, index: int, stage: Stage) -> None:
        progress, train_cfg = self.progress, self.cfg.train
        self.model.to(self.device)
        if stage.epochs == 0 or progress.epoch >= stage.epochs:
            return
        self._bind_feature_cache()
        if self.optimizer is None:
            self._build_optimizer(stage)
        while progress.epoch < stage.epochs:
            started = time.perf_counter()
            loss = self._train_epoch(stage)
            changed = stage.after_epoch(self.model, progress.epoch) if stage.after_epoch else False
            if changed:
                if isinstance(changed, Transform):
                    progress.transforms.append(changed.record())
                # A new structure cannot load the best weights kept so far: best selection starts again.
                progress.best_eer = progress.best_threshold = progress.best_epoch = progress.best_weights = None
                self.model.to(self.device)
                self._build_optimizer(stage)
            eer, threshold = self._dev_eer()
            progress.epoch += 1
            progress.global_epoch += 1
            if progress.best_eer is None or eer < progress.best_eer:
                self._keep_best(index, stage, eer, threshold)
            else:
                progress.bad_epochs += 1
            self._log_epoch(stage, index, loss, eer, threshold, time.perf_counter() - started)
            if train_cfg.early_stopping and progress.bad_epochs >= train_cfg.early_stopping:
                self.console.print(f"stage {stage.name}: no dev improvement for {progress.bad_epochs} epochs; "
                                   "stopping early")
                break
            if progress.epoch < stage.epochs:
                self._save_checkpoint()

    def _build_optimizer(self, stage: Stage) -> None:
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not trainable:
            raise InputError(f"stage {stage.name!r} of strategy {self.cfg.strategy.name!r} leaves no trainable "
                             f"parameters in model {self.cfg.model.name!r}")
        self.network = self.model
        if self.dist.enabled:
            self.network = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self._has_unused_parameters(trainable))
        self.optimizer = build_optimizer(self.cfg.train, trainable, marked_parameters(self.model, "no_weight_decay"))
        unclipped = {id(p) for p in marked_parameters(self.model, "no_clip")}
        self.clipped = [p for p in trainable if id(p) not in unclipped]

    def _has_unused_parameters(self, trainable: list[nn.Parameter]) -> bool:
        """Whether some trainable parameter gets no gradient (then DDP must look for unused ones each step).

        Probed with one noise batch in eval mode under a forked RNG, so training itself is not disturbed.
        """
        model = self.model
        was_training = model.training
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            model.eval()
            noise = torch.randn(2, self.cfg.data.num_samples, generator=torch.Generator().manual_seed(0))
            output = model(noise.to(self.device)).float().sum()
            extra = auxiliary_loss(model)
            (output if extra is None else output + extra).backward()
        unused = any(p.grad is None for p in trainable)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        return unused

    def _train_epoch(self, stage: Stage) -> float:
        """One epoch (or ``max_steps_per_epoch`` steps); returns the mean training loss over every rank."""
        progress, train_cfg = self.progress, self.cfg.train
        self.network.train()
        self.dataset.set_epoch(progress.global_epoch)
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(progress.global_epoch)
        total_steps = self.steps_per_epoch * stage.epochs
        losses: list[float] = []
        trainable = [p for group in self.optimizer.param_groups for p in group["params"]]
        title = f"{stage.name} {progress.epoch + 1}/{stage.epochs}"
        with self._progress_bar() as bar:
            task = bar.add_task(title, total=self.steps_per_epoch)
            for wave, target, _ in self.loader:
                for group in self.optimizer.param_groups:
                    group["lr"] = train_cfg.lr * lr_factor(progress.step, total_steps, self.steps_per_epoch, train_cfg)
                losses.append(self._step(wave, target, trainable))
                progress.step += 1
                progress.global_step += 1
                if train_cfg.log_every and len(losses) % train_cfg.log_every == 0:
                    recent = statistics.fmean(losses[-train_cfg.log_every:])
                    bar.update(task, description=f"{title} loss {recent:.4f}")
                bar.advance(task)
                if len(losses) == self.steps_per_epoch:
                    break
        return self.dist.mean(statistics.fmean(losses), self.device)

    def _step(self, wave: torch.Tensor, target: torch.Tensor, trainable: list[nn.Parameter]) -> float:
        """Forward + loss, backward, optimizer step; forward and backward are timed separately."""
        wave = wave.to(self.device, non_blocking=True)
        target = target.to(self.device, non_blocking=True)
        self._synchronize()
        started = time.perf_counter()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            logits = self.network(wave)
            loss = classification_loss(self.cfg.train.loss, logits, target, self.class_weights)
            extra = auxiliary_loss(self.model)
            if extra is not None:
                loss = loss + extra
        self._synchronize()
        forward_done = time.perf_counter()
        self.scaler.scale(loss).backward()
        self._synchronize()
        backward_done = time.perf_counter()
        if self.cfg.train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.clipped, self.cfg.train.grad_clip)  # without parameters marked no_clip
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.forward_ms.append(1000 * (forward_done - started))
        self.progress.backward_ms.append(1000 * (backward_done - forward_done))
        return loss.item()

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _dev_eer(self) -> tuple[float, float]:
        """Dev EER and its threshold; under DDP each rank scores a shard and the scores are merged."""
        data = self.cfg.data
        shard = self.dev_trials[self.dist.rank::self.dist.world_size]
        scores = score_trials(self.model, shard, data.num_samples, data.eval_batch_size, self.device,
                              sample_rate=data.sample_rate, num_workers=data.num_workers,
                              show_progress=self.dist.is_main)
        scores = self.dist.merge(scores)
        bonafide = [scores[t.utt_id] for t in self.dev_trials if t.label == "bonafide"]
        spoof = [scores[t.utt_id] for t in self.dev_trials if t.label != "bonafide"]
        return compute_eer(bonafide, spoof)

    def _keep_best(self, index: int, stage: Stage, eer: float, threshold: float) -> None:
        progress = self.progress
        weights = runs.stage_dir(self.run_dir, index, stage.name) / runs.MODEL
        if self.dist.is_main:
            runs.save_weights(self.model.state_dict(), weights)
        progress.best_eer, progress.best_threshold, progress.best_epoch = eer, threshold, progress.epoch
        progress.best_weights = str(weights.relative_to(self.run_dir))
        progress.bad_epochs = 0

    def _log_epoch(self, stage: Stage, index: int, loss: float, eer: float, threshold: float, seconds: float) -> None:
        progress = self.progress
        record = {"stage": stage.name, "stage_index": index, "epoch": progress.epoch, "step": progress.global_step,
                  "train_loss": loss, "dev_eer": eer, "dev_threshold": threshold,
                  "lr": self.optimizer.param_groups[0]["lr"],
                  "fwd_ms": _median_ms(progress.forward_ms[-self.steps_per_epoch:]),
                  "bwd_ms": _median_ms(progress.backward_ms[-self.steps_per_epoch:]),
                  "epoch_s": seconds, "time": time.time()}
        if self.dist.is_main:
            runs.append_jsonl(self.run_dir / runs.METRICS, record)
        progress.metrics_lines += 1
        self.console.print(f"{stage.name} epoch {progress.epoch}/{stage.epochs}  loss {loss:.4f}  "
                           f"dev EER {100 * eer:.2f} %  ({seconds:.1f} s)")

    def _finish_stage(self, index: int, stage: Stage) -> None:
        """Load the stage's best weights, write its checkpoint and summary, and checkpoint the run."""
        progress = self.progress
        self.dist.barrier()  # rank 0 has written the best weights
        if progress.best_weights and stage.epochs > 0:
            runs.load_state_strict(self.model, runs.read_weights(self.run_dir / progress.best_weights),
                                   str(self.run_dir / progress.best_weights))
            eer, threshold = progress.best_eer, progress.best_threshold
        else:  # transform-only stage (or no best since the last structural change): judge the model as it is
            eer, threshold = self._dev_eer()
        summary = {"index": index, "name": stage.name, "epochs": progress.epoch,
                   "params": count_parameters(self.model), "trainable_params": count_parameters(self.model, True),
                   "forward_ms": _median_ms(progress.forward_ms), "backward_ms": _median_ms(progress.backward_ms),
                   "steps": len(progress.backward_ms), "best_epoch": progress.best_epoch,
                   "dev_eer": eer, "dev_threshold": threshold}
        if self.dist.is_main:
            directory = runs.stage_dir(self.run_dir, index, stage.name)
            runs.save_weights(self.model.state_dict(), directory / runs.MODEL)
            atomic_write_json(directory / "summary.json", summary)
        self.console.print(f"stage {index} {stage.name} done: dev EER {100 * eer:.2f} %, "
                           f"{summary['trainable_params']:,} of {summary['params']:,} parameters trained")
        progress.stages.append(summary)
        progress.stage, progress.started, progress.epoch = index + 1, False, 0
        self.optimizer = self.network = None
        self._save_checkpoint()
        self._write_meta(finished=False)

    def _finish_run(self) -> None:
        from plastispoof.card import write_run_card
        from plastispoof.plots import plot_training_curves

        if self.dist.is_main:
            runs.save_weights(self.model.state_dict(), self.run_dir / runs.MODEL)
            self._write_meta(finished=True, window_mean_threshold=self._window_mean_dev_threshold())
            write_run_card(self.run_dir)  # model card: plastispoof.card
            plot_training_curves(runs.read_jsonl(self.run_dir / runs.METRICS), self.run_dir / "plots" / "training.png",
                                 title=self.cfg.name)
        self.console.print(f"run {self.run_dir} finished: dev EER {100 * self.progress.stages[-1]['dev_eer']:.2f} %")

    # ------------------------------------------------------------------ checkpoint + meta

    def _save_checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        state = {"progress": self.progress.state(), "rng": _rng_state(),
                 "loader_generator": self.loader_generator.get_state(),
                 "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                 "scaler": self.scaler.state_dict()}
        runs.save_checkpoint(self.run_dir, self.model.state_dict(), state)

    def _restore(self, model_state: dict[str, torch.Tensor], state: dict[str, Any], stages: list[Stage]) -> None:
        """Rebuild the checkpointed structure, then restore weights, optimizer, scaler and every RNG."""
        self.progress = RunProgress.from_state(state["progress"])
        self.model = apply_transforms(self.model, self.progress.transforms)
        runs.load_state_strict(self.model, model_state, str(self.run_dir / runs.LAST))
        self.model.to(self.device)
        if state["optimizer"] is not None:
            self._build_optimizer(stages[self.progress.stage])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.loader_generator.set_state(state["loader_generator"])
        _set_rng_state(state["rng"])
        if self.dist.is_main:
            runs.truncate_jsonl(self.run_dir / runs.METRICS, self.progress.metrics_lines)
        self.console.print(f"resuming {self.run_dir} at stage {self.progress.stage}, epoch {self.progress.epoch}")

    def _describe(self, strategy) -> dict[str, Any]:
        data = self.cfg.data
        # A model built from a pretrained folder stores that folder's architecture, so the run needs no folder.
        rebuild = self.model.rebuild_args()
        args = self.cfg.model.args if rebuild == self.model.config else rebuild
        return {"model": {"name": self.cfg.model.name, "args": args},
                "strategy": {"name": self.cfg.strategy.name, "args": self.cfg.strategy.args,
                             "reported_stage": strategy.reported_stage},
                "input": {"num_samples": data.num_samples, "sample_rate": data.sample_rate},
                "seed": self.cfg.seed, "world_size": self.dist.world_size,
                "versions": runs.environment_versions(), "git_commit": runs.git_commit()}

    def _window_mean_dev_threshold(self) -> float:
        """The final model's dev EER threshold for whole-file scores made as a Detector makes them (the mean over
        windows); the epochs' dev scores are first crops, and a threshold only fits scores made alike."""
        data = self.cfg.data
        detector = Detector(self.model, data.num_samples, data.sample_rate, batch_size=data.eval_batch_size,
                            device=self.device)
        return detector.fit_threshold(self.dev_trials)[1]

    def _write_meta(self, finished: bool, window_mean_threshold: float | None = None) -> None:
        if not self.dist.is_main:
            return
        last = self.progress.stages[-1]
        # dev_threshold stays the first-crop one (model selection uses it); dev_thresholds names each convention.
        thresholds = {FIRST_CROP: last["dev_threshold"]}
        if window_mean_threshold is not None:
            thresholds[WINDOW_MEAN] = window_mean_threshold
        meta = {**self._meta_base, "transforms": self.progress.transforms, "stages": self.progress.stages,
                "params": last["params"], "trainable_params": last["trainable_params"],
                "dev_eer": last["dev_eer"], "dev_threshold": last["dev_threshold"],
                "dev_threshold_convention": FIRST_CROP, "dev_thresholds": thresholds, "finished": finished}
        runs.write_meta(self.run_dir, meta)

    def _progress_bar(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=self.console, transient=True, disable=not self.console.is_terminal)
