"""Batches of datapoints from an instance pair store (vgs/pairing/instance.py): an image and its
captions in the chosen views, for the retrieval papers (Mortazavi 2020, Crabtree 2021).

Two ways to read (`in_memory`, params.yaml <paper>.data.in_memory): True reads every store whole
into memory on first use (digitscenes: 40 MB of images, about 60 MB of features per language) and
keeps each normalised caption; False reads only the items a batch asks for, so memory does not
grow with the corpus (a photo corpus does not fit in RAM) and captions are normalised again at
every read. Both give the same batches, bit for bit. Stores are opened on first use in the process
that reads them, and an InstanceViews pickles without them: a DataLoader worker
(vgs/pairing/batch_loader.py) opens its own, since zarr handles are not fork-safe to share.

Captions are normalised per utterance (zero mean, unit variance per coefficient, as
vgs.store.feature_store.fixed_length does) and zero-padded at the end; lengths say where padding starts, so the
encoders can mask it. Captions longer than `max_frames` are left out of every split, with their
datapoints, and counted in `dropped_long` (Mortazavi dropped captions over 8,192 MFCC frames).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from vgs.errors import StoreError
from vgs.pairing.instance import check_stores_under
from vgs.pairing.pairs import PairStore, View
from vgs.store.feature_store import FeatureStore


class CaptionBatch(NamedTuple):
    # A NamedTuple so that Compute.to and the DataLoader's pin_memory reach both tensors.
    frames: torch.Tensor    # (B, T_max, D), zero-padded at the end
    lengths: torch.Tensor   # (B,) long


def normalised_caption(feats: np.ndarray) -> np.ndarray:
    x = np.asarray(feats, dtype=np.float32)
    return (x - x.mean(axis=0, keepdims=True)) / np.maximum(x.std(axis=0, keepdims=True), 1e-5)


def image_pixels(store: FeatureStore, i: int) -> np.ndarray:
    """Item i of an image store as `FeatureStore.images` gives it, (H, W) or (H, W, 3) float32,
    reading that item only (the store scales a colour store's uint8 pixels on the way out)."""
    return store[i].reshape(store.item_shape)


class InstanceViews:
    def __init__(self, pairs_path: str, views: list[str], max_frames: int | None = None, in_memory: bool = True,
                 features_dir: tuple[str, str] | None = None):
        """features_dir: (directory, its params key): every store the pair store names must lie
        under it, because the stages that read them depend on that directory (dvc.yaml)."""
        self.pairs_path = str(pairs_path)
        self.pairs = PairStore(pairs_path)
        if self.pairs.attrs.get("mode") != "instance":
            raise StoreError(f"{pairs_path} is not an instance pair store (image bound to its own captions)",
                             hint="point the method at an instance_pairing store, e.g. data/pairs/digitscenes-mfcc40.zarr")
        if features_dir is not None:
            check_stores_under([View(v["name"], v["store"]) for v in self.pairs.views], *features_dir)
        names = self.pairs.view_names
        missing = [v for v in views if v not in names]
        if missing:
            raise StoreError(f"{pairs_path} has no view(s) {missing} (has {names})",
                             hint="choose views the pair store was built with (params.yaml instance_pairing)")
        if names.index(views[0]) != 0:
            raise StoreError(f"the first view must be the image view {names[0]!r}, got {views[0]!r}")
        self.views = list(views)
        self.columns = [names.index(v) for v in views]
        self.store_paths = {v: self.pairs.views[c]["store"] for v, c in zip(views, self.columns)}
        self.max_frames = max_frames
        self.in_memory = bool(in_memory)
        self.dropped_long: dict[str, int] = {}
        self._stores: dict[str, FeatureStore] | None = None
        self._normalised: dict[str, dict[int, np.ndarray]] = {v: {} for v in views[1:]}

    def __getstate__(self) -> dict:
        # What a DataLoader worker receives: paths and settings, never open zarr handles or read data.
        state = dict(self.__dict__)
        state.update(pairs=None, _stores=None, _normalised={v: {} for v in self.views[1:]})
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def drop_open_stores(self) -> None:
        """Forget the open stores and what was read from them; the next read opens its own. A
        forked DataLoader worker calls this: it inherits the parent's zarr handles otherwise."""
        self.__setstate__(self.__getstate__())

    @property
    def stores(self) -> dict[str, FeatureStore]:
        if self._stores is None:
            stores = {v: FeatureStore(path) for v, path in self.store_paths.items()}
            if self.in_memory:
                stores = {v: s.load() for v, s in stores.items()}
            self._stores = stores
        return self._stores

    @property
    def image_store(self) -> FeatureStore:
        return self.stores[self.views[0]]

    def tuples(self, split: str, epoch: int = 0) -> np.ndarray:
        """(N, len(views)) store indices: datapoints of `split` in `epoch`, long captions left out."""
        if self.pairs is None:
            self.pairs = PairStore(self.pairs_path)
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
        """(B, C, H, W) float32: C = 1 for grey stores, 3 for colour ones."""
        store = self.image_store
        indices = np.asarray(indices)
        if self.in_memory:
            pixels = store.images(indices)
        else:
            pixels = np.stack([image_pixels(store, i) for i in indices.tolist()]) if len(indices) else \
                np.zeros((0, *store.item_shape), dtype=np.float32)
        if pixels.ndim == 4:   # (B, H, W, 3) -> channels first
            return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
        return torch.from_numpy(np.ascontiguousarray(pixels))[:, None]

    def captions(self, view: str, indices: np.ndarray) -> CaptionBatch:
        store = self.stores[view]
        # Only a store held whole keeps its normalised captions: the cache is then bounded by what
        # is in memory anyway. Streaming recomputes them, which gives the same floats.
        cache = self._normalised[view] if self.in_memory else None
        feats = []
        for i in np.asarray(indices).tolist():
            x = cache.get(i) if cache is not None else None
            if x is None:
                x = normalised_caption(store[i])
                if cache is not None:
                    cache[i] = x
            feats.append(x)
        lengths = torch.tensor([len(x) for x in feats], dtype=torch.long)
        out = torch.zeros((len(feats), int(lengths.max()), store.dim))
        for b, x in enumerate(feats):
            out[b, :len(x)] = torch.from_numpy(x)
        return CaptionBatch(out, lengths)
