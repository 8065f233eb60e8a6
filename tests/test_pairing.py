"""Pairing: same-class partners, determinism per (seed, split, epoch), K-view tuples, wrap-around."""
import numpy as np
import pytest

from vgs.errors import StoreError, VgsError
from vgs.pairing.pairs import PairStore, View, build_pairs
from vgs.store.feature_store import FeatureStoreWriter


def make_store(path, labels_by_split: dict, dim: int = 3, corpus: str = "c", modality: str = "audio"):
    """A tiny feature store; item i of each split has label labels[i] and frames filled with i."""
    w = FeatureStoreWriter(path, dim)
    n = 0
    for split, labels in labels_by_split.items():
        for label in labels:
            w.add(f"{corpus}-{n}", np.full((2, dim), n, dtype=np.float32), int(label), "spk", split)
            n += 1
    w.close({"corpus": corpus, "modality": modality, "config": {"name": "t"}, "config_hash": f"h{corpus}",
             "source_manifest_sha256": "0" * 64})
    return str(path)


@pytest.fixture
def stores(tmp_path):
    classes = np.arange(5)
    return {
        "image": make_store(tmp_path / "image.zarr", {"train": np.tile(classes, 12), "val": classes,
                                                      "test": np.tile(classes, 2)}, corpus="img", modality="image"),
        "audio": make_store(tmp_path / "audio.zarr", {"test": np.tile(classes, 3), "train": np.tile(classes, 6),
                                                      "val": np.tile(classes, 2)}, corpus="aud"),
        "audio2": make_store(tmp_path / "audio2.zarr", {"train": np.tile(classes, 4), "val": classes,
                                                        "test": classes}, corpus="aud2"),
    }


def labels_and_splits(store_path):
    from vgs.store.feature_store import FeatureStore

    s = FeatureStore(store_path)
    return s.labels, s.splits


EPOCHS = {"train": 4, "val": 1, "test": 1}


def test_every_tuple_is_same_class_and_within_the_split(stores, tmp_path):
    views = [View("image", stores["image"]), View("audio", stores["audio"])]
    summary = build_pairs(views, tmp_path / "p.zarr", seed=7, epochs=EPOCHS)
    assert summary["train"] == {"epochs": 4, "tuples": 60}
    pairs = PairStore(tmp_path / "p.zarr")
    assert pairs.view_names == ["image", "audio"] and pairs.num_epochs("train") == 4
    img_labels, img_splits = labels_and_splits(stores["image"])
    aud_labels, aud_splits = labels_and_splits(stores["audio"])
    for split, n_epochs in EPOCHS.items():
        for e in range(n_epochs):
            t = pairs.tuples(split, e)
            assert t.shape == (int((img_splits == split).sum()), 2)
            # every anchor exactly once, in store order
            np.testing.assert_array_equal(t[:, 0], np.flatnonzero(img_splits == split))
            assert np.all(aud_splits[t[:, 1]] == split)
            np.testing.assert_array_equal(img_labels[t[:, 0]], aud_labels[t[:, 1]])


def test_pairs_are_deterministic_per_seed_split_epoch(stores, tmp_path):
    views = [View("image", stores["image"]), View("audio", stores["audio"])]
    build_pairs(views, tmp_path / "a.zarr", seed=7, epochs=EPOCHS)
    build_pairs(views, tmp_path / "b.zarr", seed=7, epochs={"train": 2, "val": 1, "test": 1})
    build_pairs(views, tmp_path / "c.zarr", seed=8, epochs=EPOCHS)
    a, b, c = (PairStore(tmp_path / f"{n}.zarr") for n in "abc")
    # epoch e's draw does not depend on how many epochs were drawn (resuming is exact)
    for e in range(2):
        np.testing.assert_array_equal(a.tuples("train", e), b.tuples("train", e))
    assert not np.array_equal(a.tuples("train", 0), c.tuples("train", 0))  # the seed matters
    assert not np.array_equal(a.tuples("train", 0)[:, 1], a.tuples("train", 1)[:, 1])  # epochs differ
    # splits draw from independent streams
    assert a.attrs["seed"] == 7 and a.attrs["epochs"] == EPOCHS


def test_partners_cover_the_whole_class_over_epochs(stores, tmp_path):
    views = [View("image", stores["image"]), View("audio", stores["audio"])]
    build_pairs(views, tmp_path / "p.zarr", seed=3, epochs={"train": 40})
    pairs = PairStore(tmp_path / "p.zarr")
    chosen = np.concatenate([pairs.tuples("train", e)[:, 1] for e in range(40)])
    aud_labels, aud_splits = labels_and_splits(stores["audio"])
    # every training audio item is drawn at some point, and no class favours a few partners
    assert set(chosen) == set(np.flatnonzero(aud_splits == "train"))
    counts = np.bincount(chosen)[np.flatnonzero(aud_splits == "train")]
    assert counts.max() < 3 * counts.mean()


def test_epochs_wrap_around(stores, tmp_path):
    views = [View("image", stores["image"]), View("audio", stores["audio"])]
    build_pairs(views, tmp_path / "p.zarr", seed=1, epochs={"train": 3, "test": 1})
    pairs = PairStore(tmp_path / "p.zarr")
    for e in range(3):
        np.testing.assert_array_equal(pairs.tuples("train", e + 3), pairs.tuples("train", e))
        np.testing.assert_array_equal(pairs.tuples("train", e + 6), pairs.tuples("train", e))
    np.testing.assert_array_equal(pairs.tuples("test", 5), pairs.tuples("test", 0))
    with pytest.raises(StoreError, match="no 'val' split"):
        pairs.tuples("val", 0)


def test_k_view_tuples(stores, tmp_path):
    views = [View("image", stores["image"]), View("english", stores["audio"]), View("hindi", stores["audio2"])]
    build_pairs(views, tmp_path / "k.zarr", seed=5, epochs={"train": 2, "test": 1})
    pairs = PairStore(tmp_path / "k.zarr")
    assert pairs.view_names == ["image", "english", "hindi"]
    assert [v["config_hash"] for v in pairs.views] == ["himg", "haud", "haud2"]
    labels = [labels_and_splits(stores[k])[0] for k in ("image", "audio", "audio2")]
    for split, epochs in (("train", 2), ("test", 1)):
        for e in range(epochs):
            t = pairs.tuples(split, e)
            assert t.shape[1] == 3
            for k in (1, 2):
                np.testing.assert_array_equal(labels[0][t[:, 0]], labels[k][t[:, k]])


def test_a_class_missing_from_the_other_view_is_a_clear_error(tmp_path):
    image = make_store(tmp_path / "i.zarr", {"train": [0, 1, 2, 3]}, corpus="img")
    audio = make_store(tmp_path / "a.zarr", {"train": [0, 1, 2, 2]}, corpus="aud")
    with pytest.raises(VgsError) as err:
        build_pairs([View("image", image), View("audio", audio)], tmp_path / "p.zarr", seed=0,
                    epochs={"train": 1})
    message = str(err.value)
    assert "class 3" in message and "no partner" in message and "audio" in message and "'train'" in message
    assert "fix:" in message
    assert not (tmp_path / "p.zarr").exists()


def test_a_view_without_the_split_is_a_clear_error(tmp_path):
    image = make_store(tmp_path / "i.zarr", {"train": [0, 1], "val": [0, 1]}, corpus="img")
    audio = make_store(tmp_path / "a.zarr", {"train": [0, 1]}, corpus="aud")
    with pytest.raises(VgsError, match=r"view audio .* has no 'val' items"):
        build_pairs([View("image", image), View("audio", audio)], tmp_path / "p.zarr", seed=0,
                    epochs={"train": 1, "val": 1})
    with pytest.raises(VgsError, match="unknown split 'dev'"):
        build_pairs([View("image", image), View("audio", audio)], tmp_path / "p.zarr", seed=0, epochs={"dev": 1})
    with pytest.raises(VgsError, match="at least two views"):
        build_pairs([View("image", image)], tmp_path / "p.zarr", seed=0, epochs={"train": 1})
    assert not (tmp_path / "p.zarr").exists()


def test_missing_pair_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist") as err:
        PairStore(tmp_path / "nope.zarr")
    assert "dvc repro pairs@" in str(err.value)
