"""Prepare a raw corpus by name (`corpora.<name>` in params.yaml): the adapter it names, imported
only when asked for."""
from __future__ import annotations

from pathlib import Path

from vgs.corpora.manifest import Manifest
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
