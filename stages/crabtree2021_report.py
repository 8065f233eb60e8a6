"""DVC stage crabtree2021-report: Tables 3.1-5.1 (thesis beside ours), the noise floor, the six
findings, figures, metrics.json, details.json and report.md in results/crabtree2021/."""
import argparse

from vgs.methods.crabtree2021.config import load_run_config, report_settings, run_names
from vgs.methods.crabtree2021.report import SHARED_RUNS, build_report
from vgs.params import Params
from vgs.paths import results_dir
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    names = run_names(params)
    configs = [load_run_config(params, run) for run in names]
    # Table 5.1's parameter counts at paper scale: the same runs under the paper profile (not trained).
    paper = Params({**params.data, "profile": "paper"}, "", params.source)
    paper_configs = {run: load_run_config(paper, run) for run in SHARED_RUNS if run in names}
    out = build_report(configs, report_settings(params), paper_configs=paper_configs)
    print(f"{results_dir('crabtree2021')}/: report.md, table*.csv, validation*.png, table3_3_bars.png, tsne.png, "
          "metrics.json, details.json")
    for run, m in out["metrics"].items():
        if run != "noise_floor":
            print(f"  {run:>16}  mean avgR10 (%) image {m['image_avgR10']:.2f}  cross-lingual {m['crosslingual_avgR10']:.2f}")
    for f in out["findings"]:
        print(f"  {f['finding'][:70]}: {f['verdict']}")


if __name__ == "__main__":
    main()
