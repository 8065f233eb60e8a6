"""Embedding files (HDF5), one per trained run: the output of every `export` stage.

Schema (documented in docs/embeddings.md):
  /<view>/                 one group per modality or view, e.g. "audio", "image"
      ids      (N,)        utf-8 strings, the feature-store utterance/image ids
      labels   (N,)        int64 class labels (-1 if none)
      index    (N,)        int64 row in the source feature store
      <name>   (N, ...)    float32 arrays, e.g. mean (N, Z), logvar (N, Z), samples (N, S, Z)
  attrs of /: method, run, split, config (JSON), plus anything the method adds; never a clock
              reading, so the same checkpoint always gives the same bytes
  attrs of /<view>: store (the source feature-store path), modality
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from vgs.errors import StoreError
from vgs.utils.atomic import atomic_path

_STR = h5py.string_dtype("utf-8")


def export_timing_path(embeddings: str | Path) -> Path:
    """Where an export stage records its wall time: run.h5 -> run.export.json, or a directory's
    export.json. Kept out of the HDF5 files, which must not change when nothing but the clock did."""
    embeddings = Path(embeddings)
    return embeddings.with_suffix(".export.json") if embeddings.suffix == ".h5" else embeddings / "export.json"


def read_export_timing(embeddings: str | Path) -> dict:
    """The export stage's timing record, or {} for exports written before it existed."""
    path = export_timing_path(embeddings)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: unreadable export timing ({e})", hint="re-run the export stage with dvc repro") from e


def write_embeddings(path: str | Path, views: dict[str, dict[str, np.ndarray]], attrs: dict,
                     view_attrs: dict[str, dict] | None = None, compression: str | None = "gzip") -> None:
    """Write atomically. Each view needs `ids` and `labels`; other entries are numeric arrays.

    `compression` applies to arrays of more than 4096 values; pass None for sampled embeddings,
    which are noise to gzip (7% smaller at several seconds per 100 MB).
    """
    view_attrs = view_attrs or {}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
            for view, arrays in views.items():
                if "ids" not in arrays or "labels" not in arrays:
                    raise ValueError(f"view {view!r} needs ids and labels")
                n = len(arrays["ids"])
                g = f.create_group(view)
                for k, v in view_attrs.get(view, {}).items():
                    g.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
                g.create_dataset("ids", data=np.asarray(arrays["ids"], dtype=object), dtype=_STR)
                for name, arr in arrays.items():
                    if name == "ids":
                        continue
                    arr = np.asarray(arr)
                    if len(arr) != n:
                        raise ValueError(f"{view}/{name} has {len(arr)} rows, ids has {n}")
                    if arr.dtype.kind == "f":
                        arr = arr.astype(np.float32)
                    g.create_dataset(name, data=arr, compression=compression if arr.size > 4096 else None)


def read_embeddings(path: str | Path, views: list[str] | None = None) -> dict:
    """{"attrs": {...}, "<view>": {"ids": ..., "labels": ..., ...}}; StoreError if missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"embedding file {path} does not exist",
                         hint="run the method's export stage: dvc repro export@<run>")
    try:
        with h5py.File(path, "r") as f:
            out = {"attrs": {k: _maybe_json(v) for k, v in f.attrs.items()}}
            for view in views or list(f.keys()):
                if view not in f:
                    raise StoreError(f"embedding file {path} has no view {view!r} (has {list(f.keys())})")
                g = f[view]
                d = {name: g[name][()] for name in g.keys()}
                d["ids"] = np.asarray([s.decode() if isinstance(s, bytes) else s for s in d["ids"]], dtype=object)
                d["attrs"] = {k: _maybe_json(v) for k, v in g.attrs.items()}
                out[view] = d
    except StoreError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise StoreError(f"embedding file {path} is corrupt or unreadable: {exc}",
                         hint="delete it and re-run the export stage") from None
    return out


def _maybe_json(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v.item() if isinstance(v, np.generic) else v


def read_embedding_attrs(path: str | Path) -> dict:
    """Only the file-level attributes (cheap: no arrays are read); StoreError if missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"embedding file {path} does not exist",
                         hint="run the method's export stage: dvc repro export@<run>")
    try:
        with h5py.File(path, "r") as f:
            return {k: _maybe_json(v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise StoreError(f"embedding file {path} is corrupt or unreadable: {exc}",
                         hint="delete it and re-run the export stage") from None
