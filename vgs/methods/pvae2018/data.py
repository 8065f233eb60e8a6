"""Paired spoken/written digits for PVAE: VAD-trimmed fbank sequences, images, per-epoch pairs.

Audio: every utterance of the fbank store is trimmed by the energy VAD (vgs.features.vad), then
each of the 80 bins is standardised with the mean and standard deviation of the training split's
(trimmed) frames. Images: pixels standardised with the training split's global mean and std.
The statistics are computed here once and stored in the model's buffers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vgs.errors import ParamError, VgsError
from vgs.features.vad import trim_silence
from vgs.methods.pvae2018.config import DataConfig, input_sizes
from vgs.nn.recurrent import pad_batch
from vgs.pairing.pairs import PairStore
from vgs.store.feature_store import FeatureStore


class DigitData:
    """In-memory audio and image views plus the pair store, with normalisation applied on access."""

    def __init__(self, cfg: DataConfig, progress: bool = False):
        self.cfg = cfg
        self.audio_store = FeatureStore(cfg.audio_store).load()
        self.image_store = FeatureStore(cfg.image_store)
        self.sizes = input_sizes(cfg, self.audio_store, self.image_store)
        self.pairs = PairStore(cfg.pairs)
        names = self.pairs.view_names
        if names[:2] != ["audio", "image"]:
            raise VgsError(f"pair store {cfg.pairs} has views {names}; PVAE needs (audio, image) with audio as anchor",
                           hint="use the fsdd-mnist pairing (pairing.fsdd-mnist in params.yaml)")
        for view, path in zip(self.pairs.views[:2], (cfg.audio_store, cfg.image_store)):
            if Path(view["store"]) != Path(path):
                raise VgsError(f"pair store {cfg.pairs} indexes {view['store']} for view {view['name']}, "
                               f"but pvae2018.data points at {path}",
                               hint="make pvae2018.data and the pairing's views name the same stores")
        self.audio = [trim_silence(self.audio_store[i], cfg.vad_threshold_db, cfg.vad_context_frames,
                                   cfg.vad_min_frames) for i in range(len(self.audio_store))]
        self.images = self.image_store.images()
        train_audio = np.concatenate([self.audio[i] for i in self.audio_store.indices("train")])
        train_images = self.images[self.image_store.indices("train")]
        self.stats = {
            "audio_mean": train_audio.mean(axis=0).astype(np.float32),
            "audio_std": np.maximum(train_audio.std(axis=0), 1e-3).astype(np.float32),
            "image_mean": np.float32(train_images.mean()),
            "image_std": np.float32(train_images.std() if cfg.image_likelihood_std is None
                                    else cfg.image_likelihood_std),
        }
        self.frames_kept = float(sum(len(a) for a in self.audio) / self.audio_store.lengths.sum())

    def require_input_sizes(self, net, source: str) -> None:
        """ParamError unless `net` (a NetConfig, from `source`) reads inputs of the sizes these
        stores hold: a model meets the stores it was not trained on."""
        for size, store_key in (("audio_dim", "audio_store"), ("image_size", "image_store")):
            if getattr(net, size) != self.sizes[size]:
                raise ParamError(f"{source} has net.{size} = {getattr(net, size)}, but pvae2018.data.{store_key} "
                                 f"{getattr(self.cfg, store_key)} holds inputs of size {self.sizes[size]}",
                                 hint="point pvae2018.data at the stores the model was trained on, or train it again")

    # -- batches --------------------------------------------------------------------------------
    def audio_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.stats["audio_mean"], self.stats["audio_std"]
        return pad_batch([(self.audio[int(i)] - mean) / std for i in indices])

    def image_batch(self, indices) -> torch.Tensor:
        x = (self.images[np.asarray(indices)] - self.stats["image_mean"]) / self.stats["image_std"]
        return torch.as_tensor(x, dtype=torch.float32)

    def batch(self, audio_idx=None, image_idx=None) -> dict:
        out = {}
        if audio_idx is not None:
            out["audio"], out["audio_lengths"] = self.audio_batch(audio_idx)
            out["audio_index"] = np.asarray(audio_idx)
        if image_idx is not None:
            out["image"] = self.image_batch(image_idx)
            out["image_index"] = np.asarray(image_idx)
        return out

    def denormalise_audio(self, x: torch.Tensor) -> np.ndarray:
        return (np.asarray(x) * self.stats["audio_std"] + self.stats["audio_mean"]).astype(np.float32)

    def denormalise_image(self, x: torch.Tensor) -> np.ndarray:
        return np.clip(np.asarray(x) * self.stats["image_std"] + self.stats["image_mean"], 0.0, 1.0)

    def split(self, modality: str, split: str) -> np.ndarray:
        store = self.audio_store if modality == "audio" else self.image_store
        idx = store.indices(split)
        if len(idx) == 0:
            raise VgsError(f"{store.path} has no {split!r} items")
        return idx

    def labels(self, modality: str, indices) -> np.ndarray:
        store = self.audio_store if modality == "audio" else self.image_store
        return store.labels[np.asarray(indices)]


def stats_from_model(model) -> dict:
    """The normalisation a trained model used (its buffers), to normalise new inputs the same way."""
    return {"audio_mean": model.audio_mean.cpu().numpy(), "audio_std": model.audio_std.cpu().numpy(),
            "image_mean": np.float32(model.image_mean.item()), "image_std": np.float32(model.image_std.item())}
