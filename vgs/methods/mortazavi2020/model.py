"""The encoder pair of Mortazavi 2020: a DenseNet image embedder and a conv + Bi-GRU + self-attention
speech embedder (vgs/nn/densenet.py, vgs/nn/speech_rnn.py; docs/mortazavi-architecture.md says what
Table 1's parameter counts pinned down), both giving L2-normalised d-dimensional embeddings."""
from __future__ import annotations

import torch
from torch import nn

from vgs.methods.mortazavi2020.config import ModelConfig
from vgs.nn.densenet import densenet_embedder
from vgs.nn.speech_rnn import SpeechRNNEmbedder, count_parameters

MFCC_COEFFICIENTS = 40


class RetrievalPair(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.image = densenet_embedder(cfg.image_net, cfg.dim, in_channels=cfg.in_channels)
        speech_kwargs = {} if cfg.conv_channels is None else {"conv_channels": cfg.conv_channels}
        self.speech = SpeechRNNEmbedder(cfg.dim, cfg.gru_layers, in_features=MFCC_COEFFICIENTS, **speech_kwargs)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.image(images)

    def embed_captions(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.speech(frames, lengths)

    def parameter_counts(self) -> dict[str, int]:
        return {"audio": count_parameters(self.speech), "image": count_parameters(self.image)}


def build_pair(cfg: ModelConfig) -> RetrievalPair:
    return RetrievalPair(cfg)
