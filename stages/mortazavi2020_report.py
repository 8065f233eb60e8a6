"""DVC stage mortazavi2020-report: Table 1 (parameter counts), Table 2 (recall), the schedule
comparison, Figure 2, metrics.json and report.md in results/mortazavi2020/."""
import argparse

from vgs.methods.mortazavi2020.config import load_run_config, run_names
from vgs.methods.mortazavi2020.report import build_report
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
    out = build_report(configs)
    print(f"{results_dir('mortazavi2020')}/: table1.csv, table2.csv, schedules.csv, figure2.png, metrics.json, report.md")
    for run, m in out["metrics"].items():
        print(f"  {run:>18}  R@10 image->speech {m['i2s_R10']:.3f}  speech->image {m['s2i_R10']:.3f}")
    for c in out["claims"]:
        print(f"  {c['claim']}: {'yes' if c['holds'] else 'no'}")


if __name__ == "__main__":
    main()
