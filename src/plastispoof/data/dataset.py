"""A torch ``Dataset`` over trials: fixed-length waveforms and class targets, plus seeded subsets."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from plastispoof.audio import ASVSPOOF_NUM_SAMPLES, fix_length, load_audio
from plastispoof.data.trials import BONAFIDE, SPOOF, Trial


class TrialDataset(Dataset):
    """Item ``i`` is ``(waveform, target, i)``: a float32 tensor of ``num_samples``, 1 = bona fide / 0 = spoof,
    and the index (so scores can be matched back to ``trials[i].utt_id``).

    Training (``train=True``) crops at a random offset drawn from ``(seed, epoch, i)``: the same crops for the
    same epoch whatever the worker count or order; call :meth:`set_epoch` before each epoch. Otherwise the first
    ``num_samples`` are used, as in the ASVspoof evaluations. Short audio is repeat-padded either way.
    ``cache=True`` keeps decoded audio in memory (small corpora; each DataLoader worker holds its own cache).

    ``augment`` (training only): options of :class:`plastispoof.augment.pipeline.AugmentPipeline`, applied to each
    crop with random numbers from ``(seed, epoch, i, AUGMENT_STREAM)``, a stream apart from the crop's, so the
    crops are the same with augmentation on or off and a resumed run gets the same audio as an uninterrupted one.
    """

    AUGMENT_STREAM = 1

    def __init__(self, trials: Sequence[Trial], *, num_samples: int = ASVSPOOF_NUM_SAMPLES,
                 sample_rate: int = 16000, train: bool = False, seed: int = 42, cache: bool = False,
                 augment: Sequence[Any] = ()):
        self.trials = list(trials)
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.train = train
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        self.augment = None
        if augment and train:
            from plastispoof.augment.pipeline import AugmentPipeline

            self.augment = AugmentPipeline(augment, sample_rate)

    def set_epoch(self, epoch: int) -> None:
        """Choose the random crops of ``epoch`` (training only)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        trial = self.trials[index]
        audio = self._audio(index)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.train else None
        waveform = fix_length(audio, self.num_samples, random_crop=self.train, rng=rng)
        if self.augment is not None:
            waveform = self.augment(waveform, (self.seed, self.epoch, index, self.AUGMENT_STREAM))
        return torch.from_numpy(waveform), trial.target, index

    def _audio(self, index: int) -> np.ndarray:
        if self._cache is None:
            return load_audio(self.trials[index].path, self.sample_rate)
        if index not in self._cache:
            self._cache[index] = load_audio(self.trials[index].path, self.sample_rate)
        return self._cache[index]


def class_counts(trials: Sequence[Trial]) -> tuple[int, int]:
    """``(n_spoof, n_bonafide)``, in target-index order (0 = spoof, 1 = bona fide).

    >>> from pathlib import Path
    >>> class_counts([Trial("a", Path("a.flac"), "spoof"), Trial("b", Path("b.flac"), "bonafide"),
    ...               Trial("c", Path("c.flac"), "spoof")])
    (2, 1)
    """
    n_bonafide = sum(trial.label == BONAFIDE for trial in trials)
    return len(trials) - n_bonafide, n_bonafide


def subsample(trials: Sequence[Trial], n: int, seed: int = 42) -> list[Trial]:
    """``n`` trials drawn without replacement for ``seed``, keeping the bona fide / spoof proportion (each class
    present keeps at least one trial when ``n >= 2``) and the original order. All of them when ``n >= len``."""
    if n >= len(trials):
        return list(trials)
    rng = np.random.default_rng(seed)
    bonafide = [i for i, trial in enumerate(trials) if trial.label == BONAFIDE]
    spoof = [i for i, trial in enumerate(trials) if trial.label == SPOOF]
    n_bonafide = round(n * len(bonafide) / len(trials))
    if bonafide and spoof and n >= 2:
        n_bonafide = min(max(n_bonafide, 1), n - 1)
    chosen = np.concatenate([rng.choice(bonafide, n_bonafide, replace=False),
                             rng.choice(spoof, n - n_bonafide, replace=False)]).astype(int)
    return [trials[i] for i in np.sort(chosen)]
