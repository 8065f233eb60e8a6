"""Places audio captions (Harwath et al.): English Places 400k, and the Hindi and Japanese Places
caption sets of the bilingual / trilingual work, all describing Places205 images.

Each release ships one JSON file per split (e.g. metadata/train.json, or train_2020.json /
dev_2020.json / test_2020.json in the 2020 splits), read by DAVEnet's ImageCaptionDataset as
  {"image_base_path": ..., "audio_base_path": ...,
   "data": [{"uttid": ..., "speaker": ..., "wav": "wavs/...wav", "image": "a/abbey/00001.jpg",
             "asr_text": "..."}, ...]}
The English 400k set has `asr_text` (the ASR transcript); other sets may have `text` or neither
(transcript None). The base paths may be absolute or relative to the JSON file's folder (the
released files hold the authors' absolute paths, which users edit, or override here).

Captions of one image in several languages are joined by the image path (relative to
image_base_path) into one multi-view datapoint whose id is `places-<image path>`, e.g.
`places-a/abbey/00001.jpg` (stable, and unique because paths are). Caption ids are
`places-<language>-<uttid>` (the WAV path without extension when uttid is absent). Every caption
of an image is kept. `languages_required` keeps only images captioned in every listed language
(the trilingual setup); the others are listed in `rejected`.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from vgs.corpora.captions import (Caption, CaptionCorpus, Joiner, Rejections, build_caption_corpus, common_root,
                                  get_key, load_json)
from vgs.corpora.manifest import SPLITS
from vgs.errors import DataError, ParamError

LAYOUT = """expected layout (Places audio captions, one JSON file per language and split):
  {"image_base_path": "<Places205 image folder>", "audio_base_path": "<folder holding wavs/>",
   "data": [{"uttid": "...", "speaker": "...", "wav": "wavs/.../<uttid>.wav",
             "image": "a/abbey/00001.jpg", "asr_text": "..."}, ...]}
  base paths absolute or relative to the JSON file's folder; "asr_text" or "text" optional.
  Call prepare_places({"en": {"train": "train.json", "val": "dev.json", "test": "test.json"}, ...})."""


def _read_header(data, json_path: Path, image_override, audio_override) -> tuple[Path, Path, list]:
    """(image base, audio base, entries) of one file; a missing or mistyped key raises DataError."""
    def base(key, override):
        if override is not None:
            return Path(override)
        value = Path(get_key(data, key, str(json_path), LAYOUT))
        return value if value.is_absolute() else json_path.parent / value

    return (base("image_base_path", image_override), base("audio_base_path", audio_override),
            get_key(data, "data", str(json_path), LAYOUT, list))


def prepare_places(json_files: dict[str, dict[str, str | Path]], *, languages_required: list[str] | tuple = (),
                   image_base_path: str | Path | None = None,
                   audio_base_paths: dict[str, str | Path] | None = None, on_error: str = "raise",
                   max_frames: int | None = None, frame_shift_ms: float = 10.0,
                   corpus: str = "places") -> CaptionCorpus:
    """`json_files` maps language -> split ("train", "val", "test") -> JSON file.

    `image_base_path` overrides every file's image_base_path (all sets caption Places205 images);
    `audio_base_paths` overrides audio_base_path per language."""
    if not isinstance(json_files, dict) or not json_files:
        raise ParamError("json_files must map a language to {split: JSON file}", hint=LAYOUT)
    for lang, splits in json_files.items():
        bad = [s for s in (splits or {}) if s not in SPLITS]
        if not splits or bad:
            raise ParamError(f"json_files[{lang!r}] must map splits {SPLITS} to JSON files, got {sorted(splits or {})}",
                             hint="name the dev/validation file 'val'")
    unknown = sorted(set(languages_required) - set(json_files))
    if unknown:
        raise ParamError(f"languages_required names {unknown}, which have no JSON files",
                         hint="languages with files: " + ", ".join(json_files))
    audio_base_paths = audio_base_paths or {}
    rejections = Rejections(on_error)
    joiner = Joiner(rejections)
    entries = []  # (language, split, json path, index, entry, image base, audio base)
    for lang, splits in json_files.items():
        for split, json_path in splits.items():
            json_path = Path(json_path)
            data = load_json(json_path, rejections, lang, LAYOUT)
            if data is None:
                continue
            header = rejections.guard(_read_header, data, json_path, image_base_path, audio_base_paths.get(lang),
                                      view=lang, id=None, path=json_path, kind="json")
            if header is None:
                continue
            image_base, audio_base, items = header
            for key, folder in (("image_base_path", image_base), ("audio_base_path", audio_base)):
                if not folder.is_dir():  # configuration, not data: stops whatever on_error says
                    raise DataError(f"{key} {folder} (from {json_path}) is not a directory",
                                    hint=f"edit {key} in {json_path}, or override it: prepare_places(..., "
                                         "image_base_path=..., audio_base_paths={language: ...})")
            entries += [(lang, split, json_path, i, e, image_base, audio_base) for i, e in enumerate(items)]
    bases = {folder for e in entries for folder in e[5:]}
    root = common_root(bases or [Path(p).parent for files in json_files.values() for p in files.values()])

    def add(lang, split, json_path, index, entry, image_base, audio_base):
        where = f"{json_path}: entry {index}"
        wav = get_key(entry, "wav", where, LAYOUT)
        image = get_key(entry, "image", where, LAYOUT)
        uttid = get_key(entry, "uttid", where, LAYOUT, required=False)
        speaker = get_key(entry, "speaker", where, LAYOUT, (str, int), required=False)
        text = get_key(entry, "asr_text", where, LAYOUT, required=False)
        if text is None:
            text = get_key(entry, "text", where, LAYOUT, required=False)
        # Not in the Places releases: corpora built here in their layout (digitscenes) mark machine speech.
        synthetic = get_key(entry, "synthetic", where, LAYOUT, bool, required=False) or False
        cap_id = f"{corpus}-{lang}-{uttid or PurePosixPath(wav).with_suffix('').as_posix()}"
        caption = Caption(cap_id, audio_base / wav, lang, None if speaker is None else str(speaker), text, synthetic)
        joiner.add(f"{corpus}-{PurePosixPath(image).as_posix()}", image_base / image, split,
                   f"{json_path.name}, {lang} {split}", caption)

    for entry in entries:
        rejections.guard(add, *entry, view=entry[0], id=f"{entry[2]}#{entry[3]}", path=entry[2], kind="entry")
    return build_caption_corpus(corpus, root, joiner.points.values(), rejections, languages=list(json_files),
                                layout=LAYOUT, max_frames=max_frames, frame_shift_ms=frame_shift_ms,
                                languages_required=languages_required)
