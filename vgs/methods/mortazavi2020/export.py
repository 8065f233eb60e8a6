"""Export of a trained Mortazavi run: embeddings of the validation and test datapoints, as HDF5.

Directory data/embeddings/mortazavi2020/<run>/ with val.h5 and test.h5 (vgs.store.embeddings
schema), each with two views, "image" and the caption view (e.g. "en"):
      ids        (N,)     datapoint ids (the image id, for both views), so views align by id
      index      (N,)     row in the view's feature store
      labels     (N,)     -1 (digit scenes have no single class)
      embedding  (N, d)   L2-normalised embedding, from the epoch chosen on validation recall
A run with a warm restart also gets val_base.h5 and test_base.h5: the same, at the best epoch of its
first (CALR) phase, i.e. the run as it would have ended without the restart. So one training run
yields both sides of the restart comparison (the paper restarted a finished run, too).
  attrs of /: method, run, split, best_epoch, best_phase, val_avgR10, data, synthetic (bool),
      config (JSON), train_wall_seconds, train_cpu_seconds, train_steps
  attrs of /<view>: store, corpus, language, transcripts are kept in the store (not here)
"""
from __future__ import annotations

import numpy as np

from vgs.methods.mortazavi2020.config import METHOD, RunConfig, embeddings_dir, model_dir
from vgs.methods.mortazavi2020.model import build_pair, input_sizes
from vgs.methods.mortazavi2020.train import encode_tuples, load_views
from vgs.params import Params
from vgs.store.embeddings import write_embeddings
from vgs.pairing.batch_loader import LoaderSettings, RowBatchLoader
from vgs.pairing.instance_views import InstanceViews
from vgs.train.device import current
from vgs.train.trainer import load_finished_checkpoint
from vgs.utils.atomic import atomic_path

SPLITS = ("val", "test")


def load_trained(cfg: RunConfig, views: InstanceViews, run_dir=None, which: str = "best"):
    """The pair of encoders at the epoch chosen on validation recall ("best"; "best_base": within the
    first phase only), on the current device, and the checkpoint."""
    ck = load_finished_checkpoint(run_dir or model_dir(cfg.run), cfg.fingerprint_config(), f"{METHOD}-train@{cfg.run}")
    pair = build_pair(cfg.model, input_sizes(cfg, views))
    pair.load_state_dict(ck["task"][which]["state"])
    pair.to(current().device)
    pair.eval()
    return pair, ck


def caption_synthetic(views: InstanceViews, view: str) -> bool:
    """Whether a caption view is machine speech, from its manifest (digitscenes marks hi and ja)."""
    from vgs.corpora.manifest import read_manifest
    store = views.stores[view]
    manifest = read_manifest(store.attrs["source_manifest"])
    return any(bool(r.extra.get("synthetic")) for r in manifest)


def validation_history(run_dir) -> list[dict]:
    """Validation recall after every epoch, from the training log (the last record of an epoch
    wins: a resumed run logs an epoch again)."""
    import json
    log = run_dir / "train_log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    last = {r["epoch"]: r for r in rows if r.get("end")}
    keys = ("phase", "val_i2s_R10", "val_s2i_R10", "val_avgR10", "val_avgR1", "val_avgR5", "elapsed_seconds")
    return [{"epoch": e + 1, **{k: last[e][k] for k in keys if k in last[e]}} for e in sorted(last)]


def export_run(cfg: RunConfig, out_dir=None, run_dir=None, views: InstanceViews | None = None,
               loading: LoaderSettings = LoaderSettings()) -> dict:
    views = views or load_views(cfg, loading)
    loader = RowBatchLoader(views, loading.num_workers)
    run_dir = run_dir or model_dir(cfg.run)
    out_dir = out_dir or embeddings_dir(cfg.run)
    choices = {"": "best"} if cfg.train.restart is None else {"": "best", "_base": "best_base"}
    summary = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for suffix, which in choices.items():
            pair, ck = load_trained(cfg, views, run_dir, which)
            summary.update({f"{split}{suffix}": n for split, n in
                            _write_splits(cfg, views, loader, pair, ck, ck["task"][which], run_dir, tmp,
                                          suffix).items()})
    return summary


def _write_splits(cfg: RunConfig, views: InstanceViews, loader: RowBatchLoader, pair, ck: dict, best: dict,
                  run_dir, out_dir, suffix: str) -> dict:
    image_view, caption_view = cfg.data.image_view, cfg.data.caption_view
    synthetic = caption_synthetic(views, caption_view)
    attrs = {"method": METHOD, "run": cfg.run, "best_epoch": int(best["epoch"]) + 1, "best_phase": best["phase"],
             "val_avgR10": float(best["val_r10"]), "data": cfg.data.data_name, "synthetic": synthetic,
             "config": cfg.fingerprint_config(), "train_wall_seconds": float(ck["elapsed_seconds"]),
             "train_cpu_seconds": float(ck["task"]["cpu_seconds"]), "train_steps": int(ck["task"]["steps"]),
             "dropped_long_captions": {}, "history": validation_history(run_dir),
             "parameters": pair.parameter_counts()}
    summary = {}
    for split in SPLITS:
        tuples = views.tuples(split)
        image_emb, caption_emb = encode_tuples(pair, views, caption_view, tuples, cfg.export_batch, loader)
        ids = views.datapoint_ids(tuples[:, 0])
        labels = np.full(len(ids), -1, dtype=np.int64)
        attrs["dropped_long_captions"][split] = views.dropped_long.get(split, 0)
        write_embeddings(out_dir / f"{split}{suffix}.h5", {
            image_view: {"ids": ids, "labels": labels, "index": tuples[:, 0], "embedding": image_emb},
            caption_view: {"ids": ids, "labels": labels, "index": tuples[:, 1], "embedding": caption_emb},
        }, {**attrs, "split": split}, view_attrs={
            image_view: {"store": str(views.stores[image_view].path), "modality": "image"},
            caption_view: {"store": str(views.stores[caption_view].path), "modality": "audio",
                           "language": caption_view, "synthetic": synthetic}})
        summary[split] = len(ids)
    return summary


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage mortazavi2020-export@<run>: image and speech embeddings of the val and test pairs ->
    data/embeddings/mortazavi2020/<run>/."""
    from vgs.methods.mortazavi2020.config import embeddings_dir, load_run_config
    from vgs.pairing.batch_loader import loader_settings
    cfg = load_run_config(params, run)
    s = export_run(cfg, loading=loader_settings(params.profiled(METHOD).section("data")))
    return f"{embeddings_dir(cfg.run)}: " + ", ".join(f"{split} {n} pairs" for split, n in s.items())
