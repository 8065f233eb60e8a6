"""DVC stage leidal2017-export@<run>: posteriors and 16 sampled embeddings per test input -> data/embeddings/leidal2017/<run>.h5."""
import argparse

from vgs.methods.leidal2017.config import load_run_config
from vgs.methods.leidal2017.export import export_run
from vgs.params import Params
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    cfg = load_run_config(Params.load(args.params), args.run)
    s = export_run(cfg, progress=not args.no_progress)
    print(f"{s['path']}: {s['image']} images + {s['audio']} utterances of split {s['split']} "
          f"x {s['num_samples']} samples ({s['data']}), {s['export_wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
