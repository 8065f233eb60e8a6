"""PVAE (Hsu & Glass 2018) and its baselines, built from the modules of appendix B.

One class covers all five models of Table 1; they differ only in which latents exist, which
latents each decoder reads and which modalities are present:

  PVAE / PVAE (no contrastive)  latents s, a, i (32 each); audio decoder reads [s, a], image
                                decoder [s, i]; unimodal audio net infers (s, a), image net (s, i)
  JMVAE-kl                      one latent z (96 = 32 * 3), read by both decoders and inferred by
                                all three inference networks
  VAE-sp / VAE-im               one modality, one latent z of 64 dims (what the PVAE decoder of
                                that modality reads: [s, a] or [s, i]), no multimodal network

Networks (appendix B): audio pre-encoder = 1-layer LSTM (512 cells) over the variable-length
fbank sequence; image pre-encoder = two 4x4 stride-2 convolutions then FC 512; audio decoder =
1-layer LSTM (512) fed the latent at every step, then a per-frame FC to the frame mean; image
decoder = FC 512, FC 7x7x16, two 4x4 stride-2 transposed convolutions to 8 then 1 channel.
Multimodal and unimodal pre-encoders are separate modules (no shared parameters).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from vgs.methods.pvae2018.config import AUDIO, IMAGE, KINDS, MODALITIES, NetConfig
from vgs.nn.gaussian import GaussianHead
from vgs.nn.recurrent import LSTMEncoder, LSTMFrameDecoder

@dataclass(frozen=True)
class ModelSpec:
    """Which latents exist and who reads or infers them."""
    kind: str
    modalities: tuple
    latents: dict                     # name -> dimension
    decoder_inputs: dict              # modality -> latent names, concatenated in this order
    unimodal_latents: dict            # modality -> latent names its unimodal net infers
    multimodal: bool

    def to_dict(self) -> dict:
        return asdict(self)


def model_spec(kind: str, latent_dim: int, modality: str | None = None) -> ModelSpec:
    if kind == "pvae":
        return ModelSpec("pvae", MODALITIES, {"s": latent_dim, "a": latent_dim, "i": latent_dim},
                         {AUDIO: ("s", "a"), IMAGE: ("s", "i")}, {AUDIO: ("s", "a"), IMAGE: ("s", "i")}, True)
    if kind == "jmvae":
        return ModelSpec("jmvae", MODALITIES, {"z": 3 * latent_dim}, {AUDIO: ("z",), IMAGE: ("z",)},
                         {AUDIO: ("z",), IMAGE: ("z",)}, True)
    if kind == "vae":
        if modality not in MODALITIES:
            raise ValueError(f"a single-modality VAE needs modality audio or image, got {modality!r}")
        return ModelSpec("vae", (modality,), {"z": 2 * latent_dim}, {modality: ("z",)}, {modality: ("z",)}, False)
    raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")


class ImagePreEncoder(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        c1, c2 = cfg.image_channels
        side = cfg.image_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(c2 * side * side, cfg.hidden), nn.ReLU())
        self.output_size = cfg.hidden

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.unsqueeze(1))


class ImageDecoder(nn.Module):
    def __init__(self, cfg: NetConfig, in_features: int):
        super().__init__()
        c1, c2 = cfg.image_channels
        self.side = cfg.image_size // 4
        self.c2 = c2
        self.fc = nn.Sequential(nn.Linear(in_features, cfg.hidden), nn.ReLU(),
                                nn.Linear(cfg.hidden, c2 * self.side * self.side), nn.ReLU())
        self.deconv = nn.Sequential(nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),
                                    nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.c2, self.side, self.side)
        return self.deconv(h).squeeze(1)


class AudioPreEncoder(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.lstm = LSTMEncoder(cfg.audio_dim, cfg.hidden)
        self.output_size = cfg.hidden

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.lstm(frames, lengths)


class AudioDecoder(nn.Module):
    def __init__(self, cfg: NetConfig, in_features: int):
        super().__init__()
        self.lstm = LSTMFrameDecoder(in_features, cfg.hidden, cfg.audio_dim)

    def forward(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.lstm(z, lengths)


def _pre_encoder(modality: str, cfg: NetConfig) -> nn.Module:
    return AudioPreEncoder(cfg) if modality == AUDIO else ImagePreEncoder(cfg)


class InferenceNet(nn.Module):
    """Pre-encoders of `modalities`, concatenated, then one Gaussian head per latent."""

    def __init__(self, cfg: NetConfig, modalities: tuple, latents: dict):
        super().__init__()
        self.modalities = tuple(modalities)
        self.pre = nn.ModuleDict({m: _pre_encoder(m, cfg) for m in self.modalities})
        width = sum(p.output_size for p in self.pre.values())
        self.heads = nn.ModuleDict({name: GaussianHead(width, dim) for name, dim in latents.items()})

    def forward(self, batch: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        parts = []
        for m in self.modalities:
            if m == AUDIO:
                parts.append(self.pre[m](batch["audio"], batch["audio_lengths"]))
            else:
                parts.append(self.pre[m](batch["image"]))
        h = torch.cat(parts, dim=-1)
        return {name: head(h) for name, head in self.heads.items()}


class MultimodalVAE(nn.Module):
    """The generative networks plus the multimodal and unimodal inference networks of a spec.

    Normalisation statistics live in buffers so that a checkpoint is self-contained: export and
    generation map raw features in and decoded means out with the statistics training used.
    """

    def __init__(self, spec: ModelSpec, cfg: NetConfig):
        super().__init__()
        self.spec = spec
        self.cfg = cfg
        self.decoders = nn.ModuleDict()
        for m in spec.modalities:
            width = sum(spec.latents[n] for n in spec.decoder_inputs[m])
            self.decoders[m] = AudioDecoder(cfg, width) if m == AUDIO else ImageDecoder(cfg, width)
        self.multimodal = (InferenceNet(cfg, spec.modalities, spec.latents) if spec.multimodal else None)
        self.unimodal = nn.ModuleDict({
            m: InferenceNet(cfg, (m,), {n: spec.latents[n] for n in spec.unimodal_latents[m]})
            for m in spec.modalities})
        self.register_buffer("audio_mean", torch.zeros(cfg.audio_dim))
        self.register_buffer("audio_std", torch.ones(cfg.audio_dim))
        self.register_buffer("image_mean", torch.zeros(()))
        self.register_buffer("image_std", torch.ones(()))

    def set_normalisation(self, stats: dict) -> None:
        for k, v in stats.items():
            getattr(self, k).copy_(torch.as_tensor(v, dtype=torch.float32))

    # -- inference ------------------------------------------------------------------------------
    def infer_multimodal(self, batch: dict) -> dict:
        return self.multimodal(batch)

    def infer_unimodal(self, modality: str, batch: dict) -> dict:
        return self.unimodal[modality](batch)

    # -- generation -----------------------------------------------------------------------------
    def decode(self, modality: str, latents: dict[str, torch.Tensor],
               lengths: torch.Tensor | None = None) -> torch.Tensor:
        z = torch.cat([latents[n] for n in self.spec.decoder_inputs[modality]], dim=-1)
        if modality == AUDIO:
            if lengths is None:
                raise ValueError("decoding audio needs the number of frames of each output (lengths)")
            return self.decoders[AUDIO](z, lengths)
        return self.decoders[IMAGE](z)


def build_model(kind: str, cfg: NetConfig, modality: str | None = None) -> MultimodalVAE:
    return MultimodalVAE(model_spec(kind, cfg.latent_dim, modality), cfg)
