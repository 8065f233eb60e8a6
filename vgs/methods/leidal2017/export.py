"""Export of a trained Leidal run: posteriors and sampled embeddings of one split, as HDF5.

File: data/embeddings/leidal2017/<run>.h5 (vgs.store.embeddings schema), two views:
  /image, /audio
      ids      (N,)        feature-store ids (mnist-test-00042, fsdd-3_jackson_4, ...)
      labels   (N,)        digit labels
      index    (N,)        row in the feature store
      mean     (N, 128)    posterior means
      logvar   (N, 128)    posterior log-variances
      samples  (N, 16, 128) embeddings drawn from the posterior (seeded; see `sample_seed`)
  attrs of /: method, run, split, lambda_ig, num_samples, sample_seed, data (e.g. "MNIST + FSDD
      (6 speakers)"), config (the run config as JSON), train_wall_seconds, train_cpu_seconds,
      train_steps (read from the checkpoint, so fixed by it)
  attrs of /<view>: store (feature-store path), corpus, modality
Beside it, <run>.export.json: {"export_wall_seconds": ...}. The clock reading stays out of the
HDF5 file so that exporting the same checkpoint again gives the same bytes.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from vgs.errors import CheckpointError
from vgs.methods.leidal2017.config import METHOD, RunConfig, embeddings_path, model_dir
from vgs.methods.leidal2017.data import LeidalData
from vgs.methods.leidal2017.train import build_model
from vgs.params import Params
from vgs.store.embeddings import export_timing_path, write_embeddings
from vgs.train.device import current
from vgs.train.trainer import load_finished_checkpoint
from vgs.utils.atomic import atomic_write_json


def load_trained(cfg: RunConfig, data: LeidalData, run_dir=None):
    """The finished model of a run, on the current compute device, and its checkpoint (loaded onto
    the CPU); CheckpointError if missing or unfinished."""
    ck = load_finished_checkpoint(run_dir or model_dir(cfg.run), cfg.fingerprint_config(), f"{METHOD}-train@{cfg.run}")
    model = build_model(cfg, data)
    model.load_state_dict(ck["task"]["model"])
    model.to(current().device)
    model.eval()
    return model, ck


@torch.no_grad()
def encode(model, data: LeidalData, modality: str, indices: np.ndarray, num_samples: int,
           rng: np.random.Generator, batch_size: int, progress: bool = True) -> dict:
    """Posterior mean, log-variance and `num_samples` draws for the given store indices.

    The draws and the reparameterisation run in NumPy on one thread: torch's CPU normal sampler
    and its threaded broadcast arithmetic have CPU-specific and thread-split code paths, and
    exports of one checkpoint once differed by 2e-4 in one thread's half of a batch. The encoders
    run on the current compute device; the draws stay in NumPy on every device.
    """
    compute = current()
    encoder = model.image if modality == "image" else model.audio
    fetch = data.images if modality == "image" else data.audio
    means, logvars, samples = [], [], []
    for start in tqdm(range(0, len(indices), batch_size), desc=f"encode {modality}", disable=not progress,
                      leave=False):
        with compute.autocast():
            posterior = encoder(compute.to(fetch(indices[start:start + batch_size])))
        mean, logvar = (t.float().cpu().numpy() for t in posterior)
        eps = rng.standard_normal((mean.shape[0], num_samples, mean.shape[1]), dtype=np.float32)
        means.append(mean)
        logvars.append(logvar)
        samples.append(mean[:, None, :] + np.exp(np.float32(0.5) * logvar)[:, None, :] * eps)
    return {"mean": np.concatenate(means), "logvar": np.concatenate(logvars), "samples": np.concatenate(samples)}


def encode_split(model, data: LeidalData, split: str, num_samples: int, seed: int, batch_size: int = 500,
                 progress: bool = True) -> dict[str, dict]:
    """Both views of `split` as embedding-file view dicts (ids, labels, index, mean, logvar, samples)."""
    rng = np.random.default_rng(sample_seed(seed))
    views = {}
    for modality, store in (("image", data.image_store), ("audio", data.audio_store)):
        idx = store.indices(split)
        if len(idx) == 0:
            raise CheckpointError(f"{store.path} has no {split!r} items to export")
        views[modality] = {"ids": store.ids[idx], "labels": store.labels[idx], "index": idx,
                           **encode(model, data, modality, idx, num_samples, rng, batch_size, progress)}
    return views


def sample_seed(seed: int) -> int:
    return int(np.random.default_rng([seed, 3]).integers(2**62))


def export_run(cfg: RunConfig, data: LeidalData | None = None, out_path=None, run_dir=None,
               progress: bool = True) -> dict:
    started = time.perf_counter()
    data = data or LeidalData(cfg.data, cfg.model.num_frames)
    model, ck = load_trained(cfg, data, run_dir)
    e = cfg.export
    views = encode_split(model, data, e.split, e.num_samples, cfg.seed, e.batch_size, progress)
    out_path = out_path or embeddings_path(cfg.run)
    attrs = {"method": METHOD, "run": cfg.run, "split": e.split, "lambda_ig": cfg.lambda_ig,
             "num_samples": e.num_samples, "sample_seed": sample_seed(cfg.seed), "data": data.describe(),
             "config": cfg.to_dict(), "train_wall_seconds": float(ck["elapsed_seconds"]),
             "train_cpu_seconds": float(ck["task"].get("cpu_seconds", 0.0)),
             "train_steps": int(ck["task"].get("steps", 0))}
    view_attrs = {"image": {"store": str(data.image_store.path), "corpus": data.image_store.corpus,
                            "modality": "image"},
                  "audio": {"store": str(data.audio_store.path), "corpus": data.audio_store.corpus,
                            "modality": "audio"}}
    write_embeddings(out_path, views, attrs, view_attrs, compression=None)
    timing = {"export_wall_seconds": round(time.perf_counter() - started, 2)}
    atomic_write_json(export_timing_path(out_path), timing)
    return {"path": str(out_path), **{m: len(v["ids"]) for m, v in views.items()}, **attrs, **timing}


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage leidal2017-export@<run>: posteriors and 16 sampled embeddings per test input ->
    data/embeddings/leidal2017/<run>.h5."""
    from vgs.methods.leidal2017.config import load_run_config
    cfg = load_run_config(params, run)
    s = export_run(cfg, progress=progress)
    return (f"{s['path']}: {s['image']} images + {s['audio']} utterances of split {s['split']} "
            f"x {s['num_samples']} samples ({s['data']}), {s['export_wall_seconds']:.0f} s")
