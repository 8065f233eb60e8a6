"""DVC stage crabtree2021-evaluate@<run>: recall@1/5/10 both ways (and their mean, avgR@k) for every
view pair on the test datapoints, from the exported files, beside the corpus's oracle
-> data/eval/crabtree2021/<run>.json."""
import argparse

from vgs.methods.crabtree2021.config import eval_path, load_run_config
from vgs.methods.crabtree2021.evaluate import evaluate_run
from vgs.params import Params
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    cfg = load_run_config(Params.load(args.params), args.run)
    r = evaluate_run(cfg)
    s = r["summary"]
    print(f"{eval_path(cfg.run)}: mean avgR10 image pairs {s['image']:.3f}, cross-lingual {s['crosslingual']:.3f} "
          f"on {r['test_pairs']} test datapoints")


if __name__ == "__main__":
    main()
