"""The Zarr feature store: ragged frames plus per-utterance metadata (docs/feature-store.md).

One group per (corpus, feature config):
  frames   (sum T, D) float32   all utterances back to back
  offsets  (U+1,)     int64     utterance i is frames[offsets[i]:offsets[i+1]]
  utt_id, speaker, split, transcript   (U,) strings
  label    (U,)       int64     -1 where an item has no label
Images are stored the same way, one row of pixels per frame, with attrs["item_shape"] = [H, W].
Colour images ([H, W, 3]) keep their pixels as decoded, in a uint8 `frames` of rows of W*3 values
(R, G, B interleaved), and say so with attrs["raw_pixels"] = true: readers scale them to float32 by
attrs["config"]["scale"] on the way out, so they cost a quarter of the float32 bytes on disk and
in memory.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
import zarr

from vgs.errors import StoreError

FORMAT_VERSION = 1
PER_ITEM_STRINGS = ("utt_id", "speaker", "split", "transcript")
REQUIRED_ARRAYS = ("frames", "offsets", "utt_id", "label", "speaker", "split")
REQUIRED_ATTRS = ("format_version", "corpus", "modality", "dim", "config", "config_hash",
                  "source_manifest_sha256", "versions")


def library_versions() -> dict:
    # Installed versions from package metadata: importing h5py only for its version string cost
    # a third of a second at the end of every features run.
    from importlib.metadata import PackageNotFoundError, version

    import vgs

    def installed(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    return {"vgs": vgs.__version__, "zarr": zarr.__version__, "numpy": np.__version__,
            "kaldi_native_fbank": installed("kaldi-native-fbank"), "h5py": installed("h5py")}


def _append_item(strings: dict, labels: list, utt_id: str, label: int | None, speaker: str | None,
                 split: str | None, transcript: str | None) -> None:
    """One item's metadata as stored: missing strings are empty, a missing label is -1."""
    strings["utt_id"].append(utt_id)
    strings["speaker"].append(speaker or "")
    strings["split"].append(split or "")
    strings["transcript"].append(transcript or "")
    labels.append(-1 if label is None else int(label))


class FeatureStoreWriter:
    """Appends utterances in order through one writer.

    Frames are buffered and written a whole shard at a time, so every write is shard-aligned and
    no shard is rewritten, which keeps the store at a handful of files. Shards of 32 MB keep that
    count low (FSDD: 2 files, Speech Commands: ~100) while letting the writer flush full shards
    as results arrive, instead of writing everything after the last worker is done.

    `compress=False` stores frames raw: log-mel and cepstral floats shrink only ~14% under zstd,
    which cost as much CPU as the whole rest of writing. Images (mostly zero pixels) compress 10x.
    `dtype="uint8"` is for raw pixels (see the module docstring); add() refuses a cast to another
    kind, such as floats into uint8, which would truncate them silently.
    """

    def __init__(self, path: str | Path, dim: int, chunk_bytes: int = 1 << 20, chunks_per_shard: int = 32,
                 compress: bool = True, dtype: str = "float32"):
        self.path = Path(path)
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self.group = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        self.chunk_frames = max(256, chunk_bytes // (self.dtype.itemsize * self.dim))
        self.shard_frames = self.chunk_frames * chunks_per_shard
        self.frames = self.group.create_array(
            "frames", shape=(0, self.dim), chunks=(self.chunk_frames, self.dim),
            shards=(self.shard_frames, self.dim), dtype=self.dtype,
            compressors="auto" if compress else None,
            # Skip zarr's per-chunk "all fill value?" scan: a features chunk is never empty.
            config={"write_empty_chunks": True})
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._written = 0
        self.offsets = [0]
        self.meta = {k: [] for k in PER_ITEM_STRINGS}
        self.labels: list[int] = []
        self._background: ThreadPoolExecutor | None = None
        self._planned: dict | None = None
        self._planned_write = None

    def plan(self, items: Iterable[tuple]) -> None:
        """Write the per-item arrays now, in the background, for the items the caller will add.

        `items` are (utt_id, label, speaker, split, transcript) in the order add() will see them.
        Those small writes are mostly waits on file operations; started here, they overlap the
        extraction instead of adding to the end of every run. close() rewrites them when the items
        actually added differ (an item was skipped), so a wrong plan costs time, never correctness.
        """
        columns = {k: [] for k in PER_ITEM_STRINGS}
        labels = []
        for item in items:
            _append_item(columns, labels, *item)
        columns["label"] = labels
        self._planned = columns
        self._planned_write = self._executor().submit(self._write_columns, columns)

    def abandon(self) -> None:
        """Stop background writes, so that the caller can delete the unfinished store."""
        if self._background is not None:
            self._background.shutdown(wait=True, cancel_futures=True)
            self._background = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._background is None:
            self._background = ThreadPoolExecutor(1, thread_name_prefix="vgs-store")
        return self._background

    def _write_columns(self, columns: dict) -> None:
        u = len(columns["label"])
        self.group.create_array("label", data=np.asarray(columns["label"], dtype=np.int64),
                                chunks=(max(1, u),), overwrite=True)
        for key in PER_ITEM_STRINGS:
            arr = self.group.create_array(key, shape=(u,), dtype=str, chunks=(max(1, u),), overwrite=True)
            if u:
                arr[:] = np.asarray(columns[key], dtype=object)

    def add(self, utt_id: str, feats: np.ndarray, label: int | None = None, speaker: str | None = None,
            split: str = "", transcript: str | None = None) -> None:
        feats = np.asarray(feats)
        if not np.can_cast(feats.dtype, self.dtype, casting="same_kind"):
            raise StoreError(f"{utt_id}: {feats.dtype} features do not fit a store of {self.dtype} frames")
        feats = feats.astype(self.dtype, copy=False)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise StoreError(f"{utt_id}: features of shape {feats.shape} do not fit a store of dim {self.dim}")
        self._buffer.append(feats)
        self._buffered += len(feats)
        self.offsets.append(self.offsets[-1] + len(feats))
        _append_item(self.meta, self.labels, utt_id, label, speaker, split, transcript)
        if self._buffered >= self.shard_frames:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._buffer:
            return
        block = np.concatenate(self._buffer)
        n = len(block) if final else (len(block) // self.shard_frames) * self.shard_frames
        if n == 0:
            return
        self.frames.resize((self._written + n, self.dim))
        self.frames[self._written:self._written + n] = block[:n]
        self._written += n
        rest = block[n:]
        self._buffer = [rest] if len(rest) else []
        self._buffered = len(rest)

    def close(self, attrs: dict) -> None:
        u = len(self.labels)
        added = dict(self.meta, label=self.labels)
        try:
            pending = []
            if self._planned_write is not None and added == self._planned:
                pending.append(self._planned_write)
            else:
                if self._planned_write is not None:
                    self._planned_write.result()  # finish before rewriting the same arrays
                pending.append(self._executor().submit(self._write_columns, added))
            pending.append(self._executor().submit(
                self.group.create_array, "offsets", data=np.asarray(self.offsets, dtype=np.int64),
                chunks=(max(1, u + 1),)))
            self._flush(final=True)  # meanwhile, in this thread
            for future in pending:
                future.result()
        finally:
            self.abandon()
        full = {"format_version": FORMAT_VERSION, "dim": self.dim, "num_items": u,
                "num_frames": int(self.offsets[-1]), "versions": library_versions()}
        full.update(attrs)
        # One write of zarr.json; attrs.update would rewrite it once per key.
        self.group.update_attributes(json.loads(json.dumps(full)))


class FeatureStore:
    """Read access by index and by id, fixed-size views, and an in-memory cache of all frames."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"feature store {self.path} does not exist",
                             hint="build it with the features stage: dvc repro features@<corpus>-<config>")
        try:
            self.group = zarr.open_group(str(self.path), mode="r")
            missing = [a for a in REQUIRED_ARRAYS if a not in self.group]
            attrs = dict(self.group.attrs)
        except Exception as exc:  # zarr raises several types for damaged metadata
            raise StoreError(f"feature store {self.path} cannot be opened: {exc}",
                             hint="delete it and rebuild with dvc repro") from None
        missing_attrs = [a for a in REQUIRED_ATTRS if a not in attrs]
        if missing or missing_attrs:
            raise StoreError(f"feature store {self.path} is incomplete (missing {missing + missing_attrs})",
                             hint="delete it and rebuild with dvc repro")
        self.attrs = attrs
        self.offsets = self.group["offsets"][:]
        self.ids = np.asarray(self.group["utt_id"][:], dtype=object)
        self.labels = self.group["label"][:]
        self.speakers = np.asarray(self.group["speaker"][:], dtype=object)
        self.splits = np.asarray(self.group["split"][:], dtype=object)
        if len(self.offsets) != len(self.ids) + 1 or self.offsets[-1] != self.group["frames"].shape[0]:
            raise StoreError(f"feature store {self.path}: offsets do not match frames (partial write?)",
                             hint="delete it and rebuild with dvc repro")
        self.raw_pixels = bool(attrs.get("raw_pixels", False))
        self._index = None
        self._frames: np.ndarray | None = None

    # -- metadata -----------------------------------------------------------------------------
    @property
    def corpus(self) -> str:
        return self.attrs["corpus"]

    @property
    def modality(self) -> str:
        return self.attrs["modality"]

    @property
    def dim(self) -> int:
        return int(self.attrs["dim"])

    @property
    def config(self) -> dict:
        return self.attrs["config"]

    @property
    def item_shape(self) -> tuple | None:
        shape = self.attrs.get("item_shape")
        return tuple(shape) if shape else None

    @property
    def transcripts(self) -> np.ndarray:
        return np.asarray(self.group["transcript"][:], dtype=object)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.ids)

    def indices(self, split: str | Iterable[str] | None = None) -> np.ndarray:
        if split is None:
            return np.arange(len(self))
        wanted = {split} if isinstance(split, str) else set(split)
        return np.flatnonzero(np.isin(self.splits, list(wanted)))

    def index_of(self, utt_id: str) -> int:
        if self._index is None:
            self._index = {u: i for i, u in enumerate(self.ids)}
        try:
            return self._index[utt_id]
        except KeyError:
            raise StoreError(f"{utt_id!r} is not in feature store {self.path}") from None

    # -- frames ---------------------------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        """True once load() has read all frames into memory."""
        return self._frames is not None

    def load(self) -> "FeatureStore":
        """Read all frames into memory once, as stored (uint8 for raw pixels); later reads are
        slices of that array."""
        if self._frames is None:
            self._frames = self.group["frames"][:]
        return self

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i %= len(self)
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        feats = self._frames[lo:hi] if self._frames is not None else self.group["frames"][lo:hi]
        return self._as_features(feats)

    def _as_features(self, stored: np.ndarray) -> np.ndarray:
        """Stored frames as float32 features: raw pixels scaled by the config's `scale`, exactly
        as image_features scales grey pixels at extraction; anything else as it is."""
        if not self.raw_pixels:
            return stored
        return stored.astype(np.float32) * self.config["scale"]

    def get(self, utt_id: str) -> np.ndarray:
        return self[self.index_of(utt_id)]

    def item(self, i: int) -> np.ndarray:
        """Item i in its natural shape: (T, D) for audio, (H, W) for grey and (H, W, 3) for colour
        images."""
        feats = self[i]
        return feats.reshape(self.item_shape) if self.item_shape else feats

    def images(self, indices: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W) float32 for a grey image store (a view of the loaded frames when `indices`
        is None); (N, H, W, 3) float32 RGB, channels last, for a colour store, a new array each
        call: only the chosen images are scaled, the rest stay uint8 in memory."""
        if not self.item_shape:
            raise StoreError(f"{self.path} is not an image store")
        self.load()
        all_images = self._frames.reshape(len(self), *self.item_shape)
        return self._as_features(all_images if indices is None else all_images[np.asarray(indices)])

    def fixed(self, indices: Iterable[int], num_frames: int, normalise: bool = True) -> np.ndarray:
        """(N, num_frames, D): Leidal's fixed-size view of each utterance (see fixed_length)."""
        self.load()
        idx = list(indices)
        out = np.zeros((len(idx), num_frames, self.dim), dtype=np.float32)
        for row, i in enumerate(idx):
            out[row] = fixed_length(self[i], num_frames, normalise)
        return out

    def sequences(self, indices: Iterable[int]) -> list[np.ndarray]:
        self.load()
        return [self[i] for i in indices]


def fixed_length(feats: np.ndarray, num_frames: int, normalise: bool = True) -> np.ndarray:
    """Pad or crop to `num_frames` as Leidal et al. describe.

    Each dimension is normalised to zero mean and unit variance over the whole utterance first;
    longer utterances are then centre-cropped and shorter ones zero-padded at the end (zero is the
    mean after normalisation, so padding adds no offset).
    """
    x = np.asarray(feats, dtype=np.float32)
    if normalise and len(x):
        x = x - x.mean(axis=0, keepdims=True)
        x = x / np.maximum(x.std(axis=0, keepdims=True), 1e-5)
    t = len(x)
    if t >= num_frames:
        start = (t - num_frames) // 2
        return np.ascontiguousarray(x[start:start + num_frames])
    out = np.zeros((num_frames, x.shape[1]), dtype=np.float32)
    out[:t] = x
    return out
