"""DVC stage leidal2017-report: Table 1, Figures 2-3, metrics.json and report.md in results/leidal2017/."""
import argparse

from vgs.methods.leidal2017.config import load_run_config, run_names
from vgs.methods.leidal2017.report import build_report
from vgs.params import Params
from vgs.paths import results_dir
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    configs = [load_run_config(params, run) for run in run_names(params)]
    metrics = build_report(configs)
    print(f"{results_dir('leidal2017')}/: table1.csv, figure2_tsne.png, figure3.png, metrics.json, report.md")
    for run, m in metrics["runs"].items():
        print(f"  {run:>10}  lambda_IG={m['lambda_ig']:<9g} purity {m['purity']:.3f}  SVM {m['svm_acc']:.3f}")
    for name, met in metrics["targets_met"].items():
        print(f"  {name}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
