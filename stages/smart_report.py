"""DVC stage smart-report: results/smart (table1.csv, conversions.png, metrics.json, report.md)."""
import argparse

from vgs.methods.smart.report import write_report
from vgs.params import Params
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    out = write_report(Params.load(args.params))
    print(f"{out}: table1.csv, conversions.png, metrics.json, report.md")


if __name__ == "__main__":
    main()
