"""torch Datasets over a feature store.

`FeatureDataset(store, split="train")` yields `(features, label, index)`:
  - audio, `num_frames=None`: the ragged (T, D) utterance; batch it with `pad_collate`, which pads
    with zeros at the end and also returns the true lengths;
  - audio, `num_frames=N`: Leidal's fixed (N, D) view (vgs.store.fixed_length: per-utterance
    normalisation, centre crop, zero padding at the end), batched by torch's default collate;
  - images: (1, H, W), ready for a conv net.
`index` is the row in the store, so embeddings can be written back against store ids.

Worker processes. Frames are read lazily: the dataset keeps only the store path and the small
per-item arrays, and each process opens the Zarr group itself on first use (the ResDAVEnet
pattern of opening HDF5 per worker), so DataLoader workers fork or spawn without sharing file
handles. When the dataset is built from a FeatureStore that was `.load()`ed, the in-memory frames
are used instead; forked workers then share them copy-on-write. `preload=True` makes each process
read all frames into memory when it first opens the store: random access to a Zarr store decodes a
whole chunk per item, so preloading is much faster for training on a store that fits in memory.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vgs.errors import StoreError
from vgs.store.feature_store import FeatureStore, fixed_length


class FeatureDataset(Dataset):
    def __init__(self, store: FeatureStore | str | Path, split: str | Iterable[str] | None = None,
                 indices: Sequence[int] | None = None, num_frames: int | None = None, normalise: bool = True,
                 preload: bool = False):
        opened = store if isinstance(store, FeatureStore) else FeatureStore(store)
        self.path = opened.path
        if indices is not None and split is not None:
            raise ValueError("give split or indices, not both")
        if indices is None:
            indices = opened.indices(split)
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(opened)):
            raise StoreError(f"indices out of range for {self.path} ({len(opened)} items)")
        self.labels = np.asarray(opened.labels)[self.indices]
        self.item_shape = opened.item_shape
        self.modality = opened.modality
        self.dim = opened.dim
        if num_frames is not None:
            if self.item_shape:
                raise StoreError(f"{self.path} is an image store; num_frames applies to audio only")
            if num_frames < 1:
                raise ValueError(f"num_frames must be positive, got {num_frames}")
        self.num_frames = num_frames
        self.normalise = normalise
        self.preload = preload
        # Frames already in memory travel with the dataset; otherwise each process opens its own.
        self._store = opened if opened.is_loaded else None
        self._pid = os.getpid() if self._store is not None else None
        self._in_memory = self._store is not None

    def __len__(self) -> int:
        return len(self.indices)

    def _reader(self) -> FeatureStore:
        if self._in_memory:
            return self._store
        if self._store is None or self._pid != os.getpid():
            self._store = FeatureStore(self.path)
            if self.preload:
                self._store.load()
            self._pid = os.getpid()
        return self._store

    def __getstate__(self):
        state = self.__dict__.copy()
        if not self._in_memory:
            state["_store"] = None  # never ship an open store to another process
            state["_pid"] = None
        return state

    def __getitem__(self, i: int):
        row = int(self.indices[i])
        feats = self._reader()[row]
        if self.item_shape:
            x = np.asarray(feats, dtype=np.float32).reshape(1, *self.item_shape)
        elif self.num_frames is not None:
            x = fixed_length(feats, self.num_frames, self.normalise)
        else:
            x = np.asarray(feats, dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(x)), int(self.labels[i]), row


def pad_collate(batch):
    """Batch ragged (T, D) items: (B, T_max, D) zero-padded at the end, lengths (B,), labels (B,),
    indices (B,)."""
    feats, labels, indices = zip(*batch)
    lengths = torch.tensor([len(x) for x in feats], dtype=torch.long)
    dim = feats[0].shape[1]
    out = feats[0].new_zeros((len(feats), int(lengths.max()) if len(feats) else 0, dim))
    for b, x in enumerate(feats):
        out[b, :len(x)] = x
    return out, lengths, torch.tensor(labels, dtype=torch.long), torch.tensor(indices, dtype=torch.long)
