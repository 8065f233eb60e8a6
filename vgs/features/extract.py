"""Extract one feature config over one corpus manifest into a Zarr feature store.

Audio is processed in ordered batches by a pool of worker threads (when kaldi-native-fbank runs
through its C entry point, which releases the GIL) or else worker processes; the calling thread is
the single writer, so the store is identical whatever the number of workers. With
`on_error: skip`, unusable items are left out and listed in <store>/rejected.jsonl.
"""
from __future__ import annotations

import contextlib
from collections import Counter
import gc
import json
import multiprocessing as mp
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vgs.corpora.audio_info import read_audio
from vgs.corpora.manifest import Manifest, file_sha256
from vgs.errors import AudioError, DataError, StoreError, VgsError
from vgs.features.audio import (check_long_enough, compute_features_batch, conform_waveform,
                                features_of_pcm16_files, frame_geometry, knf_options, reads_files_in_c,
                                releases_gil)
from vgs.features.config import GREY, RGB, AudioFeatureConfig, ImageFeatureConfig
from vgs.features.image import as_rgb, image_features
from vgs.store.feature_store import FeatureStoreWriter
from vgs.utils.atomic import TMP_MARK, atomic_path

ON_ERROR = ("raise", "skip")
_worker_opts = {}


def _audio_batch(args):
    """Worker: features for a batch of (position, root, source, num_samples) items, in order;
    errors come back as strings."""
    cfg, batch = args
    opts = _worker_opts.get(cfg)
    if opts is None:
        opts = _worker_opts[cfg] = knf_options(cfg)
    # Manifest.resolve as plain strings: pathlib cost more per file than reading the WAV.
    paths = [os.path.join(root, source.split("#", 1)[0]) for _, root, source, _ in batch]
    if reads_files_in_c(cfg):
        _, shift = frame_geometry(cfg)
        fast = features_of_pcm16_files(paths, cfg, sum(-(-n // shift) * shift for *_, n in batch))
    else:
        fast = [None] * len(batch)
    out, usable = [], []
    for (pos, *_), path, feats in zip(batch, paths, fast):
        if feats is not None:
            out.append((pos, feats, None))
            continue
        try:
            samples, rate = read_audio(path)
            x = conform_waveform(samples, rate, cfg, path)
            check_long_enough(x, cfg, path)
        except AudioError as exc:
            out.append((pos, None, str(exc)))
            continue
        usable.append((pos, x))
    feats = compute_features_batch([x for _, x in usable], cfg, opts)
    out.extend((pos, f, None) for (pos, _), f in zip(usable, feats))
    out.sort(key=lambda item: item[0])
    return out


def _audio_batch_spilled(args):
    """Worker: _audio_batch, with the frames written to one raw float32 file instead of returned.

    Sending frames back through the pool's pipe pickles and copies them several times; for FSDD
    that cost 0.25 s of CPU against 0.09 s for a file the parent reads back and deletes.
    """
    cfg, batch, spill_path = args
    out = _audio_batch((cfg, batch))
    usable = [f for _, f, _ in out if f is not None]
    if usable:
        with open(spill_path, "wb") as f:
            f.write(memoryview(np.ascontiguousarray(np.concatenate(usable), dtype=np.float32)))
    return [(pos, None if f is None else len(f), err) for pos, f, err in out], spill_path if usable else None


def _read_spilled(batch_out, spill_path, dim: int):
    """The parent's side of _audio_batch_spilled: the batch's (position, frames, error) items."""
    if spill_path is None:
        return batch_out
    every = np.fromfile(spill_path, dtype=np.float32).reshape(-1, dim)
    os.unlink(spill_path)
    items, start = [], 0
    for pos, count, err in batch_out:
        if count is None:
            items.append((pos, None, err))
        else:
            items.append((pos, every[start:start + count], None))
            start += count
    return items


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def extract_audio(manifest: Manifest, cfg: AudioFeatureConfig, writer_factory, num_workers: int,
                  on_error: str, batch_size: int = 32, spill_dir: str | Path | None = None,
                  spill_prefix: str = "vgs-features-"):
    records = [r for r in manifest if r.modality == "audio"]
    root = str(manifest.root)
    jobs = [(pos, root, r.source, r.num_samples or 0) for pos, r in enumerate(records)]
    rejected = []
    # Opened at the first result, after the pool has forked: zarr runs an I/O thread, and forking
    # a process that has threads can leave a child waiting on a lock no thread will release.
    writer = None
    bar = tqdm(total=len(records), desc=f"features {manifest.corpus}/{cfg.name}", unit="utt")

    def consume(results):
        nonlocal writer
        for batch_out in results:
            for pos, feats, err in batch_out:
                r = records[pos]
                if err is not None:
                    if on_error == "raise":
                        raise AudioError(err)
                    rejected.append({"id": r.id, "source": r.source, "reason": err})
                else:
                    if writer is None:
                        writer = writer_factory(cfg.dim)
                        writer.plan((r.id, r.label, r.speaker, r.split, r.transcript) for r in records)
                    writer.add(r.id, feats, r.label, r.speaker, r.split, r.transcript)
                bar.update(1)

    try:
        with contextlib.ExitStack() as stack:
            batches = _batches(jobs, batch_size)
            pool = None
            if num_workers <= 1:
                results = map(_audio_batch, ((cfg, b) for b in batches))
            elif releases_gil(cfg):
                # The C entry point runs without the GIL, so threads extract in parallel and hand
                # frames over by reference: no pickling, no spill files, no process start-up.
                pool = stack.enter_context(ThreadPoolExecutor(num_workers, thread_name_prefix="vgs-features"))
                results = pool.map(_audio_batch, ((cfg, b) for b in batches))
            else:
                spills = stack.enter_context(tempfile.TemporaryDirectory(dir=spill_dir, prefix=spill_prefix))
                spilled = ((cfg, b, os.path.join(spills, f"batch-{i}.f32")) for i, b in enumerate(batches))
                pool = stack.enter_context(ProcessPoolExecutor(num_workers, mp_context=mp.get_context("fork")))
                results = (_read_spilled(out, path, cfg.dim) for out, path in pool.map(_audio_batch_spilled, spilled))
            try:
                consume(results)
            except BaseException:
                if pool is not None:  # don't wait for batches nobody will read
                    pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        bar.close()  # on an error too, so that the error message starts on a line of its own
    return writer, rejected


def _packed_index(r) -> int:
    """The item index of a `file#index` source (a negative index would silently wrap around)."""
    index = r.source.split("#", 1)[1]
    if not index.isdigit():
        raise DataError(f"image record {r.id}: source {r.source!r} needs a non-negative index after '#'",
                        hint="regenerate the manifest with the prepare stage")
    return int(index)


def _decode_image_file(path: Path, size: int | None, channels: int = GREY) -> np.ndarray:
    """A PNG or JPEG file as (H, W) uint8 grey levels, or with `channels` 3 as (H, W, 3) uint8 RGB
    (as_rgb); with `size`, the shorter side resized to `size` (Pillow's antialiasing filter) and
    the centre cropped square, as retrieval papers crop."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise DataError(f"image file {path} is missing", hint="restore it, or re-run the stage that lists it")
    try:
        with Image.open(path) as im:
            im = im.convert("L") if channels == GREY else as_rgb(im)
            if size is not None and im.size != (size, size):
                w, h = im.size
                scale = size / min(w, h)
                im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.LANCZOS)
                left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
                im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"image file {path} is unreadable: {exc}",
                        hint="replace the file, or remove it from the corpus and re-run the stage") from None


def _expected_items(records: list, root: Path, on_error: str):
    """What the writer can plan: every record, or with `on_error: skip` those whose file exists.
    A file found unreadable only while decoding costs the writer a rewrite of its per-item
    arrays at close, never a wrong store."""
    for r in records:
        if on_error == "raise" or "#" in r.source or (root / r.source).exists():
            yield r.id, r.label, r.speaker, r.split, r.transcript


def extract_images(manifest: Manifest, cfg: ImageFeatureConfig, writer_factory, on_error: str = "raise"):
    """Packed images (`file#index`, MNIST's IDX files) and image files (PNG, JPEG; decoded with Pillow).

    Grey items are stored as float32 (H, W), scaled here; RGB items as the uint8 (H, W, 3) Pillow
    decoded, in rows of W*3 values, which the store scales when read (attrs `raw_pixels`). With
    `on_error: skip`, missing and unreadable image files are left out and returned as rejected.
    """
    from vgs.corpora.mnist import read_idx

    records = [r for r in manifest if r.modality == "image"]
    root = Path(manifest.root)
    by_file: dict[str, list[int]] = {}
    for pos, r in enumerate(records):
        if "#" in r.source:
            by_file.setdefault(r.source.split("#", 1)[0], []).append(pos)
    if by_file and cfg.channels != GREY:
        raise DataError(f"{next(iter(by_file))} holds packed grey images; features.{cfg.name}.channels: "
                        f"{cfg.channels} is for image files (PNG, JPEG)",
                        hint="use a config with channels: 1 for this corpus")
    writer = None
    rejected = []
    # Keep manifest order: group reads per container file, then write in record order.
    pixels: dict[int, np.ndarray] = {}
    for fname, positions in by_file.items():
        array = read_idx(root / fname)
        rows = np.asarray([_packed_index(records[p]) for p in positions])
        if rows.max(initial=-1) >= len(array):
            raise DataError(f"{fname} has {len(array)} images; the manifest asks for index {rows.max()}")
        feats = image_features(array[rows], cfg)
        for p, img in zip(positions, feats):
            pixels[p] = img
    bar = tqdm(total=len(records), desc=f"features {manifest.corpus}/{cfg.name}", unit="img")
    for pos, r in enumerate(records):
        bar.update(1)
        if pos in pixels:
            img = pixels.pop(pos)
        else:
            try:
                decoded = _decode_image_file(root / r.source, cfg.size, cfg.channels)
            except DataError as exc:
                if on_error == "raise":
                    raise
                rejected.append({"id": r.id, "source": r.source, "reason": str(exc)})
                continue
            img = decoded if cfg.channels == RGB else image_features(decoded[None], cfg)[0]
        # One row of pixels per frame: (H, W) grey, or (H, W*3) with R, G, B interleaved.
        rows = img.reshape(len(img), -1)
        if writer is None:
            writer = writer_factory(rows.shape[1], img.dtype)
            writer.item_shape = list(img.shape)
            writer.plan(_expected_items(records, root, on_error))
        elif list(img.shape) != writer.item_shape:
            raise DataError(f"image {r.id} ({r.source}) is {img.shape[0]}x{img.shape[1]}, the others "
                            f"{writer.item_shape[0]}x{writer.item_shape[1]}",
                            hint=f"set features.{cfg.name}.size so that every image is resized to one size")
        writer.add(r.id, rows, r.label, r.speaker, r.split, r.transcript)
    bar.close()
    return writer, rejected


@contextlib.contextmanager
def _existing_objects_frozen():
    """Keep the cyclic garbage collector off the objects that exist before extraction starts.

    Extraction allocates many short-lived objects, and they trigger full collections that rescan
    every long-lived one (the manifest, every imported module): 30 ms per FSDD run, a fortieth of
    it. Frozen, those are skipped, while cycles made during the run are still collected. Left
    alone when the program has frozen objects of its own, since unfreezing would undo that.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _other_rates(manifest: Manifest, cfg, manifest_path, on_error: str) -> dict[int, int]:
    """{rate: files} of the manifest's audio that will be resampled, most first. With `resample:
    false` nothing is: `on_error: raise` stops before any work with an AudioError naming the first
    such file; `skip` leaves each one out and lists it in rejected.jsonl."""
    counts = Counter(r.sample_rate for r in manifest if r.sample_rate and r.sample_rate != cfg.sample_rate)
    if counts and not cfg.resample:
        if on_error == "skip":
            return {}
        first = next(r for r in manifest if r.sample_rate and r.sample_rate != cfg.sample_rate)
        raise AudioError(f"{manifest_path}: {sum(counts.values())} file(s) are not at {cfg.sample_rate} Hz, the rate of "
                         f"features.{cfg.name} (the first: {manifest.resolve(first)}, {first.sample_rate} Hz)",
                         hint=f"set features.{cfg.name}.resample: true, or use a config at the corpus's rate")
    return dict(counts.most_common())


def build_store(manifest: Manifest, manifest_path: str | Path, cfg, out_path: str | Path,
                num_workers: int = 2, on_error: str = "raise") -> dict:
    """Write the store for (manifest, cfg) at out_path atomically; return a summary."""
    if on_error not in ON_ERROR:
        raise VgsError(f"features.on_error must be one of {ON_ERROR}, got {on_error!r}")
    out_path = Path(out_path)
    other_rates = _other_rates(manifest, cfg, manifest_path, on_error) if cfg.modality == "audio" else {}
    with _existing_objects_frozen(), atomic_path(out_path) as tmp:
        opened = []

        def factory(dim, dtype="float32"):
            opened.append(FeatureStoreWriter(tmp, dim, compress=cfg.modality == "image", dtype=dtype))
            return opened[-1]

        try:
            if cfg.modality == "audio":
                # Spill files (process workers only) go next to the store, so that a killed
                # run's leftovers are removed with its other temporaries.
                writer, rejected = extract_audio(manifest, cfg, factory, num_workers, on_error,
                                                 spill_dir=out_path.parent,
                                                 spill_prefix=f".{out_path.name}{TMP_MARK}spill-")
            else:
                writer, rejected = extract_images(manifest, cfg, factory, on_error)
        except BaseException:
            for w in opened:  # its background writes must end before atomic_path deletes tmp
                w.abandon()
            raise
        if writer is None or len(writer.labels) == 0:
            raise StoreError(f"no usable {cfg.modality} items in {manifest_path} for features.{cfg.name}"
                             + (f" ({len(rejected)} rejected)" if rejected else ""))
        attrs = {"corpus": manifest.corpus, "modality": cfg.modality, "config": cfg.as_dict(),
                 "config_name": cfg.name, "config_hash": cfg.hash(),
                 "source_manifest": str(manifest_path),
                 "source_manifest_sha256": file_sha256(manifest_path),
                 "num_rejected": len(rejected)}
        if getattr(writer, "item_shape", None):
            attrs["item_shape"] = writer.item_shape
        if cfg.modality == "image" and cfg.channels == RGB:
            attrs["raw_pixels"] = True  # uint8 frames, scaled by config.scale when read
        if cfg.modality == "audio":
            attrs["frame_shift_ms"] = cfg.frame_shift_ms
            attrs["sample_rate"] = cfg.sample_rate
            if other_rates:
                attrs["resampled_from"] = {str(rate): n for rate, n in other_rates.items()}
        writer.close(attrs)
        with open(tmp / "rejected.jsonl", "w") as f:
            for row in rejected:
                f.write(json.dumps(row) + "\n")
    summary = {"store": str(out_path), "items": len(writer.labels), "frames": int(writer.offsets[-1]),
               "rejected": len(rejected)}
    if other_rates:
        summary["resampled"] = sum(other_rates.values())
        print(f"resampled {summary['resampled']} of {len(manifest)} file(s) to {cfg.sample_rate} Hz "
              f"(features.{cfg.name}.sample_rate): " + ", ".join(f"{n} from {rate} Hz" for rate, n in other_rates.items()))
    if rejected:
        print(f"skipped {len(rejected)} item(s) (on_error: skip); see {out_path}/rejected.jsonl:")
        for row in rejected[:10]:
            print(f"  {row['id']}: {row['reason'].splitlines()[0]}")
    return summary
