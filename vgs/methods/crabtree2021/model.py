"""The encoders of Crabtree 2021 (Sec. 2.4): a ResNet image encoder (vgs/nn/resnet.py) and ResDAVEnet
speech encoders (vgs/nn/resdavenet.py), one per language or one shared by all languages (Chapter 5),
with the pooling variant of the run (Sec. 3.1.6, Table 3.6) on every view.

Pooling on the image view: the thesis pools every view's final map the same way ("flattening all
dimensions before the last (only relevant for the image view)"), so the image's h x w positions go
through the same pooler. "avg_internal_mhsa" is an attention layer inside the speech CNN; the image
is average-pooled in that run.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from vgs.errors import ParamError, StoreError
from vgs.methods.crabtree2021.config import HEADS, METHOD, ModelConfig, RunConfig
from vgs.nn.resdavenet import resdavenet
from vgs.nn.resnet import resnet_encoder
from vgs.nn.speech_rnn import count_parameters
from vgs.pairing.pairs import PairStore
from vgs.store.feature_store import FeatureStore


@dataclass(frozen=True)
class InputSizes:
    """What the encoders read, as the pair store's feature stores record it."""
    mel_bins: int          # per caption frame (the caption stores' `dim`)
    image_channels: int    # the image store holds (H, W) grey images: 1


def view_stores(cfg: RunConfig) -> dict[str, str]:
    """{view: feature store path} of the run's views in its pair store; ParamError naming the key
    when the store lacks one."""
    stores = {v["name"]: v["store"] for v in PairStore(cfg.data.pairs).views}
    for key, wanted in (("image_view", [cfg.data.image_view]), ("caption_views", list(cfg.data.caption_views))):
        missing = [v for v in wanted if v not in stores]
        if missing:
            raise ParamError(f"{METHOD}.data.{key} names view(s) {missing} that the pair store {cfg.data.pairs} "
                             f"lacks (it has {list(stores)})",
                             hint="choose views the store was built with (params.yaml instance_pairing)")
    return {view: stores[view] for view in cfg.data.views}


def input_sizes(cfg: RunConfig) -> InputSizes:
    """The encoders' input sizes from the feature stores' metadata (no frames are read); ParamError
    when `model.in_channels` disagrees with the image store."""
    stores = view_stores(cfg)
    bins = {lang: FeatureStore(stores[lang]).dim for lang in cfg.data.caption_views}
    if len(set(bins.values())) != 1:
        # One speech architecture (and, shared, one encoder) serves every language.
        raise StoreError(f"the caption stores of {cfg.data.pairs} differ in feature size: "
                         + ", ".join(f"{lang} {n} ({stores[lang]})" for lang, n in bins.items()),
                         hint="build every language's captions with one feature config")
    image_store = FeatureStore(stores[cfg.data.image_view])
    shape = image_store.item_shape
    if not shape:
        raise StoreError(f"{image_store.path} (view {cfg.data.image_view!r} of {cfg.data.pairs}) is not an image store")
    channels = 1 if len(shape) == 2 else int(shape[-1])
    if cfg.model.in_channels != channels:
        raise ParamError(f"{METHOD}.model.in_channels = {cfg.model.in_channels} (run {cfg.run}), but the image store "
                         f"{image_store.path} (view {cfg.data.image_view!r} of {cfg.data.pairs}) holds "
                         f"{channels}-channel images of shape {list(shape)}",
                         hint=f"set {METHOD}.model.in_channels to {channels}")
    return InputSizes(mel_bins=next(iter(bins.values())), image_channels=channels)


def _pooling_options(cfg: ModelConfig, name: str) -> dict:
    if name in ("mhsa", "mhsa_nocls"):
        return {"num_heads": HEADS, "dropout": cfg.dropout}
    if name == "transformer":
        return {"num_heads": HEADS, "dropout": cfg.dropout, "dim_feedforward": cfg.transformer_feedforward}
    return {}


def speech_encoder(cfg: ModelConfig, mel_bins: int, num_languages: int | None = None) -> nn.Module:
    """One ResDAVEnet of the run's preset, widths, embedding size, pooling and (shared) conditioning."""
    kwargs = {"embed_dim": cfg.embed_dim, "in_bins": mel_bins, "variant": cfg.pooling}
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


def image_encoder(cfg: ModelConfig, channels: int) -> nn.Module:
    # avg_internal_mhsa is an attention layer inside the speech CNN; the image is average-pooled.
    pooling = "avg" if cfg.pooling == "avg_internal_mhsa" else cfg.pooling
    return resnet_encoder(cfg.image_net, in_channels=channels, embed_dim=cfg.embed_dim, pooling=pooling,
                          pooling_options=_pooling_options(cfg, pooling))


class CrabtreeModel(nn.Module):
    """The image encoder and the speech encoder(s) of one run.

    embed_images(images (B, C, H, W)) -> (B, D); embed_captions(language, frames (B, T, mel bins), lengths (B,))
    -> (B, D). The losses use dot products of these (Sec. 3.1.3): the pooled outputs as they are, or, with
    `embedding_norm`, L2-normalised to that norm (always 1 for the hyperspheric loss).
    """

    def __init__(self, cfg: ModelConfig, languages: list[str] | tuple[str, ...], sizes: InputSizes):
        super().__init__()
        self.cfg = cfg
        self.languages = list(languages)
        self.image = image_encoder(cfg, sizes.image_channels)
        if cfg.encoders == "separate":
            self.speech = nn.ModuleDict({lang: speech_encoder(cfg, sizes.mel_bins) for lang in self.languages})
        else:
            self.speech = speech_encoder(cfg, sizes.mel_bins, num_languages=len(self.languages))

    def _out(self, z: torch.Tensor) -> torch.Tensor:
        norm = self.cfg.embedding_norm
        return z if norm is None else F.normalize(z, p=2, dim=1) * norm

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return self._out(self.image(images))

    def language_ids(self, language: str, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.full((batch,), self.languages.index(language), dtype=torch.long, device=device)

    def embed_captions(self, language: str, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.cfg.encoders == "separate":
            return self._out(self.speech[language](frames, lengths))
        return self._out(self.speech(frames, lengths, self.language_ids(language, len(frames), frames.device)))

    def parameter_counts(self) -> dict[str, int]:
        speech = count_parameters(self.speech)
        image = count_parameters(self.image)
        return {"image": image, "speech": speech, "total": image + speech}


def build_model(cfg: ModelConfig, languages, sizes: InputSizes) -> CrabtreeModel:
    return CrabtreeModel(cfg, languages, sizes)


def count_structure(cfg: ModelConfig, languages, sizes: InputSizes) -> dict[str, int]:
    """Parameter counts of a structure without allocating its weights (meta device): also at paper scale."""
    with torch.device("meta"):
        return build_model(cfg, languages, sizes).parameter_counts()
