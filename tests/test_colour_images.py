"""Colour image stores (`channels: 3`): every Pillow mode a photo corpus holds becomes RGB, stored
as uint8 and scaled when read; unreadable and missing image files are skipped or stop the run
as `features.on_error` says; a grey config on the same files still gives (H, W) items."""
from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
from PIL import Image

from feature_helpers import cfg_of
from image_caption_stores import _image_manifest, _store
from vgs.corpora.manifest import Manifest, ManifestRecord, write_manifest
from vgs.errors import DataError, ParamError
from vgs.features.config import load_feature_config
from vgs.features.extract import build_store
from vgs.params import Params
from vgs.store.feature_store import FeatureStore

SIDE = 8
WHITE = (255, 255, 255)
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
# JPEG is lossy even on one flat colour; PNG must come back exact.
JPEG_TOLERANCE = 4


def _checkerboard(a, b) -> np.ndarray:
    """(SIDE, SIDE, len(a)) with colour a where row + column is even, else b."""
    even = (np.add.outer(np.arange(SIDE), np.arange(SIDE)) % 2 == 0)[..., None]
    return np.where(even, np.asarray(a, dtype=np.uint8), np.asarray(b, dtype=np.uint8))


def _palette_image(transparent_index: int | None = None) -> Image.Image:
    im = Image.fromarray((np.arange(SIDE * SIDE).reshape(SIDE, SIDE) % 3).astype(np.uint8), "P")
    im.putpalette([*RED, *GREEN, *BLUE])
    if transparent_index is not None:
        im.info["transparency"] = transparent_index
    return im


def _colour_files(root) -> dict[str, tuple[Image.Image, str, np.ndarray, int]]:
    """name -> (image, file suffix, the RGB pixels expected, tolerance)."""
    grey = (np.arange(SIDE * SIDE).reshape(SIDE, SIDE) * 4).astype(np.uint8)
    palette = np.asarray([RED, GREEN, BLUE], dtype=np.uint8)[np.arange(SIDE * SIDE).reshape(SIDE, SIDE) % 3]
    palette_transparent = palette.copy()
    palette_transparent[np.arange(SIDE * SIDE).reshape(SIDE, SIDE) % 3 == 1] = WHITE
    # Opaque red and fully transparent blue: the blue must not show through.
    rgba = _checkerboard((*RED, 255), (*BLUE, 0))
    grey_alpha = _checkerboard((40, 255), (200, 0))
    return {
        "grey-png": (Image.fromarray(grey, "L"), "png", np.repeat(grey[..., None], 3, axis=2), 0),
        "grey-jpg": (Image.new("L", (SIDE, SIDE), 90), "jpg", np.full((SIDE, SIDE, 3), 90, np.uint8), JPEG_TOLERANCE),
        "cmyk-jpg": (Image.new("CMYK", (SIDE, SIDE), (0, 255, 255, 0)), "jpg",
                     np.full((SIDE, SIDE, 3), RED, np.uint8), JPEG_TOLERANCE),
        "rgb-jpg": (Image.new("RGB", (SIDE, SIDE), (10, 200, 60)), "jpg",
                    np.full((SIDE, SIDE, 3), (10, 200, 60), np.uint8), JPEG_TOLERANCE),
        "palette-png": (_palette_image(), "png", palette, 0),
        "palette-transparent-png": (_palette_image(transparent_index=1), "png", palette_transparent, 0),
        "rgba-png": (Image.fromarray(rgba, "RGBA"), "png", _checkerboard(RED, WHITE), 0),
        "grey-alpha-png": (Image.fromarray(grey_alpha, "LA"), "png", _checkerboard((40,) * 3, WHITE), 0),
    }


def _write_corpus(root, files: dict, extra: list[ManifestRecord] = ()) -> tuple[Manifest, object]:
    records = []
    for name, (im, suffix, *_rest) in files.items():
        path = root / "images" / f"{name}.{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path)
        records.append(ManifestRecord(id=name, source=f"images/{name}.{suffix}", modality="image", split="train"))
    manifest = Manifest("photos", str(root), records + list(extra))
    write_manifest(root / "manifest.jsonl", manifest)
    return manifest, root / "manifest.jsonl"


@pytest.fixture
def colour_corpus(tmp_path):
    files = _colour_files(tmp_path)
    manifest, mpath = _write_corpus(tmp_path, files)
    return manifest, mpath, files


def test_every_image_mode_becomes_an_rgb_item_of_the_right_values(colour_corpus, tmp_path):
    manifest, mpath, files = colour_corpus
    build_store(manifest, mpath, cfg_of("photo224", size=SIDE), tmp_path / "rgb.zarr")
    store = FeatureStore(tmp_path / "rgb.zarr")
    assert store.item_shape == (SIDE, SIDE, 3) and list(store.ids) == list(files)
    raw = store.group["frames"][:]
    assert raw.dtype == np.uint8 and raw.shape == (len(files) * SIDE, SIDE * 3)
    for i, (name, (_, _, expected, tolerance)) in enumerate(files.items()):
        pixels = raw[i * SIDE:(i + 1) * SIDE].reshape(SIDE, SIDE, 3).astype(int)
        assert np.abs(pixels - expected).max() <= tolerance, name
    images = store.images()
    assert images.dtype == np.float32 and images.shape == (len(files), SIDE, SIDE, 3)
    # Scaled when read exactly as grey pixels are scaled at extraction.
    np.testing.assert_array_equal(images, raw.reshape(images.shape).astype(np.float32) * (1 / 255))
    np.testing.assert_array_equal(store.images(np.array([5, 1])), images[[5, 1]])
    np.testing.assert_array_equal(store.item(3), images[3])
    assert store[3].shape == (SIDE, SIDE * 3) and store[3].dtype == np.float32


def test_colour_photos_are_resized_and_centre_cropped(tmp_path):
    # 64x16, red at both ends: a 8x8 item cut from the middle of the 32x8 resize is all blue.
    wide = np.zeros((16, 64, 3), dtype=np.uint8)
    wide[:] = BLUE
    wide[:, :8] = wide[:, 56:] = RED
    manifest, mpath = _write_corpus(tmp_path, {"wide": (Image.fromarray(wide), "png")})
    build_store(manifest, mpath, cfg_of("photo224", size=SIDE), tmp_path / "rgb.zarr")
    item = FeatureStore(tmp_path / "rgb.zarr").images()[0]
    assert item.shape == (SIDE, SIDE, 3)
    np.testing.assert_allclose(item, np.broadcast_to(np.asarray(BLUE) / 255, item.shape), atol=1 / 255)


def test_colour_batches_become_channel_first_tensors(tmp_path):
    import torch

    store = FeatureStore(_store(tmp_path, _image_manifest(tmp_path, channels=3), cfg_of("photo224", size=SIDE)))
    batch = torch.from_numpy(store.images(np.array([2, 0, 1]))).permute(0, 3, 1, 2)
    assert batch.shape == (3, 3, SIDE, SIDE) and batch.dtype == torch.float32
    with Image.open(tmp_path / "images" / "train" / "scene-train-2.png") as im:
        assert im.mode == "RGB" and im.size == (20, 12)


def test_a_grey_config_on_the_same_files_gives_grey_items(colour_corpus, tmp_path):
    manifest, mpath, files = colour_corpus
    build_store(manifest, mpath, cfg_of("scene64"), tmp_path / "grey.zarr")
    store = FeatureStore(tmp_path / "grey.zarr")
    assert store.item_shape == (SIDE, SIDE) and not store.raw_pixels
    images = store.images()
    assert images.dtype == np.float32 and images.shape == (len(files), SIDE, SIDE)
    for i, r in enumerate(manifest):
        with Image.open(manifest.resolve(r)) as im:
            expected = np.asarray(im.convert("L"), dtype=np.uint8).astype(np.float32) * (1 / 255)
        np.testing.assert_array_equal(images[i], expected)


def _broken_corpus(root) -> tuple[Manifest, object, dict]:
    """A photo whose JPEG stream stops half-way, a good RGBA PNG and a file the manifest lists
    but nobody wrote."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    files = {"rgb-jpg": (Image.fromarray(noise), "jpg"), "rgba-png": _colour_files(root)["rgba-png"]}
    missing = ManifestRecord(id="gone", source="images/gone.png", modality="image", split="train")
    manifest, mpath = _write_corpus(root, files, extra=[missing])
    truncated = root / "images" / "rgb-jpg.jpg"
    whole = truncated.read_bytes()
    truncated.write_bytes(whole[:len(whole) // 2])
    return manifest, mpath, {"truncated": truncated, "missing": root / "images" / "gone.png"}


@pytest.mark.parametrize("config", ["photo224", "scene64"])
def test_skip_leaves_out_truncated_and_missing_files_and_lists_them(tmp_path, capsys, config):
    manifest, mpath, broken = _broken_corpus(tmp_path)
    out = tmp_path / "s.zarr"
    summary = build_store(manifest, mpath, cfg_of(config, size=SIDE), out, on_error="skip")
    assert summary["items"] == 1 and summary["rejected"] == 2
    store = FeatureStore(out)
    assert list(store.ids) == ["rgba-png"] and store.attrs["num_rejected"] == 2
    assert store.images().shape == ((1, SIDE, SIDE, 3) if config == "photo224" else (1, SIDE, SIDE))
    rows = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["id"], r["source"]) for r in rows] == [("rgb-jpg", "images/rgb-jpg.jpg"), ("gone", "images/gone.png")]
    assert str(broken["truncated"]) in rows[0]["reason"] and "unreadable" in rows[0]["reason"]
    assert str(broken["missing"]) in rows[1]["reason"] and "missing" in rows[1]["reason"]
    printed = capsys.readouterr().out
    assert f"skipped 2 item(s) (on_error: skip); see {out}/rejected.jsonl:" in printed
    assert "  rgb-jpg: image file" in printed and "  gone: image file" in printed


@pytest.mark.parametrize("bad", ["truncated", "missing"])
def test_raise_stops_at_an_unreadable_or_missing_file_and_names_it(tmp_path, bad):
    manifest, mpath, broken = _broken_corpus(tmp_path)
    if bad == "missing":  # so that the missing file is the first failure
        broken["truncated"].unlink()
        Image.new("RGB", (SIDE, SIDE)).save(broken["truncated"])
    with pytest.raises(DataError) as err:
        build_store(manifest, mpath, cfg_of("photo224", size=SIDE), tmp_path / "s.zarr", on_error="raise")
    assert str(broken[bad]) in err.value.message
    assert not (tmp_path / "s.zarr").exists()


def test_channels_defaults_to_grey_and_accepts_only_1_or_3():
    def config(**extra):
        return load_feature_config(Params({"features": {"img": {"kind": "image", "size": 8, **extra}}}), "img")

    assert config().channels == 1 and config(channels=3).channels == 3
    with pytest.raises(ParamError, match=r"features\.img\.channels must be 1 \(grey\) or 3 \(RGB\), got 2"):
        config(channels=2)


def test_packed_grey_images_refuse_a_colour_config(tmp_path):
    images = np.zeros((2, SIDE, SIDE), dtype=np.uint8)
    with gzip.open(tmp_path / "images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 0x08, 3]) + b"".join(struct.pack(">I", d) for d in images.shape) + images.tobytes())
    records = [ManifestRecord(id=f"p{i}", source=f"images-idx3-ubyte.gz#{i}", modality="image", split="train")
               for i in range(2)]
    manifest = Manifest("packed", str(tmp_path), records)
    write_manifest(tmp_path / "m.jsonl", manifest)
    with pytest.raises(DataError, match="packed grey images; features.photo224.channels: 3"):
        build_store(manifest, tmp_path / "m.jsonl", cfg_of("photo224"), tmp_path / "s.zarr")
