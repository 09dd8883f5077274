"""Encoder outputs of a frozen SSL front-end, computed once and read from disk in every later epoch.

A frozen front-end (:class:`~plastispoof.models.ssl.SSLFrontend` with ``freeze=True``) gives the same features
for the same crop every epoch, so training on its back-end need not run the encoder again: :class:`FeatureCache`
keeps one safetensors file per utterance, under a key that fingerprints the front-end and its weights
(:meth:`~plastispoof.models.ssl.SSLFrontend.cache_key`), and :class:`CachedFeatureDataset` serves them to
training and to the dev scoring of every epoch (``data.feature_cache`` in a config).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from plastispoof.errors import InputError
from plastispoof.fileio import atomic_path, atomic_write_json

if TYPE_CHECKING:
    from plastispoof.models.ssl import SSLFrontend


def _file_name(utt_id: str) -> str:
    """A file name for ``utt_id``: the id itself when it is a safe name, else a sanitised id plus a short hash."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", utt_id)[:120]
    if safe != utt_id or safe.startswith("."):
        safe = f"{safe}-{hashlib.sha1(utt_id.encode()).hexdigest()[:10]}"
    return f"{safe}.safetensors"


class FeatureCache:
    """Encoder outputs on disk: ``<directory>/<key>/<utterance>.safetensors``, written atomically.

    ``key`` names the front-end (:meth:`SSLFrontend.cache_key`), so features of another front-end, another
    set of weights or another crop length are never read by mistake.

    >>> import tempfile
    >>> cache = FeatureCache(tempfile.mkdtemp(), key="abc")
    >>> cache.get("LA_T_1") is None
    True
    >>> cache.put("LA_T_1", torch.ones(1, 3, 4))
    >>> cache.get("LA_T_1").shape, "LA_T_1" in cache
    (torch.Size([1, 3, 4]), True)
    """

    def __init__(self, directory: str | Path, key: str):
        self.root = Path(directory) / key

    def path(self, utt_id: str) -> Path:
        return self.root / _file_name(utt_id)

    def __contains__(self, utt_id: str) -> bool:
        return self.path(utt_id).is_file()

    def get(self, utt_id: str) -> torch.Tensor | None:
        path = self.path(utt_id)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["features"]
        except Exception as err:  # safetensors raises its own types for damaged files
            raise InputError(f"feature cache file {path} is unreadable ({err}); delete it to recompute") from None

    def put(self, utt_id: str, features: torch.Tensor) -> None:
        with atomic_path(self.path(utt_id)) as tmp:
            save_file({"features": features.detach().to("cpu").contiguous()}, str(tmp))

    def describe(self, info: dict[str, Any]) -> None:
        """Write ``info.json`` beside the features (which front-end made them), once."""
        if not (self.root / "info.json").is_file():
            atomic_write_json(self.root / "info.json", info)


class CachedFeatureDataset(Dataset):
    """A :class:`~plastispoof.data.dataset.TrialDataset` whose waveforms are replaced by cached encoder outputs.

    Item ``i`` is ``(states (L, frames, D), target, i)``, as the wrapped dataset's ``(waveform, target, i)``;
    a model built on ``frontend`` accepts a batch of such states in place of waveforms. The first time an
    utterance is asked for, ``frontend`` encodes it (on the frontend's device) and the result is stored; every
    later epoch reads the file. :meth:`fill` encodes every missing utterance in batches up front (the way to
    go on a GPU, or with DataLoader workers).

    The cache needs the same crop of an utterance every epoch, so the wrapped dataset must have
    ``train=False`` (first ``num_samples`` samples, repeat-padded), and the front-end must be frozen.

    The cache key fingerprints the encoder's weights *when* :meth:`bind` runs (at construction unless
    ``bind=False``). Whoever changes the weights afterwards (a trainer loading another run's weights or a
    checkpoint) must call :meth:`bind` again, or features of the old weights would be read and written.
    """

    def __init__(self, dataset, frontend: SSLFrontend, directory: str | Path, *, bind: bool = True):
        if getattr(dataset, "train", False):
            raise InputError("cached SSL features need a fixed crop per utterance: build the dataset with train=False")
        self.dataset = dataset
        self.directory = Path(directory)
        self.frontend = frontend
        self.cache: FeatureCache | None = None
        _check_frozen(frontend)
        if bind:
            self.bind(frontend)

    def bind(self, frontend: SSLFrontend) -> None:
        """Encode with ``frontend`` from now on, under the key of its weights as they are now."""
        _check_frozen(frontend)
        dataset = self.dataset
        self.frontend = frontend
        key = frontend.cache_key(num_samples=dataset.num_samples, sample_rate=dataset.sample_rate)
        self.cache = FeatureCache(self.directory, key)
        self.cache.describe({"kind": frontend.kind, "states": frontend.num_encoded_states,
                             "num_samples": dataset.num_samples, "sample_rate": dataset.sample_rate})

    def _bound_cache(self) -> FeatureCache:
        if self.cache is None:
            raise RuntimeError("CachedFeatureDataset built with bind=False: call bind(frontend) once the weights "
                               "are final")
        return self.cache

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Nothing changes between epochs (fixed crops); kept so trainers can call it on any dataset."""

    def _encode(self, waveforms: torch.Tensor) -> torch.Tensor:
        device = next(self.frontend.parameters()).device
        return self.frontend.encode(waveforms.to(device)).cpu()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        trial = self.dataset.trials[index]
        cache = self._bound_cache()
        states = cache.get(trial.utt_id)
        if states is None:
            waveform, _, _ = self.dataset[index]
            states = self._encode(waveform.unsqueeze(0))[0]
            cache.put(trial.utt_id, states)
        return states, trial.target, index

    def scores(self, model: torch.nn.Module, batch_size: int, indices: list[int] | None = None) -> dict[str, float]:
        """``{utt_id: score}`` of ``model`` (built on this front-end) for the utterances at ``indices`` (default:
        all), from their cached features: the scores ``first-crop`` scoring of the waveforms gives (the same
        fixed crop, the same frozen encoder), without running the encoder again. Eval mode, no gradients; the
        model's training mode is restored afterwards."""
        from plastispoof.scoring import model_scores

        indices = list(range(len(self))) if indices is None else list(indices)
        self.fill(batch_size)  # the first time: encode in batches, not one utterance at a time
        device = next(model.parameters()).device
        was_training, scores = model.training, {}
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start:start + batch_size]
                    states = torch.stack([self[i][0] for i in chunk]).to(device)
                    for i, score in zip(chunk, model_scores(model, states).float().cpu().tolist()):
                        scores[self.dataset.trials[i].utt_id] = score
        finally:
            model.train(was_training)
        return scores

    def fill(self, batch_size: int = 16) -> int:
        """Encode every utterance not cached yet, ``batch_size`` at a time; returns how many were encoded."""
        cache = self._bound_cache()
        missing = [i for i, trial in enumerate(self.dataset.trials) if trial.utt_id not in cache]
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            states = self._encode(torch.stack([self.dataset[i][0] for i in chunk]))
            for i, one in zip(chunk, states):
                cache.put(self.dataset.trials[i].utt_id, one)
        return len(missing)


def first_crop_features(trials: list[Any], frontend: SSLFrontend, directory: str | Path, num_samples: int,
                        sample_rate: int, *, bind: bool = True) -> CachedFeatureDataset:
    """The cached features of ``trials``' fixed first crops (``num_samples``, repeat-padded): what dev scoring
    during training and ``evaluate`` read, with :meth:`CachedFeatureDataset.scores`."""
    from plastispoof.data.dataset import TrialDataset

    dataset = TrialDataset(list(trials), num_samples=num_samples, sample_rate=sample_rate, train=False)
    return CachedFeatureDataset(dataset, frontend, directory, bind=bind)


def _check_frozen(frontend: SSLFrontend) -> None:
    if not frontend.freeze:
        raise InputError("only a frozen SSL front-end (freeze: true) can use a feature cache; a trained "
                         "encoder changes its features every step")
