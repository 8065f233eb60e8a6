"""DVC stage pvae2018-report: results/pvae2018 (table1.csv, figures, metrics.json, report.md)."""
import argparse
import json

from vgs.methods.pvae2018 import RESULTS, eval_path, model_dir
from vgs.methods.pvae2018.report import build_report, data_description, load_inputs
from vgs.params import Params
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    models = params.section("pvae2018.models").keys()
    evals, summaries = load_inputs(models, eval_path(models[0]).parent, model_dir(models[0]).parent)
    p = params.profiled("pvae2018")
    config = {"profile": params.profile(), "seed": params.int("seed"), **p.to_dict()}
    data = data_description(p.str("data.audio_store"), p.str("data.image_store"))
    gen = RESULTS / "generate.json"
    metrics = build_report(evals, summaries, RESULTS, data, config,
                           json.loads(gen.read_text()) if gen.exists() else None)
    print(f"{RESULTS}/report.md; targets: " + ", ".join(
        f"{k} {'met' if v['met'] else 'MISSED'}" for k, v in metrics["targets"].items()))


if __name__ == "__main__":
    main()
