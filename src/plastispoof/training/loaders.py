"""The data a training run reads: the train loader (seeded order, optional DDP sharding, optional feature
cache) and the dev trials, built from a config's ``data`` section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from plastispoof.config import ExperimentConfig
from plastispoof.data.dataset import TrialDataset, subsample
from plastispoof.data.feature_cache import CachedFeatureDataset, first_crop_features
from plastispoof.data.protocols import read_dataset
from plastispoof.data.trials import Trial
from plastispoof.errors import InputError
from plastispoof.models.ssl import SSLFrontend
from plastispoof.training.losses import class_weights
from plastispoof.training.seeding import seed_worker


@dataclass
class TrainingData:
    """What :func:`training_data` builds. ``loader_generator`` drives the data order and is checkpointed."""

    dataset: Any  # a TrialDataset, or a CachedFeatureDataset around one
    loader: DataLoader
    loader_generator: torch.Generator
    dev_trials: list[Trial]
    class_weights: torch.Tensor | None
    steps_per_epoch: int
    dev_features: Any = None  # a CachedFeatureDataset of the dev trials when data.feature_cache is set

    def dev_scores(self, model: nn.Module, batch_size: int, rank: int = 0, world_size: int = 1
                   ) -> dict[str, float] | None:
        """Scores of this rank's share of the dev trials from cached features, or None without a cache (score
        the waveforms then)."""
        if self.dev_features is None:
            return None
        self.dev_features.bind(model.frontend)  # keyed by the encoder weights as they are at this scoring
        return self.dev_features.scores(model, batch_size, list(range(rank, len(self.dev_trials), world_size)))

    def set_epoch(self, epoch: int) -> None:
        """Crops, augmentation and (under DDP) the shard order of epoch ``epoch``."""
        self.dataset.set_epoch(epoch)
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(epoch)

    def bind_feature_cache(self, model: nn.Module) -> None:
        """Key the feature cache by the front-end's weights as they are now, once they are final for the stage
        (after ``init_from``, the stage's transforms, or a restored checkpoint), so a run started from another
        run reads and writes the features of the weights it really trains with."""
        if hasattr(self.dataset, "bind"):
            self.dataset.bind(model.frontend)


def training_data(cfg: ExperimentConfig, model: nn.Module, device: torch.device, rank: int = 0,
                  world_size: int = 1) -> TrainingData:
    """Read the train and dev subsets (subsampled as configured, both classes required) and build the loader."""
    data = cfg.data
    train_trials = read_dataset(data.dataset, data.root, data.train_subset)
    dev_trials = read_dataset(data.dataset, data.root, data.dev_subset)
    if data.max_train:
        train_trials = subsample(train_trials, data.max_train, cfg.seed)
    if data.max_dev:
        dev_trials = subsample(dev_trials, data.max_dev, cfg.seed)
    for subset, trials in ((data.train_subset, train_trials), (data.dev_subset, dev_trials)):
        missing = {"bonafide", "spoof"} - {t.label for t in trials}
        if missing:
            raise InputError(f"{data.dataset} subset {subset!r} ({len(trials)} trials after subsampling) has no "
                             f"{' or '.join(sorted(missing))} trials; training needs both classes")
    weights = class_weights(cfg.train, [t.target for t in train_trials])
    dataset = TrialDataset(train_trials, num_samples=data.num_samples, sample_rate=data.sample_rate,
                           train=not data.feature_cache, seed=cfg.seed, augment=data.augment)
    dev_features = None
    if data.feature_cache:  # dev scored from the cache too: a frozen encoder gives a fixed crop the same features
        dataset = _cached_features(dataset, model, cfg.model.name, data.feature_cache, data.feature_cache_dtype)
        dev_features = first_crop_features(dev_trials, model.frontend, data.feature_cache, data.num_samples,
                                           data.sample_rate, bind=False,  # bound at each scoring (dev_scores)
                                           dtype=data.feature_cache_dtype)
    generator = torch.Generator().manual_seed(cfg.seed)
    if data.shards:
        return _shard_data(cfg, train_trials, dev_trials, weights, device, rank, world_size, generator)
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    # A last batch of one utterance breaks BatchNorm in training mode: drop the ragged batch when a full one exists.
    loader = DataLoader(dataset, batch_size=data.batch_size, sampler=sampler, num_workers=data.num_workers,
                        worker_init_fn=seed_worker, generator=generator, drop_last=len(sampler) >= data.batch_size,
                        pin_memory=device.type == "cuda")
    steps = len(loader)
    return TrainingData(dataset, loader, generator, dev_trials,
                        None if weights is None else weights.to(device),
                        min(steps, cfg.train.max_steps_per_epoch or steps), dev_features)


def _cached_features(dataset, model: nn.Module, model_name: str, directory: str, dtype: str):
    """Train on the frozen SSL front-end's features, encoded once and read from disk afterwards."""
    frontend = getattr(model, "frontend", None)
    if not isinstance(frontend, SSLFrontend):
        raise InputError(f"data.feature_cache needs a model with an SSL front-end; {model_name!r} has none")
    # Keyed later (TrainingData.bind_feature_cache): init_from weights or a checkpoint may still replace them.
    return CachedFeatureDataset(dataset, frontend, directory, bind=False, dtype=dtype)


def _shard_data(cfg: ExperimentConfig, train_trials: list[Trial], dev_trials: list[Trial], weights, device,
                rank: int, world_size: int, generator: torch.Generator) -> TrainingData:
    """The training subset streamed from WebDataset shards (data.shards): the order is a function of the seed and
    the epoch alone, so ``generator`` is only kept for the checkpoint's sake."""
    from plastispoof.data.shards import ShardTrainingSet
    from plastispoof.training.seeding import seed_worker

    data = cfg.data
    dataset = ShardTrainingSet(data.shards, data.train_subset, train_trials, num_samples=data.num_samples,
                               sample_rate=data.sample_rate, seed=cfg.seed, rank=rank, world_size=world_size,
                               num_workers=data.num_workers)
    steps = dataset.batches_per_epoch(data.batch_size)
    if steps == 0:
        raise InputError(f"the {data.train_subset} shards give no full batch of {data.batch_size} per loader worker "
                         f"on each of {world_size} rank(s); lower data.batch_size or data.num_workers")
    loader = DataLoader(dataset, batch_size=data.batch_size, num_workers=data.num_workers, worker_init_fn=seed_worker,
                        drop_last=True, pin_memory=device.type == "cuda")
    return TrainingData(dataset, loader, generator, dev_trials, None if weights is None else weights.to(device),
                        min(steps, cfg.train.max_steps_per_epoch or steps))
