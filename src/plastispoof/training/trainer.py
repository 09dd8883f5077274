"""The trainer: runs a strategy's stages on a model and leaves a run directory behind (:mod:`plastispoof.runs`).

It knows nothing about any capacity method. A stage may start from another finished run (``init_from``: that
run's recorded transforms are replayed and its weights loaded), applies its transforms (recorded in
``meta.json`` so the final model can be rebuilt), trains for its epochs, keeps its best weights on dev EER, and
reports its cost: parameters, trainable parameters and the median forward and backward time per step. Methods
reach into training only through two hooks: ``auxiliary_loss()`` on any module (summed into the loss) and the
stage's ``after_epoch`` (True = the parameter set changed; a :class:`~plastispoof.capacity.base.Transform`
returned there is also recorded, so structural changes made during a stage can be replayed when the model is
rebuilt).

Resuming (``train(cfg, resume=True)``) continues from ``checkpoints/last`` (written after every epoch and
stage) and reproduces an uninterrupted run exactly on CPU: weights, optimizer, scaler, every RNG and the data
order are restored. Under ``torchrun`` the model is wrapped in DistributedDataParallel; rank 0 writes files.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from plastispoof import runs
from plastispoof.capacity.base import Stage, Transform, apply_transforms, build_strategy
from plastispoof.card import write_run_card
from plastispoof.config import ExperimentConfig
from plastispoof.metrics import trials_eer
from plastispoof.models.base import build_model, check_sample_rate, count_parameters
from plastispoof.scoring import score_trials
from plastispoof.training.distributed import Distributed, local_rank, resolve_device
from plastispoof.training.loaders import TrainingData, training_data
from plastispoof.training.optim import Optimisation
from plastispoof.training.progress import RunProgress
from plastispoof.training.seeding import rng_state, seed_everything, set_rng_state


def train(cfg: ExperimentConfig, resume: bool = False) -> Path:
    """Train ``cfg`` (all of its strategy's stages) and return the run directory.

    ``resume`` continues a killed run from its last checkpoint; on a finished run it does nothing.
    """
    return Trainer(cfg).run(resume)


class Trainer:
    """One training run of ``cfg``: the stage and epoch loop. Use :func:`train`."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.train.device, local_rank())
        self.dist = Distributed.from_env(self.device)
        self.recorder = runs.RunRecorder(cfg, is_main=self.dist.is_main)
        # soft_wrap: a log line stays one line whatever the terminal width (or none, in a log file).
        self.console = Console(stderr=True, quiet=not self.dist.is_main, highlight=False, soft_wrap=True)
        self.progress = RunProgress()
        self.optimisation = Optimisation(cfg.train, self.device, self.dist)
        self.model: nn.Module | None = None  # built, with the data, when the run starts
        self.data: TrainingData | None = None

    def run(self, resume: bool) -> Path:
        if self.recorder.has_work(resume):
            self.dist.barrier()  # every rank has looked before rank 0 writes
            self._train_all_stages()
            self.dist.barrier()  # rank 0 has written the run before any rank reads it (reproduce evaluates next)
        else:
            self.console.print(f"run {self.cfg.run_dir} already finished; nothing to resume")
        return self.cfg.run_dir

    def _train_all_stages(self) -> None:
        cfg = self.cfg
        check_sample_rate(cfg.model.name, cfg.data.sample_rate)  # before any data is read
        seed_everything(cfg.seed, cfg.train.deterministic)
        strategy = build_strategy(cfg.strategy.name, cfg.strategy.args)
        stages = strategy.stages(cfg.train.epochs)
        self.model = build_model(cfg.model.name, **runs.with_encoder_folders(cfg.model.args))
        self.data = training_data(cfg, self.model, self.device, self.dist.rank, self.dist.world_size)
        checkpoint = runs.load_checkpoint(cfg.run_dir)
        if checkpoint is None:
            self.recorder.start()
        else:
            self._restore(*checkpoint, stages)
        self.recorder.describe(self.model, strategy.reported_stage, self.dist.world_size)
        for index, stage in enumerate(stages[self.progress.stage:], self.progress.stage):
            if not self.progress.started:
                self._start_stage(index, stage)
            self._train_stage(index, stage)
            self._finish_stage(index, stage)
        threshold = window_mean_dev_threshold(self.model, cfg, self.data, self.device) if self.dist.is_main else None
        self.recorder.finish(self.model, self.progress.transforms, self.progress.stages, threshold)
        if self.dist.is_main:
            write_run_card(self.recorder.run_dir)
            from plastispoof.plots import plot_training_curves  # matplotlib: once, at the end

            plot_training_curves(runs.read_jsonl(self.recorder.run_dir / runs.METRICS),
                                 self.recorder.run_dir / "plots" / "training.png", title=self.cfg.name)
        self.console.print(f"run {cfg.run_dir} finished: dev EER {100 * self.progress.stages[-1]['dev_eer']:.2f} %")

    def _start_stage(self, index: int, stage: Stage) -> None:
        """Load ``init_from`` weights, apply and record the stage's transforms, reset per-stage state."""
        if stage.init_from:
            self.model = runs.adopt_run(self.model, stage.init_from, self.progress.transforms, stage.name)
        generator = torch.Generator().manual_seed(self.cfg.seed + index)
        for transform in stage.transforms:
            self.model = transform.apply(self.model, generator)
            self.progress.transforms.append(transform.record())
        self.progress.start_stage(stage.reset_best)

    def _build_optimizer(self, stage: Stage) -> None:
        self.optimisation.build(self.model, self.cfg.data.num_samples, f"stage {stage.name!r} of strategy "
                                f"{self.cfg.strategy.name!r} in model {self.cfg.model.name!r}", stage.lr)

    def _train_stage(self, index: int, stage: Stage) -> None:
        progress, best = self.progress, self.progress.best
        self._place_model()
        if stage.epochs == 0 or progress.epoch >= stage.epochs:
            return
        self.data.bind_feature_cache(self.model)
        if self.optimisation.optimizer is None:
            self._build_optimizer(stage)
        while progress.epoch < stage.epochs:
            started = time.perf_counter()
            loss = self._train_epoch(stage)
            changed = stage.after_epoch(self.model, progress.epoch) if stage.after_epoch else False
            if changed:
                progress.transforms += [changed.record()] if isinstance(changed, Transform) else []
                best.forget()  # a new structure cannot load the best weights kept so far
                self._place_model()
                self._build_optimizer(stage)
            eer, threshold = dev_eer(self.model, self.cfg, self.data, self.device, self.dist)
            progress.epoch += 1
            progress.global_epoch += 1
            if not best.improves(eer) and self.cfg.train.select == "best":
                best.miss()
            else:  # the weights are saved only when they are the best so far (or, select: last, the latest)
                best.keep(eer, progress.epoch, threshold, self.recorder.save_best(self.model, index, stage.name))
            self._log_epoch(stage, index, loss, eer, threshold, time.perf_counter() - started)
            if best.should_stop(self.cfg.train.early_stopping):
                self.console.print(f"stage {stage.name}: no dev improvement for {best.bad_epochs} epochs; "
                                   "stopping early")
                break
            if progress.epoch < stage.epochs:
                self._checkpoint()

    def _place_model(self) -> None:
        """The model on the run's device, in channels_last memory format when ``train.channels_last`` asks."""
        self.model.to(self.device)
        if self.cfg.train.channels_last:  # 4-D weights only; convolutions then run channels_last
            self.model.to(memory_format=torch.channels_last)

    def _train_epoch(self, stage: Stage) -> float:
        """One epoch (or ``max_steps_per_epoch`` steps); returns the mean training loss over every rank."""
        progress, data, optimisation = self.progress, self.data, self.optimisation
        optimisation.network.train()
        data.set_epoch(progress.global_epoch)
        losses: list[float] = []
        title, every = f"{stage.name} {progress.epoch + 1}/{stage.epochs}", self.cfg.train.log_every
        with progress_bar(self.console) as bar:
            task = bar.add_task(title, total=data.steps_per_epoch)
            for wave, target, _ in data.loader:
                optimisation.set_lr(progress.step, data.steps_per_epoch * stage.epochs, data.steps_per_epoch)
                loss, forward_ms, backward_ms = optimisation.step(wave, target, data.class_weights)
                losses.append(loss)
                progress.forward_ms.append(forward_ms)
                progress.backward_ms.append(backward_ms)
                progress.step += 1
                progress.global_step += 1
                if every and len(losses) % every == 0:
                    bar.update(task, description=f"{title} loss {statistics.fmean(losses[-every:]):.4f}")
                bar.advance(task)
                if len(losses) == data.steps_per_epoch:
                    break
        return self.dist.mean(statistics.fmean(losses), self.device)

    def _log_epoch(self, stage: Stage, index: int, loss: float, eer: float, threshold: float, seconds: float) -> None:
        progress, lr = self.progress, self.optimisation.optimizer.param_groups[0]["lr"]
        self.recorder.log(progress.epoch_record(stage.name, index, loss, eer, threshold, lr, self.data.steps_per_epoch,
                                                seconds))
        progress.metrics_lines += 1
        self.console.print(f"{stage.name} epoch {progress.epoch}/{stage.epochs}  loss {loss:.4f}  "
                           f"dev EER {100 * eer:.2f} %  ({seconds:.1f} s)")

    def _finish_stage(self, index: int, stage: Stage) -> None:
        """Load the stage's best weights, write its checkpoint and summary, and checkpoint the run."""
        progress, best = self.progress, self.progress.best
        self.dist.barrier()  # rank 0 has written the best weights
        if best.weights and stage.epochs > 0:
            self.recorder.load(self.model, best.weights)
            eer, threshold = best.eer, best.threshold
        else:  # transform-only stage (or no best since the last structural change): judge the model as it is
            eer, threshold = dev_eer(self.model, self.cfg, self.data, self.device, self.dist)
        summary = progress.stage_summary(index, stage.name, count_parameters(self.model),
                                         count_parameters(self.model, True), eer, threshold)
        self.recorder.save_stage(self.model, index, summary)
        self.console.print(f"stage {index} {stage.name} done: dev EER {100 * eer:.2f} %, "
                           f"{summary['trainable_params']:,} of {summary['params']:,} parameters trained")
        progress.finish_stage(summary)
        self.optimisation.close()
        self._checkpoint()
        self.recorder.write_meta(progress.transforms, progress.stages, finished=False)

    def _checkpoint(self) -> None:
        self.recorder.checkpoint(self.model, {"progress": self.progress.state(), "rng": rng_state(),
                                              "loader_generator": self.data.loader_generator.get_state(),
                                              **self.optimisation.state()})

    def _restore(self, model_state: dict[str, torch.Tensor], state: dict[str, Any], stages: list[Stage]) -> None:
        """Rebuild the checkpointed structure, then restore weights, optimizer, scaler and every RNG."""
        self.progress = RunProgress.from_state(state["progress"])
        self.model = apply_transforms(self.model, self.progress.transforms)
        runs.load_state_strict(self.model, model_state, str(self.cfg.run_dir / runs.LAST))
        self.model.to(self.device)
        self.optimisation.load_state(state, lambda: self._build_optimizer(stages[self.progress.stage]))
        self.data.loader_generator.set_state(state["loader_generator"])
        set_rng_state(state["rng"])
        self.recorder.truncate_log(self.progress.metrics_lines)
        self.console.print(f"resuming {self.cfg.run_dir} at stage {self.progress.stage}, epoch {self.progress.epoch}")


# ------------------------------------------------------------------------------------------- dev scores


def dev_eer(model: nn.Module, cfg: ExperimentConfig, data: TrainingData, device: torch.device,
            dist: Distributed) -> tuple[float, float]:
    """Dev EER and its threshold, ``first-crop``; under DDP each rank scores a shard and the scores are merged."""
    scores = data.dev_scores(model, cfg.data.eval_batch_size, dist.rank, dist.world_size)
    if scores is None:
        scores = score_trials(model, data.dev_trials[dist.rank::dist.world_size], cfg.data.num_samples,
                              cfg.data.eval_batch_size, device, sample_rate=cfg.data.sample_rate,
                              num_workers=cfg.data.num_workers, show_progress=dist.is_main)
    scores = dist.merge(scores)
    return trials_eer(data.dev_trials, scores)


def window_mean_dev_threshold(model: nn.Module, cfg: ExperimentConfig, data: TrainingData,
                              device: torch.device) -> float:
    """The final model's dev EER threshold for whole-file scores made as a Detector makes them (the mean over
    windows); the epochs' dev scores are first crops, and a threshold only fits scores made alike."""
    from plastispoof.inference import Detector

    detector = Detector(model, cfg.data.num_samples, cfg.data.sample_rate, batch_size=cfg.data.eval_batch_size,
                        device=device)
    return detector.fit_threshold(data.dev_trials)[1]


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=not console.is_terminal)
