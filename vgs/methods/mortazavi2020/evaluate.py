"""Evaluation of one exported Mortazavi run: recall@1/5/10 in both directions on the test pairs,
computed from the embedding file alone, beside the corpus's oracle recall (vgs/eval/oracle.py).
A run with a warm restart is also scored at the best epoch of its first phase (`base`: the run as
it would have ended without the restart)."""
from __future__ import annotations

import time

from vgs.eval.oracle import image_caption_oracle
from vgs.eval.retrieval import recall_at_k
from vgs.methods.mortazavi2020.config import RunConfig, embeddings_dir, eval_path
from vgs.params import Params
from vgs.store.embeddings import read_embeddings
from vgs.store.feature_store import FeatureStore
from vgs.utils.atomic import atomic_write_json

KS = (1, 5, 10)


def _test_recall(cfg: RunConfig, path):
    image_view, caption_view = cfg.data.image_view, cfg.data.caption_view
    test = read_embeddings(path, [image_view, caption_view])
    images, captions = test[image_view], test[caption_view]
    if list(images["ids"]) != list(captions["ids"]):
        from vgs.errors import StoreError
        raise StoreError(f"{path}: the image and caption views are not aligned by datapoint id",
                         hint=f"re-export: dvc repro mortazavi2020-export@{cfg.run}")
    return test, recall_at_k(images["embedding"], captions["embedding"], ks=KS, names=("image", "speech"))


def evaluate_run(cfg: RunConfig, in_dir=None, out_path=None) -> dict:
    started = time.perf_counter()
    in_dir = in_dir or embeddings_dir(cfg.run)
    image_view, caption_view = cfg.data.image_view, cfg.data.caption_view
    test, recall = _test_recall(cfg, in_dir / "test.h5")
    images, captions = test[image_view], test[caption_view]
    base = None
    if cfg.train.restart is not None:
        base_test, base_recall = _test_recall(cfg, in_dir / "test_base.h5")
        history = base_test["attrs"].get("history", [])
        base_epochs = [h for h in history if h.get("phase") == "base"]
        base = {"recall": base_recall.as_row(), "best_epoch": base_test["attrs"]["best_epoch"],
                "val_avgR10": base_test["attrs"]["val_avgR10"],
                "train_wall_seconds": base_epochs[-1].get("elapsed_seconds") if base_epochs else None}
    store = FeatureStore(captions["attrs"]["store"])
    texts = store.transcripts[captions["index"]]
    oracle = image_caption_oracle(cfg.data.corpus_root, FeatureStore(images["attrs"]["store"]).corpus,
                                  images["ids"], texts, caption_view, ks=KS)
    attrs = test["attrs"]
    result = {
        "run": cfg.run, "gru_layers": cfg.model.gru_layers, "dim": cfg.model.dim, "schedule": cfg.train.schedule,
        "restart": None if cfg.train.restart is None else {"epochs": cfg.train.restart.epochs,
                                                          "lr_factor": cfg.train.restart.lr_factor},
        "test_pairs": int(recall.n), "recall": recall.as_row(),
        "oracle": None if oracle is None else oracle.as_row(),
        "best_epoch": attrs["best_epoch"], "best_phase": attrs["best_phase"], "val_avgR10": attrs["val_avgR10"],
        "base": base,
        "data": attrs["data"], "synthetic_captions": bool(attrs["synthetic"]),
        "dropped_long_captions": attrs.get("dropped_long_captions"),
        "history": attrs.get("history", []), "parameters": attrs.get("parameters"),
        "timing": {"train_wall_seconds": attrs["train_wall_seconds"], "train_cpu_seconds": attrs["train_cpu_seconds"],
                   "train_steps": attrs["train_steps"], "evaluate_wall_seconds": round(time.perf_counter() - started, 2)},
    }
    atomic_write_json(out_path or eval_path(cfg.run), result)
    return result


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage mortazavi2020-evaluate@<run>: recall@1/5/10 both ways on the test pairs, from the
    exported files, beside the corpus's oracle -> data/eval/mortazavi2020/<run>.json."""
    from vgs.methods.mortazavi2020.config import eval_path, load_run_config
    cfg = load_run_config(params, run)
    r = evaluate_run(cfg)["recall"]
    return (f"{eval_path(cfg.run)}: R@10 image->speech {r['a2b_R10']:.3f}, speech->image {r['b2a_R10']:.3f} "
            f"on {r['n']} test pairs")
