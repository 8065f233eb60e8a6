"""DVC stage captions@<name>: a spoken-caption corpus (caption_corpora.<name> in params.yaml) read
through its adapter into data/manifests/<name>/: image.jsonl, one <language>.jsonl per caption
language, and rejected.jsonl (what on_error: skip left out, and why)."""
import argparse
from pathlib import Path

from vgs.corpora.prepare_captions import prepare_caption_corpus
from vgs.corpora.captions import write_caption_corpus
from vgs.params import Params
from vgs.utils.entry import friendly_errors


@friendly_errors
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name", help="a key of caption_corpora in params.yaml, e.g. digitscenes")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    corpus = prepare_caption_corpus(args.name, Params.load(args.params))
    out = Path("data/manifests") / args.name
    write_caption_corpus(corpus, out)
    counts = ", ".join(f"{view} {len(m)}" for view, m in corpus.views.items())
    synthetic = sorted({r.extra["language"] for v, m in corpus.views.items() if v != "image"
                        for r in m if r.extra.get("synthetic")})
    print(f"{out}: {counts}; {len(corpus.rejected)} rejected"
          + (f"; synthetic speech: {', '.join(synthetic)}" if synthetic else ""))
    for note in corpus.notes:
        print(f"  {note}")


if __name__ == "__main__":
    main()
