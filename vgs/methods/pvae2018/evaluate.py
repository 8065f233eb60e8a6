"""Evaluate one model's exported latents: Table 1 purity, Figure 3 inertia, appendix C t-SNE.

Per split and modality, k-means (k=10) purity of the unimodal posterior means of every latent,
over every item of the split (FSDD test: 300 utterances; MNIST test: 10,000 images). For models
with a shared latent z_s also:
  inertia   k-means inertia for k = 1..inertia_max_k of z_s, per modality (test split)
  tsne      2-D t-SNE of z_s pooled over both modalities (one joint fit), of z_a and of z_i
            (class-balanced test samples)
  pooled    the shared suite (vgs.eval.suite) on z_s of both modalities together: joint purity
            and the modality SVM, how well z_s hides which modality it came from
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vgs.errors import ParamError
from vgs.eval.clustering import inertia_curve, kmeans_purity
from vgs.eval.suite import evaluate_views
from vgs.eval.tsne import balanced_sample, joint_tsne
from vgs.params import Params
from vgs.store.embeddings import read_embeddings

MEAN = "_mean"


@dataclass(frozen=True)
class EvalConfig:
    k: int
    kmeans_n_init: int
    inertia_max_k: int
    tsne_audio_points: int
    tsne_image_points: int
    tsne_perplexity: float
    purity_splits: tuple


def load_eval_config(params: Params) -> EvalConfig:
    e = params.section("pvae2018.eval")
    splits = tuple(e.list("purity_splits"))
    bad = [s for s in splits if s not in ("train", "val", "test")]
    if bad or not splits:
        raise ParamError(f"{e.key('purity_splits')} must list splits among train, val, test, got {splits!r}")
    return EvalConfig(k=e.int("k", min=2), kmeans_n_init=e.int("kmeans_n_init", min=1),
                      inertia_max_k=e.int("inertia_max_k", min=2), tsne_audio_points=e.int("tsne_audio_points", min=10),
                      tsne_image_points=e.int("tsne_image_points", min=10),
                      tsne_perplexity=e.float("tsne_perplexity", min=1), purity_splits=splits)


def latents_of(view: dict) -> list[str]:
    return [k[:-len(MEAN)] for k in view if k.endswith(MEAN)]


def purity_table(emb: dict, cfg: EvalConfig, seed: int) -> dict:
    """{modality: {latent: purity}} for one split's embedding file contents."""
    out = {}
    for m in (k for k in emb if k != "attrs"):
        view = emb[m]
        out[m] = {lat: kmeans_purity(view[lat + MEAN], view["labels"], k=cfg.k, seed=seed, n_init=cfg.kmeans_n_init)
                  for lat in latents_of(view)}
    return out


def evaluate_model(emb_dir: str | Path, cfg: EvalConfig, seed: int) -> dict:
    emb_dir = Path(emb_dir)
    t0 = time.process_time()
    result: dict = {"purity": {}, "counts": {}}
    test = None
    for split in cfg.purity_splits:
        emb = read_embeddings(emb_dir / f"{split}.h5")
        result["purity"][split] = purity_table(emb, cfg, seed)
        result["counts"][split] = {m: int(len(emb[m]["labels"])) for m in emb if m != "attrs"}
        if split == "test":
            test = emb
    test = test or read_embeddings(emb_dir / "test.h5")
    result["model"] = test["attrs"].get("run")
    if all("z_s" + MEAN in test[m] for m in ("audio", "image") if m in test) and "audio" in test and "image" in test:
        result.update(shared_latent_analysis(test, cfg, seed))
    result["cpu_seconds"] = round(time.process_time() - t0, 1)
    return result


def shared_latent_analysis(test: dict, cfg: EvalConfig, seed: int) -> dict:
    audio, image = test["audio"], test["image"]
    ks = range(1, cfg.inertia_max_k + 1)
    inertia = {m: inertia_curve(test[m]["z_s" + MEAN], ks=ks, seed=seed, n_init=cfg.kmeans_n_init)
               for m in ("audio", "image")}
    pa = balanced_sample(audio["labels"], cfg.tsne_audio_points, seed=seed)
    pi = balanced_sample(image["labels"], cfg.tsne_image_points, seed=seed)
    tsne = {}
    za, zi = joint_tsne([audio["z_s" + MEAN][pa], image["z_s" + MEAN][pi]], seed=seed,
                        perplexity=cfg.tsne_perplexity)
    tsne["z_s"] = {"audio": _points(za, audio["labels"][pa]), "image": _points(zi, image["labels"][pi])}
    for m, lat, pick in (("audio", "z_a", pa), ("image", "z_i", pi)):
        if lat + MEAN in test[m]:
            (xy,) = joint_tsne([test[m][lat + MEAN][pick]], seed=seed, perplexity=cfg.tsne_perplexity)
            tsne[lat] = {m: _points(xy, test[m]["labels"][pick])}
    pooled = evaluate_views({"audio": {"labels": audio["labels"], "z_s": audio["z_s" + MEAN]},
                             "image": {"labels": image["labels"], "z_s": image["z_s" + MEAN]}},
                            sample_key="z_s", seed=seed, k=cfg.k, tsne_per_modality=None,
                            kmeans_init=cfg.kmeans_n_init)
    return {"inertia": {m: {str(k): v for k, v in c.items()} for m, c in inertia.items()}, "tsne": tsne,
            "pooled_z_s": {k: pooled[k] for k in ("purity", "purity_within", "svm_acc", "svm", "inputs")}}


def _points(xy: np.ndarray, labels: np.ndarray) -> dict:
    return {"xy": np.round(xy, 4).tolist(), "labels": np.asarray(labels).astype(int).tolist()}


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage pvae2018-evaluate@<model>: k-means purity of every latent ->
    data/eval/pvae2018/<model>.json."""
    from vgs.methods.pvae2018.config import embeddings_dir, eval_path
    from vgs.utils.atomic import atomic_write_json
    result = evaluate_model(embeddings_dir(run), load_eval_config(params), seed=params.int("seed"))
    result["model"] = run
    atomic_write_json(eval_path(run), result)
    test = result["purity"].get("test", {})
    return (f"{eval_path(run)}: test purity " + "; ".join(
        f"{m} " + ", ".join(f"{lat} {v:.4f}" for lat, v in lats.items()) for m, lats in test.items())
        + f" ({result['cpu_seconds']} CPU s)")
