"""DVC stage pairs@<name>: per-epoch same-class pairs (or K-view tuples) at data/pairs/<name>.zarr."""
import argparse

from vgs.pairing import View, build_pairs
from vgs.params import Params
from vgs.paths import pairs_path
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    p = params.section(f"pairing.{args.name}")
    views = []
    for i, v in enumerate(p.list("views")):
        vp = Params(v, f"{p.key('views')}[{i}]", params.source)
        views.append(View(vp.str("name"), vp.str("store")))
    ep = p.section("epochs")
    epochs = {split: ep.int(split, min=1) for split in ep.keys()}
    summary = build_pairs(views, pairs_path(args.name), seed=params.int("seed"), epochs=epochs)
    print(f"{pairs_path(args.name)}: " + ", ".join(f"{s}: {v['tuples']} x {v['epochs']} epochs"
                                                     for s, v in summary.items()))


if __name__ == "__main__":
    main()
