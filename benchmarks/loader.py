"""Stores that stream (issue 30, part 5): memory and speed of the retrieval papers' batch loader.

Builds a synthetic photo corpus as an instance pair store in a temporary directory: an image store
of N and one of 4N items at the paper resolution (224x224; random pixels, stored uncompressed as
the float32 grey rows a 1-channel image store holds today, 200,704 bytes an image) and a caption
store (40 coefficients, 300 to 1,000 frames a caption, as 3 to 10 s of speech at 100 frames/s).
Then, each in a subprocess of its own so that one's peak cannot hide in another's (the stores are
built in one, too: a child's ru_maxrss starts at its parent's RSS when it forked, so this parent
stays small):
  * one epoch over the N and over the 4N store, streaming (`in_memory: false`), in a seeded order,
    read in the training process and by 2 workers: peak RSS from resource.getrusage in the child
    (its own, and its largest worker's), beside its RSS before the first batch;
  * items per second per worker with 0, 1 and 2 workers on the N store (`--batches` batches after
    the first, so workers' start-up is left out; 0 workers: reading in the training process).
With `--digitscenes`, also batches/s of the real digitscenes pair stores at the cpu profile's
batches (Mortazavi 64, Crabtree 128), read whole into memory and streamed, no workers.
The temporary data is deleted at the end.

    .venv/bin/python benchmarks/loader.py --items 5400 --digitscenes     # 4N = 21,600 images: 4.3 GB
    .venv/bin/python benchmarks/loader.py --items 40 --batches 3 --digitscenes --data-root /work/runclone
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIZE = 224
CAPTION_DIM = 40
SEED = 2026


def _feature_attrs(corpus: str, modality: str, config: dict) -> dict:
    return {"corpus": corpus, "modality": modality, "config": config, "config_hash": f"synthetic-{modality}",
            "source_manifest_sha256": "synthetic", "source_manifest": ""}


def build_corpus(root: Path, n: int) -> str:
    """An instance pair store of n synthetic photos, each with one caption, all in the train split."""
    import zarr

    from vgs.store.feature_store import FeatureStoreWriter
    rng = np.random.default_rng(SEED)
    images = FeatureStoreWriter(root / "image.zarr", dim=SIZE, compress=False)
    captions = FeatureStoreWriter(root / "en.zarr", dim=CAPTION_DIM, compress=False)
    block = 256
    for start in range(0, n, block):
        count = min(block, n - start)
        pixels = rng.integers(0, 256, size=(count, SIZE, SIZE), dtype=np.uint8).astype(np.float32) * np.float32(1 / 255)
        for k in range(count):
            i = start + k
            images.add(f"photo{i:07d}", pixels[k], split="train")
            frames = rng.standard_normal((int(rng.integers(300, 1001)), CAPTION_DIM), dtype=np.float32)
            captions.add(f"caption{i:07d}", frames, split="train")
    images.close({**_feature_attrs("synthetic-photos", "image", {"size": SIZE, "scale": 1 / 255}),
                  "item_shape": [SIZE, SIZE]})
    captions.close(_feature_attrs("synthetic-captions", "audio", {"dim": CAPTION_DIM}))
    pairs = root / "pairs.zarr"
    group = zarr.open_group(str(pairs), mode="w", zarr_format=3)
    tuples = np.stack([np.arange(n), np.arange(n)], axis=1).astype(np.int32)[None]
    group.create_group("train").create_array("tuples", data=tuples, chunks=tuples.shape)
    group.attrs.update({"mode": "instance", "anchor_view": 0, "seed": SEED, "epochs": {"train": 1}, "left_out": {},
                        "views": [{"name": "image", "store": str(root / "image.zarr"), "modality": "image"},
                                  {"name": "en", "store": str(root / "en.zarr"), "modality": "audio"}]})
    return str(pairs)


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _peak_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024   # Linux: kilobytes


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- children --------------------------------------------------------------------------------------
def child(args) -> dict:
    import torch

    from vgs.pairing.batch_loader import RowBatchLoader, row_batches
    from vgs.pairing.instance_views import InstanceViews
    torch.set_num_threads(1)
    views = InstanceViews(args.pairs, args.views, in_memory=args.in_memory)
    tuples = views.tuples("train")
    order = np.random.default_rng([SEED, 1, 0]).permutation(len(tuples))
    batches = row_batches(tuples[order], args.batch)
    if args.batches:
        batches = batches[:args.batches + 1]
    loader = RowBatchLoader(views, args.workers[0])
    rss_before = _current_rss_mb()
    started = time.perf_counter()
    first = None
    items = 0
    for k, batch in enumerate(loader.batches(batches)):
        if k == 0:
            first = time.perf_counter()
        else:
            items += len(batch.rows)
    ended = time.perf_counter()
    del loader   # joins the workers, so that their peaks count as children's
    return {"items": items + len(batches[0]), "timed_items": items, "seconds": ended - started,
            "timed_seconds": ended - first, "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb(resource.RUSAGE_SELF),
            "worker_peak_rss_mb": _peak_rss_mb(resource.RUSAGE_CHILDREN)}


def run_child(pairs: str, workers: int, batch: int, batches: int | None, views=("image", "en"),
              in_memory: bool = False, cwd: Path = REPO) -> dict:
    cmd = [sys.executable, __file__, "--child", "--pairs", pairs, "--workers", str(workers), "--batch", str(batch),
           "--views", *views] + (["--batches", str(batches)] if batches else []) + (["--in-memory"] if in_memory else [])
    return json.loads(_run(cmd, cwd))


def _run(cmd: list[str], cwd: Path) -> str:
    """The last line the command printed."""
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


# -- main ------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=5400, help="N (the larger store has 4N)")
    ap.add_argument("--batch", type=int, default=64, help="the Mortazavi paper's batch")
    ap.add_argument("--batches", type=int, default=None, help="batches timed per worker count (child: all)")
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2], help="worker counts to time")
    ap.add_argument("--epoch-workers", type=int, nargs="*", default=[0, 2], help="worker counts of the epochs")
    ap.add_argument("--tmp", default=None, help="where the synthetic stores go (default: the system's temp dir)")
    ap.add_argument("--digitscenes", action="store_true", help="also time in_memory against streaming on data/pairs")
    ap.add_argument("--data-root", default=str(REPO), help="the checkout whose data/ holds the digitscenes stores")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--build", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--pairs", help=argparse.SUPPRESS)
    ap.add_argument("--views", nargs="*", default=["image", "en"], help=argparse.SUPPRESS)
    ap.add_argument("--in-memory", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.build:
        print(build_corpus(Path(args.out), args.build))
        return

    throughput_batches = args.batches or 40
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the start")
    root = Path(tempfile.mkdtemp(prefix="vgs-loader-", dir=args.tmp))
    try:
        sizes = {}
        for n in (args.items, 4 * args.items):
            t = time.perf_counter()
            pairs = _run([sys.executable, __file__, "--build", str(n), "--out", str(root / f"n{n}")], REPO)
            sizes[n] = (pairs, _disk_bytes(root / f"n{n}"))
            print(f"built {n} items: {sizes[n][1] / 1e9:.2f} GB on disk in {time.perf_counter() - t:.0f} s", flush=True)

        print("\n## One epoch, streaming (batch %d)\n" % args.batch)
        print("| workers | items | on disk | RSS before the first batch | peak RSS, training process | "
              "peak RSS, a worker | items/s |")
        print("|---|---|---|---|---|---|---|")
        peaks = {}
        for w in args.epoch_workers:
            for n, (pairs, disk) in sizes.items():
                r = run_child(pairs, w, args.batch, None)
                peaks[w, n] = (r["peak_rss_mb"], r["worker_peak_rss_mb"])
                worker_peak = f"{r['worker_peak_rss_mb']:.0f} MB" if w else "-"
                print(f"| {w} | {n} | {disk / 1e9:.2f} GB | {r['rss_before_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB | "
                      f"{worker_peak} | {r['items'] / r['seconds']:.0f} |", flush=True)
        print()
        for w in args.epoch_workers:
            (main_n, worker_n), (main_4n, worker_4n) = peaks[w, args.items], peaks[w, 4 * args.items]
            print(f"{w} workers: peak RSS at 4N / at N: training process {main_4n / main_n:.3f}"
                  + (f", a worker {worker_4n / worker_n:.3f}" if w else "") + " (target: within 1.10)")

        pairs = sizes[args.items][0]
        print(f"\n## Items per second by workers (N store, {throughput_batches} batches of {args.batch} after the first)\n")
        print("| workers | items/s | items/s per worker | peak RSS, training process | peak RSS, a worker |")
        print("|---|---|---|---|---|")
        for w in args.workers:
            r = run_child(pairs, w, args.batch, throughput_batches)
            rate = r["timed_items"] / r["timed_seconds"]
            worker_peak = f"{r['worker_peak_rss_mb']:.0f} MB" if w else "-"
            print(f"| {w} | {rate:.0f} | {rate / max(w, 1):.0f} | {r['peak_rss_mb']:.0f} MB | {worker_peak} |", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if args.digitscenes:
        print("\n## digitscenes at the cpu profile's batches, no workers: whole stores against streaming\n")
        print("| pair store | views | batch | in_memory: true, batches/s | in_memory: false, batches/s |")
        print("|---|---|---|---|---|")
        for store, views, batch in (("data/pairs/digitscenes-mfcc40.zarr", ["image", "en"], 64),
                                    ("data/pairs/digitscenes-logmel40.zarr", ["image", "en", "hi", "ja"], 128)):
            rates = []
            for in_memory in (True, False):
                r = run_child(store, 0, batch, 30, views, in_memory, cwd=Path(args.data_root))
                rates.append(30 / r["timed_seconds"])
            print(f"| {store} | {','.join(views)} | {batch} | {rates[0]:.1f} | {rates[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
