"""SMART's networks (Liu et al., Section 3): two convolutional autoencoders, two transcoders, and
the label classifiers (MLC, GLC) that judge conversions.

Paper: each autoencoder ("module") has 21 convolution layers, 2 fully connected layers, matched
down/up-sampling, normalisation and Leaky ReLU; 512-d latents; 32x32 image and 96x96 audio input;
each transcoder has 5 fully connected layers. `ConvAutoencoder` builds that depth with
`sampling: pool, convs_per_stage: 2` over five stages (5*2 encoder + 5*2 decoder + 1 output conv
= 21); the CPU profile uses one strided (transposed) convolution per stage instead.
"""
from __future__ import annotations

import torch
from torch import nn

from vgs.methods.smart.config import SAMPLINGS
from vgs.train.device import current


def _conv_block(c_in: int, c_out: int, slope: float, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(slope)]


def _up_block(c_in: int, c_out: int, slope: float) -> list[nn.Module]:
    # kernel 4, stride 2, padding 1 doubles H and W exactly and avoids the uneven overlap
    # (checkerboard) of kernel 3.
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(slope)]


class ConvAutoencoder(nn.Module):
    """(B, 1, H, W) in [0, 1] -> latent (B, latent_dim) -> reconstruction (B, 1, H, W) in [0, 1].

    `widths[s]` is the channel count of encoder stage s; every stage halves H and W (so H and W
    must be divisible by 2**len(widths)). The decoder mirrors the encoder.
      sampling=pool:   stage = convs_per_stage 3x3 convs, then 2x2 max pooling; decoder stage =
                       nearest-neighbour upsampling, then convs_per_stage 3x3 convs.
      sampling=stride: stage = one stride-2 3x3 conv plus convs_per_stage-1 3x3 convs; decoder
                       stage = one stride-2 transposed conv plus convs_per_stage-1 3x3 convs,
                       the last stage's transposed conv giving the output.
    One fully connected layer on each side of the latent; the output (a final 3x3 conv in pool
    mode) goes through a sigmoid. Conv layers: 2*S*n + 1 (pool), 2*S + 2*S*(n-1) (stride).
    """

    def __init__(self, input_hw: tuple[int, int], widths: list[int], latent_dim: int, convs_per_stage: int,
                 sampling: str, leaky_slope: float):
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if convs_per_stage < 1 or not widths:
            raise ValueError("need at least one stage and one convolution per stage")
        h, w = input_hw
        scale = 2 ** len(widths)
        if h % scale or w % scale:
            raise ValueError(f"input {h}x{w} is not divisible by 2**{len(widths)} (one halving per stage)")
        self.input_hw = (h, w)
        self.bottleneck = (widths[-1], h // scale, w // scale)
        flat = widths[-1] * (h // scale) * (w // scale)

        enc: list[nn.Module] = []
        c = 1
        for width in widths:
            if sampling == "pool":
                for _ in range(convs_per_stage):
                    enc += _conv_block(c, width, leaky_slope)
                    c = width
                enc.append(nn.MaxPool2d(2))
            else:
                enc += _conv_block(c, width, leaky_slope, stride=2)
                for _ in range(convs_per_stage - 1):
                    enc += _conv_block(width, width, leaky_slope)
                c = width
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, latent_dim))

        self.from_latent = nn.Sequential(nn.Linear(latent_dim, flat), nn.LeakyReLU(leaky_slope))
        dec: list[nn.Module] = []
        c = widths[-1]
        if sampling == "pool":
            for width in list(reversed(widths))[1:] + [widths[0]]:
                dec.append(nn.Upsample(scale_factor=2, mode="nearest"))
                for _ in range(convs_per_stage):
                    dec += _conv_block(c, width, leaky_slope)
                    c = width
            dec.append(nn.Conv2d(c, 1, 3, padding=1))
        else:
            for width in list(reversed(widths))[1:]:
                dec += _up_block(c, width, leaky_slope)
                for _ in range(convs_per_stage - 1):
                    dec += _conv_block(width, width, leaky_slope)
                c = width
            # The last upsampling produces the output directly: normalising and convolving
            # multi-channel maps at full resolution would cost half of the whole network on CPU.
            dec.append(nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1))
        self.decoder = nn.Sequential(*dec, nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(z).view(len(z), *self.bottleneck))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)


class Transcoder(nn.Module):
    """`num_layers` fully connected layers from one latent space to the other (Leaky ReLU between,
    linear output so it can reach any point of the target latent space)."""

    def __init__(self, latent_dim: int, hidden_dim: int, num_layers: int, leaky_slope: float):
        super().__init__()
        if num_layers < 1:
            raise ValueError("a transcoder needs at least one layer")
        dims = [latent_dim] + [hidden_dim] * (num_layers - 1) + [latent_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < num_layers - 1:
                layers.append(nn.LeakyReLU(leaky_slope))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def other(modality: str) -> str:
    return "audio" if modality == "image" else "image"


class SmartNet(nn.Module):
    """The whole SMART system. Module groups by modality: what one training phase updates.

    image group: E_I, D_I (autoencoders.image) and T_I->A (transcoders.image)
    audio group: E_A, D_A (autoencoders.audio) and T_A->I (transcoders.audio)
    `transcoders[m]` maps modality m's latent into the other modality's latent space.
    """

    def __init__(self, autoencoders: dict[str, ConvAutoencoder], transcoders: dict[str, Transcoder]):
        super().__init__()
        self.autoencoders = nn.ModuleDict(autoencoders)
        self.transcoders = nn.ModuleDict(transcoders)

    def group(self, modality: str) -> list[nn.Module]:
        return [self.autoencoders[modality], self.transcoders[modality]]

    def group_parameters(self, modality: str) -> list[nn.Parameter]:
        return [p for m in self.group(modality) for p in m.parameters()]

    @torch.no_grad()
    def convert(self, x: torch.Tensor, source: str) -> torch.Tensor:
        """x (source modality) -> E_source -> T_source->target -> D_target."""
        z = self.autoencoders[source].encode(x)
        return self.autoencoders[other(source)].decode(self.transcoders[source](z))


def count_layers(module: nn.Module, kinds=(nn.Conv2d, nn.ConvTranspose2d)) -> int:
    return sum(isinstance(m, kinds) for m in module.modules())


class LabelClassifier(nn.Module):
    """A judge (MLC for images, GLC for audio): conv stages (3x3 conv, BN, ReLU, 2x2 max pool),
    then a fully connected hidden layer and the class layer, with dropout before each.
    `input_pool` average-pools the input first, which costs little on 96x96 log-mels whose
    neighbouring frames overlap by 90% and cuts the cost by four."""

    def __init__(self, input_hw: tuple[int, int], widths: list[int], num_classes: int, input_pool: int,
                 hidden: int, dropout: float):
        super().__init__()
        h, w = input_hw
        layers: list[nn.Module] = []
        if input_pool > 1:
            layers.append(nn.AvgPool2d(input_pool))
            h, w = h // input_pool, w // input_pool
        c = 1
        for width in widths:
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"{len(widths)} pooling stages leave nothing of a {input_hw} input")
        layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * h * w, hidden), nn.ReLU(),
                   nn.Dropout(dropout), nn.Linear(hidden, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted classes of `x` (on the CPU, wherever `x` and the model are)."""
        compute = current()
        was_training = self.training
        self.eval()
        with compute.autocast():
            out = torch.cat([self(compute.to(x[i:i + batch_size])).argmax(1).cpu()
                             for i in range(0, len(x), batch_size)])
        self.train(was_training)
        return out
