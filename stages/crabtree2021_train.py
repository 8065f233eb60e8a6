"""DVC stage crabtree2021-train@<run>: train one configuration (image ResNet + ResDAVEnet speech
encoders) from scratch, or resume it after a kill (vgs/train/provenance.py says when)."""
import argparse

from vgs.methods.crabtree2021.config import load_run_config, model_dir
from vgs.methods.crabtree2021.train import train_run
from vgs.params import Params
from vgs.train.provenance import stage_provenance
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", help="a key of crabtree2021.runs in params.yaml, e.g. baseline")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_run_config(Params.load(args.params), args.run)
    s = train_run(cfg, progress=not args.no_progress, provenance=stage_provenance(f"crabtree2021-train@{args.run}"))
    best = s["task"].best
    print(f"{model_dir(cfg.run)}: {cfg.loss.name}, {cfg.model.pooling} pooling, {cfg.train.scheme}, "
          f"{cfg.model.encoders} encoders, {s['steps']} steps, best epoch {best['epoch'] + 1} (val mean avgR10 "
          f"{best['val_avgR10']:.3f}), {s['elapsed_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU "
          f"(profile {cfg.profile})")


if __name__ == "__main__":
    main()
