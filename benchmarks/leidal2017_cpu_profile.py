"""Side experiment behind the Leidal CPU profile: learning rate and training length vs quality.

Trains Leidal runs with overridden lr / epochs / pairs_per_epoch for a few lambda_IG values and
scores each on the VALIDATION split (never test) with the shared suite: k-means purity and the
modality SVM, plus the single-thread CPU time of training. The numbers in
vgs/methods/leidal2017/README.md ("CPU profile") come from this script.

  python benchmarks/leidal2017_cpu_profile.py --lambdas 0 0.0215 --lrs 1e-5 1e-4 1e-3 \
      --epochs 5 --pairs-per-epoch 6400 --out /tmp/leidal_cpu_profile.json
"""
import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from vgs.eval.suite import evaluate_views
from vgs.methods.leidal2017.config import load_run_config
from vgs.methods.leidal2017.data import LeidalData
from vgs.methods.leidal2017.export import encode_split
from vgs.methods.leidal2017.train import LeidalTask, make_trainer
from vgs.params import Params


class ScoredTask(LeidalTask):
    """A LeidalTask that also scores validation purity / SVM after chosen epochs. Encoding and
    scoring use private seeded generators, so training proceeds exactly as without scoring."""

    def __init__(self, cfg, data, epochs):
        super().__init__(cfg, data)
        self.score_epochs = epochs
        self.scores = {}

    def end_epoch(self, epoch):
        logs = super().end_epoch(epoch)
        if epoch + 1 in self.score_epochs:
            views = encode_split(self.model.eval(), self.data, "val", 16, self.cfg.seed, progress=False)
            m = evaluate_views(views, tsne_per_modality=None, seed=self.cfg.seed)
            self.scores[epoch + 1] = {"steps": self.steps, "val_purity": round(m["purity"], 4),
                                      "val_svm_acc": round(m["svm_acc"], 4)}
            print(json.dumps({"epoch": epoch + 1, **self.scores[epoch + 1]}), flush=True)
            self.model.train()
        return logs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.0215])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-3])
    ap.add_argument("--epochs", type=int, nargs="+", default=[5])
    ap.add_argument("--pairs-per-epoch", type=int, default=6400)
    ap.add_argument("--samples", type=int, default=None, help="override num_samples")
    ap.add_argument("--batch-pairs", type=int, default=None, help="override batch_pairs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--lambda-warmup", type=int, nargs="+", default=[0],
                    help="lambda_ig_warmup_steps values to try")
    ap.add_argument("--lr-schedule", nargs="+", default=["step"], choices=["step", "cosine"])
    ap.add_argument("--lr-decay", type=float, default=None, help="override lr_decay (step schedule)")
    ap.add_argument("--lr-decay-every", type=int, default=None, help="override lr_decay_every_epochs")
    ap.add_argument("--eval-epochs", type=int, nargs="*", default=[],
                    help="also score validation purity/SVM after these epochs (1-based)")
    ap.add_argument("--work", default="/tmp/leidal_cpu_profile")
    ap.add_argument("--out", default="/tmp/leidal_cpu_profile.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = Params.load()
    base = load_run_config(params, "ig0")
    data = LeidalData(base.data, base.model.num_frames)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else []
    done = {r["name"] for r in results}
    grid = [(lam, lr, epochs, warmup, schedule) for lam in args.lambdas for lr in args.lrs for epochs in args.epochs
            for warmup in args.lambda_warmup for schedule in args.lr_schedule]
    for lam, lr, epochs, warmup, schedule in grid:
                name = f"lam{lam:g}-lr{lr:g}-ep{epochs}x{args.pairs_per_epoch}" + (
                    f"-s{args.samples}" if args.samples else "") + (
                    f"-b{args.batch_pairs}" if args.batch_pairs else "") + ("-bf16" if args.precision == "bf16" else "") + (
                    f"-warm{warmup}" if warmup else "") + ("-cos" if schedule == "cosine" else "") + (
                    f"-decay{args.lr_decay:g}every{args.lr_decay_every}" if args.lr_decay is not None else "")
                if name in done:
                    continue
                train = dataclasses.replace(base.train, lr=lr, epochs=epochs, pairs_per_epoch=args.pairs_per_epoch,
                                            num_threads=args.threads, precision=args.precision,
                                            num_samples=args.samples or base.train.num_samples,
                                            batch_pairs=args.batch_pairs or base.train.batch_pairs,
                                            lambda_ig_warmup_steps=warmup, lr_schedule=schedule,
                                            lr_decay=base.train.lr_decay if args.lr_decay is None else args.lr_decay,
                                            lr_decay_every_epochs=args.lr_decay_every or base.train.lr_decay_every_epochs)
                cfg = dataclasses.replace(base, run=name, lambda_ig=lam, train=train)
                run_dir = Path(args.work) / name
                shutil.rmtree(run_dir, ignore_errors=True)
                t0 = time.perf_counter()
                data.warm("train")
                task = ScoredTask(cfg, data, set(args.eval_epochs))
                trainer = make_trainer(cfg, progress=False, run_dir=run_dir)
                trainer.fit(task)
                wall = time.perf_counter() - t0
                model = task.model.eval()
                views = encode_split(model, data, "val", 16, cfg.seed, progress=False)
                e0 = time.process_time()
                metrics = evaluate_views(views, tsne_per_modality=None, seed=cfg.seed)
                epochs_log = [r for r in trainer.history if r.get("end")]
                summary = {"steps": task.steps, "cpu_seconds": task.cpu_seconds}
                row = {"name": name, "lambda_ig": lam, "lr": lr, "epochs": epochs,
                       "lambda_ig_warmup_steps": warmup, "lr_schedule": schedule,
                       "pairs_per_epoch": args.pairs_per_epoch,
                       "batch_pairs": cfg.train.batch_pairs, "steps": summary["steps"],
                       "train_cpu_seconds": round(summary["cpu_seconds"], 1), "train_wall_seconds": round(wall, 1),
                       "eval_cpu_seconds": round(time.process_time() - e0, 1),
                       "val_purity": round(metrics["purity"], 4), "val_svm_acc": round(metrics["svm_acc"], 4),
                       "val_purity_within": metrics["purity_within"],
                       "val_class_match": [round(r.get("val_class_match", float("nan")), 3) for r in epochs_log],
                       "val_ig": [round(r.get("val_ig", float("nan")), 2) for r in epochs_log],
                       "val_sim": [round(r.get("val_sim", float("nan")), 3) for r in epochs_log],
                       "scored_epochs": task.scores}
                print(json.dumps(row), flush=True)
                results.append(row)
                out.write_text(json.dumps(results, indent=1))
                shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
