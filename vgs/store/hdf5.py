"""Export a Zarr feature store to one HDF5 file, and import it back (docs/feature-store.md).

HDF5 layout (the same arrays as the Zarr store, one file):
  /frames      (sum T, D) float32, chunked by ~1 MiB of rows, compressed (gzip by default)
  /offsets     (U+1,) int64
  /label       (U,)   int64
  /utt_id, /speaker, /split, /transcript   (U,) variable-length UTF-8 strings
  /rejected    (R,)   UTF-8 strings, the lines of rejected.jsonl (present when the store has that
                      file, which every store built by the features stage has, even with R = 0)
  attrs of /:  every attribute of the Zarr group. Strings and numbers are stored as themselves;
               lists, mappings and null as JSON text, with their names listed in `_json_attrs`.
               `_vgs_format` = "vgs-feature-store" marks the file.

Import rebuilds the Zarr store through FeatureStoreWriter (same chunking and sharding as the
features stage) with the original attributes, so export then import gives an identical store.
Both directions write to a temporary path and rename.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from vgs.errors import StoreError
from vgs.store.feature_store import PER_ITEM_STRINGS, FeatureStore, FeatureStoreWriter
from vgs.utils.atomic import atomic_path

FORMAT_MARK = "vgs-feature-store"
COMPRESSIONS = ("gzip", "lzf", "none")
_STR = h5py.string_dtype("utf-8")
_BLOCK_BYTES = 64 << 20  # frames are copied in blocks of this size to bound memory


def _encode_attrs(attrs: dict) -> tuple[dict, list[str]]:
    plain, as_json = {}, []
    for key, value in attrs.items():
        if isinstance(value, (str, int, float, bool)) and not isinstance(value, np.generic):
            plain[key] = value
        else:
            plain[key] = json.dumps(value)
            as_json.append(key)
    return plain, as_json


def _decode_attrs(h5attrs) -> dict:
    as_json = set(json.loads(h5attrs.get("_json_attrs", "[]")))
    out = {}
    for key, value in h5attrs.items():
        if key in ("_json_attrs", "_vgs_format"):
            continue
        if isinstance(value, bytes):
            value = value.decode()
        if key in as_json:
            value = json.loads(value)
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def export_hdf5(store_path: str | Path, out_path: str | Path, compression: str = "gzip") -> dict:
    """Write the feature store at store_path to out_path (HDF5); return a summary."""
    if compression not in COMPRESSIONS:
        raise StoreError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    store = FeatureStore(store_path)
    frames = store.group["frames"]
    n_rows, dim = frames.shape
    rows_per_chunk = max(1, min(n_rows, (1 << 20) // (4 * dim)))
    block = max(rows_per_chunk, (_BLOCK_BYTES // (4 * dim)) // rows_per_chunk * rows_per_chunk)
    comp = {"gzip": dict(compression="gzip", compression_opts=4, shuffle=True),
            "lzf": dict(compression="lzf", shuffle=True), "none": {}}[compression]
    rejected_file = Path(store_path) / "rejected.jsonl"
    rejected = [line for line in rejected_file.read_text().splitlines() if line.strip()] \
        if rejected_file.exists() else None
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as f:
            plain, as_json = _encode_attrs(store.attrs)
            for key, value in plain.items():
                f.attrs[key] = value
            f.attrs["_json_attrs"] = json.dumps(as_json)
            f.attrs["_vgs_format"] = FORMAT_MARK
            dset = f.create_dataset("frames", shape=(n_rows, dim), dtype="float32",
                                    chunks=(rows_per_chunk, dim) if n_rows else None, **(comp if n_rows else {}))
            for lo in tqdm(range(0, n_rows, block), desc=f"export {Path(store_path).name}", unit="block",
                           disable=n_rows <= block):
                hi = min(n_rows, lo + block)
                dset[lo:hi] = frames[lo:hi]
            f.create_dataset("offsets", data=store.offsets.astype(np.int64))
            f.create_dataset("label", data=np.asarray(store.labels, dtype=np.int64))
            for key in PER_ITEM_STRINGS:
                values = store.transcripts if key == "transcript" else \
                    {"utt_id": store.ids, "speaker": store.speakers, "split": store.splits}[key]
                f.create_dataset(key, data=np.asarray(values, dtype=object), dtype=_STR)
            if rejected is not None:
                f.create_dataset("rejected", shape=(len(rejected),), dtype=_STR,
                                 data=np.asarray(rejected, dtype=object) if rejected else None)
    return {"hdf5": str(out_path), "items": len(store), "frames": int(n_rows), "dim": int(dim),
            "rejected": len(rejected or [])}


def _strings(f: h5py.File, key: str) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in f[key][()]]


def import_hdf5(h5_path: str | Path, out_path: str | Path) -> dict:
    """Rebuild a Zarr feature store at out_path from an HDF5 export; return a summary."""
    h5_path = Path(h5_path)
    if not h5_path.exists():
        raise StoreError(f"HDF5 file {h5_path} does not exist")
    try:
        f = h5py.File(h5_path, "r")
    except OSError as exc:
        raise StoreError(f"{h5_path} is not a readable HDF5 file: {exc}") from None
    with f:
        if f.attrs.get("_vgs_format") not in (FORMAT_MARK, FORMAT_MARK.encode()):
            raise StoreError(f"{h5_path} is not a vgs feature-store export (no _vgs_format attribute)",
                             hint="create it with: vgs store export-hdf5 <store.zarr> <out.h5>")
        missing = [k for k in ("frames", "offsets", "label", *PER_ITEM_STRINGS) if k not in f]
        if missing:
            raise StoreError(f"{h5_path} lacks dataset(s) {missing}", hint="re-export it from the Zarr store")
        attrs = _decode_attrs(f.attrs)
        offsets = f["offsets"][()].astype(np.int64)
        labels = f["label"][()].astype(np.int64)
        meta = {k: _strings(f, k) for k in PER_ITEM_STRINGS}
        frames = f["frames"]
        n_items = len(labels)
        if len(offsets) != n_items + 1 or offsets[-1] != frames.shape[0] or \
                any(len(v) != n_items for v in meta.values()):
            raise StoreError(f"{h5_path}: offsets, labels and frames do not agree (damaged file?)",
                             hint="re-export it from the Zarr store")
        rejected = _strings(f, "rejected") if "rejected" in f else None
        dim = frames.shape[1]
        block_rows = max(1, _BLOCK_BYTES // (4 * dim))
        with atomic_path(out_path) as tmp:
            writer = FeatureStoreWriter(tmp, dim)
            start = 0
            bar = tqdm(total=n_items, desc=f"import {h5_path.name}", unit="utt", disable=n_items < 5000)
            while start < n_items:
                # Whole utterances per block: read one contiguous slab, then cut it up.
                stop = int(np.searchsorted(offsets, offsets[start] + block_rows, side="right")) - 1
                stop = min(max(stop, start + 1), n_items)
                lo, hi = int(offsets[start]), int(offsets[stop])
                slab = frames[lo:hi]
                for i in range(start, stop):
                    writer.add(meta["utt_id"][i], slab[offsets[i] - lo:offsets[i + 1] - lo], int(labels[i]),
                               meta["speaker"][i], meta["split"][i], meta["transcript"][i])
                bar.update(stop - start)
                start = stop
            bar.close()
            writer.close(attrs)
            if rejected is not None:
                (tmp / "rejected.jsonl").write_text("".join(line + "\n" for line in rejected))
    return {"store": str(out_path), "items": n_items, "frames": int(offsets[-1]), "dim": int(dim)}
