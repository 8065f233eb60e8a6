"""Image manifests (PNG files) and spoken-caption manifests (WAV files) joined by datapoint, and
the feature stores built from them (shared by the instance pairing, Mortazavi 2020 and Crabtree
2021 tests)."""
import numpy as np
import soundfile as sf
from PIL import Image

from vgs.corpora.manifest import Manifest, ManifestRecord, write_manifest
from vgs.features.extract import build_store

SPLITS = {"train": 4, "val": 2, "test": 3}


def _image_manifest(root, size=(20, 12), splits=SPLITS, channels=1):
    """PNG files of random pixels, (width, height) `size`: grey, or RGB with `channels` 3."""
    records, rng = [], np.random.default_rng(0)
    shape = size[::-1] if channels == 1 else (*size[::-1], channels)
    for split, n in splits.items():
        for k in range(n):
            dp = f"scene-{split}-{k}"
            path = root / "images" / split / f"{dp}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, size=shape, dtype=np.uint8)).save(path)
            records.append(ManifestRecord(id=dp, source=f"images/{split}/{dp}.png", modality="image", split=split,
                                          extra={"datapoint": dp}))
    return Manifest("tiny-image", str(root), records)


def _caption_manifest(root, lang, captions_per_image=1, skip=(), splits=SPLITS):
    records, rng = [], np.random.default_rng(1)
    for split, n in splits.items():
        for k in range(n):
            dp = f"scene-{split}-{k}"
            if dp in skip:
                continue
            for c in range(captions_per_image):
                uid = f"{dp}-{lang}-{c}"
                path = root / "wavs" / lang / f"{uid}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                x = 0.2 * rng.standard_normal(2000 + 400 * c).astype(np.float32)
                sf.write(str(path), x, 8000, subtype="PCM_16")
                records.append(ManifestRecord(id=uid, source=f"wavs/{lang}/{uid}.wav", modality="audio", split=split,
                                              speaker="s1", num_samples=len(x), sample_rate=8000,
                                              extra={"datapoint": dp, "language": lang, "synthetic": lang != "en"}))
    return Manifest(f"tiny-{lang}", str(root), records)


def _store(tmp_path, manifest, cfg):
    mpath = tmp_path / "manifests" / f"{manifest.corpus}.jsonl"
    write_manifest(mpath, manifest)
    out = tmp_path / "features" / f"{manifest.corpus}.zarr"
    build_store(manifest, mpath, cfg, out, num_workers=1)
    return str(out)
