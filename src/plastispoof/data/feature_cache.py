"""Encoder outputs of a frozen SSL front-end, computed once and read from disk in every later epoch.

A frozen front-end (:class:`~plastispoof.models.ssl.SSLFrontend` with ``freeze=True``) gives the same features
for the same crop every epoch, so training on its back-end need not run the encoder again: :class:`FeatureCache`
keeps one safetensors file per utterance, under a key that fingerprints the front-end and its weights
(:meth:`~plastispoof.models.ssl.SSLFrontend.cache_key`), and :class:`CachedFeatureDataset` serves them to
training and to the dev scoring of every epoch (``data.feature_cache`` in a config).

At real size (25,380 ASVspoof 2019 LA training utterances through a 24-layer XLS-R read by a weighted layer sum:
25 states x 201 frames x 1024 numbers each) the cache is large, so it keeps only the hidden states the
back-end reads (:attr:`~plastispoof.models.ssl.SSLFrontend.num_encoded_states`: the last one for ``last``, every
layer for a learnt mix) in float16 (``data.feature_cache_dtype``; float32 doubles it), says the bytes per
utterance and the total before encoding anything (:func:`plan_cache`), and refuses with one line when the disk
does not have the room.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from plastispoof.errors import InputError
from plastispoof.fileio import atomic_path, atomic_write_json

CACHE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
_FILE_OVERHEAD = 128  # safetensors header of one "features" tensor, about

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

    def __init__(self, directory: str | Path, key: str, dtype: str = "float32"):
        if dtype not in CACHE_DTYPES:
            raise InputError(f"feature cache dtype must be one of {', '.join(CACHE_DTYPES)}; got {dtype!r}")
        self.root = Path(directory) / key
        self.dtype = CACHE_DTYPES[dtype]

    def path(self, utt_id: str) -> Path:
        return self.root / _file_name(utt_id)

    def __contains__(self, utt_id: str) -> bool:
        return self.path(utt_id).is_file()

    def get(self, utt_id: str) -> torch.Tensor | None:
        path = self.path(utt_id)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["features"].float()  # stored in self.dtype, computed with in float32
        except Exception as err:  # safetensors raises its own types for damaged files
            raise InputError(f"feature cache file {path} is unreadable ({err}); delete it to recompute") from None

    def put(self, utt_id: str, features: torch.Tensor) -> None:
        with atomic_path(self.path(utt_id)) as tmp:
            save_file({"features": features.detach().to("cpu", self.dtype).contiguous()}, str(tmp))

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

    def __init__(self, dataset, frontend: SSLFrontend, directory: str | Path, *, bind: bool = True,
                 dtype: str = "float16", report=None):
        if getattr(dataset, "train", False):
            raise InputError("cached SSL features need a fixed crop per utterance: build the dataset with train=False")
        self.dataset = dataset
        self.directory = Path(directory)
        self.frontend = frontend
        self.cache: FeatureCache | None = None
        self.dtype = dtype
        self.report = report  # called with the plan's line before the first encoding (default: printed to stderr)
        self.planned = False
        _check_frozen(frontend)
        if bind:
            self.bind(frontend)

    def bind(self, frontend: SSLFrontend) -> None:
        """Encode with ``frontend`` from now on, under the key of its weights as they are now."""
        _check_frozen(frontend)
        dataset = self.dataset
        self.frontend = frontend
        inputs = {"num_samples": dataset.num_samples, "sample_rate": dataset.sample_rate}
        if self.dtype != "float32":  # float32 caches keep the keys they had before the dtype was a choice
            inputs["dtype"] = self.dtype
        self.cache = FeatureCache(self.directory, frontend.cache_key(**inputs), self.dtype)
        self.planned = False
        self.cache.describe({"kind": frontend.kind, "states": frontend.num_encoded_states, "dtype": self.dtype,
                             "num_samples": dataset.num_samples, "sample_rate": dataset.sample_rate})

    def plan(self) -> "CachePlan":
        """Check the room the missing utterances need on the cache's disk (once per binding): report the plan,
        or refuse with one line when it does not fit."""
        cache = self._bound_cache()
        missing = sum(trial.utt_id not in cache for trial in self.dataset.trials)
        plan = plan_cache(self.frontend, self.dataset.num_samples, len(self.dataset), missing, self.directory,
                          self.dtype)
        if not self.planned:
            self.planned = True
            if self.report is not None:
                self.report(plan.line())
            elif missing:
                from rich.console import Console

                Console(stderr=True, highlight=False).print(plan.line())
        if plan.needed_bytes > plan.free_bytes:
            raise InputError(f"the feature cache in {self.directory} needs {_size(plan.needed_bytes)} for "
                             f"{plan.missing:,} utterances ({_size(plan.bytes_per_utterance)} each) but its disk has "
                             f"{_size(plan.free_bytes)} free; point data.feature_cache at a larger disk")
        return plan

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
            if not self.planned:
                self.plan()
            waveform, _, _ = self.dataset[index]
            states = self._encode(waveform.unsqueeze(0))[0]
            cache.put(trial.utt_id, states)
            states = states.to(cache.dtype).float()  # what every later epoch reads back
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
        if missing and not self.planned:
            self.plan()
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            states = self._encode(torch.stack([self.dataset[i][0] for i in chunk]))
            for i, one in zip(chunk, states):
                cache.put(self.dataset.trials[i].utt_id, one)
        return len(missing)


def first_crop_features(trials: list[Any], frontend: SSLFrontend, directory: str | Path, num_samples: int,
                        sample_rate: int, *, bind: bool = True, dtype: str = "float16") -> CachedFeatureDataset:
    """The cached features of ``trials``' fixed first crops (``num_samples``, repeat-padded): what dev scoring
    during training and ``evaluate`` read, with :meth:`CachedFeatureDataset.scores`."""
    from plastispoof.data.dataset import TrialDataset

    dataset = TrialDataset(list(trials), num_samples=num_samples, sample_rate=sample_rate, train=False)
    return CachedFeatureDataset(dataset, frontend, directory, bind=bind, dtype=dtype)


@dataclass(frozen=True)
class CachePlan:
    """How much room a feature cache takes: per utterance, for the utterances still to encode, and free."""

    states: int
    frames: int
    dim: int
    dtype: str
    utterances: int
    missing: int
    bytes_per_utterance: int
    free_bytes: int

    @property
    def needed_bytes(self) -> int:
        return self.missing * self.bytes_per_utterance

    def line(self) -> str:
        return (f"feature cache: {self.states} state(s) x {self.frames} frames x {self.dim} {self.dtype} = "
                f"{_size(self.bytes_per_utterance)} an utterance; {self.missing:,} of {self.utterances:,} to encode "
                f"= {_size(self.needed_bytes)} ({_size(self.free_bytes)} free)")


def encoded_frames(frontend: SSLFrontend, num_samples: int) -> int:
    """Frames the encoder makes of ``num_samples`` samples (its convolutional feature extractor's arithmetic)."""
    frames = num_samples
    for kernel, stride in zip(frontend.ssl.config.conv_kernel, frontend.ssl.config.conv_stride):
        frames = (frames - kernel) // stride + 1
    return max(frames, 0)


def plan_cache(frontend: SSLFrontend, num_samples: int, utterances: int, missing: int, directory: str | Path,
               dtype: str = "float16") -> CachePlan:
    """The room a cache of ``utterances`` first crops takes, ``missing`` of them still to encode, and the free space
    on ``directory``'s disk (its nearest existing parent)."""
    frames = encoded_frames(frontend, num_samples)
    states, dim = frontend.num_encoded_states, frontend.output_dim
    per = states * frames * dim * CACHE_DTYPES[dtype].itemsize + _FILE_OVERHEAD
    existing = Path(directory).absolute()
    while not existing.exists():
        existing = existing.parent
    return CachePlan(states, frames, dim, dtype, utterances, missing, per, shutil.disk_usage(existing).free)


def _size(n: float) -> str:
    """
    >>> _size(1536), _size(5.5e9)
    ('1.5 KiB', '5.1 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} TiB"


def _check_frozen(frontend: SSLFrontend) -> None:
    if not frontend.freeze:
        raise InputError("only a frozen SSL front-end (freeze: true) can use a feature cache; a trained "
                         "encoder changes its features every step")
