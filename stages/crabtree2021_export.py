"""DVC stage crabtree2021-export@<run>: val and test embeddings of all four views at the epoch chosen
on validation recall -> data/embeddings/crabtree2021/<run>/{val,test}.h5."""
import argparse

from vgs.methods.crabtree2021.config import embeddings_dir, load_run_config
from vgs.methods.crabtree2021.export import export_run
from vgs.params import Params
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    cfg = load_run_config(Params.load(args.params), args.run)
    s = export_run(cfg)
    print(f"{embeddings_dir(cfg.run)}: " + ", ".join(f"{split} {n} datapoints" for split, n in s.items()))


if __name__ == "__main__":
    main()
