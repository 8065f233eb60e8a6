"""DVC stage pvae2018-train@<model>: train one Table 1 model into data/models/pvae2018/<model>/.

Trains from scratch, or resumes after a kill (vgs/train/provenance.py says when).
"""
import argparse

from vgs.methods.pvae2018 import model_dir
from vgs.methods.pvae2018.config import load_run_config
from vgs.methods.pvae2018.train import train_run
from vgs.params import Params
from vgs.train.provenance import stage_provenance
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="a key of pvae2018.models in params.yaml")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_run_config(Params.load(args.params), args.model)
    s = train_run(cfg, model_dir(args.model), progress=not args.no_progress, num_threads=args.threads,
                  provenance=stage_provenance(f"pvae2018-train@{args.model}"))
    print(f"{model_dir(args.model)}: {s['epochs']} epochs ({cfg.profile} profile), {s['cpu_seconds']} CPU s, "
          f"{s['wall_seconds']} wall s, {s['torch_threads']} threads")


if __name__ == "__main__":
    main()
