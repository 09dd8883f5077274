"""wav2vec 2.0 (transformers ``Wav2Vec2Model``) with mean pooling over time and a ``Linear(hidden, 2)`` head.

Two sizes, as in Table I of the dropin paper:

* ``base``: the architecture of ``facebook/wav2vec2-base`` (12 layers, hidden 768, 12 heads, FFN 3072);
  94.37 M parameters with the head (Table I: 95.57 M, -1.3 %). Pass ``pretrained`` (a local directory or hub
  id) to load its weights.
* ``small`` (registered also as ``wav2vec2-small``): hidden 256, trained from scratch. The paper gives only the
  hidden size, 11.25 M parameters and 0.09 M LoRA parameters (rank 8 on q/v); we keep base's convolutional
  feature encoder (4.2 M) and base's 12 layers, with 4 heads and FFN 512: 11.18 M (-0.6 %) and 98,304 LoRA
  weights, which is the only depth that fits both figures (8 layers with FFN 1024 fit the size but give 0.07 M).

The waveform is normalised per utterance (zero mean, unit variance) as wav2vec 2.0 expects. Each encoder
layer has two growth sites: ``encoder.i.attention`` (q/k/v widen, the output projection consumes them) and
``encoder.i.ffn`` (the intermediate dense layer widens, the output dense layer consumes it).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from plastispoof.errors import InputError
from plastispoof.features import Raw
from plastispoof.models.base import GrowthSite, SpoofModel
from plastispoof.registry import MODELS

# Encoder shapes per size; everything else is Wav2Vec2Config's default (= facebook/wav2vec2-base).
SIZES: dict[str, dict[str, int]] = {
    "base": {},
    "small": {"hidden_size": 256, "num_hidden_layers": 12, "num_attention_heads": 4, "intermediate_size": 512},
}


def load_ssl(size: str, pretrained: str | None, overrides: dict[str, Any]) -> Wav2Vec2Model:
    """A randomly initialised ``Wav2Vec2Model`` of ``size``, or the weights at ``pretrained``; ``overrides`` apply."""
    if pretrained is None:
        return Wav2Vec2Model(Wav2Vec2Config(**{**SIZES[size], **overrides}))
    try:
        return Wav2Vec2Model.from_pretrained(pretrained, **overrides)
    except OSError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load wav2vec2 weights from {pretrained!r}: {reason}") from None


@MODELS.register("wav2vec2")
class Wav2Vec2(SpoofModel):
    """Normalised waveform -> ``ssl`` (``Wav2Vec2Model``) -> mean over frames -> ``head`` (``Linear(hidden, 2)``).

    size: ``"base"`` or ``"small"`` (ignored when ``pretrained`` is given: the checkpoint's config wins).
    pretrained: local directory or hub id for ``Wav2Vec2Model.from_pretrained``; ``None`` = random weights.
    freeze_feature_encoder: keep the convolutional feature encoder fixed, so backward stops at the encoder.
    layerdrop: probability of skipping an encoder layer per training step.
    num_layers: keep only this many encoder layers (tiny test models, or a truncated pretrained model).
    architecture: a whole ``Wav2Vec2Config`` as a dict (what a run stores for a model imported from a folder:
        the folder's architecture, random weights until the run's checkpoint is loaded).
    """

    def __init__(self, size: Literal["base", "small"] = "base", pretrained: str | None = None,
                 freeze_feature_encoder: bool = True, layerdrop: float = 0.0, num_layers: int | None = None,
                 architecture: dict[str, Any] | None = None):
        if size not in SIZES:
            raise InputError(f"wav2vec2 size must be one of {', '.join(SIZES)}, got {size!r}")
        if num_layers is not None and num_layers < 1:
            raise InputError(f"wav2vec2 num_layers must be >= 1, got {num_layers}")
        super().__init__(size=size, pretrained=pretrained, freeze_feature_encoder=freeze_feature_encoder,
                         layerdrop=layerdrop, num_layers=num_layers,
                         **({"architecture": architecture} if architecture else {}))
        overrides: dict[str, Any] = {**(architecture or {}), "layerdrop": layerdrop}
        if num_layers is not None:
            overrides["num_hidden_layers"] = num_layers
        self.frontend = Raw(normalize=True)
        self.ssl = load_ssl(size, pretrained, overrides)
        if freeze_feature_encoder:
            self.ssl.freeze_feature_encoder()
        self.head = nn.Linear(self.ssl.config.hidden_size, 2)

    def rebuild_args(self) -> dict[str, Any]:
        from plastispoof.models.ssl import encoder_architecture

        if self.config.get("pretrained") is None:
            return dict(self.config)
        return {**self.config, "pretrained": None, "architecture": encoder_architecture(self.ssl)}

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = self.ssl(self.frontend(waveform)).last_hidden_state  # (B, frames, hidden)
        return self.head(frames.mean(dim=1))

    def growth_sites(self) -> list[GrowthSite]:
        sites = []
        for i in range(len(self.ssl.encoder.layers)):
            layer = f"ssl.encoder.layers.{i}"
            sites.append(GrowthSite(name=f"encoder.{i}.attention", kind="attention", producer=f"{layer}.attention",
                                    consumers=(f"{layer}.attention.out_proj",), group="attention"))
            sites.append(GrowthSite(name=f"encoder.{i}.ffn", kind="linear",
                                    producer=f"{layer}.feed_forward.intermediate_dense",
                                    consumers=(f"{layer}.feed_forward.output_dense",), group="ffn"))
        return sites


MODELS.register("wav2vec2-small")(partial(Wav2Vec2, size="small"))
