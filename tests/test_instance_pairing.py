"""Instance pairing: an image store (PNG files decoded with Pillow) and caption stores joined by
datapoint into K-view tuples; several captions per image drawn per epoch; bad joins are errors."""
from pathlib import Path

import numpy as np
import pytest

from image_caption_stores import SPLITS, _caption_manifest, _image_manifest, _store
from vgs.errors import DataError, StoreError, VgsError
from vgs.features.config import ImageFeatureConfig, load_feature_config
from vgs.pairing.pairs import PairStore, View
from vgs.pairing.instance import build_instance_pairs
from vgs.params import Params
from vgs.store.feature_store import FeatureStore

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def stores(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # stores record their manifest by the path they were built from
    audio_cfg = load_feature_config(Params.load(str(REPO / "params.yaml")), "mfcc40")
    image_cfg = ImageFeatureConfig(name="scene16", kind="image", size=16, resize_method="bilinear", scale=1 / 255)
    image = _store(tmp_path, _image_manifest(tmp_path / "corpus"), image_cfg)
    en = _store(tmp_path, _caption_manifest(tmp_path / "corpus", "en"), audio_cfg)
    hi = _store(tmp_path, _caption_manifest(tmp_path / "corpus", "hi", captions_per_image=3), audio_cfg)
    return image, en, hi, audio_cfg


def test_png_images_are_decoded_resized_and_centre_cropped(stores):
    image = FeatureStore(stores[0])
    assert tuple(image.item_shape) == (16, 16) and len(image) == sum(SPLITS.values())
    assert image.images(np.arange(2)).max() <= 1.0


def test_each_image_is_bound_to_its_own_captions(stores, tmp_path):
    image, en, hi, _ = stores
    summary = build_instance_pairs([View("image", image), View("en", en), View("hi", hi)], "pairs.zarr", seed=3,
                                   epochs={"train": 4, "val": 1, "test": 1})
    assert summary["train"] == {"epochs": 4, "tuples": 4, "left_out": 0}
    pairs = PairStore("pairs.zarr")
    assert pairs.attrs["mode"] == "instance" and pairs.view_names == ["image", "en", "hi"]
    stores_ = [FeatureStore(p) for p in (image, en, hi)]
    drawn = set()
    for e in range(4):
        for i, a, b in pairs.tuples("train", e):
            dp = stores_[0].ids[i]
            assert stores_[1].ids[a] == f"{dp}-en-0"
            assert stores_[2].ids[b].startswith(f"{dp}-hi-")
            drawn.add(stores_[2].ids[b])
    assert len(drawn) > 4           # several of the three Hindi captions per image were drawn
    # Same seed, same tuples; the test split keeps every test image once.
    build_instance_pairs([View("image", image), View("en", en), View("hi", hi)], "again.zarr", seed=3,
                         epochs={"train": 4, "val": 1, "test": 1})
    assert np.array_equal(PairStore("again.zarr").tuples("train", 2), pairs.tuples("train", 2))
    assert sorted(stores_[0].ids[pairs.tuples("test")[:, 0]]) == [f"scene-test-{k}" for k in range(3)]


def test_images_missing_a_view_are_left_out_and_listed(stores, tmp_path):
    image, en, _, audio_cfg = stores
    ja = _store(tmp_path, _caption_manifest(tmp_path / "corpus", "ja", skip={"scene-test-1"}), audio_cfg)
    summary = build_instance_pairs([View("image", image), View("en", en), View("ja", ja)], "p.zarr", seed=0,
                                   epochs={"train": 1, "test": 1})
    assert summary["test"]["tuples"] == 2 and summary["test"]["left_out"] == 1
    assert PairStore("p.zarr").attrs["left_out"]["test"] == [{"datapoint": "scene-test-1", "missing_views": ["ja"]}]


def test_bad_joins_are_clear_errors(stores, tmp_path):
    image, en, hi, _ = stores
    with pytest.raises(VgsError, match="image store first"):
        build_instance_pairs([View("en", en), View("image", image)], "x.zarr", seed=0, epochs={"train": 1})
    # A manifest edited after its store was built would misjoin silently: refused.
    manifest = tmp_path / "manifests" / "tiny-hi.jsonl"
    manifest.write_text(manifest.read_text().replace("scene-train-0", "scene-train-1"))
    with pytest.raises(StoreError, match="changed after feature store"):
        build_instance_pairs([View("image", image), View("hi", hi)], "x.zarr", seed=0, epochs={"train": 1})
    assert not (tmp_path / "x.zarr").exists()


def test_unreadable_image_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = _image_manifest(tmp_path / "corpus")
    (tmp_path / "corpus" / manifest.records[2].source).write_bytes(b"not a png")
    cfg = ImageFeatureConfig(name="scene16", kind="image", size=16, resize_method="bilinear", scale=1 / 255)
    with pytest.raises(DataError, match=r"scene-train-2\.png is unreadable"):
        _store(tmp_path, manifest, cfg)
    assert not (tmp_path / "features" / "tiny-image.zarr").exists()


def test_a_store_outside_features_dir_is_a_param_error(tmp_path):
    from vgs.errors import ParamError
    from vgs.pairing.instance import check_stores_under
    views = [View("image", "data/features/flickr8k/image/photo224.zarr"), View("en", "elsewhere/en/mfcc40.zarr")]
    check_stores_under(views[:1], "data/features/flickr8k", "instance_pairing.f.features_dir")
    with pytest.raises(ParamError) as err:
        check_stores_under(views, "data/features/flickr8k", "instance_pairing.f.features_dir")
    assert "en: elsewhere/en/mfcc40.zarr" in err.value.message and "features_dir" in err.value.message


@pytest.mark.parametrize("n_views", [2, 3])
def test_dvc_yaml_takes_instance_pairings_of_any_number_of_views(tmp_path, n_views):
    # Flickr8k and SpokenCOCO have two views (image, en); digitscenes and Places four.
    import subprocess
    import sys

    import yaml
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    names = ["image", "en", "hi"][:n_views]
    params["instance_pairing"]["flickr8k-mfcc40"] = {
        "mode": "instance", "features_dir": "data/features/flickr8k",
        "views": [{"name": v, "store": f"data/features/flickr8k/{v}/mfcc40.zarr"} for v in names],
        "epochs": {"train": 1, "val": 1, "test": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(dvc + ["init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    listed = subprocess.run(dvc + ["stage", "list", "instance-pairs@flickr8k-mfcc40"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "instance-pairs@flickr8k-mfcc40" in listed.stdout
