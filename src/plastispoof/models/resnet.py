"""ResNet-18/34 (He et al. 2016, BasicBlock) on log-mel spectrograms.

The spectrogram is a one-channel image; the network is the standard ImageNet ResNet with a 1-channel stem and
a ``Linear(8 * width, 2)`` head. With the authors' front-end (64 mel bands, n_fft 1024, hop 512, dB,
per-utterance normalisation) ``resnet18`` has 11.17 M parameters, as in Table I of the dropin paper.

Growth sites are the first conv of every BasicBlock (``conv1 -> bn1 -> relu -> conv2``): its channels never
reach a residual sum, so they can grow or shrink freely. The stem and the second convs feed residual sums and
are not sites.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
from torch import nn

from plastispoof.errors import InputError
from plastispoof.features import LogMel
from plastispoof.models.base import GrowthSite, SpoofModel
from plastispoof.registry import MODELS


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; a strided 1x1 conv + BN projects the shortcut when the shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class ResNet(SpoofModel):
    """Log-mel front-end -> ResNet (BasicBlocks) -> global average pool -> ``Linear(8 * width, 2)``.

    layers: BasicBlocks per stage, ``(2, 2, 2, 2)`` = ResNet-18, ``(3, 4, 6, 3)`` = ResNet-34.
    width: channels of the stem and the first stage; each later stage doubles them (64 = the standard net;
        small values give tiny test models).
    n_mels, n_fft, hop_length: the :class:`~plastispoof.features.LogMel` front-end.
    """

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), width: int = 64, n_mels: int = 64, n_fft: int = 1024,
                 hop_length: int = 512):
        layers = [int(n) for n in layers]
        if len(layers) != 4 or min(layers) < 1 or width < 1:
            raise InputError(f"ResNet needs 4 stages of at least one block and width >= 1, got layers={layers}, "
                             f"width={width}")
        super().__init__(layers=layers, width=width, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length)
        self.frontend = LogMel(sample_rate=self.sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        self.conv1 = nn.Conv2d(1, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = width
        for stage, blocks in enumerate(layers):
            channels = width * 2**stage
            stride = 1 if stage == 0 else 2
            stack = [BasicBlock(in_channels, channels, stride)]
            stack += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*stack))
            in_channels = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, 2)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stages(self) -> list[nn.Sequential]:
        """The four residual stages, in order (Grad-CAM per stage reads their outputs)."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.frontend(waveform).unsqueeze(1)  # (B, 1, n_mels, frames)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages():
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def growth_sites(self) -> list[GrowthSite]:
        sites = []
        for stage_index, stage in enumerate(self.stages(), start=1):
            group = f"layer{stage_index}"
            for block_index in range(len(stage)):
                path = f"{group}.{block_index}"
                sites.append(GrowthSite(name=path, kind="conv", producer=f"{path}.conv1", norms=(f"{path}.bn1",),
                                        consumers=(f"{path}.conv2",), group=group))
        return sites


def _depth(layers: tuple[int, int, int, int]) -> partial:
    """ResNet at one depth; the partial carries the class attributes callers read off a registered model
    (sample_rate, score_convention, ...), as a registered class would."""
    factory = partial(ResNet, layers=layers)
    factory.__dict__.update({name: getattr(ResNet, name) for name in ("sample_rate", "score_convention")})
    return factory


MODELS.register("resnet18")(_depth((2, 2, 2, 2)))
MODELS.register("resnet34")(_depth((3, 4, 6, 3)))
