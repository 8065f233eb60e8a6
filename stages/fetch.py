"""DVC stage fetch@<corpus>: MNIST or FSDD into data/raw/<corpus>/, verified by sha256."""
import argparse

from vgs.corpora.fetch import fetch_corpus, resolve_mirror
from vgs.params import Params
from vgs.paths import raw_dir
from vgs.utils.entry import friendly_errors, repo_root


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("corpus", choices=["mnist", "fsdd"])
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = Params.load(args.params)
    mirror = resolve_mirror(params.str("data.mirror", "auto", allow_none=True), repo_root())
    upstream = params.str(f"data.upstream.{args.corpus}", None, allow_none=True)
    fetch_corpus(args.corpus, raw_dir(args.corpus), mirror=mirror, upstream=upstream)


if __name__ == "__main__":
    main()
