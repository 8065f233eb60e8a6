"""DVC stage leidal2017-evaluate@<run>: purity, modality SVM and t-SNE of one run -> data/eval/leidal2017/<run>.json."""
import argparse

from vgs.methods.leidal2017.config import eval_path, load_run_config
from vgs.methods.leidal2017.evaluate import evaluate_run
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
    print(f"{eval_path(cfg.run)}: lambda_IG={cfg.lambda_ig:g} purity {r['purity']:.3f}, "
          f"modality SVM accuracy {r['svm_acc']:.3f} ({r['timing']['evaluate_wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
