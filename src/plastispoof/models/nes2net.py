"""Nes2Net and Nes2Net-X (Liu et al. 2025): back-ends that read high-dimensional SSL features directly, with no
dimensionality-reduction layer; the back-ends they are compared with; and the SSL + back-end models.

Every back-end maps SSL features ``(B, D, frames)`` to two logits (index 1 = bona fide), for any width ``D``.

**Nes2Net** (:class:`Nes2Net`), in the order data flows:

1. The ``D`` channels are split into ``groups`` (8) groups of ``D / 8``. Groups 0..6 form a Res2Net chain:
   group ``i`` plus the previous group's output goes through an inner block (:class:`NestedBlock`), then the
   activation, then BatchNorm. Group 7 passes through untouched.
2. The outputs and group 7 are concatenated back to ``D`` channels -> BatchNorm(D) -> activation -> pooling
   over time (``mean``, or ``attentive`` statistics pooling: attention-weighted mean and standard deviation)
   -> ``Linear`` -> 2 logits.

The inner block reads ``C = D / 8`` channels: a 1x1 conv, then the ``C`` channels are split into ``scale`` (8)
parts of ``C / 8``; parts 0..6 form a second Res2Net chain of ``Conv1d(k=3, dilation)`` (part ``i`` plus the
previous output -> conv -> activation -> BatchNorm), part 7 passes; concatenated -> 1x1 conv -> squeeze-
excitation -> added to the block input. Every conv is followed by the activation, then BatchNorm.

**Nes2Net-X** (``stacked=True``) replaces the inner chain by a growing stack: the stack starts with the
passing part 7; at step ``i`` part ``i`` is appended to it, one shared conv (then activation and BatchNorm)
is applied to every slice of the stack, and the step's output is a learnt weighted sum over the ``i + 2``
slices, the weights starting at ``1 / (i + 2)``. The **SeLU** variant (``activation="selu"``) uses SELU
wherever the blocks and the outer chain use ReLU (the squeeze-excitation gate keeps its ReLU).

Free choices, documented: the squeeze-excitation bottleneck defaults to the block width (reduction ratio 1,
the authors' released setting), which gives D=1024 back-ends of 511,794 (Nes2Net) and 512,039 (Nes2Net-X)
parameters, the paper's "511 k"; dilation 2 (the authors' ASVspoof setting); attentive pooling has a
128-wide attention bottleneck.

**Comparison back-ends**: :class:`LinearHead` (mean over time -> Linear) and :class:`ReductionAASIST`, the
SSL-AASIST back-end (Tak et al. 2022): a per-frame ``Linear(D, 128)`` reduction, the reduced features read as
a one-channel (128 x frames) map, 3x3 max-pool, BatchNorm, SELU, six residual blocks without AASIST's time
pooling (SSL frames are already 20 ms apart), then AASIST's graph back-end
(:class:`~plastispoof.models.aasist.AASISTBackend`, reused as is: 42 spectral nodes of 64 channels). The
published SSL-AASIST back-end has 447,242 parameters, ours 429,770: the graph back-end here takes node
features by max |.| as AASIST does, without SSL-AASIST's extra BatchNorm and learnt attention over the map
(16,960), and our blocks hold no never-applied input norm (512).

**Growth sites** (for dropin, plasticity, dynamic widths): in Nes2Net every inner block's 1x1 conv-in
(producer ``conv_in``, norm ``norm_in``, consumer ``conv_out``): the inner split gives parts 0..6 a fixed
width and part 7 *whatever channels remain*, so added channels join the passing part and only ``conv_out``
reads them. Nes2Net-X seeds its stack with part 7, which must keep the slice width, so its conv-ins are not
sites. In both, each squeeze-excitation bottleneck (``se.reduce`` -> ReLU -> ``se.expand``) and, with
attentive pooling, the attention bottleneck (``attention_in`` -> tanh -> ``attention_out``) are sites. In
:class:`ReductionAASIST` each residual block's ``conv1 -> norm -> conv2`` is a site; :class:`LinearHead` has
none. The SSL models add the front-end's feed-forward layers unless it is frozen.

>>> backend = Nes2Net(input_dim=64).eval()
>>> backend(torch.randn(2, 64, 50)).shape
torch.Size([2, 2])
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from plastispoof.errors import InputError
from plastispoof.models.aasist import AASISTBackend
from plastispoof.models.base import GrowthSite, SpoofModel
from plastispoof.models.ssl import SSLFrontend
from plastispoof.registry import BACKENDS, MODELS

Activation = Literal["relu", "selu"]
Pooling = Literal["mean", "attentive"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "selu": nn.SELU}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise InputError(f"Nes2Net activation must be one of {', '.join(_ACTIVATIONS)}; got {name!r}")
    return _ACTIVATIONS[name]()


class Backend(nn.Module):
    """Base of the back-ends: SSL features ``(B, input_dim, frames)`` -> logits ``(B, 2)``."""

    min_frames: ClassVar[int] = 1

    def __init__(self, input_dim: int):
        super().__init__()
        if input_dim < 1:
            raise InputError(f"{type(self).__name__} input_dim must be positive; got {input_dim}")
        self.input_dim = input_dim

    def check(self, features: torch.Tensor) -> None:
        if features.dim() != 3 or features.shape[1] != self.input_dim or features.shape[2] < self.min_frames:
            raise InputError(f"{type(self).__name__} expects (batch, {self.input_dim}, frames >= {self.min_frames}) "
                             f"features; got {tuple(features.shape)}")

    def growth_sites(self, prefix: str = "") -> list[GrowthSite]:
        """Growth sites with module paths under ``prefix`` (the back-end's path in its model, with a dot)."""
        return []


class SqueezeExcitation(nn.Module):
    """Channel gates from the time average: ``x * sigmoid(expand(relu(reduce(mean_t x))))`` on ``(B, C, T)``."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.reduce = nn.Linear(channels, bottleneck)
        self.expand = nn.Linear(bottleneck, channels)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.expand(F.relu(self.reduce(x.mean(dim=-1)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gates(x).unsqueeze(-1)


class NestedBlock(nn.Module):
    """The inner Res2Net block of one outer group, ``(B, C, T) -> (B, C, T)`` (module docstring).

    ``stacked`` switches to Nes2Net-X's growing stack: its convs are ``Conv2d`` with a (k, 1) kernel so one
    conv runs over every slice of the stack (the slices are the last axis), and ``mix[i]`` holds step ``i``'s
    ``i + 2`` slice weights.
    """

    def __init__(self, channels: int, scale: int = 8, kernel_size: int = 3, dilation: int = 2,
                 se_bottleneck: int | None = None, activation: Activation = "relu", stacked: bool = False):
        super().__init__()
        if scale < 2 or channels % scale:
            raise InputError(f"Nes2Net inner scale {scale} must be >= 2 and divide the group width {channels}")
        if kernel_size % 2 == 0:
            raise InputError(f"Nes2Net kernel_size must be odd (so frames keep their count); got {kernel_size}")
        self.width = channels // scale
        self.stacked = stacked
        self.act = _activation(activation)
        self.conv_in = nn.Conv1d(channels, channels, kernel_size=1)
        self.norm_in = nn.BatchNorm1d(channels)
        padding = dilation * (kernel_size - 1) // 2
        if stacked:
            make_conv: Callable[[], nn.Module] = partial(nn.Conv2d, self.width, self.width, (kernel_size, 1),
                                                         dilation=(dilation, 1), padding=(padding, 0))
            make_norm: Callable[[], nn.Module] = partial(nn.BatchNorm2d, self.width)
        else:
            make_conv = partial(nn.Conv1d, self.width, self.width, kernel_size, dilation=dilation, padding=padding)
            make_norm = partial(nn.BatchNorm1d, self.width)
        self.convs = nn.ModuleList(make_conv() for _ in range(scale - 1))
        self.norms = nn.ModuleList(make_norm() for _ in range(scale - 1))
        if stacked:
            self.mix = nn.ParameterList(nn.Parameter(torch.full((step + 2,), 1.0 / (step + 2)))
                                        for step in range(scale - 1))
        self.conv_out = nn.Conv1d(channels, channels, kernel_size=1)
        self.norm_out = nn.BatchNorm1d(channels)
        self.se = SqueezeExcitation(channels, se_bottleneck or channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.norm_in(self.act(self.conv_in(x)))
        # Parts 0..n-1 have the slice width; the last part is every remaining channel (conv_in growth lands there).
        chained = len(self.convs) * self.width
        parts, passing = hidden[:, :chained].split(self.width, dim=1), hidden[:, chained:]
        outputs = self._stack_chain(parts, passing) if self.stacked else self._chain(parts)
        out = self.norm_out(self.act(self.conv_out(torch.cat([*outputs, passing], dim=1))))
        return x + self.se(out)

    def _chain(self, parts: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        for part, conv, norm in zip(parts, self.convs, self.norms):
            outputs.append(norm(self.act(conv(part if not outputs else part + outputs[-1]))))
        return outputs

    def _stack_chain(self, parts: tuple[torch.Tensor, ...], passing: torch.Tensor) -> list[torch.Tensor]:
        stack = passing.unsqueeze(-1)  # (B, width, T, slices)
        outputs = []
        for part, conv, norm, weights in zip(parts, self.convs, self.norms, self.mix):
            stack = norm(self.act(conv(torch.cat([stack, part.unsqueeze(-1)], dim=-1))))
            outputs.append((stack * weights).sum(dim=-1))
        return outputs


class AttentiveStatisticsPool(nn.Module):
    """``(B, C, T) -> (B, 2C)``: mean and standard deviation over time under a learnt per-channel softmax."""

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.attention_in = nn.Conv1d(channels, bottleneck, kernel_size=1)
        self.attention_out = nn.Conv1d(bottleneck, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.attention_out(torch.tanh(self.attention_in(x))), dim=-1)
        mean = (weights * x).sum(dim=-1)
        variance = (weights * x.square()).sum(dim=-1) - mean.square()
        return torch.cat([mean, variance.clamp(min=1e-10).sqrt()], dim=1)


class Nes2Net(Backend):
    """Nested Res2Net back-end (module docstring); ``stacked=True`` gives Nes2Net-X.

    input_dim: SSL feature width ``D`` (divisible by ``groups``, and ``D / groups`` by ``scale``).
    groups / scale: outer and inner split counts (8 and 8 in the paper).
    kernel_size / dilation: of the inner chain's convs.
    se_bottleneck: squeeze-excitation hidden size (default: the group width ``D / groups``).
    activation: ``"relu"`` or ``"selu"``.  pooling: ``"mean"`` or ``"attentive"``.
    """

    def __init__(self, input_dim: int = 1024, groups: int = 8, scale: int = 8, kernel_size: int = 3,
                 dilation: int = 2, se_bottleneck: int | None = None, activation: Activation = "relu",
                 stacked: bool = False, pooling: Pooling = "mean", pooling_bottleneck: int = 128):
        super().__init__(input_dim)
        if groups < 2 or input_dim % groups:
            raise InputError(f"Nes2Net groups {groups} must be >= 2 and divide the input width {input_dim}")
        if pooling not in ("mean", "attentive"):
            raise InputError(f"Nes2Net pooling must be mean or attentive; got {pooling!r}")
        self.width = input_dim // groups
        self.stacked = stacked
        block = partial(NestedBlock, self.width, scale=scale, kernel_size=kernel_size, dilation=dilation,
                        se_bottleneck=se_bottleneck, activation=activation, stacked=stacked)
        self.blocks = nn.ModuleList(block() for _ in range(groups - 1))
        self.norms = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(groups - 1))
        self.act = _activation(activation)
        self.norm = nn.BatchNorm1d(input_dim)
        self.pool = AttentiveStatisticsPool(input_dim, pooling_bottleneck) if pooling == "attentive" else None
        self.classifier = nn.Linear(input_dim * (1 if self.pool is None else 2), 2)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """The outer chain: ``(B, D, T) -> (B, D, T)``, the concatenated group outputs before the last norm."""
        self.check(features)
        groups = features.split(self.width, dim=1)
        outputs: list[torch.Tensor] = []
        for group, block, norm in zip(groups, self.blocks, self.norms):
            outputs.append(norm(self.act(block(group if not outputs else group + outputs[-1]))))
        return torch.cat([*outputs, groups[-1]], dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.norm(self.encode(features)))
        pooled = hidden.mean(dim=-1) if self.pool is None else self.pool(hidden)
        return self.classifier(pooled)

    def growth_sites(self, prefix: str = "") -> list[GrowthSite]:
        sites = []
        for index in range(len(self.blocks)):
            block = f"{prefix}blocks.{index}"
            if not self.stacked:
                sites.append(GrowthSite(name=f"block{index}.conv_in", kind="conv", producer=f"{block}.conv_in",
                                        norms=(f"{block}.norm_in",), consumers=(f"{block}.conv_out",),
                                        group="conv_in"))
            sites.append(GrowthSite(name=f"block{index}.se", kind="linear", producer=f"{block}.se.reduce",
                                    consumers=(f"{block}.se.expand",), group="se"))
        if self.pool is not None:
            sites.append(GrowthSite(name="pooling", kind="conv", producer=f"{prefix}pool.attention_in",
                                    consumers=(f"{prefix}pool.attention_out",), group="pooling"))
        return sites


class LinearHead(Backend):
    """Mean over time -> ``Linear(D, 2)``: the simplest back-end."""

    def __init__(self, input_dim: int = 1024):
        super().__init__(input_dim)
        self.classifier = nn.Linear(input_dim, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self.check(features)
        return self.classifier(features.mean(dim=-1))


class MapResidualBlock(nn.Module):
    """SSL-AASIST's residual block on the reduced-feature map: ``conv1 (2x3) -> norm -> SELU -> conv2 (2x3)`` plus
    the input (through a 1x3 conv where the width changes). Unlike AASIST's block on sinc features it does not
    pool over time: SSL frames are already 20 ms apart. ``conv1`` pads the height by one, ``conv2`` by none."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(2, 3), padding=(1, 1))
        self.norm = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(2, 3), padding=(0, 1))
        self.shortcut = (nn.Conv2d(in_channels, out_channels, kernel_size=(1, 3), padding=(0, 1))
                         if in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.selu(self.norm(self.conv1(x)))) + self.shortcut(x)


class ReductionAASIST(Backend):
    """SSL-AASIST: ``Linear(D, reduced_dim)`` per frame, then AASIST's encoder and graph back-end (module docstring).

    ``reduced_dim`` rows become ``reduced_dim // 3`` spectral graph nodes after the 3x3 max-pool; ``filts``
    are the four [in, out] widths of the residual blocks (the last one repeats three times, as in AASIST).
    """

    min_frames = 3  # the 3x3 max-pool needs three frames

    def __init__(self, input_dim: int = 1024, reduced_dim: int = 128,
                 filts: tuple[tuple[int, int], ...] = ((1, 32), (32, 32), (32, 64), (64, 64)),
                 gat_dims: tuple[int, int] = (64, 32), pool_ratios: tuple[float, ...] = (0.5, 0.5, 0.5, 0.5),
                 temperatures: tuple[float, ...] = (2.0, 2.0, 100.0, 100.0)):
        super().__init__(input_dim)
        if reduced_dim < 3 or len(filts) != 4 or filts[0][0] != 1:
            raise InputError(f"ReductionAASIST needs reduced_dim >= 3 and 4 [in, out] widths starting from 1 "
                             f"channel; got {reduced_dim}, {filts}")
        self.reduction = nn.Linear(input_dim, reduced_dim)
        self.first_bn = nn.BatchNorm2d(1)
        widths = [*filts, filts[3], filts[3]]
        self.encoder = nn.Sequential(*(MapResidualBlock(*width) for width in widths))
        self.graph = AASISTBackend(in_channels=widths[-1][1], gat_dims=gat_dims, pool_ratios=pool_ratios,
                                   temperatures=temperatures, spectral_nodes=reduced_dim // 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self.check(features)
        reduced = self.reduction(features.transpose(1, 2)).transpose(1, 2)  # (B, reduced_dim, T)
        grid = F.max_pool2d(reduced.unsqueeze(1), kernel_size=3)  # one channel, reduced dims as the "frequency" axis
        return self.graph(self.encoder(F.selu(self.first_bn(grid))))

    def growth_sites(self, prefix: str = "") -> list[GrowthSite]:
        return [GrowthSite(name=f"encoder.{index}", kind="conv", producer=f"{prefix}encoder.{index}.conv1",
                           norms=(f"{prefix}encoder.{index}.norm",), consumers=(f"{prefix}encoder.{index}.conv2",),
                           group="encoder")
                for index in range(len(self.encoder))]


# Bare back-ends by name (``plastispoof cost`` and the SSL models below); each takes ``input_dim`` + options.
BACKENDS.register("nes2net")(Nes2Net)
BACKENDS.register("nes2net-x")(partial(Nes2Net, stacked=True))
BACKENDS.register("nes2net-selu")(partial(Nes2Net, stacked=True, activation="selu"))  # the authors' released model
BACKENDS.register("linear")(LinearHead)
BACKENDS.register("reduction-aasist")(ReductionAASIST)


def build_backend(name: str, input_dim: int = 1024, **options: Any) -> Backend:
    """A bare back-end from :data:`plastispoof.registry.BACKENDS` for ``(B, input_dim, frames)`` features.

    >>> sum(p.numel() for p in build_backend("nes2net-x").parameters())
    512039
    """
    factory = BACKENDS.get_or_fail(name)
    try:
        return factory(input_dim=input_dim, **options)
    except TypeError as err:
        raise InputError(f"back-end {name!r}: {err}") from None


class SSLDetector(SpoofModel):
    """Waveform -> :class:`~plastispoof.models.ssl.SSLFrontend` -> back-end -> logits ``(B, 2)``.

    frontend: the front-end's arguments (``kind``, ``size``, ``pretrained``, ``aggregation``, ``freeze``, ...).
    backend: the back-end's options (those of :class:`Nes2Net`, :class:`ReductionAASIST`, ...); its input
        width is the front-end's.

    ``forward`` also accepts encoder outputs ``(B, L, frames, D)`` cached by
    :class:`~plastispoof.data.feature_cache.CachedFeatureDataset` in place of waveforms ``(B, samples)``.
    """

    backend_name: ClassVar[str]

    def __init__(self, frontend: dict[str, Any] | None = None, backend: dict[str, Any] | None = None):
        super().__init__(frontend=dict(frontend or {}), backend=dict(backend or {}))
        try:
            self.frontend = SSLFrontend(**self.config["frontend"])
        except TypeError as err:
            raise InputError(f"SSL front-end options: {err}") from None
        self.backend = build_backend(self.backend_name, input_dim=self.frontend.output_dim, **self.config["backend"])

    def rebuild_args(self) -> dict[str, Any]:
        from plastispoof.models.ssl import encoder_architecture

        frontend = dict(self.config["frontend"])
        if frontend.get("pretrained") is not None:  # the folder's architecture inline, its weights in the run
            frontend["overrides"] = {**encoder_architecture(self.frontend.ssl), **frontend.get("overrides", {})}
            frontend["pretrained"] = None
        return {**self.config, "frontend": frontend}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.frontend.aggregate(inputs) if inputs.dim() == 4 else self.frontend(inputs)
        return self.backend(features)

    def growth_sites(self) -> list[GrowthSite]:
        return [*self.frontend.growth_sites("frontend."), *self.backend.growth_sites("backend.")]


@MODELS.register("ssl-nes2net")
class SSLNes2Net(SSLDetector):
    """SSL front-end + :class:`Nes2Net`."""

    backend_name = "nes2net"


@MODELS.register("ssl-nes2net-x")
class SSLNes2NetX(SSLDetector):
    """SSL front-end + Nes2Net-X (``backend: {activation: selu}`` for the SeLU variant)."""

    backend_name = "nes2net-x"


@MODELS.register("ssl-linear")
class SSLLinear(SSLDetector):
    """SSL front-end + :class:`LinearHead`."""

    backend_name = "linear"


@MODELS.register("ssl-aasist")
class SSLAASIST(SSLDetector):
    """SSL front-end + :class:`ReductionAASIST` (SSL-AASIST)."""

    backend_name = "reduction-aasist"
