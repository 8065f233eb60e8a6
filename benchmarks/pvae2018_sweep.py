"""Side experiments behind the pvae2018 settings: one training run per variant, scored on VALIDATION.

Each variant is the `pvae2018` params (default profile) with `key=value` overrides. Training logs
the k-means purity (k=10) of every unimodal latent on the validation split every
`train.val_every` epochs (never the test split), plus the single-thread CPU time. The table in
vgs/methods/pvae2018/README.md ("What else we tried") comes from `--summarize` over these runs.

  python benchmarks/pvae2018_sweep.py run base
  python benchmarks/pvae2018_sweep.py run gamma1 kernel_gamma=1.0
  python benchmarks/pvae2018_sweep.py run nocontrast contrastive=0
  python benchmarks/pvae2018_sweep.py summarize /tmp/pvae2018_sweep/*
  python benchmarks/pvae2018_sweep.py run indep1000 zi_independence=1000

`zi_independence` is not part of the paper (objective.py; README: "Results and where they fall
short").

Overridable keys: epochs, batch_size, lr, val_every (train); coherence, contrastive, kernel_gamma,
margin, zi_independence (objective); hidden, latent_dim (net); image_std, vad_threshold_db (data);
model (a pvae2018.models key, default pvae).
"""
import argparse
import dataclasses
import json
from pathlib import Path

import torch

from vgs.methods.pvae2018.config import load_run_config
from vgs.methods.pvae2018.train import train_run
from vgs.params import Params

TRAIN_INT = ("epochs", "batch_size", "val_every")
TRAIN_FLOAT = ("lr", "grad_clip")
WEIGHTS = ("coherence", "contrastive", "kernel_gamma", "margin", "zi_independence")
NET = ("hidden", "latent_dim")


def configure(params: Params, overrides: list[str]):
    over = dict(kv.split("=", 1) for kv in overrides)
    cfg = load_run_config(params, over.pop("model", "pvae"))
    t, w, n, d = cfg.train, cfg.model.weights, cfg.net, cfg.data
    for k, v in over.items():
        if k in TRAIN_INT:
            t = dataclasses.replace(t, **{k: int(v)})
        elif k in TRAIN_FLOAT:
            t = dataclasses.replace(t, **{k: float(v)})
        elif k in WEIGHTS:
            w = dataclasses.replace(w, **{k: float(v)})
        elif k in NET:
            n = dataclasses.replace(n, **{k: int(v)})
        elif k == "image_std":
            d = dataclasses.replace(d, image_likelihood_std=None if v == "none" else float(v))
        elif k == "vad_threshold_db":
            d = dataclasses.replace(d, vad_threshold_db=float(v))
        else:
            raise SystemExit(f"unknown override {k!r} (see --help)")
    return dataclasses.replace(cfg, train=t, net=n, data=d, model=dataclasses.replace(cfg.model, weights=w))


def summarize(run_dirs: list[str]) -> None:
    print("| run | epoch | CPU s | speech z_s | image z_s | z_a | z_i |")
    print("|---|---|---|---|---|---|---|")
    for run in run_dirs:
        log = Path(run) / "train_log.jsonl"
        if not log.exists():
            continue
        rows = [r for r in map(json.loads, log.read_text().splitlines()) if "val_purity_audio_s" in r]
        for r in rows:
            print(f"| {Path(run).name} | {r['epoch'] + 1} | {r['cpu_seconds']:.0f} | {r['val_purity_audio_s']:.3f} | "
                  f"{r['val_purity_image_s']:.3f} | {r.get('val_purity_audio_a', float('nan')):.3f} | "
                  f"{r.get('val_purity_image_i', float('nan')):.3f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("name")
    run.add_argument("overrides", nargs="*", help="key=value")
    run.add_argument("--work", default="/tmp/pvae2018_sweep")
    run.add_argument("--params", default="params.yaml")
    run.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("summarize")
    s.add_argument("runs", nargs="+")
    args = ap.parse_args()
    if args.cmd == "summarize":
        return summarize(args.runs)
    torch.set_num_threads(args.threads)
    cfg = configure(Params.load(args.params), args.overrides)
    print(cfg)
    summary = train_run(cfg, Path(args.work) / args.name, progress=False, num_threads=args.threads)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
