"""Instance pairing: each image bound to its own spoken captions, one per language view.

The retrieval papers (Mortazavi 2020, Crabtree 2021) pair an image with *its* captions, not with a
random item of the same class. A datapoint is one image (its id is the image store's utt_id, which
is the corpus's image id) and its captions: every caption record of a caption corpus names its
image in `extra.datapoint` (vgs/corpora/captions.py). The caption feature stores keep only
utt_ids, so the join reads each caption store's source manifest, which the store records with its
sha256 (a manifest that no longer matches its store is an error, not a silent misjoin).

The pair store has the same layout as class pairing (vgs/pairing/pairs.py): `<split>/tuples`
(E, N, K), view 0 the image. A datapoint with several captions in a language (Flickr8k and
SpokenCOCO have five) gets one of them per epoch, drawn from (seed, split, epoch). A datapoint
missing a view is left out of the tuples and listed in the store's `left_out` attribute.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from vgs.corpora.manifest import file_sha256, read_manifest
from vgs.errors import ParamError, StoreError, VgsError
from vgs.pairing.pairs import SPLIT_CODES, View, epoch_rng
from vgs.store.feature_store import FeatureStore
from vgs.utils.atomic import atomic_path


def caption_datapoints(store: FeatureStore) -> np.ndarray:
    """The datapoint (image id) of every item of a caption store, from its source manifest."""
    manifest_path = store.attrs.get("source_manifest")
    if not manifest_path or not Path(manifest_path).exists():
        raise StoreError(f"feature store {store.path} names no readable source manifest ({manifest_path!r})",
                         hint="rebuild the store from its caption manifest: dvc repro features@<corpus>-<config>")
    if file_sha256(manifest_path) != store.attrs.get("source_manifest_sha256"):
        raise StoreError(f"manifest {manifest_path} changed after feature store {store.path} was built",
                         hint="rebuild the store: dvc repro (the features stage depends on the manifest)")
    datapoint_of = {}
    for r in read_manifest(manifest_path):
        dp = r.extra.get("datapoint") if r.extra else None
        if dp is None:
            raise VgsError(f"{manifest_path}: record {r.id!r} names no datapoint (extra.datapoint)",
                           hint="instance pairing needs a caption corpus manifest (vgs/corpora/captions.py)")
        datapoint_of[r.id] = str(dp)
    missing = [u for u in store.ids if u not in datapoint_of]
    if missing:
        raise StoreError(f"feature store {store.path} has {len(missing)} item(s) its manifest {manifest_path} "
                         f"does not list, e.g. {missing[0]!r}", hint="rebuild the store: dvc repro")
    return np.asarray([datapoint_of[u] for u in store.ids], dtype=object)


def check_stores_under(views: list[View], features_dir: str, key: str) -> None:
    """Every view's store must lie under `features_dir`, the one directory that dvc.yaml's
    instance-pairs stage depends on (a store outside it would change without re-running the stage)."""
    root = Path(features_dir).resolve()
    outside = [f"{v.name}: {v.store}" for v in views if not Path(v.store).resolve().is_relative_to(root)]
    if outside:
        raise ParamError(f"{key} = {features_dir}, but the store(s) of view(s) {', '.join(outside)} lie outside it",
                         hint="set features_dir to a directory that holds every view's store "
                              "(e.g. data/features/<corpus>)")


def build_instance_pairs(views: list[View], out_path: str | Path, seed: int, epochs: dict[str, int]) -> dict:
    """Write the K-view tuple store. views[0] is the image view; the others are caption views."""
    if len(views) < 2:
        raise VgsError("instance pairing needs an image view and at least one caption view")
    stores = [FeatureStore(v.store) for v in views]
    if stores[0].modality != "image" or any(s.modality != "audio" for s in stores[1:]):
        raise VgsError("instance pairing takes the image store first, then caption (audio) stores; got "
                       + ", ".join(f"{v.name}: {s.modality}" for v, s in zip(views, stores)))
    # datapoint -> store indices of its captions, per caption view (in store order, so seeded draws
    # do not depend on manifest order).
    caption_index: list[dict[str, list[int]]] = []
    for s in stores[1:]:
        by_datapoint: dict[str, list[int]] = {}
        for i, dp in enumerate(caption_datapoints(s)):
            by_datapoint.setdefault(dp, []).append(i)
        caption_index.append(by_datapoint)

    summary: dict = {}
    left_out: dict = {}
    with atomic_path(out_path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for split, n_epochs in epochs.items():
            if split not in SPLIT_CODES:
                raise VgsError(f"unknown split {split!r} in pairing epochs")
            images = stores[0].indices(split)
            complete, missing = [], []
            for i in images:
                dp = stores[0].ids[i]
                lacking = [v.name for v, idx in zip(views[1:], caption_index) if dp not in idx]
                (missing.append({"datapoint": dp, "missing_views": lacking}) if lacking else complete.append(i))
            if not complete:
                raise VgsError(f"no {split!r} image of {views[0].store} has a caption in every view "
                               f"({', '.join(v.name for v in views[1:])})",
                               hint="check that the caption stores were built from the same corpus as the images")
            complete = np.asarray(complete, dtype=np.int64)
            tuples = np.empty((n_epochs, len(complete), len(views)), dtype=np.int32)
            for e in range(n_epochs):
                rng = epoch_rng(seed, split, e)
                tuples[e, :, 0] = complete
                for k, idx in enumerate(caption_index, start=1):
                    options = [idx[stores[0].ids[i]] for i in complete]
                    tuples[e, :, k] = [o[0] if len(o) == 1 else o[int(rng.integers(len(o)))] for o in options]
            g = root.create_group(split)
            g.create_array("tuples", data=tuples, chunks=(1, len(complete), len(views)),
                           shards=(n_epochs, len(complete), len(views)))
            summary[split] = {"epochs": n_epochs, "tuples": len(complete), "left_out": len(missing)}
            if missing:
                left_out[split] = missing
        root.attrs.update({
            "mode": "instance",
            "views": [{"name": v.name, "store": v.store, "corpus": s.corpus, "modality": s.modality,
                       "config_hash": s.attrs["config_hash"]} for v, s in zip(views, stores)],
            "anchor_view": 0, "seed": int(seed), "epochs": {k: int(v) for k, v in epochs.items()},
            "left_out": left_out,
        })
    return summary
