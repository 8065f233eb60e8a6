"""Corpus adapters: one module per corpus, each turning the corpus's real on-disk layout into a
manifest (lhotse-recipe style)."""
from __future__ import annotations

from pathlib import Path

from vgs.corpora.manifest import Manifest, ManifestRecord, read_manifest, write_manifest
from vgs.errors import ParamError
from vgs.params import Params
from vgs.paths import raw_dir

DOWNLOADABLE = ("mnist", "fsdd")
KNOWN = ("mnist", "fsdd", "tidigits", "speechcommands", "audiomnist")


def corpus_root(name: str, params: Params) -> Path:
    """`corpora.<name>.root`, defaulting to data/raw/<name> for the corpora we can fetch."""
    c = params.section(f"corpora.{name}") if params.has(f"corpora.{name}") else Params({}, f"corpora.{name}")
    root = c.str("root", None, allow_none=True)
    if root is None:
        if name in DOWNLOADABLE:
            return raw_dir(name)
        raise ParamError(f"corpora.{name}.root is not set (params.yaml)",
                         hint=f"set it to the directory holding your copy of {name}")
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
        return prepare_tidigits(root, val_fraction=c.float("val_fraction", 0.1, min=0.0, max=0.9), seed=seed)
    if name == "speechcommands":
        from vgs.corpora.speechcommands import prepare_speechcommands
        return prepare_speechcommands(root)
    if name == "audiomnist":
        from vgs.corpora.audiomnist import prepare_audiomnist
        return prepare_audiomnist(root, test_speakers=c.list("test_speakers", None) if c.has("test_speakers") else None,
                                  val_fraction=c.float("val_fraction", 0.1, min=0.0, max=0.9), seed=seed)
    raise AssertionError(name)


__all__ = ["Manifest", "ManifestRecord", "read_manifest", "write_manifest", "prepare_corpus",
           "corpus_root", "KNOWN", "DOWNLOADABLE"]
