"""Image and audio inputs of a Leidal run, read from the feature stores through a pair store.

Images come from the image store as (H, W) arrays in [0, 1] (MNIST: 28 x 28). Audio comes from the fbank store
through FeatureStore.fixed: each utterance normalised to zero mean and unit variance per bin,
centre-cropped or zero-padded at the end to `num_frames` (Section 4 of the paper). Which corpora
are used is decided by the stores named in params (`leidal2017.data`): MNIST + FSDD by default,
MNIST + TIDIGITS by pointing the audio store and the pair store at TIDIGITS ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vgs.errors import StoreError
from vgs.methods.leidal2017.config import DataConfig
from vgs.pairing.pairs import PairStore
from vgs.store.feature_store import FeatureStore


class LeidalData:
    def __init__(self, cfg: DataConfig, num_frames: int):
        self.cfg = cfg
        self.num_frames = num_frames
        self.image_store = FeatureStore(cfg.image_store)
        self.audio_store = FeatureStore(cfg.audio_store)
        if not self.image_store.item_shape:
            raise StoreError(f"{cfg.image_store} is not an image store",
                             hint="set leidal2017.data.image_store to an image feature store (e.g. image28)")
        if len(self.image_store.item_shape) != 2:
            raise StoreError(f"{cfg.image_store} holds items of shape {list(self.image_store.item_shape)}, "
                             "not grey-scale (H, W) images: the image encoder has one input channel",
                             hint="set leidal2017.data.image_store to a grey-scale image store (e.g. image28)")
        if self.audio_store.item_shape:
            raise StoreError(f"{cfg.audio_store} is an image store, not audio features",
                             hint="set leidal2017.data.audio_store to an fbank80 store")
        self._pairs: PairStore | None = None
        self._audio_rows: dict[int, int] = {}
        self._audio_cache: np.ndarray | None = None

    # -- input sizes, from the stores' metadata --------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.image_store.item_shape)

    @property
    def audio_bins(self) -> int:
        return self.audio_store.dim

    # -- pairs ---------------------------------------------------------------------------------
    @property
    def pairs(self) -> PairStore:
        """The pair store, checked against the configured feature stores (opened on first use)."""
        if self._pairs is None:
            pairs = PairStore(self.cfg.pairs)
            stores = {v["name"]: v.get("store") for v in pairs.views}
            by_path = {str(Path(s)): name for name, s in stores.items()}
            self.image_view = by_path.get(str(Path(self.cfg.image_store)))
            self.audio_view = by_path.get(str(Path(self.cfg.audio_store)))
            if self.image_view is None or self.audio_view is None or len(pairs.views) != 2:
                raise StoreError(
                    f"pair store {self.cfg.pairs} pairs {sorted(stores.values())}, not the configured image "
                    f"store {self.cfg.image_store} and audio store {self.cfg.audio_store}",
                    hint="make leidal2017.data.pairs a pairing built from exactly those two stores "
                         "(params.yaml `pairing`)")
            names = pairs.view_names
            self._image_col, self._audio_col = names.index(self.image_view), names.index(self.audio_view)
            self._pairs = pairs
        return self._pairs

    @property
    def anchor_modality(self) -> str:
        self.pairs
        return "image" if self._image_col == 0 else "audio"

    def pair_indices(self, split: str, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(image store indices, audio store indices) of every pair of `split` in `epoch`."""
        tuples = self.pairs.tuples(split, epoch)
        return tuples[:, self._image_col].astype(np.int64), tuples[:, self._audio_col].astype(np.int64)

    # -- inputs --------------------------------------------------------------------------------
    def images(self, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.image_store.images(np.asarray(indices))))

    def audio(self, indices: np.ndarray) -> torch.Tensor:
        """Fixed-size (N, num_frames, bins) audio; each utterance is normalised once and cached."""
        indices = np.asarray(indices, dtype=np.int64)
        new = [int(i) for i in np.unique(indices) if int(i) not in self._audio_rows]
        if new:
            block = self.audio_store.fixed(new, self.num_frames)
            start = 0 if self._audio_cache is None else len(self._audio_cache)
            self._audio_cache = block if self._audio_cache is None else np.concatenate([self._audio_cache, block])
            self._audio_rows.update({i: start + k for k, i in enumerate(new)})
        rows = np.fromiter((self._audio_rows[int(i)] for i in indices), dtype=np.int64, count=len(indices))
        return torch.from_numpy(self._audio_cache[rows])

    def warm(self, split: str) -> None:
        """Normalise every audio item of `split` up front (one pass instead of per batch)."""
        self.audio(self.audio_store.indices(split))

    def describe(self) -> str:
        """The data actually used, for result tables, e.g. 'MNIST + FSDD (6 speakers)'."""
        speakers = len(set(self.audio_store.speakers.tolist()) - {""})
        return (f"{self.image_store.corpus.upper()} + {self.audio_store.corpus.upper()}"
                f" ({speakers} speakers)")
