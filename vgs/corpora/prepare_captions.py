"""Read a spoken-caption corpus by name (`caption_corpora.<name>` in params.yaml) through the
adapter it names (Places, Flickr8k or SpokenCOCO), imported only when asked for."""
from __future__ import annotations

from pathlib import Path

from vgs.errors import ParamError
from vgs.params import Params

CAPTION_ADAPTERS = ("places", "flickr8k", "spokencoco")
# Every key a corpus entry may hold: the adapter's own arguments under their own names, plus the
# keys every adapter takes. An unknown key is an error that names the known ones, never ignored.
COMMON_KEYS = ("adapter", "on_error", "max_frames", "frame_shift_ms")
ADAPTER_KEYS = {
    "places": ("root", "languages", "splits", "json_files", "languages_required", "image_base_path",
               "audio_base_paths"),
    "flickr8k": ("root", "audio_root", "image_root", "text_root"),
    "spokencoco": ("root", "coco_root", "split_scheme", "karpathy_split", "restval"),
}


def _optional_path(c: Params, key: str) -> str | None:
    return c.str(key, None, allow_none=True)


def _string_map(c: Params, key: str, what: str) -> dict:
    value = c.raw(key, None)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ParamError(f"{c.key(key)} must map {what}, got {value!r} ({c.source})")
    return value


def prepare_caption_corpus(name: str, params: Params):
    """The CaptionCorpus of `caption_corpora.<name>` (vgs/corpora/captions.py, docs/caption-corpora.md).

    `adapter: places` reads `json_files` ({language: {split: JSON}}), or, when that is absent, the
    files `<root>/<language>_<split>.json` for every listed language and split (digitscenes'
    layout); `image_base_path` and `audio_base_paths` ({language: folder}) replace the base paths
    that the released JSON files carry from their original machine. `flickr8k` takes its roots;
    `spokencoco` its root, `coco_root`, `split_scheme` (karpathy | coco2014), `karpathy_split` and
    `restval` (train | skip). Common keys: on_error, max_frames, frame_shift_ms."""
    from vgs.corpora.captions import ON_ERROR
    c = params.section(f"caption_corpora.{name}")
    adapter = c.str("adapter", choices=CAPTION_ADAPTERS)
    known = COMMON_KEYS + ADAPTER_KEYS[adapter]
    unknown = [key for key in c.keys() if key not in known]
    if unknown:
        raise ParamError(f"{c.key(unknown[0])} is not an option of the {adapter} adapter ({c.source})",
                         hint=f"its keys: {', '.join(known)} (docs/caption-corpora.md)")
    common = {"on_error": c.str("on_error", "raise", choices=ON_ERROR),
              "max_frames": None if c.raw("max_frames", None) is None else c.int("max_frames", min=1),
              "frame_shift_ms": c.float("frame_shift_ms", 10.0, min=0.1)}
    if adapter == "places":
        from vgs.corpora.places import prepare_places
        if c.has("json_files"):
            json_files = _string_map(c, "json_files", "each language to {split: JSON file}")
            for lang, splits in json_files.items():
                if not isinstance(splits, dict) or not all(isinstance(v, str) for v in splits.values()):
                    raise ParamError(f"{c.key('json_files')}.{lang} must map each split to a JSON file, "
                                     f"got {splits!r} ({c.source})")
        else:
            root = Path(c.str("root"))
            json_files = {lang: {split: root / f"{lang}_{split}.json" for split in c.list("splits")}
                          for lang in c.list("languages")}
        audio_base_paths = _string_map(c, "audio_base_paths", "each language to its audio folder")
        strays = sorted(set(audio_base_paths) - set(json_files))
        if strays:
            raise ParamError(f"{c.key('audio_base_paths')} names language(s) {', '.join(strays)} that the corpus "
                             f"does not read ({c.source})", hint="its languages: " + ", ".join(json_files))
        return prepare_places(json_files, languages_required=c.list("languages_required", []), corpus=name,
                              image_base_path=_optional_path(c, "image_base_path"),
                              audio_base_paths=audio_base_paths or None, **common)
    if adapter == "flickr8k":
        from vgs.corpora.flickr8k import prepare_flickr8k
        return prepare_flickr8k(_optional_path(c, "root"), audio_root=_optional_path(c, "audio_root"),
                                image_root=_optional_path(c, "image_root"),
                                text_root=_optional_path(c, "text_root"), **common)
    from vgs.corpora.spokencoco import SCHEMES, prepare_spokencoco
    return prepare_spokencoco(c.str("root"), coco_root=_optional_path(c, "coco_root"),
                              split_scheme=c.str("split_scheme", "karpathy", choices=SCHEMES),
                              karpathy_split=_optional_path(c, "karpathy_split"),
                              restval=c.str("restval", "train", choices=("train", "skip")), **common)
