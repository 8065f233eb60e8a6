"""Inspect feature stores and move them between Zarr and HDF5.

  vgs store info data/features/fsdd/fbank80.zarr
  vgs store export-hdf5 data/features/fsdd/fbank80.zarr fbank80.h5
  vgs store import-hdf5 fbank80.h5 data/features/fsdd/fbank80-copy.zarr

The format of both is documented in docs/feature-store.md.
"""
from __future__ import annotations

import argparse
import json

HELP = "feature stores: info, export-hdf5, import-hdf5"


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="store_command", metavar="<subcommand>")

    info = sub.add_parser("info", help="print a store's attributes, counts and splits")
    info.add_argument("store", help="path to a <config>.zarr feature store")
    info.add_argument("--json", action="store_true", help="print everything as one JSON object")
    info.set_defaults(func=run_info)

    export = sub.add_parser("export-hdf5", help="write a Zarr feature store to one HDF5 file")
    export.add_argument("store", help="path to a <config>.zarr feature store")
    export.add_argument("out", help="HDF5 file to write (replaced atomically)")
    export.add_argument("--compression", default="gzip", choices=("gzip", "lzf", "none"),
                        help="compression of /frames (gzip: readable everywhere; lzf: faster, h5py only)")
    export.set_defaults(func=run_export)

    imp = sub.add_parser("import-hdf5", help="rebuild a Zarr feature store from an HDF5 export")
    imp.add_argument("h5", help="HDF5 file written by export-hdf5")
    imp.add_argument("out", help="Zarr store to write (replaced atomically)")
    imp.set_defaults(func=run_import)


def store_summary(path) -> dict:
    from collections import Counter

    from vgs.store.feature_store import FeatureStore

    store = FeatureStore(path)
    splits = Counter(store.splits.tolist())
    labels = Counter(int(x) for x in store.labels)
    lengths = store.lengths
    return {
        "path": str(store.path),
        "attrs": store.attrs,
        "items": len(store),
        "frames": int(store.offsets[-1]),
        "dim": store.dim,
        "splits": dict(sorted(splits.items())),
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "speakers": len(set(store.speakers.tolist()) - {""}),
        "frames_per_item": {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2),
                            "max": int(lengths.max())} if len(lengths) else None,
    }


def run_info(args) -> int:
    summary = store_summary(args.store)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    attrs = summary["attrs"]
    print(f"{summary['path']}")
    for key in sorted(attrs):
        value = attrs[key]
        text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
        print(f"  {key}: {text}")
    print(f"items: {summary['items']}  frames: {summary['frames']}  dim: {summary['dim']}  "
          f"speakers: {summary['speakers']}")
    if summary["frames_per_item"]:
        f = summary["frames_per_item"]
        print(f"frames per item: min {f['min']}, mean {f['mean']}, max {f['max']}")
    print("splits: " + ", ".join(f"{k or '(none)'}={v}" for k, v in summary["splits"].items()))
    print("labels: " + ", ".join(f"{k}={v}" for k, v in summary["labels"].items()))
    return 0


def run_export(args) -> int:
    from vgs.store.hdf5 import export_hdf5

    s = export_hdf5(args.store, args.out, compression=args.compression)
    print(f"{s['hdf5']}: {s['items']} items, {s['frames']} frames of dim {s['dim']}, {s['rejected']} rejected listed")
    return 0


def run_import(args) -> int:
    from vgs.store.hdf5 import import_hdf5

    s = import_hdf5(args.h5, args.out)
    print(f"{s['store']}: {s['items']} items, {s['frames']} frames of dim {s['dim']}")
    return 0
