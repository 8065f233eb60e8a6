"""DVC stage pvae2018-evaluate@<model>: purity, inertia, t-SNE -> data/eval/pvae2018/<model>.json."""
import argparse

from vgs.methods.pvae2018 import embeddings_dir, eval_path
from vgs.methods.pvae2018.evaluate import evaluate_model, load_eval_config
from vgs.params import Params
from vgs.utils.atomic import atomic_write_json
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="a key of pvae2018.models in params.yaml")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    result = evaluate_model(embeddings_dir(args.model), load_eval_config(params), seed=params.int("seed"))
    result["model"] = args.model
    atomic_write_json(eval_path(args.model), result)
    test = result["purity"].get("test", {})
    print(f"{eval_path(args.model)}: test purity " + "; ".join(
        f"{m} " + ", ".join(f"{lat} {v:.4f}" for lat, v in lats.items()) for m, lats in test.items())
        + f" ({result['cpu_seconds']} CPU s)")


if __name__ == "__main__":
    main()
