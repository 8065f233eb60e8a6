"""Evaluation of one exported Crabtree run: recall@1/5/10 in both directions and their mean (the
thesis's avgR@k, Sec. 3.1.3) for every view pair on the test datapoints, computed from the
embedding file alone (vgs/eval/retrieval.py), beside the corpus's oracle (vgs/eval/oracle.py):
image-caption oracle per language, caption-caption oracle per language pair."""
from __future__ import annotations

import time

from vgs.errors import StoreError
from vgs.eval.oracle import caption_caption_oracle, image_caption_oracle
from vgs.eval.retrieval import recall_all_pairs, zero_vector_counts
from vgs.methods.crabtree2021.config import METHOD, RunConfig, embeddings_dir, eval_path, pair_key, recall_summary
from vgs.params import Params
from vgs.store.embeddings import read_embeddings, read_export_timing
from vgs.store.feature_store import FeatureStore
from vgs.utils.atomic import atomic_write_json

KS = (1, 5, 10)


def oracle_rows(cfg: RunConfig, test: dict) -> dict[str, dict | None]:
    """{pair: oracle RecallResult row or None (no scene labels)} for every view pair."""
    image_view, langs = cfg.data.image_view, list(cfg.data.caption_views)
    ids = test[image_view]["ids"]
    corpus = FeatureStore(test[image_view]["attrs"]["store"]).corpus
    texts = {lang: FeatureStore(test[lang]["attrs"]["store"]).transcripts[test[lang]["index"]] for lang in langs}
    out = {}
    for lang in langs:
        r = image_caption_oracle(cfg.data.corpus_root, corpus, ids, texts[lang], lang, ks=KS)
        out[pair_key(image_view, lang)] = None if r is None else r.as_row()
    for i, a in enumerate(langs):
        for b in langs[i + 1:]:
            r = caption_caption_oracle(cfg.data.corpus_root, corpus, ids, texts[a], a, texts[b], b, ks=KS)
            out[pair_key(a, b)] = None if r is None else r.as_row()
    return out


def evaluate_run(cfg: RunConfig, in_dir=None, out_path=None) -> dict:
    started = time.perf_counter()
    in_dir = in_dir or embeddings_dir(cfg.run)
    views = cfg.data.views
    test = read_embeddings(in_dir / "test.h5", views)
    ids = list(test[views[0]]["ids"])
    for v in views[1:]:
        if list(test[v]["ids"]) != ids:
            raise StoreError(f"{in_dir}/test.h5: views {views[0]!r} and {v!r} are not aligned by datapoint id",
                             hint=f"re-export: dvc repro {METHOD}-export@{cfg.run}")
    embeddings = {v: test[v]["embedding"] for v in views}
    # Zero embeddings (all-off ReLU features, average-pooled) are scored at chance, and counted.
    results = recall_all_pairs(embeddings, ks=KS, zero_vectors="tie")
    recall = {pair: r.as_row() for pair, r in results.items()}
    oracle = oracle_rows(cfg, test)
    attrs = test["attrs"]
    m = cfg.model
    result = {
        "run": cfg.run, "seed": cfg.seed, "profile": cfg.profile,
        "loss": {"name": cfg.loss.name, **cfg.loss.params}, "scheme": cfg.train.scheme, "pooling": m.pooling,
        "encoders": m.encoders, "language_conditioning": m.language_conditioning, "lr": cfg.train.lr,
        "dropout": m.dropout, "embedding_norm": m.embedding_norm,
        "test_pairs": len(ids), "zero_embeddings": zero_vector_counts(embeddings), "recall": recall, "summary": recall_summary(recall, cfg.data),
        "oracle": oracle,
        "oracle_summary": None if any(v is None for v in oracle.values()) else recall_summary(oracle, cfg.data),
        "best_epoch": attrs["best_epoch"], "val_avgR10": attrs["val_avgR10"], "history": attrs.get("history", []),
        "parameters": attrs.get("parameters"), "data": attrs["data"], "synthetic": attrs.get("synthetic", {}),
        "timing": {"train_wall_seconds": attrs["train_wall_seconds"], "train_cpu_seconds": attrs["train_cpu_seconds"],
                   "train_steps": attrs["train_steps"], "train_started_at": attrs.get("train_started_at"),
                   "export_wall_seconds": read_export_timing(in_dir).get("export_wall_seconds"),
                   "evaluate_wall_seconds": round(time.perf_counter() - started, 2)},
    }
    atomic_write_json(out_path or eval_path(cfg.run), result)
    return result


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage crabtree2021-evaluate@<run>: recall@1/5/10 of every view pair on the test
    datapoints, beside the corpus's oracle -> data/eval/crabtree2021/<run>.json."""
    from vgs.methods.crabtree2021.config import eval_path, load_run_config
    cfg = load_run_config(params, run)
    r = evaluate_run(cfg)
    s = r["summary"]
    return (f"{eval_path(cfg.run)}: mean avgR10 image pairs {s['image']:.3f}, cross-lingual "
            f"{s['crosslingual']:.3f} on {r['test_pairs']} test datapoints")
