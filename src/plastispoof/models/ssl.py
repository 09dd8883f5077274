"""Self-supervised speech front-ends (wav2vec 2.0 / XLS-R, WavLM, HuBERT) that turn waveforms into SSL features.

:class:`SSLFrontend` wraps a transformers ``Wav2Vec2Model``, ``WavLMModel`` or ``HubertModel`` and returns
features ``(B, D, T)`` (channels first, as the back-ends in :mod:`plastispoof.models.nes2net` read them):

* ``aggregation="last"``: the encoder's last hidden state (what the Nes2Net paper uses with XLS-R).
* ``"weighted"``: a learnt softmax-weighted sum over all hidden states (one weight per layer, shared by every
  utterance; starts uniform).
* ``"attention"``: squeeze-excitation-style layer attention (the WavLM set-up of the Nes2Net paper): each
  hidden state is averaged over time and channels, a two-layer MLP (no biases, ReLU, hidden size a third of
  the layer count) maps those numbers to one sigmoid gate per layer *per utterance*, and the gated hidden
  states are summed.

"All hidden states" are what transformers returns with ``output_hidden_states=True``: the input of the first
transformer layer and the output of each layer (``num_hidden_layers + 1`` tensors). SpecAugment-style masking
is switched off (the Nes2Net and SSL-AASIST recipes extract features unmasked) and the convolutional feature
encoder is always frozen. ``freeze=True`` freezes the transformer too: it runs under ``no_grad`` and stays in
eval mode whatever ``train()`` says; the aggregation weights still train.

A frozen front-end gives the same features for the same audio every epoch, so they can be computed once
(:mod:`plastispoof.data.feature_cache`, keyed by :meth:`SSLFrontend.cache_key`). Models built from a front-end
accept those cached encoder outputs in place of waveforms (see :meth:`SSLFrontend.aggregate`).

>>> frontend = SSLFrontend(kind="wav2vec2", size="tiny", aggregation="weighted").eval()
>>> frontend(torch.randn(2, 16000)).shape
torch.Size([2, 64, 49])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    HubertConfig,
    HubertModel,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from plastispoof.errors import InputError
from plastispoof.features import Raw
from plastispoof.models.base import GrowthSite

Kind = Literal["wav2vec2", "wavlm", "hubert"]
Aggregation = Literal["last", "weighted", "attention"]

KINDS: dict[str, tuple[type, type[PreTrainedModel]]] = {
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
    "wavlm": (WavLMConfig, WavLMModel),
    "hubert": (HubertConfig, HubertModel),
}

# The large models (XLS-R 300M, wav2vec2-large, WavLM-Large, HuBERT-Large) share one encoder shape.
_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
          "do_stable_layer_norm": True, "feat_extract_norm": "layer", "conv_bias": True}
# Config overrides per size, on top of each kind's transformers defaults (which are the base models).
SIZES: dict[str, dict[str, Any]] = {
    "xls-r-300m": _LARGE,
    "large": _LARGE,
    "base": {},
    # For tests and the CPU demo: a narrow CNN and two narrow transformer layers (about 0.1 M parameters).
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
             "conv_dim": (32,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4},
}
AGGREGATIONS = ("last", "weighted", "attention")


def _choice(value: str, allowed, what: str) -> str:
    if value not in allowed:
        raise InputError(f"SSL front-end {what} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def load_encoder(kind: str, size: str, pretrained: str | None, overrides: dict[str, Any]) -> PreTrainedModel:
    """A transformers SSL model of ``kind``: random weights of ``size``, or those at ``pretrained`` (a local
    directory or hub id; the checkpoint's config wins over ``size``). ``overrides`` apply to the config. A
    plastispoof run directory is turned into such a folder before the model is built
    (:func:`plastispoof.runs.with_encoder_folders`): models read folders, not runs."""
    config_class, model_class = KINDS[_choice(kind, KINDS, "kind")]
    if pretrained is None:
        try:
            return model_class(config_class(**{**SIZES[_choice(size, SIZES, "size")], **overrides}))
        except (TypeError, ValueError) as err:  # a bad override value
            raise InputError(f"SSL front-end {kind} {size}: bad config override ({err})") from None
    if (Path(pretrained) / "meta.json").is_file():
        raise InputError(f"{pretrained} is a plastispoof run directory: build the model from its config (train, "
                         "reproduce), which reads the run's encoder as a Hugging Face folder")
    try:
        return model_class.from_pretrained(pretrained, **overrides)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot load {kind} weights from {pretrained!r}: {reason}") from None


def plain_encoder(model: nn.Module, kind: str, source: str) -> PreTrainedModel:
    """The ``kind`` encoder inside ``model`` (e.g. a ``wav2vec2`` detector trained here) as a fresh transformers
    model of the same architecture and weights, ready for ``save_pretrained``: so the frozen features of an encoder
    trained here feed any SSL back-end, as those of a downloaded one would (:func:`plastispoof.runs.
    with_encoder_folders` writes it beside its run). A grown or adapted encoder is refused."""
    config_class, model_class = KINDS[_choice(kind, KINDS, "kind")]
    found = [module for module in model.modules() if isinstance(module, model_class)]
    if not found:
        raise InputError(f"{source} holds no {kind} encoder to take features from")
    trained = found[0]
    encoder = model_class(config_class(**encoder_architecture(trained)))
    state = trained.state_dict()
    wanted = encoder.state_dict()
    missing = [key for key in wanted if key not in state or state[key].shape != wanted[key].shape]
    if missing:
        raise InputError(f"the {kind} encoder of {source} is not a plain one (e.g. {missing[0]}); a grown or adapted "
                         "encoder cannot be read as a plain one")
    encoder.load_state_dict({key: state[key] for key in wanted})
    return encoder


# Config fields that describe where a checkpoint came from, not the network: left out of a stored architecture.
_PROVENANCE_FIELDS = ("_name_or_path", "architectures", "transformers_version", "model_type", "torch_dtype", "dtype",
                      "_attn_implementation_autoset", "_commit_hash")


def encoder_architecture(encoder: PreTrainedModel) -> dict[str, Any]:
    """The encoder's config as plain JSON, without provenance fields: passed as ``overrides`` with no
    ``pretrained`` path, it builds the same architecture (weights then come from a run's checkpoint)."""
    config = encoder.config.to_dict()
    return {key: value for key, value in config.items() if key not in _PROVENANCE_FIELDS}


class LayerMix(nn.Module):
    """Base of the learnt layer aggregations: ``weights(states) (B, L)`` applied to ``states (B, L, T, D)``."""

    def weights(self, states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        weights = self.weights(states).to(states.dtype)
        return torch.einsum("bl,bltd->btd", weights, states)


class WeightedLayerSum(LayerMix):
    """Softmax over one learnt logit per layer; the same weights for every utterance (they start uniform)."""

    def __init__(self, num_states: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_states))

    def weights(self, states: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0).expand(states.shape[0], -1)


class LayerAttention(LayerMix):
    """Squeeze-excitation over layers: mean of each layer over (time, channels) -> MLP -> sigmoid gate per layer."""

    def __init__(self, num_states: int, reduction: int = 3):
        super().__init__()
        hidden = max(1, num_states // reduction)
        self.squeeze = nn.Linear(num_states, hidden, bias=False)
        self.excite = nn.Linear(hidden, num_states, bias=False)

    def weights(self, states: torch.Tensor) -> torch.Tensor:
        summary = states.float().mean(dim=(2, 3))  # (B, L)
        return torch.sigmoid(self.excite(F.relu(self.squeeze(summary))))


class SSLFrontend(nn.Module):
    """Waveform ``(B, samples)`` at 16 kHz -> SSL features ``(B, D, frames)``, ``D`` = :attr:`output_dim`.

    kind: ``"wav2vec2"`` (also XLS-R), ``"wavlm"`` or ``"hubert"``.
    size: ``"xls-r-300m"`` / ``"large"`` (hidden 1024, 24 layers), ``"base"`` (768, 12), ``"tiny"`` (64, 2;
        for tests); ignored when ``pretrained`` is given.
    pretrained: local directory or hub id for ``from_pretrained`` (a run directory given in a config is turned
        into such a folder first: :func:`plastispoof.runs.with_encoder_folders`); ``None`` = random weights.
    aggregation: ``"last"``, ``"weighted"`` or ``"attention"`` (module docstring).
    freeze: keep the whole encoder fixed (no gradients, eval mode); otherwise only its CNN is fixed.
    num_layers: keep only this many transformer layers (a truncated pretrained model, or smaller tests).
    layerdrop: probability of skipping a transformer layer per training step.
    overrides: any other transformers config fields, e.g. ``{"hidden_dropout": 0.0}``.
    """

    def __init__(self, kind: Kind = "wav2vec2", size: str = "xls-r-300m", pretrained: str | None = None,
                 aggregation: Aggregation = "last", freeze: bool = False, num_layers: int | None = None,
                 layerdrop: float = 0.0, overrides: dict[str, Any] | None = None):
        super().__init__()
        if num_layers is not None and num_layers < 1:
            raise InputError(f"SSL front-end num_layers must be >= 1, got {num_layers}")
        self.kind = kind
        self.aggregation = _choice(aggregation, AGGREGATIONS, "aggregation")
        self.freeze = freeze
        config = {"layerdrop": layerdrop, "apply_spec_augment": False, **(overrides or {})}
        if num_layers is not None:
            config["num_hidden_layers"] = num_layers
        self.normalise = Raw(normalize=True)  # zero mean, unit variance per utterance, as the SSL models expect
        self.ssl = load_encoder(kind, size, pretrained, config)
        # The CNN feature encoder never trains: this also stops backward at the transformer's input.
        self.ssl.feature_extractor._freeze_parameters()
        if freeze:
            self.ssl.requires_grad_(False)
            self.ssl.eval()
        mixers = {"weighted": WeightedLayerSum, "attention": LayerAttention}
        self.mixer: LayerMix | None = (mixers[aggregation](self.ssl.config.num_hidden_layers + 1)
                                       if aggregation in mixers else None)

    @property
    def output_dim(self) -> int:
        return int(self.ssl.config.hidden_size)

    @property
    def num_encoded_states(self) -> int:
        """How many hidden states :meth:`encode` returns per utterance (1 for ``last``)."""
        return 1 if self.mixer is None else self.ssl.config.num_hidden_layers + 1

    def train(self, mode: bool = True) -> "SSLFrontend":
        super().train(mode)
        if self.freeze:  # a frozen encoder keeps dropout off, so its features are the same every epoch
            self.ssl.eval()
        return self

    def min_samples(self) -> int:
        """The shortest waveform that gives one frame."""
        kernels, strides = self.ssl.config.conv_kernel, self.ssl.config.conv_stride
        needed = 1
        for kernel, stride in reversed(list(zip(kernels, strides))):
            needed = (needed - 1) * stride + kernel
        return needed

    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """The encoder output the aggregation needs: ``(B, L, frames, D)``, ``L`` = :attr:`num_encoded_states`."""
        if waveform.dim() != 2 or waveform.shape[1] < self.min_samples():
            raise InputError(f"{self.kind} front-end needs a (batch, samples) waveform of at least "
                             f"{self.min_samples()} samples; got shape {tuple(waveform.shape)}")
        with torch.no_grad() if self.freeze else contextlib.nullcontext():
            output = self.ssl(self.normalise(waveform), output_hidden_states=self.mixer is not None)
        if self.mixer is None:
            return output.last_hidden_state.unsqueeze(1)
        return torch.stack(output.hidden_states, dim=1)

    def aggregate(self, states: torch.Tensor) -> torch.Tensor:
        """Encoder output ``(B, L, frames, D)`` (from :meth:`encode` or a :class:`FeatureCache`) ->
        ``(B, D, frames)``."""
        expected = (self.num_encoded_states, self.output_dim)
        if states.dim() != 4 or (states.shape[1], states.shape[3]) != expected:
            raise InputError(f"{self.kind} front-end expects encoder outputs of shape (batch, {expected[0]}, frames, "
                             f"{expected[1]}); got {tuple(states.shape)} (cached by another front-end?)")
        mixed = states[:, 0] if self.mixer is None else self.mixer(states)
        return mixed.transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.encode(waveform))

    def growth_sites(self, prefix: str = "") -> list[GrowthSite]:
        """The feed-forward layer of each transformer layer (intermediate dense -> output dense); none if frozen,
        since neurons added to a frozen encoder could not train."""
        if self.freeze:
            return []
        return [GrowthSite(name=f"encoder.{index}.ffn", kind="linear",
                           producer=f"{prefix}ssl.encoder.layers.{index}.feed_forward.intermediate_dense",
                           consumers=(f"{prefix}ssl.encoder.layers.{index}.feed_forward.output_dense",),
                           group="ssl_ffn")
                for index in range(len(self.ssl.encoder.layers))]

    def cache_key(self, **inputs: Any) -> str:
        """A short hash of everything :meth:`encode` depends on: kind, encoder config, which hidden states are
        kept, a fingerprint of the encoder weights, and ``inputs`` (e.g. the crop length of the waveforms)."""
        config = self.ssl.config.to_dict()
        config.pop("transformers_version", None)
        digest = hashlib.sha256(json.dumps({"kind": self.kind, "config": config, "states": self.num_encoded_states,
                                            "inputs": inputs}, sort_keys=True, default=str).encode())
        # Random-weight encoders of two seeds share a config: fingerprint the weights (a cheap sum + head).
        for name, tensor in self.ssl.state_dict().items():
            flat = tensor.detach().reshape(-1)
            digest.update(f"{name}{tuple(tensor.shape)}".encode())
            digest.update(flat[:16].double().cpu().numpy().tobytes())
            digest.update(struct.pack("<d", flat.double().sum().item()))
        return digest.hexdigest()[:16]
