"""DVC stage mortazavi2020-evaluate@<run>: recall@1/5/10 both ways on the test pairs, from the
exported files, beside the corpus's oracle -> data/eval/mortazavi2020/<run>.json."""
import argparse

from vgs.methods.mortazavi2020.config import eval_path, load_run_config
from vgs.methods.mortazavi2020.evaluate import evaluate_run
from vgs.params import Params
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    cfg = load_run_config(Params.load(args.params), args.run)
    r = evaluate_run(cfg)["recall"]
    print(f"{eval_path(cfg.run)}: R@10 image->speech {r['a2b_R10']:.3f}, speech->image {r['b2a_R10']:.3f} "
          f"on {r['n']} test pairs")


if __name__ == "__main__":
    main()
