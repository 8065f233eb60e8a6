"""DVC stage features@<corpus>-<config>: a Zarr feature store at data/features/<corpus>/<config>.zarr."""
import argparse
import time

from vgs.corpora.manifest import read_manifest
from vgs.features.config import load_feature_config
from vgs.features.extract import ON_ERROR, build_store
from vgs.params import Params
from vgs.paths import manifest_path, store_path
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("corpus")
    ap.add_argument("config")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    cfg = load_feature_config(params, args.config)
    manifest = read_manifest(manifest_path(args.corpus))
    start = time.perf_counter()
    summary = build_store(manifest, manifest_path(args.corpus), cfg, store_path(args.corpus, args.config),
                          num_workers=params.int("features.num_workers", 2, min=1),
                          on_error=params.str("features.on_error", "raise", choices=ON_ERROR))
    print(f"{summary['store']}: {summary['items']} items, {summary['frames']} frames, "
          f"{summary['rejected']} rejected, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
