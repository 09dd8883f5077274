"""Shared by the trainer / evaluation / scoring tests: a tiny model, a structural transform, a two-stage
strategy and a tiny corpus in the ASVspoof 2019 LA layout, so a whole run takes a second or two on CPU.

Importing this module registers ``tiny-test`` (model), ``tiny-widen`` (transform) and ``tiny-two-stage``
(strategy); pytest imports it once per process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import save_file
from torch import nn

from plastispoof.capacity.base import Stage, Strategy, StrategyOptions, Transform
from plastispoof.config import ExperimentConfig, validate
from plastispoof.models.base import SpoofModel, get_module
from plastispoof.registry import MODELS, STRATEGIES, TRANSFORMS

SAMPLE_RATE = 16000
FRAME = 64  # samples per analysis frame of the tiny model


@MODELS.register("tiny-test")
class TinySpectrumModel(SpoofModel):
    """Mean log magnitude spectrum of 64-sample frames -> Linear -> BatchNorm -> ReLU -> Dropout -> Linear.

    Small enough to train in a second, with buffers (BatchNorm) and dropout (RNG) so checkpoints and seeding
    are really exercised. ``instances`` keeps every model built in this process (the DDP test reads them).
    """

    instances: ClassVar[list["TinySpectrumModel"]] = []

    def __init__(self, hidden: int = 8, dropout: float = 0.1):
        super().__init__(hidden=hidden, dropout=dropout)
        self.body = nn.Linear(FRAME // 2 + 1, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 2)
        TinySpectrumModel.instances.append(self)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = waveform[:, : waveform.shape[1] // FRAME * FRAME].reshape(waveform.shape[0], -1, FRAME)
        spectrum = torch.log1p(torch.fft.rfft(frames).abs()).mean(dim=1)
        hidden = self.dropout(torch.relu(self.norm(self.body(spectrum))))
        return self.head(hidden)


@TRANSFORMS.register("tiny-widen")
class Widen(Transform):
    """Add ``extra`` hidden units (new rows of ``body``, columns of ``head``); optionally freeze ``body``."""

    kind = "tiny-widen"

    def __init__(self, extra: int, freeze_body: bool = False):
        self.extra, self.freeze_body = extra, freeze_body

    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        body, head = get_module(model, "body"), get_module(model, "head")
        hidden = body.out_features + self.extra
        new_body, new_head = nn.Linear(body.in_features, hidden), nn.Linear(hidden, 2)
        with torch.no_grad():
            new_body.weight.normal_(0.0, 0.1, generator=generator)
            new_body.weight[: body.out_features] = body.weight
            new_body.bias.zero_()
            new_body.bias[: body.out_features] = body.bias
            new_head.weight.zero_()
            new_head.weight[:, : body.out_features] = head.weight
            new_head.bias.copy_(head.bias)
        model.body, model.head, model.norm = new_body, new_head, nn.BatchNorm1d(hidden)
        model.body.requires_grad_(not self.freeze_body)
        return model

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "extra": self.extra, "freeze_body": self.freeze_body}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Widen":
        return cls(record["extra"], record["freeze_body"])


class TwoStageOptions(StrategyOptions):
    extra: int = 4
    freeze_body: bool = False
    init_from: str | None = None
    snapshot_to: str | None = None  # after every epoch, save the weights to <dir>/rank<RANK>-<stage>-<epoch>


@STRATEGIES.register("tiny-two-stage")
class TwoStage(Strategy):
    """``first`` (optionally from another run), then ``widen`` (grow the hidden layer, train again)."""

    name = "tiny-two-stage"
    Options = TwoStageOptions

    def stages(self, epochs: int) -> list[Stage]:
        widen = Widen(self.options.extra, self.options.freeze_body)
        return [Stage("first", epochs, init_from=self.options.init_from, after_epoch=self._snapshot("first")),
                Stage("widen", epochs, [widen], after_epoch=self._snapshot("widen"))]

    def _snapshot(self, stage: str):
        if not self.options.snapshot_to:
            return None

        def save(model: nn.Module, epoch: int) -> bool:
            name = f"rank{os.environ.get('RANK', '0')}-{stage}-{epoch}.safetensors"
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(Path(self.options.snapshot_to) / name))
            return False  # nothing changed

        return save


# ------------------------------------------------------------------------------------------------ corpus


def bonafide_like(rng: np.random.Generator, samples: int) -> np.ndarray:
    """A harmonic tone (random F0) with a little noise."""
    t = np.arange(samples) / SAMPLE_RATE
    f0 = rng.uniform(120, 260)
    tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
    return (0.2 * tone + 0.01 * rng.standard_normal(samples)).astype(np.float32)


def spoof_like(rng: np.random.Generator, samples: int) -> np.ndarray:
    """Broadband noise with a faint tone: a different spectrum from :func:`bonafide_like`."""
    t = np.arange(samples) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * rng.uniform(120, 260) * t)
    return (0.05 * tone + 0.2 * rng.standard_normal(samples)).astype(np.float32)


def write_tiny_corpus(root: Path, counts: dict[str, tuple[int, int]] | None = None, seconds: float = 0.1,
                      seed: int = 0) -> Path:
    """ASVspoof 2019 LA layout (dataset ``asv19-la``): ``counts[subset] = (bona fide, spoof)`` FLAC files."""
    counts = counts or {"train": (12, 12), "dev": (8, 8), "eval": (6, 10)}
    rng = np.random.default_rng(seed)
    samples = int(seconds * SAMPLE_RATE)
    protocols = root / "LA" / "ASVspoof2019_LA_cm_protocols"
    protocols.mkdir(parents=True, exist_ok=True)
    for subset, (n_bonafide, n_spoof) in counts.items():
        audio = root / "LA" / f"ASVspoof2019_LA_{subset}" / "flac"
        audio.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n_bonafide + n_spoof):
            utt = f"LA_{subset[0].upper()}_{i:07d}"
            spoof = i >= n_bonafide
            attack = f"A0{1 + i % 2}" if spoof else "-"
            wave = spoof_like(rng, samples) if spoof else bonafide_like(rng, samples)
            sf.write(audio / f"{utt}.flac", wave, SAMPLE_RATE)
            lines.append(f"LA_{i % 3:04d} {utt} - {attack} {'spoof' if spoof else 'bonafide'}")
        suffix = "trn" if subset == "train" else "trl"
        (protocols / f"ASVspoof2019.LA.cm.{subset}.{suffix}.txt").write_text("\n".join(lines) + "\n")
    return root


def tiny_config(out: Path, corpus: Path, name: str = "run", **sections: dict[str, Any]) -> ExperimentConfig:
    """A config that trains ``tiny-test`` for 2 epochs on the tiny corpus; ``sections`` update its sections."""
    data: dict[str, Any] = {
        "name": name, "seed": 7, "output_dir": str(out),
        "data": {"dataset": "asv19-la", "root": str(corpus), "num_samples": 1600, "batch_size": 8,
                 "eval_batch_size": 16},
        "model": {"name": "tiny-test", "args": {"hidden": 8}},
        "train": {"epochs": 2, "lr": 0.02, "scheduler": "cosine", "warmup_steps": 1},
    }
    for section, values in sections.items():
        data[section] = {**data[section], **values} if isinstance(data.get(section), dict) else values
    return validate(data, "tiny config")


def grnn_config(out: Path, corpus: Path, name: str = "grnn") -> ExperimentConfig:
    """A built-in model (so a CLI subprocess can rebuild the run) small enough to train in a second or two."""
    return tiny_config(out, corpus, name=name, model={"name": "grnn", "args": {"hidden_sizes": [4]}},
                       data={"num_samples": 4800}, train={"epochs": 1})


TIMING_KEYS = {"fwd_ms", "bwd_ms", "epoch_s", "time", "forward_ms", "backward_ms"}


def without_timing(records: list[dict]) -> list[dict]:
    """metrics.jsonl records without their wall-clock fields (what two identical runs must share)."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]
