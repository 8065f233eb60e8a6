"""Batches of datapoints from an instance pair store (vgs/pairing/instance.py): an image and its
captions in the chosen views, for the retrieval papers (Mortazavi 2020, Crabtree 2021).

Everything is read into memory once (digitscenes: 40 MB of images, about 60 MB of features per
language). Captions are normalised per utterance (zero mean, unit variance per coefficient, as
vgs.store.feature_store.fixed_length does) and zero-padded at the end; lengths say where padding starts, so the
encoders can mask it. Captions longer than `max_frames` are left out of every split, with their
datapoints, and counted in `dropped_long` (Mortazavi dropped captions over 8,192 MFCC frames).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vgs.errors import StoreError
from vgs.pairing.pairs import PairStore
from vgs.store.feature_store import FeatureStore


@dataclass
class CaptionBatch:
    frames: torch.Tensor    # (B, T_max, D), zero-padded at the end
    lengths: torch.Tensor   # (B,) long


class InstanceViews:
    def __init__(self, pairs_path: str, views: list[str], max_frames: int | None = None):
        self.pairs = PairStore(pairs_path)
        if self.pairs.attrs.get("mode") != "instance":
            raise StoreError(f"{pairs_path} is not an instance pair store (image bound to its own captions)",
                             hint="point the method at an instance_pairing store, e.g. data/pairs/digitscenes-mfcc40.zarr")
        names = self.pairs.view_names
        missing = [v for v in views if v not in names]
        if missing:
            raise StoreError(f"{pairs_path} has no view(s) {missing} (has {names})",
                             hint="choose views the pair store was built with (params.yaml instance_pairing)")
        if names.index(views[0]) != 0:
            raise StoreError(f"the first view must be the image view {names[0]!r}, got {views[0]!r}")
        self.views = list(views)
        self.columns = [names.index(v) for v in views]
        self.stores = {v: FeatureStore(self.pairs.views[c]["store"]).load() for v, c in zip(views, self.columns)}
        self.max_frames = max_frames
        self._normalised: dict[str, dict[int, np.ndarray]] = {v: {} for v in views[1:]}
        self.dropped_long: dict[str, int] = {}

    @property
    def image_store(self) -> FeatureStore:
        return self.stores[self.views[0]]

    def tuples(self, split: str, epoch: int = 0) -> np.ndarray:
        """(N, len(views)) store indices: datapoints of `split` in `epoch`, long captions left out."""
        t = self.pairs.tuples(split, epoch)[:, self.columns].astype(np.int64)
        if self.max_frames is None:
            return t
        keep = np.ones(len(t), dtype=bool)
        for k, view in enumerate(self.views[1:], start=1):
            lengths = self.stores[view].lengths[t[:, k]]
            keep &= lengths <= self.max_frames
        self.dropped_long[split] = int((~keep).sum())
        return t[keep]

    def datapoint_ids(self, image_indices: np.ndarray) -> np.ndarray:
        return self.image_store.ids[np.asarray(image_indices)]

    def images(self, indices: np.ndarray) -> torch.Tensor:
        """(B, 1, H, W) float32."""
        return torch.from_numpy(np.ascontiguousarray(self.image_store.images(np.asarray(indices))))[:, None]

    def captions(self, view: str, indices: np.ndarray) -> CaptionBatch:
        cache = self._normalised[view]
        store = self.stores[view]
        feats = []
        for i in np.asarray(indices).tolist():
            x = cache.get(i)
            if x is None:
                x = np.asarray(store[i], dtype=np.float32)
                x = (x - x.mean(axis=0, keepdims=True)) / np.maximum(x.std(axis=0, keepdims=True), 1e-5)
                cache[i] = x
            feats.append(x)
        lengths = torch.tensor([len(x) for x in feats], dtype=torch.long)
        out = torch.zeros((len(feats), int(lengths.max()), store.dim))
        for b, x in enumerate(feats):
            out[b, :len(x)] = torch.from_numpy(x)
        return CaptionBatch(out, lengths)
