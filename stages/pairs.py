"""DVC stages pairs@<name> and instance-pairs@<name>: per-epoch same-class pairs, or an image bound to
its own captions (`mode: instance`), as K-view tuples at data/pairs/<name>.zarr."""
import argparse

from vgs.pairing.instance import build_instance_pairs, check_stores_under
from vgs.pairing.pairs import View, build_pairs
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
    section = "pairing" if params.has(f"pairing.{args.name}") else "instance_pairing"
    p = params.section(f"{section}.{args.name}")
    mode = p.str("mode", "class", choices=("class", "instance"))
    views = []
    for i, v in enumerate(p.list("views")):
        vp = Params(v, f"{p.key('views')}[{i}]", params.source)
        views.append(View(vp.str("name"), vp.str("store")))
    if section == "instance_pairing":
        check_stores_under(views, p.str("features_dir"), p.key("features_dir"))
    ep = p.section("epochs")
    epochs = {split: ep.int(split, min=1) for split in ep.keys()}
    build = build_instance_pairs if mode == "instance" else build_pairs
    summary = build(views, pairs_path(args.name), seed=params.int("seed"), epochs=epochs)
    print(f"{pairs_path(args.name)}: " + ", ".join(
        f"{s}: {v['tuples']} x {v['epochs']} epochs" + (f" ({v['left_out']} left out)" if v.get("left_out") else "")
        for s, v in summary.items()))


if __name__ == "__main__":
    main()
