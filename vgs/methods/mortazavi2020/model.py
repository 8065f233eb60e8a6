"""The encoder pair of Mortazavi 2020: a DenseNet image embedder and a conv + Bi-GRU + self-attention
speech embedder (vgs/nn/densenet.py, vgs/nn/speech_rnn.py; docs/mortazavi-architecture.md says what
Table 1's parameter counts pinned down), both giving L2-normalised d-dimensional embeddings.

The input sizes come from the stores the run reads (`input_sizes`): the caption store's feature
dimension (40 MFCC coefficients for digitscenes-mfcc40) and the image store's channels."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vgs.errors import ParamError, StoreError
from vgs.methods.mortazavi2020.config import METHOD, ModelConfig, RunConfig
from vgs.nn.densenet import densenet_embedder
from vgs.nn.speech_rnn import SpeechRNNEmbedder, count_parameters
from vgs.pairing.instance_views import InstanceViews


@dataclass(frozen=True)
class InputSizes:
    caption_features: int      # width of a caption frame (MFCC coefficients), from the caption store
    image_channels: int        # from the image store's item shape


def input_sizes(cfg: RunConfig, views: InstanceViews) -> InputSizes:
    """The encoders' input sizes as the pair store's feature stores record them; `model.in_channels`
    in params.yaml must agree with the image store (a mismatch is a ParamError)."""
    image_store = views.stores[cfg.data.image_view]
    shape = image_store.item_shape
    if not shape:
        raise StoreError(f"{image_store.path} (view {cfg.data.image_view!r} of {cfg.data.pairs}) is not an image store",
                         hint="the first view of the pair store must be the images")
    # Image stores hold (H, W) grey pixels; a colour store would record (H, W, C).
    channels = 1 if len(shape) == 2 else int(shape[-1])
    if channels != cfg.model.in_channels:
        raise ParamError(f"{METHOD}.model.in_channels = {cfg.model.in_channels} but the image store "
                         f"{image_store.path} (view {cfg.data.image_view!r} of {cfg.data.pairs}) has {channels} "
                         f"channel(s) (item_shape {list(shape)})",
                         hint=f"set {METHOD}.model.in_channels to {channels}, or point data.pairs at another store")
    return InputSizes(caption_features=views.stores[cfg.data.caption_view].dim, image_channels=channels)


class RetrievalPair(nn.Module):
    def __init__(self, cfg: ModelConfig, sizes: InputSizes):
        super().__init__()
        self.image = densenet_embedder(cfg.image_net, cfg.dim, in_channels=sizes.image_channels)
        speech_kwargs = {} if cfg.conv_channels is None else {"conv_channels": cfg.conv_channels}
        self.speech = SpeechRNNEmbedder(cfg.dim, cfg.gru_layers, in_features=sizes.caption_features, **speech_kwargs)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.image(images)

    def embed_captions(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.speech(frames, lengths)

    def parameter_counts(self) -> dict[str, int]:
        return {"audio": count_parameters(self.speech), "image": count_parameters(self.image)}


def build_pair(cfg: ModelConfig, sizes: InputSizes) -> RetrievalPair:
    return RetrievalPair(cfg, sizes)
