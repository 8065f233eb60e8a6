"""Cross-modal pairs and K-view tuples, drawn per epoch from class co-occurrence.

For the paired-digit papers (Leidal, PVAE, SMART) every item of the anchor view is paired, in
every epoch, with a random item of each other view that has the same class. The draw for
(seed, split, epoch) is fixed, so any epoch can be regenerated or resumed exactly.

Stored as Zarr under data/pairs/<name>.zarr:
  <split>/tuples   (E, N, K) int32   row n of epoch e: one index per view into that view's store
  attrs: views [{name, store, corpus, modality, config_hash}], anchor view 0, seed, epochs per split
The same layout holds an image with captions in several languages (K > 2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from vgs.errors import StoreError, VgsError
from vgs.store.feature_store import FeatureStore
from vgs.utils.atomic import atomic_path

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class View:
    name: str
    store: str


def epoch_rng(seed: int, split: str, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(epoch)])


def draw_same_class(anchor_labels: np.ndarray, candidates: np.ndarray, candidate_labels: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """For each anchor label, one uniformly drawn candidate index with the same label."""
    out = np.empty(len(anchor_labels), dtype=np.int64)
    for label in np.unique(anchor_labels):
        pool = candidates[candidate_labels == label]
        where = np.flatnonzero(anchor_labels == label)
        if len(pool) == 0:
            raise VgsError(f"class {label} has {len(where)} anchor item(s) but no partner in the other view",
                           hint="check that both corpora share label sets (e.g. 'oh' merged into 0)")
        out[where] = pool[rng.integers(0, len(pool), size=len(where))]
    return out


def build_pairs(views: list[View], out_path: str | Path, seed: int,
                epochs: dict[str, int]) -> dict:
    """Write the pair store. `epochs` maps split -> number of epochs to draw (test usually 1)."""
    if len(views) < 2:
        raise VgsError("pairing needs at least two views")
    stores = [FeatureStore(v.store) for v in views]
    summary = {}
    with atomic_path(out_path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for split, n_epochs in epochs.items():
            if split not in SPLIT_CODES:
                raise VgsError(f"unknown split {split!r} in pairing epochs")
            anchors = stores[0].indices(split)
            if len(anchors) == 0:
                raise VgsError(f"view {views[0].name} ({views[0].store}) has no {split!r} items to anchor pairs")
            anchor_labels = stores[0].labels[anchors]
            pools = []
            for v, s in zip(views[1:], stores[1:]):
                idx = s.indices(split)
                if len(idx) == 0:
                    raise VgsError(f"view {v.name} ({v.store}) has no {split!r} items")
                pools.append((idx, s.labels[idx]))
            tuples = np.empty((n_epochs, len(anchors), len(views)), dtype=np.int32)
            for e in range(n_epochs):
                rng = epoch_rng(seed, split, e)
                tuples[e, :, 0] = anchors
                for k, (idx, labels) in enumerate(pools, start=1):
                    try:
                        tuples[e, :, k] = draw_same_class(anchor_labels, idx, labels, rng)
                    except VgsError as exc:
                        raise VgsError(f"pairing {views[0].name} with {views[k].name} ({views[k].store}), "
                                       f"split {split!r}: {exc.message}", hint=exc.hint) from None
            g = root.create_group(split)
            # One chunk per epoch (an epoch is read whole), all epochs in one shard file.
            g.create_array("tuples", data=tuples, chunks=(1, len(anchors), len(views)),
                           shards=(n_epochs, len(anchors), len(views)))
            summary[split] = {"epochs": n_epochs, "tuples": len(anchors)}
        root.attrs.update({
            "views": [{"name": v.name, "store": v.store, "corpus": s.corpus, "modality": s.modality,
                       "config_hash": s.attrs["config_hash"]} for v, s in zip(views, stores)],
            "anchor_view": 0, "seed": int(seed), "epochs": {k: int(v) for k, v in epochs.items()},
        })
    return summary


class PairStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"pair store {self.path} does not exist",
                             hint="build it with the pairs stage: dvc repro pairs@<name>")
        try:
            self.group = zarr.open_group(str(self.path), mode="r")
            self.attrs = dict(self.group.attrs)
            self.views = self.attrs["views"]
        except Exception as exc:
            raise StoreError(f"pair store {self.path} cannot be opened: {exc}",
                             hint="delete it and rebuild with dvc repro") from None

    @property
    def view_names(self) -> list[str]:
        return [v["name"] for v in self.views]

    def num_epochs(self, split: str) -> int:
        return int(self.attrs["epochs"][split])

    def tuples(self, split: str, epoch: int = 0) -> np.ndarray:
        """(N, K) view indices for `epoch`. Epochs past the stored count wrap around."""
        if split not in self.group:
            raise StoreError(f"pair store {self.path} has no {split!r} split")
        e = epoch % self.num_epochs(split)
        return self.group[split]["tuples"][e]
