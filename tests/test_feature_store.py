"""The Zarr feature store: reader API, fixed-size view, integrity checks, attributes, HDF5
round trip, the `vgs store` command and the torch Dataset view."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch
import zarr
from torch.utils.data import DataLoader

from vgs.cli import main as vgs_main
from vgs.corpora.manifest import Manifest, ManifestRecord, file_sha256, write_manifest
from vgs.errors import StoreError
from vgs.features.config import load_feature_config
from vgs.features.extract import build_store
from vgs.params import Params
from vgs.store.feature_store import FeatureStore, FeatureStoreWriter, fixed_length
from vgs.store.hdf5 import export_hdf5, import_hdf5
from vgs.store.torch_views import FeatureDataset, pad_collate

LENGTHS = [3, 7, 1, 12, 5, 2]
SPLITS = ["train", "train", "val", "test", "train", "test"]


def toy_attrs(**extra) -> dict:
    attrs = {"corpus": "toy", "modality": "audio", "config": {"name": "toy", "kind": "fbank"},
             "config_name": "toy", "config_hash": "0123456789abcdef",
             "source_manifest": "toy.jsonl", "source_manifest_sha256": "f" * 64, "num_rejected": 0}
    attrs.update(extra)
    return attrs


@pytest.fixture
def toy_store(tmp_path) -> tuple[Path, list[np.ndarray]]:
    """Six utterances of known content, D=4, written through the real writer."""
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((t, 4)).astype(np.float32) for t in LENGTHS]
    path = tmp_path / "toy.zarr"
    w = FeatureStoreWriter(path, dim=4)
    for i, (x, split) in enumerate(zip(feats, SPLITS)):
        w.add(f"utt{i}", x, label=i % 3 if i != 4 else None, speaker=f"spk{i % 2}", split=split,
              transcript=f"word{i}")
    w.close(toy_attrs())
    return path, feats


# -- reader API ---------------------------------------------------------------------------------------
def test_random_access_by_index_and_id(toy_store):
    path, feats = toy_store
    store = FeatureStore(path)
    assert len(store) == 6 and store.dim == 4
    for i in (3, 0, 5, 2):
        np.testing.assert_array_equal(store[i], feats[i])
        np.testing.assert_array_equal(store.get(f"utt{i}"), feats[i])
    np.testing.assert_array_equal(store[-1], feats[5])
    assert store.index_of("utt4") == 4
    assert list(store.labels) == [0, 1, 2, 0, -1, 2]  # -1: no label
    assert list(store.speakers) == ["spk0", "spk1"] * 3
    assert list(store.transcripts) == [f"word{i}" for i in range(6)]
    with pytest.raises(IndexError):
        store[6]
    with pytest.raises(StoreError, match="'nope' is not in feature store"):
        store.get("nope")
    # the in-memory cache gives the same answers
    store.load()
    for i in range(6):
        np.testing.assert_array_equal(store[i], feats[i])


def test_offsets_and_frames_agree(toy_store):
    path, feats = toy_store
    store = FeatureStore(path)
    assert store.offsets[0] == 0 and store.offsets.dtype == np.int64
    assert list(store.lengths) == LENGTHS
    frames = store.group["frames"][:]
    assert frames.dtype == np.float32 and frames.shape == (sum(LENGTHS), 4)
    np.testing.assert_array_equal(frames, np.concatenate(feats))
    assert list(store.indices("train")) == [0, 1, 4]
    assert list(store.indices(["val", "test"])) == [2, 3, 5]
    assert store.attrs["num_items"] == 6 and store.attrs["num_frames"] == sum(LENGTHS)


def test_plain_zarr_reads_the_store_without_vgs(toy_store):
    path, feats = toy_store
    g = zarr.open_group(str(path), mode="r")
    offsets = g["offsets"][:]
    i = list(g["utt_id"][:]).index("utt3")
    np.testing.assert_array_equal(g["frames"][offsets[i]:offsets[i + 1]], feats[3])
    assert g["split"][i] == "test" and g.attrs["config_hash"] == "0123456789abcdef"


# -- fixed-size view (Leidal) -------------------------------------------------------------------------------
def test_fixed_length_hand_checked():
    long = np.arange(6, dtype=np.float32)[:, None]           # 0..5
    # centre crop without normalisation: start (6-2)//2 = 2
    np.testing.assert_array_equal(fixed_length(long, 2, normalise=False)[:, 0], [2, 3])
    np.testing.assert_array_equal(fixed_length(long[:5], 2, normalise=False)[:, 0], [1, 2])
    # normalised first (mean 2.5, std sqrt(35/12)), then cropped
    std = np.sqrt(35 / 12)
    np.testing.assert_allclose(fixed_length(long, 2)[:, 0], [-0.5 / std, 0.5 / std], rtol=1e-6)
    short = np.array([[1.0, 10.0], [3.0, 10.0]], dtype=np.float32)
    # normalise over the two real frames (mean 2, std 1; a constant dimension becomes 0), then
    # zero-pad at the end: padding does not enter the statistics
    np.testing.assert_allclose(fixed_length(short, 4), [[-1, 0], [1, 0], [0, 0], [0, 0]], atol=1e-6)
    np.testing.assert_array_equal(fixed_length(short, 3, normalise=False), [[1, 10], [3, 10], [0, 0]])
    np.testing.assert_array_equal(fixed_length(short, 2, normalise=False), short)


def test_store_fixed_view_matches_rule(toy_store):
    path, feats = toy_store
    store = FeatureStore(path)
    out = store.fixed([3, 2, 0], num_frames=5)
    assert out.shape == (3, 5, 4) and out.dtype == np.float32
    for row, i in enumerate([3, 2, 0]):
        np.testing.assert_array_equal(out[row], fixed_length(feats[i], 5))
    # utterance 3 (12 frames) is centre-cropped: frames 3..7 of the normalised utterance
    x = (feats[3] - feats[3].mean(0)) / feats[3].std(0)
    np.testing.assert_allclose(out[0], x[3:8], rtol=1e-5, atol=1e-6)
    # utterance 0 (3 frames) is padded with two zero frames at the end
    assert np.all(out[2, 3:] == 0) and np.all(out[2, :3] != 0)


# -- integrity ------------------------------------------------------------------------------------------
def test_missing_array_is_a_store_error(toy_store):
    path, _ = toy_store
    shutil.rmtree(path / "speaker")
    with pytest.raises(StoreError, match=r"incomplete \(missing \['speaker'\]\)") as err:
        FeatureStore(path)
    assert "rebuild" in str(err.value)


def test_missing_attribute_is_a_store_error(toy_store):
    path, _ = toy_store
    meta = json.loads((path / "zarr.json").read_text())
    del meta["attributes"]["config_hash"]
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="config_hash"):
        FeatureStore(path)


def test_offsets_that_disagree_with_frames_are_refused(toy_store):
    path, _ = toy_store
    g = zarr.open_group(str(path), mode="r+")
    offsets = g["offsets"][:]
    offsets[-1] += 1
    g["offsets"][:] = offsets
    with pytest.raises(StoreError, match="offsets do not match frames"):
        FeatureStore(path)


def write_toy(path: Path, feats: list[np.ndarray], keep: list[int], plan: list[int] | None) -> None:
    """The toy utterances `keep` through the writer, after planning the utterances `plan`."""
    def meta(i):
        return f"utt{i}", (i % 3 if i != 4 else None), f"spk{i % 2}", SPLITS[i % len(SPLITS)], f"word{i}"
    w = FeatureStoreWriter(path, dim=4)
    if plan is not None:
        w.plan(meta(i) for i in plan)
    for i in keep:
        utt, label, speaker, split, transcript = meta(i)
        w.add(utt, feats[i], label=label, speaker=speaker, split=split, transcript=transcript)
    w.close(toy_attrs())


def store_bytes(path: Path) -> dict:
    files = {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    meta = json.loads(files.pop(Path("zarr.json")))
    return {**files, "zarr.json": meta}


@pytest.mark.parametrize("plan", [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6], [5, 4, 3, 2, 1, 0], []])
def test_planned_metadata_gives_the_store_of_the_items_actually_added(toy_store, tmp_path, plan):
    """Right, longer, reordered or empty plans: the store holds what was added, byte for byte."""
    path, feats = toy_store
    unplanned = tmp_path / "unplanned.zarr"
    write_toy(unplanned, feats, keep=[0, 1, 2, 3, 4, 5], plan=None)
    assert store_bytes(unplanned) == store_bytes(path)
    write_toy(tmp_path / "planned.zarr", feats, keep=[0, 1, 2, 3, 4, 5], plan=plan)
    assert store_bytes(tmp_path / "planned.zarr") == store_bytes(path)
    # An item skipped after planning (on_error: skip) is not in the metadata either.
    write_toy(tmp_path / "skipped.zarr", feats, keep=[0, 2, 3, 5], plan=[0, 1, 2, 3, 4, 5])
    write_toy(tmp_path / "skipped-unplanned.zarr", feats, keep=[0, 2, 3, 5], plan=None)
    assert store_bytes(tmp_path / "skipped.zarr") == store_bytes(tmp_path / "skipped-unplanned.zarr")
    store = FeatureStore(tmp_path / "skipped.zarr")
    assert list(store.ids) == ["utt0", "utt2", "utt3", "utt5"] and list(store.labels) == [0, 2, 0, 2]


def test_abandoning_a_writer_ends_its_background_writes(tmp_path):
    import threading

    w = FeatureStoreWriter(tmp_path / "a.zarr", dim=4)
    w.plan((f"utt{i}", i, "spk", "train", "") for i in range(1000))
    w.add("utt0", np.zeros((2, 4), dtype=np.float32), label=0, speaker="spk", split="train")
    w.abandon()
    assert not [t for t in threading.enumerate() if t.name.startswith("vgs-store")]
    shutil.rmtree(tmp_path / "a.zarr")  # what atomic_path does next: nothing writes there any more
    assert not (tmp_path / "a.zarr").exists()


def test_missing_or_damaged_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        FeatureStore(tmp_path / "absent.zarr")
    (tmp_path / "junk.zarr").mkdir()
    (tmp_path / "junk.zarr" / "zarr.json").write_text("{broken")
    with pytest.raises(StoreError, match="cannot be opened|incomplete"):
        FeatureStore(tmp_path / "junk.zarr")


# -- a store built by the features stage code -------------------------------------------------------------
def write_toy_corpus(root: Path, n: int = 12, corrupt: bool = False) -> Manifest:
    rng = np.random.default_rng(1)
    records = []
    for i in range(n):
        rel = f"wav/u{i:02d}.wav"
        (root / "wav").mkdir(parents=True, exist_ok=True)
        x = 0.2 * rng.standard_normal(800 + 160 * i)
        sf.write(str(root / rel), x, 8000, subtype="PCM_16")
        records.append(ManifestRecord(id=f"toy-{i:02d}", source=rel, modality="audio",
                                      split=("train", "val", "test")[i % 3], label=i % 10,
                                      transcript=str(i % 10), speaker=f"s{i % 2}",
                                      num_samples=len(x), sample_rate=8000))
    if corrupt:
        (root / "wav" / "u03.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return Manifest(corpus="toy", root=str(root), records=records)


@pytest.fixture
def built_store(tmp_path):
    manifest = write_toy_corpus(tmp_path / "corpus", corrupt=True)
    manifest_file = tmp_path / "toy.jsonl"
    write_manifest(manifest_file, manifest)
    params = Params({"features": {"fb": {"kind": "fbank", "sample_rate": 8000, "num_mel_bins": 20}}})
    cfg = load_feature_config(params, "fb")
    out = tmp_path / "features" / "toy" / "fb.zarr"
    build_store(manifest, manifest_file, cfg, out, num_workers=1, on_error="skip")
    return out, cfg, manifest_file


def test_attrs_record_config_checksum_and_versions_but_no_clock(built_store):
    path, cfg, manifest_file = built_store
    store = FeatureStore(path)
    a = store.attrs
    assert a["config"] == cfg.as_dict() and a["config_hash"] == cfg.hash() and a["config_name"] == "fb"
    assert a["source_manifest_sha256"] == file_sha256(manifest_file)
    assert {"vgs", "zarr", "numpy", "kaldi_native_fbank", "h5py"} <= set(a["versions"])
    assert a["versions"]["zarr"] == zarr.__version__
    assert "created" not in a  # a write time would make identical stores hash differently
    assert a["sample_rate"] == 8000 and a["frame_shift_ms"] == 10.0 and a["dim"] == 20
    assert a["num_rejected"] == 1 and len(store) == 11
    rejected = [json.loads(line) for line in (path / "rejected.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejected] == ["toy-03"] and "u03.wav" in rejected[0]["reason"]


def test_store_has_few_files(built_store):
    path, _, _ = built_store
    files = [p for p in path.rglob("*") if p.is_file()]
    # zarr.json per array and group, one shard for frames, one chunk per small array, rejected.jsonl
    assert len(files) <= 16, sorted(str(p.relative_to(path)) for p in files)


# -- HDF5 -------------------------------------------------------------------------------------------------
def assert_same_store(a: Path, b: Path) -> None:
    x, y = FeatureStore(a).load(), FeatureStore(b).load()
    np.testing.assert_array_equal(x._frames, y._frames)
    assert x._frames.dtype == y._frames.dtype == np.float32
    np.testing.assert_array_equal(x.offsets, y.offsets)
    np.testing.assert_array_equal(x.labels, y.labels)
    for attr in ("ids", "speakers", "splits", "transcripts"):
        assert list(getattr(x, attr)) == list(getattr(y, attr)), attr
    assert x.attrs == y.attrs
    rej_a, rej_b = a / "rejected.jsonl", b / "rejected.jsonl"
    assert rej_a.exists() == rej_b.exists()
    if rej_a.exists():
        assert rej_a.read_text() == rej_b.read_text()


@pytest.mark.parametrize("compression", ["gzip", "lzf", "none"])
def test_hdf5_round_trip_is_identical(built_store, tmp_path, compression):
    path, _, _ = built_store
    h5 = tmp_path / f"fb-{compression}.h5"
    summary = export_hdf5(path, h5, compression=compression)
    assert summary["items"] == 11 and summary["rejected"] == 1
    back = tmp_path / "back.zarr"
    import_hdf5(h5, back)
    assert_same_store(path, back)
    assert not list(tmp_path.glob(".*.tmp-*"))  # atomic writes leave nothing behind


def test_hdf5_layout_is_usable_with_plain_h5py(built_store, tmp_path):
    path, cfg, _ = built_store
    h5 = tmp_path / "fb.h5"
    export_hdf5(path, h5)
    store = FeatureStore(path)
    with h5py.File(h5, "r") as f:
        assert f.attrs["_vgs_format"] == "vgs-feature-store"
        assert json.loads(f.attrs["config"]) == cfg.as_dict()
        assert f.attrs["config_hash"] == cfg.hash() and f.attrs["dim"] == 20
        offsets = f["offsets"][()]
        ids = [s.decode() for s in f["utt_id"][()]]
        i = ids.index("toy-07")
        np.testing.assert_array_equal(f["frames"][offsets[i]:offsets[i + 1]], store.get("toy-07"))
        assert f["split"][i].decode() == "val" and f["label"][i] == 7
        assert json.loads(f["rejected"][0])["id"] == "toy-03"


def test_image_store_round_trip(tmp_path):
    path = tmp_path / "img.zarr"
    w = FeatureStoreWriter(path, dim=5)
    rng = np.random.default_rng(2)
    for i in range(7):
        w.add(f"img{i}", rng.random((4, 5), dtype=np.float32), label=i, split="train")
    w.close(toy_attrs(modality="image", item_shape=[4, 5]))
    import_hdf5(export_hdf5(path, tmp_path / "img.h5")["hdf5"], tmp_path / "img2.zarr")
    assert_same_store(path, tmp_path / "img2.zarr")
    assert FeatureStore(tmp_path / "img2.zarr").item_shape == (4, 5)


def _raw_pixel_store(path: Path, pixels: np.ndarray) -> None:
    """Colour images as build_store keeps them: uint8 rows of W*3 values, scaled when read."""
    n, h, w, c = pixels.shape
    writer = FeatureStoreWriter(path, dim=w * c, dtype="uint8")
    for i, img in enumerate(pixels):
        writer.add(f"img{i}", img.reshape(h, w * c), label=i, split="train")
    writer.close(toy_attrs(modality="image", item_shape=[h, w, c], raw_pixels=True,
                           config={"name": "rgb", "kind": "image", "scale": 1 / 255}))


def test_raw_pixel_store_keeps_uint8_and_reads_scaled_float32(tmp_path):
    pixels = np.random.default_rng(4).integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    _raw_pixel_store(tmp_path / "rgb.zarr", pixels)
    store = FeatureStore(tmp_path / "rgb.zarr")
    assert store.group["frames"].dtype == np.uint8 and store.item_shape == (4, 6, 3) and store.dim == 18
    expected = pixels.astype(np.float32) * (1 / 255)
    np.testing.assert_array_equal(store.images(), expected)
    np.testing.assert_array_equal(store.images(np.array([4, 0])), expected[[4, 0]])
    np.testing.assert_array_equal(store.item(2), expected[2])
    np.testing.assert_array_equal(store.get("img1"), expected[1].reshape(4, 18))
    assert store.images().dtype == store[0].dtype == np.float32
    assert store.load()._frames.dtype == np.uint8  # scaled per read, not held as float32


def test_raw_pixel_store_refuses_floats_and_survives_an_hdf5_round_trip(tmp_path):
    writer = FeatureStoreWriter(tmp_path / "refuse.zarr", dim=6, dtype="uint8")
    with pytest.raises(StoreError, match="float32 features do not fit a store of uint8 frames"):
        writer.add("img0", np.zeros((2, 6), dtype=np.float32))
    writer.abandon()
    pixels = np.random.default_rng(5).integers(0, 256, (3, 2, 2, 3), dtype=np.uint8)
    _raw_pixel_store(tmp_path / "rgb.zarr", pixels)
    import_hdf5(export_hdf5(tmp_path / "rgb.zarr", tmp_path / "rgb.h5")["hdf5"], tmp_path / "back.zarr")
    # The export holds float32 pixel values; the raw_pixels attribute still scales them.
    back = FeatureStore(tmp_path / "back.zarr")
    np.testing.assert_array_equal(back.images(), FeatureStore(tmp_path / "rgb.zarr").images())


def test_import_refuses_foreign_or_damaged_hdf5(built_store, tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(StoreError, match="not a vgs feature-store export"):
        import_hdf5(foreign, tmp_path / "x.zarr")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(StoreError, match="not a readable HDF5 file"):
        import_hdf5(tmp_path / "text.h5", tmp_path / "x.zarr")
    path, _, _ = built_store
    h5 = tmp_path / "cut.h5"
    export_hdf5(path, h5)
    with h5py.File(h5, "r+") as f:
        del f["speaker"]
    with pytest.raises(StoreError, match="speaker"):
        import_hdf5(h5, tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


# -- `vgs store` command ---------------------------------------------------------------------------------
def test_cli_info_export_import(built_store, tmp_path, capsys):
    path, cfg, _ = built_store
    assert vgs_main(["store", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "items: 11" in out and f"config_hash: {cfg.hash()}" in out
    assert "splits: test=4, train=3, val=4" in out
    assert vgs_main(["store", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"] == {"test": 4, "train": 3, "val": 4} and info["dim"] == 20
    h5, back = tmp_path / "c.h5", tmp_path / "c.zarr"
    assert vgs_main(["store", "export-hdf5", str(path), str(h5), "--compression", "lzf"]) == 0
    assert vgs_main(["store", "import-hdf5", str(h5), str(back)]) == 0
    assert_same_store(path, back)


def test_cli_errors_are_one_line_with_a_fix(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        vgs_main(["store", "info", str(tmp_path / "missing.zarr")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: feature store") and "fix:" in err and "Traceback" not in err
    assert vgs_main([]) == 2
    assert vgs_main(["store"]) == 2  # a command without its subcommand: help and a usage exit code
    assert "export-hdf5" in capsys.readouterr().out


# -- torch Dataset view -------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataset_ragged_with_pad_collate(toy_store, num_workers):
    path, feats = toy_store
    ds = FeatureDataset(path, split="train")
    assert len(ds) == 3 and ds._store is None  # nothing opened in the parent
    loader = DataLoader(ds, batch_size=2, shuffle=False, num_workers=num_workers, collate_fn=pad_collate)
    batches = list(loader)
    # with workers, every read happened in a worker process that opened the store itself
    assert (ds._store is None) == (num_workers > 0)
    x, lengths, labels, index = batches[0]
    assert x.shape == (2, 7, 4) and lengths.tolist() == [3, 7] and index.tolist() == [0, 1]
    assert labels.tolist() == [0, 1]
    torch.testing.assert_close(x[0, :3], torch.from_numpy(feats[0]))
    assert torch.all(x[0, 3:] == 0)
    x, lengths, labels, index = batches[1]
    assert index.tolist() == [4] and labels.tolist() == [-1] and x.shape == (1, 5, 4)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataset_fixed_frames(toy_store, num_workers):
    path, feats = toy_store
    ds = FeatureDataset(path, indices=[3, 2, 5], num_frames=4)
    loader = DataLoader(ds, batch_size=3, num_workers=num_workers)
    x, labels, index = next(iter(loader))
    assert x.shape == (3, 4, 4) and index.tolist() == [3, 2, 5] and labels.tolist() == [0, 2, 2]
    for row, i in enumerate([3, 2, 5]):
        np.testing.assert_array_equal(x[row].numpy(), fixed_length(feats[i], 4))


def test_dataset_from_loaded_store_uses_memory(toy_store):
    path, feats = toy_store
    store = FeatureStore(path).load()
    ds = FeatureDataset(store, split="test")
    assert ds._store is store
    shutil.rmtree(path / "frames")  # reads must not touch the disk any more
    x, label, index = ds[1]
    assert index == 5 and label == 2
    torch.testing.assert_close(x, torch.from_numpy(feats[5]))


def test_dataset_preload_and_pickling(toy_store):
    import pickle

    path, feats = toy_store
    ds = FeatureDataset(path, split="val", preload=True)
    x, _, _ = ds[0]
    assert ds._store is not None and ds._store.is_loaded
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._store is None  # the open store stays in its process
    torch.testing.assert_close(clone[0][0], torch.from_numpy(feats[2]))


def test_dataset_images_are_channel_first(tmp_path):
    path = tmp_path / "img.zarr"
    w = FeatureStoreWriter(path, dim=5)
    images = np.random.default_rng(3).random((4, 3, 5), dtype=np.float32)
    for i, img in enumerate(images):
        w.add(f"img{i}", img, label=i, split="train")
    w.close(toy_attrs(modality="image", item_shape=[3, 5]))
    ds = FeatureDataset(path)
    x, labels, index = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert x.shape == (4, 1, 3, 5)
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images))
    with pytest.raises(StoreError, match="image store"):
        FeatureDataset(path, num_frames=10)
    with pytest.raises(ValueError, match="split or indices"):
        FeatureDataset(path, split="train", indices=[0])
    with pytest.raises(StoreError, match="out of range"):
        FeatureDataset(path, indices=[4])


def test_round_trip_keeps_an_empty_or_absent_rejected_file(toy_store, tmp_path):
    path, _ = toy_store
    export_hdf5(path, tmp_path / "a.h5")
    import_hdf5(tmp_path / "a.h5", tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr" / "rejected.jsonl").exists()
    (path / "rejected.jsonl").write_text("")
    export_hdf5(path, tmp_path / "b.h5")
    import_hdf5(tmp_path / "b.h5", tmp_path / "b.zarr")
    assert (tmp_path / "b.zarr" / "rejected.jsonl").read_text() == ""
    assert_same_store(path, tmp_path / "b.zarr")
