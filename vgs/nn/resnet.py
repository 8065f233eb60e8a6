"""ResNet image encoder of Crabtree (2021) Sec. 2.4.1 (after Harwath et al.): a ResNet trunk whose
average pool, fully connected layer and softmax are replaced by a 1x1 convolution to the embedding
size, giving a spatial map (7 x 7 x 1024 for a 224 x 224 image at paper scale) that is then pooled
(average over positions, Sec. 3.1.6.1, or an attention pooler over the flattened positions).

Layout (He et al. 2016; torchvision's "v1.5", stride in the 3x3 conv of a bottleneck, which has the
same parameter count as v1):
  stem    Conv k x k / stem_stride (in_channels -> stem_channels, no bias) - BN - ReLU [- MaxPool 3x3/2]
  stages  blocks of "basic" (3x3 - BN - ReLU - 3x3 - BN, expansion 1) or "bottleneck" (1x1 - BN - ReLU -
          3x3 - BN - ReLU - 1x1 - BN, expansion 4) with identity or Conv1x1/stride - BN shortcuts;
          stage i has widths[i] planes, stride 1 for the first stage and 2 for the others
  embed   Conv1x1(final channels -> embed_dim, with bias, as nn.Conv2d's default in Harwath's code)
Presets: "resnet50" (bottleneck 3-4-6-3, widths 64-128-256-512, 7x7/2 stem + max pool, embed 1024, RGB):
23,508,032 trunk parameters (torchvision resnet50 minus its fc) + 2048 * 1024 + 1024 = 25,606,208.
"cpu": basic blocks 2-2-2-2 (ResNet-18 shaped) at widths 16-32-64-128, same stem at 16 channels,
embed 256, one grey channel: a 64 x 64 image gives a 2 x 2 map.

Deviation: the thesis's ResNet-50 is ImageNet-pretrained; no pretrained weights are available
offline, so both presets are trained from scratch (torch's default init, BN weight 1 / bias 0).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping

import torch
from torch import nn
import torch.nn.functional as F

from vgs.nn.attention_pooling import make_pooling


@dataclass(frozen=True)
class ResNetConfig:
    block: str                       # "basic" | "bottleneck"
    layers: tuple[int, ...]          # blocks per stage
    widths: tuple[int, ...]          # planes per stage (bottleneck output = 4 x planes)
    stem_channels: int = 64
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_pool: bool = True
    embed_dim: int = 1024

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        if not self.layers or len(self.layers) != len(self.widths) or min(self.layers) < 1 or min(self.widths) < 1:
            raise ValueError(f"layers {self.layers} and widths {self.widths} must be non-empty, positive, same length")

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def num_features(self) -> int:
        """Channels of the trunk's last map (the 1x1 embedding conv's input)."""
        return self.widths[-1] * self.expansion


RESNET_PRESETS: dict[str, ResNetConfig] = {
    "resnet50": ResNetConfig("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), embed_dim=1024),
    "cpu": ResNetConfig("basic", (2, 2, 2, 2), (16, 32, 64, 128), stem_channels=16, embed_dim=256),
}
PRESET_IN_CHANNELS = {"resnet50": 3, "cpu": 1}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_channels, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.shortcut is None else self.shortcut(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = _shortcut(in_channels, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.shortcut is None else self.shortcut(x)))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class ResNetTrunk(nn.Module):
    """Stem and residual stages: images (B, C, H, W) -> maps (B, num_features, h, w)."""

    def __init__(self, config: ResNetConfig, in_channels: int = 3):
        super().__init__()
        block = Bottleneck if config.block == "bottleneck" else BasicBlock
        c = config.stem_channels
        stem: list[nn.Module] = [nn.Conv2d(in_channels, c, config.stem_kernel, stride=config.stem_stride,
                                           padding=config.stem_kernel // 2, bias=False),
                                 nn.BatchNorm2d(c), nn.ReLU()]
        if config.stem_pool:
            stem.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        stages = []
        for i, (n, planes) in enumerate(zip(config.layers, config.widths)):
            blocks = []
            for j in range(n):
                blocks.append(block(c, planes, stride=2 if (i > 0 and j == 0) else 1))
                c = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = c
        assert c == config.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(images))


class ResNetEncoder(nn.Module):
    """ResNet trunk + Conv1x1 to embed_dim + pooling over the h x w positions.

    forward(images (B, in_channels, H, W)) -> (B, embed_dim); feature_map(images) -> (B, embed_dim, h, w).
    pooling: "avg" | "mhsa" | "mhsa_nocls" | "transformer" (vgs.nn.attention_pooling.make_pooling),
    applied to the flattened positions (row-major) with an all-True mask.
    """

    def __init__(self, config: ResNetConfig, in_channels: int = 3, embed_dim: int | None = None, *,
                 pooling: str, pooling_options: Mapping | None = None, normalize: bool = False):
        super().__init__()
        self.config = config
        self.in_channels = in_channels
        self.trunk = ResNetTrunk(config, in_channels)
        self.embed_dim = config.embed_dim if embed_dim is None else int(embed_dim)
        self.embed = nn.Conv2d(self.trunk.num_features, self.embed_dim, kernel_size=1, bias=True)
        self.pool = make_pooling(pooling, self.embed_dim, **dict(pooling_options or {}))
        self.normalize = normalize

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), got {tuple(images.shape)}")
        return self.embed(self.trunk(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.feature_map(images)
        seq = m.flatten(2).transpose(1, 2)  # (B, h*w, D)
        z = self.pool(seq, torch.ones(seq.shape[:2], dtype=torch.bool, device=seq.device))
        return F.normalize(z, p=2, dim=1) if self.normalize else z


def resnet_config(name_or_dict: str | Mapping | ResNetConfig) -> ResNetConfig:
    """A preset name (see RESNET_PRESETS), a dict of ResNetConfig fields, or a config."""
    if isinstance(name_or_dict, ResNetConfig):
        return name_or_dict
    if isinstance(name_or_dict, str):
        try:
            return RESNET_PRESETS[name_or_dict]
        except KeyError:
            raise ValueError(f"unknown ResNet preset {name_or_dict!r}; known: {sorted(RESNET_PRESETS)}") from None
    known = {f.name for f in fields(ResNetConfig)}
    unknown = set(name_or_dict) - known
    if unknown:
        raise ValueError(f"unknown ResNet config keys {sorted(unknown)}; known: {sorted(known)}")
    return ResNetConfig(**dict(name_or_dict))


def resnet_encoder(name_or_dict: str | Mapping | ResNetConfig = "resnet50", in_channels: int | None = None,
                   **kwargs) -> ResNetEncoder:
    """ResNetEncoder from a preset ("resnet50": RGB, "cpu": grey) or config; kwargs go to ResNetEncoder."""
    if in_channels is None:
        in_channels = PRESET_IN_CHANNELS.get(name_or_dict, 3) if isinstance(name_or_dict, str) else 3
    return ResNetEncoder(resnet_config(name_or_dict), in_channels=in_channels, **kwargs)
