"""The encoders of Crabtree 2021 (Sec. 2.4): a ResNet image encoder (vgs/nn/resnet.py) and ResDAVEnet
speech encoders (vgs/nn/resdavenet.py), one per language or one shared by all languages (Chapter 5),
with the pooling variant of the run (Sec. 3.1.6, Table 3.6) on every view.

Pooling on the image view: the thesis pools every view's final map the same way ("flattening all
dimensions before the last (only relevant for the image view)"), so the image's h x w positions go
through the same pooler. "avg_internal_mhsa" is an attention layer inside the speech CNN; the image
is average-pooled in that run.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vgs.methods.crabtree2021.config import HEADS, ModelConfig
from vgs.nn.resdavenet import resdavenet
from vgs.nn.resnet import resnet_encoder
from vgs.nn.speech_rnn import count_parameters

LOG_MEL_BINS = 40


def _pooling_options(cfg: ModelConfig, name: str) -> dict:
    if name in ("mhsa", "mhsa_nocls"):
        return {"num_heads": HEADS, "dropout": cfg.dropout}
    if name == "transformer":
        return {"num_heads": HEADS, "dropout": cfg.dropout, "dim_feedforward": cfg.transformer_feedforward}
    return {}


def speech_encoder(cfg: ModelConfig, num_languages: int | None = None) -> nn.Module:
    """One ResDAVEnet of the run's preset, widths, embedding size, pooling and (shared) conditioning."""
    kwargs = {"embed_dim": cfg.embed_dim, "in_bins": LOG_MEL_BINS, "variant": cfg.pooling}
    if cfg.speech_widths is not None:
        kwargs["widths"] = cfg.speech_widths
    if cfg.pooling == "avg_internal_mhsa":
        kwargs["internal_attention_options"] = {"num_heads": HEADS, "dropout": cfg.dropout}
    else:
        kwargs["pooling_options"] = _pooling_options(cfg, cfg.pooling)
    if cfg.language_conditioning is not None:
        kwargs.update(language_conditioning=cfg.language_conditioning, num_languages=num_languages,
                      language_dim=cfg.language_dim)
    return resdavenet(cfg.speech_net, **kwargs)


def image_encoder(cfg: ModelConfig) -> nn.Module:
    pooling = "avg" if cfg.pooling == "avg_internal_mhsa" else cfg.pooling
    return resnet_encoder(cfg.image_net, in_channels=cfg.in_channels, embed_dim=cfg.embed_dim, pooling=pooling,
                          pooling_options=_pooling_options(cfg, pooling))


class CrabtreeModel(nn.Module):
    """The image encoder and the speech encoder(s) of one run.

    embed_images(images (B, C, H, W)) -> (B, D); embed_captions(language, frames (B, T, 40), lengths (B,))
    -> (B, D). The losses use dot products of these (Sec. 3.1.3): the pooled outputs as they are, or, with
    `embedding_norm`, L2-normalised to that norm (always 1 for the hyperspheric loss).
    """

    def __init__(self, cfg: ModelConfig, languages: list[str] | tuple[str, ...]):
        super().__init__()
        self.cfg = cfg
        self.languages = list(languages)
        self.image = image_encoder(cfg)
        if cfg.encoders == "separate":
            self.speech = nn.ModuleDict({lang: speech_encoder(cfg) for lang in self.languages})
        else:
            self.speech = speech_encoder(cfg, num_languages=len(self.languages))

    def _out(self, z: torch.Tensor) -> torch.Tensor:
        norm = self.cfg.embedding_norm
        return z if norm is None else F.normalize(z, p=2, dim=1) * norm

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return self._out(self.image(images))

    def language_ids(self, language: str, batch: int) -> torch.Tensor:
        return torch.full((batch,), self.languages.index(language), dtype=torch.long)

    def embed_captions(self, language: str, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.cfg.encoders == "separate":
            return self._out(self.speech[language](frames, lengths))
        return self._out(self.speech(frames, lengths, self.language_ids(language, len(frames))))

    def parameter_counts(self) -> dict[str, int]:
        speech = count_parameters(self.speech)
        image = count_parameters(self.image)
        return {"image": image, "speech": speech, "total": image + speech}


def build_model(cfg: ModelConfig, languages) -> CrabtreeModel:
    return CrabtreeModel(cfg, languages)


def count_structure(cfg: ModelConfig, languages) -> dict[str, int]:
    """Parameter counts of a structure without allocating its weights (meta device): also at paper scale."""
    with torch.device("meta"):
        return build_model(cfg, languages).parameter_counts()
