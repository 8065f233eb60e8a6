"""Stores that stream (issue 30, part 5): lazy InstanceViews and the batch loader give exactly the
batches of the whole-store reads, in the same order, whatever the number of workers, and resume
at any batch."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from image_caption_stores import _caption_manifest, _image_manifest, _store
from vgs.features.config import ImageFeatureConfig, load_feature_config
from vgs.pairing.batch_loader import LoaderSettings, RowBatchLoader, loader_settings, row_batches
from vgs.pairing.instance import build_instance_pairs
from vgs.pairing.instance_views import InstanceViews
from vgs.pairing.pairs import View
from vgs.params import Params

REPO = Path(__file__).resolve().parent.parent
SPLITS = {"train": 12, "val": 5, "test": 5}
VIEWS = ["image", "en", "hi"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("streaming")
    audio_cfg = load_feature_config(Params.load(str(REPO / "params.yaml")), "mfcc40")
    image_cfg = ImageFeatureConfig(name="scene32", kind="image", size=32, resize_method="bilinear", scale=1 / 255)
    views = [View("image", _store(root, _image_manifest(root / "corpus", size=(40, 32), splits=SPLITS), image_cfg))]
    for lang in VIEWS[1:]:
        views.append(View(lang, _store(root, _caption_manifest(root / "corpus", lang, splits=SPLITS), audio_cfg)))
    path = str(root / "pairs.zarr")
    build_instance_pairs(views, path, seed=1, epochs={"train": 1, "val": 1, "test": 1})
    return path


def _epoch_batches(views: InstanceViews, batch_size: int = 5) -> list[np.ndarray]:
    tuples = views.tuples("train")
    order = np.random.default_rng([3, 1, 0]).permutation(len(tuples))
    return row_batches(tuples[order], batch_size)


def _flat(batch) -> list[torch.Tensor]:
    return [batch.images, *(t for cap in batch.captions.values() for t in cap)]


def _assert_same(got, expected) -> None:
    got, expected = list(got), list(expected)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.rows, b.rows)
        assert list(a.captions) == list(b.captions)
        for x, y in zip(_flat(a), _flat(b)):
            assert x.dtype == y.dtype and torch.equal(x, y)


def test_lazy_views_give_the_in_memory_batches(pairs):
    whole, lazy = InstanceViews(pairs, VIEWS, in_memory=True), InstanceViews(pairs, VIEWS, in_memory=False)
    rows = _epoch_batches(whole)
    _assert_same(RowBatchLoader(lazy).batches(rows), RowBatchLoader(whole).batches(rows))
    assert whole.images(rows[0][:, 0]).shape == (5, 1, 32, 32)
    # Twice: the in-memory caption cache must give what it gave the first time.
    _assert_same(RowBatchLoader(whole).batches(rows), RowBatchLoader(lazy).batches(rows))


def test_colour_stores_give_channels_first_batches_streamed_or_whole(pairs, tmp_path):
    import zarr

    from vgs.store.feature_store import FeatureStore, FeatureStoreWriter
    grey = FeatureStore(zarr.open_group(pairs, mode="r").attrs["views"][0]["store"])
    h, w = grey.item_shape
    colour_path = tmp_path / "colour.zarr"
    writer = FeatureStoreWriter(colour_path, dim=w * 3, dtype="uint8", compress=False)
    rng = np.random.default_rng(0)
    for utt_id, split in zip(grey.ids, grey.splits):
        writer.add(utt_id, rng.integers(0, 256, (h, w * 3), dtype=np.uint8), split=split)
    writer.close({**grey.attrs, "item_shape": [h, w, 3], "raw_pixels": True, "config": {**grey.config, "scale": 1 / 255}})
    colour_pairs = tmp_path / "pairs.zarr"
    group = zarr.open_group(str(colour_pairs), mode="w", zarr_format=3)
    source = zarr.open_group(pairs, mode="r")
    for split in SPLITS:
        group.create_group(split).create_array("tuples", data=source[split]["tuples"][:])
    attrs = dict(source.attrs)
    attrs["views"] = [{**attrs["views"][0], "store": str(colour_path)}, *attrs["views"][1:]]
    group.attrs.update(attrs)

    whole = InstanceViews(str(colour_pairs), VIEWS, in_memory=True)
    lazy = InstanceViews(str(colour_pairs), VIEWS, in_memory=False)
    rows = _epoch_batches(whole)
    _assert_same(RowBatchLoader(lazy).batches(rows), RowBatchLoader(whole).batches(rows))
    images = lazy.images(rows[0][:, 0])
    assert images.shape == (5, 3, h, w) and images.dtype == torch.float32
    expected = whole.image_store.images(rows[0][:, 0]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(images.numpy(), expected)


def test_workers_give_the_same_batches_in_the_same_order_and_resume_at_a_batch(pairs):
    views = InstanceViews(pairs, VIEWS, in_memory=False)
    rows = _epoch_batches(views, batch_size=3)
    in_process = list(RowBatchLoader(views).batches(rows))
    workers = RowBatchLoader(views, num_workers=2)
    _assert_same(workers.batches(rows), in_process)
    # The same (persistent) workers, resumed at batch 2 of another epoch's order, then a full pass again.
    _assert_same(workers.batches(rows[::-1], start=2), list(RowBatchLoader(views).batches(rows[::-1]))[2:])
    _assert_same(workers.batches(rows, start=0), in_process)


def test_streaming_views_hold_no_store_arrays_and_pickle_without_open_stores(pairs):
    views = InstanceViews(pairs, VIEWS, in_memory=False)
    for rows in _epoch_batches(views):
        views.images(rows[:, 0]), views.captions("en", rows[:, 1])
    frame_elements = {v: s.group["frames"].shape[0] * s.dim for v, s in views.stores.items()}
    assert not any(s.is_loaded for s in views.stores.values())

    def arrays(obj, seen, depth=0):
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, (np.ndarray, torch.Tensor)):
            yield obj
        elif isinstance(obj, dict):
            for v in obj.values():
                yield from arrays(v, seen, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                yield from arrays(v, seen, depth + 1)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("vgs"):
            yield from arrays(vars(obj), seen, depth + 1)

    smallest = min(frame_elements.values())
    assert all(a.size < smallest for a in arrays(views, set()))
    assert all(not cache for cache in views._normalised.values())   # streaming recomputes, never caches
    state = pickle.loads(pickle.dumps(views))
    assert state._stores is None and state.pairs is None
    np.testing.assert_array_equal(state.tuples("val"), views.tuples("val"))


def test_loader_settings_come_from_each_papers_data_section():
    params = Params.load(str(REPO / "params.yaml"))
    for paper in ("mortazavi2020", "crabtree2021"):
        assert loader_settings(params.profiled(paper, "cpu").section("data")) == LoaderSettings(True, 0)
        paper_scale = loader_settings(params.profiled(paper, "paper").section("data"))
        assert not paper_scale.in_memory and paper_scale.num_workers >= 1
