"""DenseNet image embedder (Huang et al. 2017), trained from scratch, with a linear map to d.

Layout (the standard ImageNet DenseNet):
  stem      Conv7x7/2 (in_channels -> num_init_features, no bias) - BN - ReLU - MaxPool3x3/2
  blocks    dense layers BN-ReLU-Conv1x1 (-> bn_size*growth, no bias) - BN-ReLU-Conv3x3 (-> growth, no bias),
            each layer's output concatenated to its input
  between   transitions BN-ReLU-Conv1x1 (-> floor(compression * channels), no bias) - AvgPool2x2/2
  head      BN - ReLU - global average pool - Linear(features -> d, with bias)
Every conv is bias-free (each is followed by BN, or by BN in the next layer), BN has an affine
weight and bias. The linear head's bias and the 3-channel stem for Places are what Table 1 of
Mortazavi (2020) pins down (docs/mortazavi-architecture.md).

`densenet_embedder(name_or_dict, embed_dim, in_channels)` builds one from a preset or a dict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

import torch
from torch import nn
import torch.nn.functional as F


@dataclass(frozen=True)
class DenseNetConfig:
    growth_rate: int
    block_config: tuple[int, ...]
    num_init_features: int
    bn_size: int = 4            # bottleneck width factor: the 1x1 conv makes bn_size * growth_rate maps
    compression: float = 0.5    # transition keeps floor(compression * channels) maps

    def __post_init__(self):
        object.__setattr__(self, "block_config", tuple(int(b) for b in self.block_config))
        if self.growth_rate < 1 or self.num_init_features < 1 or self.bn_size < 1:
            raise ValueError(f"DenseNet sizes must be positive: {self}")
        if not self.block_config or min(self.block_config) < 1:
            raise ValueError(f"block_config needs at least one block of at least one layer: {self.block_config}")
        if not 0.0 < self.compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {self.compression}")

    @property
    def num_features(self) -> int:
        """Channels entering the final BN-ReLU-pool (the input width of the linear head)."""
        c = self.num_init_features
        for i, n in enumerate(self.block_config):
            c += n * self.growth_rate
            if i != len(self.block_config) - 1:
                c = int(c * self.compression)
        return c


DENSENET_PRESETS: dict[str, DenseNetConfig] = {
    # Huang et al. 2017, Table 1; Mortazavi 2020 section 4.2
    "densenet121": DenseNetConfig(32, (6, 12, 24, 16), 64),
    "densenet169": DenseNetConfig(32, (6, 12, 32, 32), 64),
    "densenet201": DenseNetConfig(32, (6, 12, 48, 32), 64),
    "densenet264": DenseNetConfig(32, (6, 12, 64, 48), 64),
    # scaled for a 2-core CPU on 64x64 grey scenes (same layout, 4 blocks, fewer and thinner layers)
    "densenet_cpu": DenseNetConfig(12, (2, 4, 8, 6), 24),
}


class _DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth_rate: int, bn_size: int):
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(h)))


class _DenseBlock(nn.Module):
    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.layers = nn.ModuleList(_DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
                                    for i in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class _Transition(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.BatchNorm2d(in_channels), nn.ReLU(),
                         nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
                         nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNetFeatures(nn.Module):
    """Stem, dense blocks and transitions, final BN-ReLU: images (B, C, H, W) -> maps (B, F, h, w)."""

    def __init__(self, config: DenseNetConfig, in_channels: int = 3):
        super().__init__()
        self.config = config
        c = config.num_init_features
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, c, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
        for i, n in enumerate(config.block_config):
            layers.append(_DenseBlock(n, c, config.growth_rate, config.bn_size))
            c += n * config.growth_rate
            if i != len(config.block_config) - 1:
                out = int(c * config.compression)
                layers.append(_Transition(c, out))
                c = out
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.num_features = c
        assert c == config.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class DenseNetEmbedder(nn.Module):
    """DenseNet features, global average pool, Linear(F -> embed_dim, bias), optional L2 normalisation.

    Input (B, in_channels, H, W) float; output (B, embed_dim), unit-norm rows when normalize=True
    (the paper's similarity is the dot product of normalised vectors). H and W must survive the
    stride-32 downsampling of a 4-block net (>= 32; 64x64 grey digit scenes give 2x2 final maps).
    """

    def __init__(self, config: DenseNetConfig, embed_dim: int, in_channels: int = 3, normalize: bool = True):
        super().__init__()
        self.features = DenseNetFeatures(config, in_channels)
        self.project = nn.Linear(self.features.num_features, embed_dim)
        self.config = config
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.normalize = normalize

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), got {tuple(images.shape)}")
        pooled = self.features(images).mean(dim=(2, 3))
        z = self.project(pooled)
        return F.normalize(z, p=2, dim=1) if self.normalize else z


def densenet_config(name_or_dict: str | Mapping | DenseNetConfig) -> DenseNetConfig:
    """A preset name (see DENSENET_PRESETS), a dict of DenseNetConfig fields, or a config."""
    if isinstance(name_or_dict, DenseNetConfig):
        return name_or_dict
    if isinstance(name_or_dict, str):
        try:
            return DENSENET_PRESETS[name_or_dict]
        except KeyError:
            raise ValueError(f"unknown DenseNet preset {name_or_dict!r}; "
                             f"known: {sorted(DENSENET_PRESETS)}") from None
    known = {f.name for f in fields(DenseNetConfig)}
    unknown = set(name_or_dict) - known
    if unknown:
        raise ValueError(f"unknown DenseNet config keys {sorted(unknown)}; known: {sorted(known)}")
    return DenseNetConfig(**dict(name_or_dict))


def densenet_embedder(config_name_or_dict: str | Mapping | DenseNetConfig, embed_dim: int,
                      in_channels: int = 3, normalize: bool = True) -> DenseNetEmbedder:
    """DenseNetEmbedder from a preset name ("densenet264", "densenet_cpu", ...) or a config dict."""
    return DenseNetEmbedder(densenet_config(config_name_or_dict), embed_dim, in_channels, normalize)


def densenet_config_dict(config: DenseNetConfig) -> dict:
    """Plain dict (JSON/YAML-friendly) that densenet_config() turns back into `config`."""
    d = asdict(config)
    d["block_config"] = list(d["block_config"])
    return d
