"""DVC stage prepare@<corpus>: the corpus's manifest at data/manifests/<corpus>.jsonl."""
import argparse
from collections import Counter

from vgs.corpora.manifest import write_manifest
from vgs.corpora.prepare import prepare_corpus
from vgs.params import Params
from vgs.paths import manifest_path
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("corpus")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    manifest = prepare_corpus(args.corpus, Params.load(args.params))
    write_manifest(manifest_path(args.corpus), manifest)
    for note in manifest.notes:
        print(f"{args.corpus}: {note}")
    counts = Counter(r.split for r in manifest)
    print(f"{args.corpus}: {len(manifest)} records " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
