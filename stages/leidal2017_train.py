"""DVC stage leidal2017-train@<run>: train one lambda_IG run from scratch, or resume it after a kill
(vgs/train/provenance.py says when)."""
import argparse

from vgs.methods.leidal2017.config import load_run_config, model_dir
from vgs.methods.leidal2017.train import train_run
from vgs.params import Params
from vgs.train.provenance import stage_provenance
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", help="a key of leidal2017.runs in params.yaml, e.g. ig2p15e-2")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_run_config(Params.load(args.params), args.run)
    s = train_run(cfg, progress=not args.no_progress, provenance=stage_provenance(f"leidal2017-train@{args.run}"))
    print(f"{model_dir(cfg.run)}: lambda_IG={cfg.lambda_ig:g}, {s['steps']} steps, "
          f"{s['elapsed_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU (profile {cfg.profile})")


if __name__ == "__main__":
    main()
