"""The AASIST and AASIST-L models: sinc front-end -> residual encoder -> graph back-end, as published."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.errors import InputError
from plastispoof.models.aasist import cpu_inference, cpu_training
from plastispoof.models.aasist.encoder import ResidualBlock, has_hooks
from plastispoof.models.aasist.frontend import SincFrontEnd
from plastispoof.models.aasist.graph import _GraphBackendLayers
from plastispoof.models.base import GrowthSite, SpoofModel
from plastispoof.registry import MODELS

AASIST_CONFIG: dict[str, Any] = {
    "nb_samp": 64600,
    "first_conv": 128,
    "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
    "gat_dims": [64, 32],
    "pool_ratios": [0.5, 0.7, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}
AASIST_L_CONFIG: dict[str, Any] = {
    **AASIST_CONFIG,
    "filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]],
    "gat_dims": [24, 32],
    "pool_ratios": [0.4, 0.5, 0.7, 0.5],
}


@MODELS.register("aasist")
class AASIST(_GraphBackendLayers, SpoofModel):
    """AASIST: waveform (B, L) at 16 kHz -> logits (B, 2), index 1 = bona fide.

    Constructor arguments are the published ``model_config``. ``nb_samp`` is the input length the model was
    trained and evaluated on (64600 samples, about 4 s); inputs of other lengths work (at least
    :attr:`min_samples`), the published evaluation crops or repeats to it. ``filts`` = [sinc filters,
    then the four [in, out] encoder widths].
    """

    def __init__(self, nb_samp: int = 64600, first_conv: int = 128,
                 filts: Sequence[Any] = (70, (1, 32), (32, 32), (32, 64), (64, 64)),
                 gat_dims: Sequence[int] = (64, 32), pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
                 temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0)):
        super().__init__(nb_samp=nb_samp, first_conv=first_conv, filts=_as_lists(filts), gat_dims=list(gat_dims),
                         pool_ratios=list(pool_ratios), temperatures=list(temperatures))
        n_filters, *widths = filts
        if len(widths) != 4:
            raise InputError(f"AASIST filts needs the sinc filter count and 4 [in, out] widths; got {filts!r}")
        self.sinc = SincFrontEnd(n_filters, first_conv, self.sample_rate)
        self.first_bn = nn.BatchNorm2d(1)
        block_widths = [widths[0], widths[1], widths[2], widths[3], widths[3], widths[3]]
        self.encoder = nn.Sequential(*(nn.Sequential(ResidualBlock(*width, first=index == 0))
                                       for index, width in enumerate(block_widths)))
        spectral_nodes = n_filters // 3  # rows left by the 3x3 max-pool; the encoder keeps the height
        self._add_graph_layers(widths[3][1], gat_dims, pool_ratios, temperatures, spectral_nodes)
        # On a CPU: the front-end is computed in slices of time without an autograd graph, inference runs the
        # encoder in slices too, channels-last (see cpu_inference), and training runs it on channels-last maps
        # (see cpu_training); same values to float32 rounding. False runs every layer of the published network on
        # whole maps in the default layout (the reference the fast paths are tested against).
        self.cpu_fast_paths = True

    @property
    def min_samples(self) -> int:
        """Shortest input that leaves one frame after the front-end's and the six blocks' time pooling."""
        return self.sinc.kernel_size - 1 + 3 ** (1 + len(self.encoder))

    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform (B, L) -> encoder feature map (B, C, n_filters // 3, frames)."""
        return self._encode(waveform)[0]

    def _encode(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.dtype | None]:
        """:meth:`encode`, and the dtype the sliced inference path ran the blocks in (None: it did not run)."""
        if waveform.dim() != 2 or waveform.shape[1] < self.min_samples:
            raise InputError(f"AASIST needs a (batch, samples) waveform of at least {self.min_samples} samples; "
                             f"got shape {tuple(waveform.shape)}")
        sliced_dtype = self._sliced_inference_dtype(waveform)
        if sliced_dtype is not None:
            return self._encode_by_slices(waveform, sliced_dtype), sliced_dtype
        return self._encode_whole(waveform), None

    def _encode_whole(self, waveform: torch.Tensor) -> torch.Tensor:
        """The encoder on whole maps: the published layers, or the channels-last training path."""
        if not (self.cpu_fast_paths and waveform.device.type == "cpu") or cpu_inference.traced_or_observed():
            filtered = self.sinc(waveform).unsqueeze(1)  # (B, 1, filters, time)
            pooled = F.max_pool2d(filtered.abs(), kernel_size=3)
            return self.encoder(F.selu(self.first_bn(pooled)))
        features = F.selu(self.first_bn(self._pooled_filterbank(waveform)))
        if not self._can_train_channels_last():
            return self.encoder(features)
        for stage in self.encoder:
            features = cpu_training.block_training(stage[0], features)
        return features.contiguous()

    def _pooled_filterbank(self, waveform: torch.Tensor) -> torch.Tensor:
        """``max_pool2d(|sinc(waveform)|, 3)`` as (B, 1, rows, columns), one slice of time at a time.

        Nothing in it is learnt, so without a gradient for the waveform no autograd graph is needed; the whole
        sinc output (70 x 64,472 values per utterance) is never held at once.
        """
        if waveform.requires_grad or type(self.sinc) is not SincFrontEnd or has_hooks(self.sinc):
            return F.max_pool2d(self.sinc(waveform).unsqueeze(1).abs(), kernel_size=3)
        filters = self.sinc.filters.to(waveform.dtype)
        taps = filters.shape[-1]
        rows = filters.shape[0] // 3  # the 3x3 max-pool drops the last filters % 3 filters
        columns = (waveform.shape[1] - taps + 1) // 3
        width = cpu_inference.slice_width(3 * waveform.shape[0] * filters.shape[0])
        pooled = waveform.new_empty((waveform.shape[0], rows, columns))
        with torch.no_grad():
            for start in range(0, columns, width):
                stop = min(start + width, columns)
                filtered = F.conv1d(waveform[:, None, 3 * start:3 * stop + taps - 1], filters)
                cpu_inference.max_pool_3x3(filtered.abs_(), out=pooled[..., start:stop])
        return pooled.unsqueeze(1)

    def _published_blocks(self, norms_training: bool) -> bool:
        """Whether every encoder block is the published one (not grown, wrapped or hooked: a hook would not see
        its layer run) with every ``bn2`` in training mode or in eval mode, as the fast path asks."""
        return (all(type(stage) is nn.Sequential and len(stage) == 1 and type(stage[0]) is ResidualBlock
                    and stage[0].bn2.training == norms_training and stage[0].is_plain() for stage in self.encoder)
                and not has_hooks(self.encoder))

    def _can_encode_by_slices(self, waveform: torch.Tensor) -> bool:
        """The sliced path is for inference on the published layers: no gradients, BatchNorm in eval mode."""
        return (not torch.is_grad_enabled() and not self.first_bn.training
                and type(self.first_bn) is nn.BatchNorm2d and not has_hooks(self.first_bn)
                and self._published_blocks(norms_training=False))

    def _can_train_channels_last(self) -> bool:
        """The channels-last training path is for the published layers with every ``bn2`` in training mode
        (batch statistics) in float32 or float64; a grown, wrapped or hooked layer, a BatchNorm in eval mode, or
        autocast (its own choice of precision per layer) takes the plain layers."""
        return (not torch.is_autocast_enabled("cpu")
                and self.first_bn.weight.dtype in (torch.float32, torch.float64)
                and self._published_blocks(norms_training=True))

    def _sliced_inference_dtype(self, waveform: torch.Tensor) -> torch.dtype | None:
        """The dtype the sliced inference path runs the encoder blocks in, or None when it does not apply.

        Under CPU autocast to bfloat16 (``plastispoof score --precision bfloat16``) the blocks, where 94 % of the
        multiply-adds are, run in bfloat16 and the front-end and graph back-end in float32: faster than
        autocast's own choice per layer, and the scores stay closer to float32. Any other autocast takes the
        plain layers.
        """
        if (not (self.cpu_fast_paths and waveform.device.type == "cpu") or cpu_inference.traced_or_observed()
                or not self._can_encode_by_slices(waveform)):
            return None
        if not torch.is_autocast_enabled("cpu"):
            return waveform.dtype
        bfloat16 = torch.get_autocast_dtype("cpu") == torch.bfloat16 and waveform.dtype == torch.float32
        return torch.bfloat16 if bfloat16 else None

    def _encode_by_slices(self, waveform: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """:meth:`encode` in eval mode without gradients, an utterance and a slice of time at a time, the
        blocks in ``dtype``; the map comes back in the waveform's dtype."""
        maps = []
        with torch.autocast("cpu", enabled=False):
            for utterance in waveform:
                features = F.selu(self.first_bn(self._pooled_filterbank(utterance[None])), inplace=True)
                feature_map = cpu_inference.one_channel_as_channels_last(features.to(dtype))
                for stage in self.encoder:
                    feature_map = cpu_inference.block_inference(stage[0], feature_map)
                maps.append(feature_map.to(waveform.dtype))
        return torch.cat(maps).contiguous()

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        feature_map, sliced_dtype = self._encode(waveform)
        graph_in_float32 = sliced_dtype == torch.bfloat16  # under bfloat16 autocast: see _sliced_inference_dtype
        with torch.autocast("cpu", enabled=False) if graph_in_float32 else contextlib.nullcontext():
            return self.graph_logits(feature_map)

    score_convention = "the bona fide logit alone (index 1), as the published AASIST code scores"

    def score(self, waveform: torch.Tensor) -> torch.Tensor:
        """The published AASIST score: the bona fide logit (index 1), higher = more bona fide."""
        return self(waveform)[:, 1]

    def growth_sites(self) -> list[GrowthSite]:
        return [GrowthSite(name=f"encoder.{index}", kind="conv", producer=f"encoder.{index}.0.conv1",
                           norms=(f"encoder.{index}.0.bn2",), consumers=(f"encoder.{index}.0.conv2",),
                           group="encoder")
                for index in range(len(self.encoder))]


@MODELS.register("aasist-l")
class AASISTLight(AASIST):
    """AASIST-L: the published light configuration (85,306 parameters); arguments override its defaults."""

    def __init__(self, **overrides: Any):
        super().__init__(**{**AASIST_L_CONFIG, **overrides})


def _as_lists(value: Any) -> Any:
    """Nested sequences -> nested lists, so the config is plain JSON."""
    return [_as_lists(item) for item in value] if isinstance(value, (list, tuple)) else value

