"""Export of a trained Crabtree run: embeddings of the validation and test datapoints, as HDF5.

Directory data/embeddings/crabtree2021/<run>/ with val.h5 and test.h5 (vgs.store.embeddings
schema), each with one group per view ("image", "en", "hi", "ja"):
      ids        (N,)     datapoint ids (the image id, in every view), so views align by id
      index      (N,)     row in the view's feature store
      labels     (N,)     -1 (digit scenes have no single class)
      embedding  (N, d)   the encoder's output at the epoch chosen on validation recall (L2-normalised
                          only when the run's loss is hyperspheric; recall is cosine either way)
  attrs of /: method, run, split, best_epoch (1-based), val_avgR10, history (validation recall per
      epoch), parameters, data, synthetic ({view: bool}), config (JSON), train_wall_seconds,
      train_cpu_seconds, train_steps, train_started_at (UNIX time); all read from the checkpoint
  attrs of /<view>: store, modality, language and synthetic (caption views)
and export.json: {"export_wall_seconds": ...}, outside the HDF5 files so that exporting the same
checkpoint again gives the same bytes.
"""
from __future__ import annotations

import time

import numpy as np

from vgs.methods.crabtree2021.config import METHOD, RunConfig, embeddings_dir, model_dir
from vgs.methods.crabtree2021.model import build_model, input_sizes
from vgs.methods.crabtree2021.train import encode_tuples, load_views
from vgs.params import Params
from vgs.store.embeddings import export_timing_path, write_embeddings
from vgs.pairing.batch_loader import LoaderSettings, RowBatchLoader
from vgs.pairing.instance_views import InstanceViews
from vgs.train.device import current
from vgs.train.trainer import load_finished_checkpoint
from vgs.utils.atomic import atomic_path, atomic_write_json

SPLITS = ("val", "test")


def load_trained(cfg: RunConfig, run_dir=None):
    """The model at the epoch chosen on validation recall, on the current device, and the checkpoint."""
    ck = load_finished_checkpoint(run_dir or model_dir(cfg.run), cfg.fingerprint_config(), f"{METHOD}-train@{cfg.run}")
    model = build_model(cfg.model, cfg.data.caption_views, input_sizes(cfg))
    model.load_state_dict(ck["task"]["best"]["state"])
    model.to(current().device)
    model.eval()
    return model, ck


def caption_synthetic(views: InstanceViews, view: str) -> bool:
    """Whether a caption view is machine speech, from its manifest (digitscenes marks hi and ja)."""
    from vgs.corpora.manifest import read_manifest
    source = views.stores[view].attrs.get("source_manifest")
    if not source:
        return False
    return any(bool(r.extra.get("synthetic")) for r in read_manifest(source))


def export_run(cfg: RunConfig, out_dir=None, run_dir=None, views: InstanceViews | None = None,
               loading: LoaderSettings = LoaderSettings()) -> dict:
    started = time.perf_counter()
    views = views or load_views(cfg, loading)
    loader = RowBatchLoader(views, loading.num_workers)
    run_dir = run_dir or model_dir(cfg.run)
    model, ck = load_trained(cfg, run_dir)
    out_dir = out_dir or embeddings_dir(cfg.run)
    task = ck["task"]
    synthetic = {v: caption_synthetic(views, v) for v in cfg.data.caption_views}
    encoded = {}
    for split in SPLITS:
        tuples = views.tuples(split)
        encoded[split] = (tuples, encode_tuples(model, views, tuples, cfg.export_batch, loader))
    attrs = {"method": METHOD, "run": cfg.run, "best_epoch": int(task["best"]["epoch"]) + 1,
             "val_avgR10": float(task["best"]["val_avgR10"]), "history": task["history"],
             "parameters": model.parameter_counts(), "data": cfg.data.data_name, "synthetic": synthetic,
             "config": cfg.fingerprint_config(), "train_wall_seconds": float(ck["elapsed_seconds"]),
             "train_cpu_seconds": float(task["cpu_seconds"]), "train_steps": int(task["steps"]),
             "train_started_at": float(task["started_at"])}
    summary = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for split, (tuples, emb) in encoded.items():
            ids = views.datapoint_ids(tuples[:, 0])
            labels = np.full(len(ids), -1, dtype=np.int64)
            arrays, view_attrs = {}, {}
            for k, view in enumerate(cfg.data.views):
                arrays[view] = {"ids": ids, "labels": labels, "index": tuples[:, k], "embedding": emb[view]}
                view_attrs[view] = {"store": str(views.stores[view].path),
                                    "modality": "image" if k == 0 else "audio"}
                if k > 0:
                    view_attrs[view].update(language=view, synthetic=synthetic[view])
            write_embeddings(tmp / f"{split}.h5", arrays, {**attrs, "split": split}, view_attrs=view_attrs)
            summary[split] = len(ids)
        atomic_write_json(export_timing_path(tmp), {"export_wall_seconds": round(time.perf_counter() - started, 2)})
    return summary


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage crabtree2021-export@<run>: image and per-language speech embeddings of the val and
    test datapoints -> data/embeddings/crabtree2021/<run>/."""
    from vgs.methods.crabtree2021.config import embeddings_dir, load_run_config
    from vgs.pairing.batch_loader import loader_settings
    cfg = load_run_config(params, run)
    s = export_run(cfg, loading=loader_settings(params.profiled(METHOD).section("data")))
    return f"{embeddings_dir(cfg.run)}: " + ", ".join(f"{split} {n} datapoints" for split, n in s.items())
