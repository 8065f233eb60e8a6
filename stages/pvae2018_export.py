"""DVC stage pvae2018-export@<model>: unimodal posteriors -> data/embeddings/pvae2018/<model>/<split>.h5."""
import argparse
import time

import torch

from vgs.methods.pvae2018 import PAPER_ID, embeddings_dir, model_dir
from vgs.methods.pvae2018.config import load_data_config
from vgs.methods.pvae2018.data import DigitData, stats_from_model
from vgs.methods.pvae2018.export import export_split
from vgs.methods.pvae2018.inference import load_trained
from vgs.params import Params
from vgs.utils.atomic import atomic_path
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="a key of pvae2018.models in params.yaml")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    splits = params.list("pvae2018.export.splits")
    start = time.process_time()
    model, ck = load_trained(model_dir(args.model))
    data = DigitData(load_data_config(params))
    data.stats = stats_from_model(model)  # normalise exactly as in training
    attrs = {"method": PAPER_ID, "run": args.model, "config": ck["config"], "fingerprint": ck["fingerprint"]}
    with torch.no_grad(), atomic_path(embeddings_dir(args.model)) as tmp:
        tmp.mkdir(parents=True)
        for split in splits:
            counts = export_split(model, data, split, tmp / f"{split}.h5", attrs)
            print(f"{embeddings_dir(args.model)}/{split}.h5: " + ", ".join(f"{m} {n}" for m, n in counts.items()))
    print(f"export {args.model}: {time.process_time() - start:.1f} CPU s")


if __name__ == "__main__":
    main()
