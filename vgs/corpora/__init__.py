"""Corpus adapters: one module per corpus, each turning the corpus's real on-disk layout into a
manifest (lhotse-recipe style)."""
from __future__ import annotations

from pathlib import Path

from vgs.corpora.manifest import Manifest, ManifestRecord, read_manifest, write_manifest
from vgs.corpora.splits import VAL_BY
from vgs.errors import ParamError
from vgs.params import Params
from vgs.paths import raw_dir

DOWNLOADABLE = ("mnist", "fsdd")
KNOWN = ("mnist", "fsdd", "tidigits", "speechcommands", "audiomnist")


def corpus_root(name: str, params: Params) -> Path:
    """`corpora.<name>.root`, defaulting to data/raw/<name>.

    The corpora we fetch land in data/raw/<name>. For a corpus you own, a symlink
    data/raw/<name> -> your copy is the way that works with DVC (the prepare stage depends on
    data/raw/<name>, so DVC notices when the corpus changes); `root` overrides it.
    """
    c = params.section(f"corpora.{name}") if params.has(f"corpora.{name}") else Params({}, f"corpora.{name}")
    root = c.str("root", None, allow_none=True)
    if root is None:
        if name in DOWNLOADABLE or raw_dir(name).exists():
            return raw_dir(name)
        raise ParamError(f"corpora.{name}.root is not set (params.yaml) and {raw_dir(name)} does not exist",
                         hint=f"link your copy of {name} there: ln -s /path/to/{name} {raw_dir(name)} "
                              "(README: Using a real corpus)")
    return Path(root).expanduser()


def prepare_corpus(name: str, params: Params) -> Manifest:
    if name not in KNOWN:
        raise ParamError(f"unknown corpus {name!r}", hint="known corpora: " + ", ".join(KNOWN))
    c = params.section(f"corpora.{name}") if params.has(f"corpora.{name}") else Params({}, f"corpora.{name}")
    root = corpus_root(name, params)
    seed = params.int("seed", 0)
    if name == "mnist":
        from vgs.corpora.mnist import prepare_mnist
        return prepare_mnist(root, val_size=c.int("val_size", 5000, min=0), seed=seed)
    if name == "fsdd":
        from vgs.corpora.fsdd import prepare_fsdd
        return prepare_fsdd(root, val_fraction=c.float("val_fraction", 0.1, min=0.0, max=0.9), seed=seed)
    if name == "tidigits":
        from vgs.corpora.tidigits import prepare_tidigits
        return prepare_tidigits(root, val_fraction=c.float("val_fraction", 0.1, min=0.0, max=0.9), seed=seed,
                                val_by=c.str("val_by", "speaker", choices=VAL_BY))
    if name == "speechcommands":
        from vgs.corpora.speechcommands import prepare_speechcommands
        return prepare_speechcommands(root)
    if name == "audiomnist":
        from vgs.corpora.audiomnist import prepare_audiomnist
        test_speakers = c.raw("test_speakers", None)
        return prepare_audiomnist(root, test_speakers=None if test_speakers is None else c.list("test_speakers"),
                                  val_fraction=c.float("val_fraction", 0.1, min=0.0, max=0.9), seed=seed,
                                  val_by=c.str("val_by", "speaker", choices=VAL_BY))
    raise AssertionError(name)


CAPTION_ADAPTERS = ("places", "flickr8k", "spokencoco")


def prepare_caption_corpus(name: str, params: Params):
    """The CaptionCorpus of `caption_corpora.<name>` (vgs/corpora/captions.py, docs/caption-corpora.md).

    `adapter: places` reads `json_files` ({language: {split: JSON}}), or, when that is absent, the
    files `<root>/<language>_<split>.json` for every listed language and split (digitscenes'
    layout). `flickr8k` and `spokencoco` take their roots. Common keys: on_error, max_frames,
    frame_shift_ms."""
    from vgs.corpora.captions import ON_ERROR
    c = params.section(f"caption_corpora.{name}")
    adapter = c.str("adapter", choices=CAPTION_ADAPTERS)
    common = {"on_error": c.str("on_error", "raise", choices=ON_ERROR),
              "max_frames": None if c.raw("max_frames", None) is None else c.int("max_frames", min=1),
              "frame_shift_ms": c.float("frame_shift_ms", 10.0, min=0.1)}
    if adapter == "places":
        from vgs.corpora.places import prepare_places
        if c.has("json_files"):
            json_files = c.raw("json_files")
        else:
            root = Path(c.str("root"))
            json_files = {lang: {split: root / f"{lang}_{split}.json" for split in c.list("splits")}
                          for lang in c.list("languages")}
        return prepare_places(json_files, languages_required=c.list("languages_required", []), corpus=name,
                              **common)
    if adapter == "flickr8k":
        from vgs.corpora.flickr8k import prepare_flickr8k
        return prepare_flickr8k(c.str("root", None, allow_none=True), audio_root=c.str("audio_root", None, allow_none=True),
                                image_root=c.str("image_root", None, allow_none=True),
                                text_root=c.str("text_root", None, allow_none=True), **common)
    from vgs.corpora.spokencoco import prepare_spokencoco
    return prepare_spokencoco(c.str("root"), coco_root=c.str("coco_root", None, allow_none=True),
                              karpathy_split=c.str("karpathy_split", None, allow_none=True), **common)


__all__ = ["prepare_caption_corpus", "CAPTION_ADAPTERS", "Manifest", "ManifestRecord", "read_manifest", "write_manifest", "prepare_corpus",
           "corpus_root", "KNOWN", "DOWNLOADABLE"]
