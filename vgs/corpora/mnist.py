"""MNIST handwritten digits (LeCun et al.), read from the four IDX .gz files."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from vgs.corpora.manifest import Manifest, ManifestRecord
from vgs.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
LAYOUT = """expected layout:
  <root>/train-images-idx3-ubyte.gz   (magic 2051)
  <root>/train-labels-idx1-ubyte.gz   (magic 2049)
  <root>/t10k-images-idx3-ubyte.gz
  <root>/t10k-labels-idx1-ubyte.gz"""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a uint8 array, checking its header."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found", hint=LAYOUT)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} cannot be read: {exc}", hint="re-fetch it: dvc repro fetch@mnist") from None
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file (bad magic)", hint=LAYOUT)
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DataError(f"{path}: header promises {expected} bytes of data, found {len(data) - offset}"
                        " (truncated?)", hint="re-fetch it: dvc repro fetch@mnist")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def load_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) of the official `train` or `test` split."""
    images_file, labels_file = FILES[split]
    images = read_idx(Path(root) / images_file)
    labels = read_idx(Path(root) / labels_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"MNIST {split}: images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def prepare_mnist(root: str | Path, val_size: int = 5000, seed: int = 0) -> Manifest:
    """Records for all 70,000 digits. `val_size` training images, chosen with `seed`, become `val`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"MNIST root {root} does not exist", hint=LAYOUT)
    records: list[ManifestRecord] = []
    for official in ("train", "test"):
        _, labels = load_split(root, official)
        splits = np.full(len(labels), official, dtype=object)
        if official == "train" and val_size:
            if not 0 < val_size < len(labels):
                raise DataError(f"corpora.mnist.val_size={val_size} must be below {len(labels)}")
            val = np.random.default_rng(seed).choice(len(labels), size=val_size, replace=False)
            splits[val] = "val"
        images_file = FILES[official][0]
        prefix = "train" if official == "train" else "test"
        for i, (label, split) in enumerate(zip(labels.tolist(), splits.tolist())):
            records.append(ManifestRecord(id=f"mnist-{prefix}-{i:05d}", source=f"{images_file}#{i}",
                                          modality="image", split=split, label=int(label)))
    return Manifest(corpus="mnist", root=str(root), records=records)
