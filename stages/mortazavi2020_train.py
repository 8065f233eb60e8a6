"""DVC stage mortazavi2020-train@<run>: train one encoder pair from scratch, or resume it after a kill
(vgs/train/provenance.py says when)."""
import argparse

from vgs.methods.mortazavi2020.config import load_run_config, model_dir
from vgs.methods.mortazavi2020.train import train_run
from vgs.params import Params
from vgs.train.provenance import stage_provenance
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", help="a key of mortazavi2020.runs in params.yaml, e.g. dg3a1024")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_run_config(Params.load(args.params), args.run)
    s = train_run(cfg, progress=not args.no_progress, provenance=stage_provenance(f"mortazavi2020-train@{args.run}"))
    best = s["task"].best
    print(f"{model_dir(cfg.run)}: G{cfg.model.gru_layers} d={cfg.model.dim}, {s['steps']} steps, best epoch "
          f"{best['epoch'] + 1} (val avg R@10 {best['val_r10']:.3f}), {s['elapsed_seconds']:.0f} s wall, "
          f"{s['cpu_seconds']:.0f} s CPU (profile {cfg.profile})")


if __name__ == "__main__":
    main()
