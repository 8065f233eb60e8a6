"""DVC stage smart-judges: train the label classifiers that judge SMART's conversions (MLC for
images, GLC for audio) on labelled training data; report their test accuracy."""
import argparse

from vgs.methods.smart.judges import judges_dir, train_judges
from vgs.params import Params
from vgs.train.provenance import stage_provenance
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    out = train_judges(params, progress=not args.no_progress, provenance=stage_provenance("smart-judges"))
    print(f"{judges_dir()}: {out['data']} (profile {params.profile()})")
    for name in ("mlc", "glc"):
        s = out[name]
        print(f"  {name.upper()} ({s['corpus']}): val {s['val_acc']:.4f}, test {s['test_acc']:.4f} "
              f"on {s['test_items']} items; {s['wall_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU")


if __name__ == "__main__":
    main()
