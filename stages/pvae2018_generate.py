"""DVC stage pvae2018-generate: Figures 4-5 (style transfer, cross-modal generation) from the PVAE model."""
import argparse

import torch

from vgs.methods.pvae2018 import RESULTS, model_dir
from vgs.methods.pvae2018.config import load_data_config
from vgs.methods.pvae2018.data import DigitData, stats_from_model
from vgs.methods.pvae2018.generate import generation_figures
from vgs.methods.pvae2018.inference import load_trained
from vgs.params import Params
from vgs.utils.atomic import atomic_write_json
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="pvae", help="a pvae-kind key of pvae2018.models")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    model, _ = load_trained(model_dir(args.model))
    if model.spec.kind != "pvae":
        from vgs.errors import VgsError
        raise VgsError(f"generation figures need a PVAE model (z_s plus style latents); {args.model} is {model.spec.kind}")
    data = DigitData(load_data_config(params))
    data.stats = stats_from_model(model)
    torch.manual_seed(params.int("seed"))
    used = generation_figures(model, data, RESULTS, seed=params.int("seed"))
    atomic_write_json(RESULTS / "generate.json", {"model": args.model, "examples": used})
    print(f"{RESULTS}: " + ", ".join(used))


if __name__ == "__main__":
    main()
