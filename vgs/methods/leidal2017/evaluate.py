"""Evaluation of one exported Leidal run with the shared suite (vgs.eval.suite).

Protocol (README "Evaluation"): every test utterance and an equal, class-balanced number of MNIST
test images (300 each with FSDD), all 16 posterior samples of each, go into k-means purity (k=10);
the modality SVM draws 1,076 of those samples per modality (1,600 train / 552 test); the t-SNE
uses 200 class-balanced samples per modality in one joint projection.
"""
from __future__ import annotations

import time

from vgs.eval.suite import evaluate_file
from vgs.methods.leidal2017.config import RunConfig, embeddings_path, eval_path
from vgs.params import Params
from vgs.store.embeddings import read_embedding_attrs, read_export_timing
from vgs.utils.atomic import atomic_write_json


def evaluate_run(cfg: RunConfig, in_path=None, out_path=None) -> dict:
    started = time.perf_counter()
    in_path = in_path or embeddings_path(cfg.run)
    attrs = read_embedding_attrs(in_path)
    v = cfg.eval
    metrics = evaluate_file(in_path, "samples", views=["image", "audio"], inputs_per_modality=v.inputs_per_modality,
                            seed=cfg.seed, k=v.kmeans_k, svm_per_modality=v.svm_per_modality, svm_train=v.svm_train,
                            tsne_per_modality=v.tsne_per_modality)
    result = {"run": cfg.run, "lambda_ig": cfg.lambda_ig, "profile": cfg.profile, "data": attrs.get("data"),
              "split": attrs.get("split"), **metrics,
              "timing": {"train_wall_seconds": attrs.get("train_wall_seconds"),
                         "train_cpu_seconds": attrs.get("train_cpu_seconds"),
                         "train_steps": attrs.get("train_steps"),
                         "export_wall_seconds": read_export_timing(in_path).get("export_wall_seconds"),
                         "evaluate_wall_seconds": round(time.perf_counter() - started, 2)}}
    atomic_write_json(out_path or eval_path(cfg.run), result)
    return result


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage leidal2017-evaluate@<run>: k-means purity and the modality SVM ->
    data/eval/leidal2017/<run>.json."""
    from vgs.methods.leidal2017.config import eval_path, load_run_config
    cfg = load_run_config(params, run)
    r = evaluate_run(cfg)
    return (f"{eval_path(cfg.run)}: lambda_IG={cfg.lambda_ig:g} purity {r['purity']:.3f}, "
            f"modality SVM accuracy {r['svm_acc']:.3f} ({r['timing']['evaluate_wall_seconds']:.0f} s)")
