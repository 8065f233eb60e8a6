"""Read a spoken-caption corpus by name (`caption_corpora.<name>` in params.yaml) through the
adapter it names (Places, Flickr8k or SpokenCOCO), imported only when asked for."""
from __future__ import annotations

from pathlib import Path

from vgs.params import Params

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
