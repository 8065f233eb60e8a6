"""Speech embedder of Mortazavi (2020) after Merkx, Frank & Ernestus (2019), the five Table 1
embedder pairs, their CPU-scaled counterparts, and trainable-parameter counting.

Speech branch:  MFCC (B, T, 40) -> Conv1d(40 -> 64, kernel 6, stride 2, no padding, bias)
                -> G bidirectional GRU layers, hidden d/2 per direction (torch's two biases)
                -> single-head vectorial self-attention pooling (W1: d -> 128, W2: 128 -> d, biases)
                -> L2 normalisation -> (B, d).
Every choice that changes a parameter count (conv width 64, kernel 6 and its bias, GRU biases,
the attention's 128 hidden units, its vectorial output and both biases) is fixed by Table 1's
counts; see docs/mortazavi-architecture.md for the equations. The stride (2) and the absence of a
non-linearity after the conv are parameter-free and taken from Merkx et al. (2019).

Padding never changes an embedding:
  * the conv is 'valid' (no padding), so output frame t reads input frames [s*t, s*t + k - 1]; an
    utterance of L frames has conv_output_lengths(L) = (L - k) // s + 1 outputs, all of which read
    only real frames, and the later outputs (which read padding) are masked from then on;
  * each Bi-GRU layer runs its forward direction over the padded batch (padding comes after the
    last real frame, and a recurrence only looks back) and its backward direction over each
    utterance reversed within its own length (so it starts at the last real frame); this is exactly
    what a packed bidirectional nn.GRU computes (tested against one) and about twice as fast to
    train on CPU, where the packed backward pass is slow;
  * the attention softmax gives padded frames weight exactly 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from vgs.nn.densenet import DenseNetEmbedder, densenet_embedder
from vgs.nn.pooling import SelfAttentionPooling, lengths_to_mask


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (requires_grad) of a module; shared tensors counted once."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first lengths[b] frames along axis 1; padding frames stay where they are."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    r = lengths.to(x.device)[:, None] - 1 - t
    index = torch.where(r >= 0, r, t)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class BiGRU(nn.Module):
    """Stacked bidirectional GRU over a padded batch that never reads padding.

    Same parameters as nn.GRU(input_size, hidden_size, num_layers, bidirectional=True) (one
    single-layer nn.GRU per layer and direction, each with torch's two bias vectors), and the same
    outputs as that GRU on a packed sequence. forward(x (B, T, input_size), lengths (B,)) ->
    (B, T, 2 * hidden_size), [forward; backward] states, zero past each sequence's length.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.GRU(n, hidden_size, batch_first=True) for n in sizes)
        self.backward_layers = nn.ModuleList(nn.GRU(n, hidden_size, batch_first=True) for n in sizes)
        self.hidden_size = hidden_size
        self.num_layers = num_layers

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for fwd, bwd in zip(self.forward_layers, self.backward_layers):
            ahead, _ = fwd(x)
            back, _ = bwd(reverse_within_lengths(x, lengths))
            x = torch.cat([ahead, reverse_within_lengths(back, lengths)], dim=-1)
        return x * lengths_to_mask(lengths.to(x.device), x.shape[1]).unsqueeze(-1).to(x.dtype)


class SpeechRNNEmbedder(nn.Module):
    """Conv1d - G x BiGRU(d/2 per direction) - self-attention pooling - L2 norm.

    forward(x (B, T, in_features) float, lengths (B,) int) -> (B, embed_dim) unit vectors.
    Every length must be at least conv_kernel frames (one conv output).
    """

    def __init__(self, embed_dim: int, num_gru_layers: int, in_features: int = 40, conv_channels: int = 64,
                 conv_kernel: int = 6, conv_stride: int = 2, attention_hidden: int = 128):
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even (d/2 GRU units per direction), got {embed_dim}")
        if num_gru_layers < 1:
            raise ValueError(f"need at least one GRU layer, got {num_gru_layers}")
        self.conv = nn.Conv1d(in_features, conv_channels, kernel_size=conv_kernel, stride=conv_stride,
                              padding=0, bias=True)
        self.gru = BiGRU(conv_channels, embed_dim // 2, num_gru_layers)
        self.attention = SelfAttentionPooling(embed_dim, attention_hidden)
        self.embed_dim = embed_dim
        self.num_gru_layers = num_gru_layers
        self.in_features = in_features
        self.conv_kernel = conv_kernel
        self.conv_stride = conv_stride

    def conv_output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Conv outputs that read only real frames: (L - kernel) // stride + 1 (padding 0, dilation 1)."""
        return torch.div(lengths - self.conv_kernel, self.conv_stride, rounding_mode="floor") + 1

    def frames(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame Bi-GRU states (B, T', embed_dim), zero past each utterance's end, and T' lengths."""
        self._check(x, lengths)
        lengths = lengths.to(torch.int64)
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)            # (B, T', C)
        out_lengths = self.conv_output_lengths(lengths)
        states = self.gru(h, out_lengths)
        return states, out_lengths.to(states.device)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        states, out_lengths = self.frames(x, lengths)
        pooled = self.attention(states, lengths_to_mask(out_lengths, states.shape[1]))
        return F.normalize(pooled, p=2, dim=1)

    def _check(self, x: torch.Tensor, lengths: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected MFCC frames (B, T, {self.in_features}), got {tuple(x.shape)}")
        if lengths.shape != (x.shape[0],) or int(lengths.max()) > x.shape[1]:
            raise ValueError(f"lengths {lengths.tolist()} do not fit a padded batch of shape {tuple(x.shape)}")
        if int(lengths.min()) < self.conv_kernel:
            raise ValueError(f"lengths {lengths.tolist()}: every utterance needs at least "
                             f"{self.conv_kernel} frames (the conv kernel)")


# -- the five embedder pairs of Table 1 and their CPU-scaled counterparts ---------------------------------
@dataclass(frozen=True)
class PairSpec:
    """One speech-image embedder pair: G Bi-GRU layers, latent size d, and the image DenseNet preset."""
    name: str
    gru_layers: int
    embed_dim: int
    densenet: str
    in_channels: int = 3


# Paper scale: DenseNet-264 on RGB Places images. Counts from Table 1 (audio, image).
PAPER_PAIRS: dict[str, PairSpec] = {
    "DG4A2048": PairSpec("DG4A2048", 4, 2048, "densenet264"),
    "DG4A1024": PairSpec("DG4A1024", 4, 1024, "densenet264"),
    "DG3A1024": PairSpec("DG3A1024", 3, 1024, "densenet264"),
    "DG2A2048": PairSpec("DG2A2048", 2, 2048, "densenet264"),
    "DG2A1024": PairSpec("DG2A1024", 2, 1024, "densenet264"),
}
TABLE1_COUNTS: dict[str, tuple[int, int]] = {
    "DG4A2048": (63_898_816, 36_155_776),
    "DG4A1024": (16_228_544, 33_402_240),
    "DG3A1024": (11_503_808, 33_402_240),
    "DG2A2048": (26_125_504, 36_155_776),
    "DG2A1024": (6_779_072, 33_402_240),
}

# CPU scale: same G, d divided by 8 (2048 -> 256, 1024 -> 128, same 2:1 ratio), small DenseNet,
# one grey channel (64x64 digit scenes). Named after the paper pair with a "-cpu" suffix.
CPU_SCALE = 8
CPU_PAIRS: dict[str, PairSpec] = {
    f"{name}-cpu": PairSpec(f"{name}-cpu", p.gru_layers, p.embed_dim // CPU_SCALE, "densenet_cpu", in_channels=1)
    for name, p in PAPER_PAIRS.items()
}
PAIR_PRESETS: dict[str, PairSpec] = {**PAPER_PAIRS, **CPU_PAIRS}


def pair_spec(name: str) -> PairSpec:
    try:
        return PAIR_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown embedder pair {name!r}; known: {sorted(PAIR_PRESETS)}") from None


def speech_embedder(name: str) -> SpeechRNNEmbedder:
    """The speech branch of a pair preset (e.g. "DG3A1024" or "DG3A1024-cpu")."""
    spec = pair_spec(name)
    return SpeechRNNEmbedder(spec.embed_dim, spec.gru_layers)


def image_embedder(name: str, in_channels: int | None = None) -> DenseNetEmbedder:
    """The image branch of a pair preset; in_channels overrides the preset's (3 paper, 1 cpu)."""
    spec = pair_spec(name)
    return densenet_embedder(spec.densenet, spec.embed_dim, spec.in_channels if in_channels is None else in_channels)


def embedder_pair(name: str, in_channels: int | None = None) -> tuple[SpeechRNNEmbedder, DenseNetEmbedder]:
    """(speech, image) embedders of a pair preset."""
    return speech_embedder(name), image_embedder(name, in_channels)


def parameter_table(scale: str = "both") -> list[dict]:
    """Trainable-parameter counts of every pair, by instantiation: scale "paper", "cpu" or "both".

    Rows: {"pair", "scale", "G", "d", "densenet", "in_channels", "audio", "image", and for paper
    rows also "paper_audio", "paper_image" (Table 1)}. Instantiating the paper scale builds five
    DenseNet-264s (a few seconds on CPU; weights are freed after counting).
    """
    if scale not in ("paper", "cpu", "both"):
        raise ValueError(f"scale must be 'paper', 'cpu' or 'both', got {scale!r}")
    specs = ([*PAPER_PAIRS.values()] if scale in ("paper", "both") else []) + \
            ([*CPU_PAIRS.values()] if scale in ("cpu", "both") else [])
    rows = []
    for spec in specs:
        speech, image = embedder_pair(spec.name)
        row = {"pair": spec.name, "scale": "cpu" if spec.name in CPU_PAIRS else "paper", "G": spec.gru_layers,
               "d": spec.embed_dim, "densenet": spec.densenet, "in_channels": spec.in_channels,
               "audio": count_parameters(speech), "image": count_parameters(image)}
        if spec.name in TABLE1_COUNTS:
            row["paper_audio"], row["paper_image"] = TABLE1_COUNTS[spec.name]
        rows.append(row)
        del speech, image
    return rows
