"""Shared machinery for spoken-caption corpora: images, each with spoken captions in one or more
languages (Places audio captions, Flickr8k audio captions, SpokenCOCO).

A caption corpus is a `CaptionCorpus`: one `Manifest` per view, "image" for the images and one
per caption language ("en", "hi", "ja", ...), all under one `root`. Image records carry
`extra={"datapoint": <id>}`; caption records carry `extra={"datapoint": <image id>, "language":
<view>, "synthetic": False}`, and their `num_samples`/`sample_rate` come from the WAV header.

The adapters (places.py, flickr8k.py, spokencoco.py) only read their layout into `Datapoint`s;
everything else lives here once: JSON loading with errors that name file, line and column (or
entry and key), the cheap image check (exists, non-empty, Pillow header `verify()`, no decode),
the caption audio check (exists, non-empty, readable header, > 0 samples, at most `max_frames`
frames), the join of captions into multi-view datapoints, and the policy for bad input:
`on_error="raise"` stops at the first problem with a VgsError naming the file and the fix;
`on_error="skip"` lists each problem in `rejected` ({"view", "id", "path", "reason"}) and counts
it in a note. Nothing is dropped silently: a datapoint whose image is rejected takes all its
captions with it, and each of them is listed too.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm import tqdm

from vgs.corpora.audio_info import AudioInfo, audio_info
from vgs.corpora.manifest import SPLITS, Manifest, ManifestRecord, write_manifest
from vgs.errors import AudioError, DataError, ParamError, VgsError
from vgs.utils.atomic import atomic_path

IMAGE_VIEW = "image"
ON_ERROR = ("raise", "skip")
SKIP_HINT = ("or set on_error: skip under caption_corpora.<corpus> in params.yaml to leave it out (it is then "
             "listed in data/manifests/<corpus>/rejected.jsonl)")

# Why records were left out; the note for each (view, kind) pair says how many.
KINDS = {
    "json": "in a malformed or mis-structured JSON or list file",
    "entry": "from an entry with a missing key or a wrong value",
    "image": "whose image is missing, empty or unreadable",
    "audio": "whose WAV is missing, empty (0 bytes or 0 samples) or unreadable",
    "too_long": "longer than max_frames",
    "duplicate": "with an id seen before",
    "split_conflict": "whose image is listed in two splits",
    "no_split": "whose image is in no split list",
    "languages": "lacking a caption in a language of languages_required",
    "no_caption": "left without any usable caption",
}


class CaptionTooLong(AudioError):
    """A caption with more than `max_frames` feature frames."""


@dataclass
class CaptionCorpus:
    corpus: str
    views: dict[str, Manifest]
    rejected: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def root(self) -> str:
        return self.views[IMAGE_VIEW].root

    @property
    def languages(self) -> list[str]:
        return [v for v in self.views if v != IMAGE_VIEW]


@dataclass
class Caption:
    id: str
    wav: Path
    language: str
    speaker: str | None = None
    transcript: str | None = None
    synthetic: bool = False    # machine-spoken (e.g. eSpeak NG in digitscenes); reports must say so


@dataclass
class Datapoint:
    """One image and its captions, before validation. `origin` names the file that introduced it."""

    id: str
    image: Path
    split: str
    origin: str
    captions: list[Caption] = field(default_factory=list)


# -- bad-input policy --------------------------------------------------------------------------------
class Rejections:
    """Either raise the first VgsError (on_error="raise") or list it and carry on ("skip")."""

    def __init__(self, on_error: str):
        if on_error not in ON_ERROR:
            raise ParamError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.items: list[dict] = []
        self.counts: Counter = Counter()

    def skip(self, view: str, id: str | None, path: str | Path | None, reason: str, kind: str) -> None:
        """A record left out by design (e.g. an image in no split list): listed, never raised."""
        self.items.append({"view": view, "id": id, "path": None if path is None else str(path),
                           "reason": reason})
        self.counts[(view, kind)] += 1

    def fail(self, error: VgsError, view: str, id: str | None, path: str | Path | None, kind: str) -> None:
        if self.on_error == "raise":
            raise error
        self.skip(view, id, path, error.message, "too_long" if isinstance(error, CaptionTooLong) else kind)

    def guard(self, fn: Callable, *args, view: str, id: str | None, path, kind: str) -> Any:
        """fn(*args), or None after a VgsError was listed (skip mode)."""
        try:
            return fn(*args)
        except VgsError as exc:
            self.fail(exc, view, id, path, kind)
            return None

    def skip_datapoint(self, dp: Datapoint, reason: str, kind: str,
                       captions: Iterable[Caption] | None = None) -> None:
        """Leave out an image and its captions (default: all of them), listing each."""
        self.skip(IMAGE_VIEW, dp.id, dp.image, reason, kind)
        for cap in dp.captions if captions is None else captions:
            self.skip(cap.language, cap.id, cap.wav, f"its image {dp.id} was left out: {reason}", kind)

    def notes(self, corpus: str) -> list[str]:
        out = [f"skipped {n} {view} record(s) {KINDS[kind]}" for (view, kind), n in sorted(self.counts.items())]
        if out:
            out.append(f"every skipped record is listed with its reason in data/manifests/{corpus}/rejected.jsonl")
        return out


# -- reading inputs with errors that name the place ------------------------------------------------------
def load_json(path: Path, rejections: Rejections, view: str, layout: str) -> Any:
    """The parsed file, or None when it is malformed and on_error="skip" (then listed).

    A missing file always raises: it is named by the caller's configuration, not by the corpus."""
    if not path.is_file():
        raise DataError(f"{path} not found", hint=layout)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        rejections.fail(DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                                  hint="restore the file from the corpus archive, " + SKIP_HINT),
                        view, None, path, "json")
    except UnicodeDecodeError as exc:
        rejections.fail(DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                                  hint="restore the file from the corpus archive, " + SKIP_HINT),
                        view, None, path, "json")
    return None


def get_key(obj: Any, key: str, where: str, layout: str, kind: type | tuple = str, required: bool = True) -> Any:
    """obj[key] checked for type; `where` names the file and entry, e.g. "train.json: entry 12".

    An optional key that is absent, null or an empty string reads as None."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}", hint=layout)
    if key not in obj or obj[key] is None or (not required and isinstance(obj[key], str) and not obj[key].strip()):
        if required:
            raise DataError(f"{where}: missing key {key!r}", hint=layout)
        return None
    value = obj[key]
    bool_wanted = kind is bool or (isinstance(kind, tuple) and bool in kind)
    if not isinstance(value, kind) or (isinstance(value, bool) and not bool_wanted) or (isinstance(value, str) and not value.strip()):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{where}: key {key!r} must be a non-empty {names}, got {value!r}", hint=layout)
    return value


def read_lines(path: Path, layout: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of a required text list file, blank lines left out. A file with
    no entries is an error of its own: "no usable image" later would hide which file it was."""
    if not path.is_file():
        raise DataError(f"{path} not found", hint=layout)
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise DataError(f"{path} is empty: it lists no entries",
                        hint="restore it from the corpus's release (a truncated download or copy leaves it empty); "
                             + layout)
    return lines


def normalised(path: str | Path) -> Path:
    """The path with `.` and `x/..` parts folded, as errors and manifests show it. Released metadata
    joins base paths with relative parts (`metadata/../wavs/x.wav`); folding is lexical, which is
    only wrong when a folded part is a symbolic link to another depth."""
    return Path(os.path.normpath(str(path)))


# -- media checks ------------------------------------------------------------------------------------------
def check_image(path: Path) -> None:
    """Exists, is not empty and has a valid header (Pillow verify(); the pixels are not decoded)."""
    if not path.is_file():
        raise DataError(f"image {path} is missing", hint="restore it, " + SKIP_HINT)
    if path.stat().st_size == 0:
        raise DataError(f"image {path} is empty (0 bytes)", hint="restore it, " + SKIP_HINT)
    from PIL import Image  # Pillow; imported here so the other corpora do not need it

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad files
        raise DataError(f"image {path} is not a readable image: {exc}", hint="restore it, " + SKIP_HINT) from None


def num_frames(num_samples: int, sample_rate: int, frame_shift_ms: float) -> int:
    """Feature frames of a clip at this frame shift: duration / shift, rounded down."""
    return int(num_samples * 1000 // (sample_rate * frame_shift_ms))


def check_caption_audio(path: Path, max_frames: int | None, frame_shift_ms: float) -> AudioInfo:
    if not path.is_file():
        raise AudioError(f"audio file {path} is missing", hint="restore it, " + SKIP_HINT)
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)", hint="restore it, " + SKIP_HINT)
    try:
        info = audio_info(path)
    except AudioError as exc:
        raise AudioError(exc.message, hint="replace the file, " + SKIP_HINT) from None
    if info.frames == 0:
        raise AudioError(f"audio file {path} is empty (0 samples)", hint="restore it, " + SKIP_HINT)
    if max_frames is not None:
        frames = num_frames(info.frames, info.samplerate, frame_shift_ms)
        if frames > max_frames:
            raise CaptionTooLong(
                f"audio file {path} is {info.frames / info.samplerate:.2f} s long: {frames} frames at "
                f"{frame_shift_ms:g} ms, more than max_frames={max_frames}",
                hint="raise max_frames, or set on_error: skip to leave such captions out "
                     "(Mortazavi 2020 dropped the few captions longer than 8,192 frames)")
    return info


# -- joining and building -------------------------------------------------------------------------------------
class Joiner:
    """Datapoints by image id; captions of one image from several files join into one datapoint."""

    def __init__(self, rejections: Rejections):
        self.rejections = rejections
        self.points: dict[str, Datapoint] = {}

    def add(self, image_id: str, image: Path, split: str, origin: str, caption: Caption | None = None) -> None:
        image = normalised(image)
        if caption is not None:
            caption = replace(caption, wav=normalised(caption.wav))
        dp = self.points.get(image_id)
        if dp is None:
            dp = self.points[image_id] = Datapoint(image_id, image, split, origin)
        elif dp.split != split:
            error = DataError(f"image {image_id} is in split {dp.split!r} ({dp.origin}) and in split {split!r} "
                              f"({origin})", hint="an image must be in one split only; fix the split files, "
                                                  + SKIP_HINT)
            if caption is None:
                self.rejections.fail(error, IMAGE_VIEW, image_id, image, "split_conflict")
            else:
                self.rejections.fail(error, caption.language, caption.id, caption.wav, "split_conflict")
            return
        if caption is not None:
            dp.captions.append(caption)


def common_root(dirs: Iterable[str | Path]) -> Path:
    """The deepest directory containing all of `dirs` (kept relative if they all are)."""
    dirs = [os.path.normpath(str(d)) for d in dirs]
    if not all(os.path.isabs(d) for d in dirs) and any(os.path.isabs(d) for d in dirs):
        dirs = [os.path.abspath(d) for d in dirs]
    try:
        return Path(os.path.commonpath(dirs) or ".")
    except ValueError:  # different drives
        raise DataError("the image and audio folders share no common ancestor directory: " + ", ".join(dirs),
                        hint="put them on one drive, e.g. with symbolic links") from None


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def build_caption_corpus(corpus: str, root: Path, datapoints: Iterable[Datapoint], rejections: Rejections, *,
                         languages: Iterable[str], layout: str, max_frames: int | None = None,
                         frame_shift_ms: float = 10.0, languages_required: Iterable[str] = (),
                         notes: Iterable[str] = ()) -> CaptionCorpus:
    """Validate every image and caption, join them into views, and say what was left out."""
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ParamError(f"max_frames must be a positive integer or null, got {max_frames!r}")
    if not frame_shift_ms or frame_shift_ms <= 0:
        raise ParamError(f"frame_shift_ms must be positive, got {frame_shift_ms!r}")
    languages = list(languages)
    required = set(languages_required)
    records: dict[str, list[ManifestRecord]] = {IMAGE_VIEW: [], **{lang: [] for lang in languages}}
    seen: dict[str, str] = {}
    datapoints = list(datapoints)

    for dp in tqdm(datapoints, desc=f"{corpus} images and captions", unit="image", disable=len(datapoints) < 2000):
        missing = sorted(required - {c.language for c in dp.captions})
        if missing:
            rejections.skip_datapoint(dp, f"no {', '.join(missing)} caption (languages_required)", "languages")
            continue
        try:
            check_image(dp.image)
        except VgsError as exc:
            rejections.fail(exc, IMAGE_VIEW, dp.id, dp.image, "image")  # raises when on_error="raise"
            for cap in dp.captions:
                rejections.skip(cap.language, cap.id, cap.wav, f"its image {dp.id} was rejected: {exc.message}",
                                "image")
            continue
        kept: list[tuple[Caption, AudioInfo]] = []
        for cap in dp.captions:
            if cap.id in seen:
                rejections.fail(DataError(f"caption id {cap.id!r} ({cap.wav}) was seen before ({seen[cap.id]})",
                                          hint="remove the duplicate entry, " + SKIP_HINT),
                                cap.language, cap.id, cap.wav, "duplicate")
                continue
            seen[cap.id] = str(cap.wav)
            info = rejections.guard(check_caption_audio, cap.wav, max_frames, frame_shift_ms,
                                    view=cap.language, id=cap.id, path=cap.wav, kind="audio")
            if info is not None:
                kept.append((cap, info))
        missing = sorted(required - {c.language for c, _ in kept})
        if missing or not kept:
            reason = (f"no usable {', '.join(missing)} caption left (languages_required)" if missing
                      else "no usable caption left")
            rejections.skip_datapoint(dp, reason, "languages" if missing else "no_caption", [c for c, _ in kept])
            continue
        records[IMAGE_VIEW].append(ManifestRecord(id=dp.id, source=_rel(dp.image, root), modality="image",
                                                  split=dp.split, extra={"datapoint": dp.id}))
        for cap, info in kept:
            records[cap.language].append(ManifestRecord(
                id=cap.id, source=_rel(cap.wav, root), modality="audio", split=dp.split, speaker=cap.speaker,
                transcript=cap.transcript, num_samples=info.frames, sample_rate=info.samplerate,
                extra={"datapoint": dp.id, "language": cap.language, "synthetic": cap.synthetic}))

    if not records[IMAGE_VIEW]:
        raise DataError(f"{corpus}: no usable image with a usable caption"
                        + (f" ({len(rejections.items)} records rejected, e.g. {rejections.items[0]['reason']})"
                           if rejections.items else ""), hint=layout)
    view_notes: dict[str, list[str]] = {}
    per_split = Counter(r.split for r in records[IMAGE_VIEW])
    summary = [f"kept {len(records[IMAGE_VIEW])} images ("
               + ", ".join(f"{per_split[s]} {s}" for s in SPLITS if per_split[s]) + ")"]
    for lang in languages:
        per_image = Counter(r.extra["datapoint"] for r in records[lang])
        several = sum(1 for n in per_image.values() if n > 1)
        line = f"kept {len(records[lang])} {lang} captions of {len(per_image)} images"
        if several:
            line += f"; {several} images have more than one {lang} caption, all kept"
        view_notes[lang] = [line]
        summary.append(line)
    skipped = rejections.notes(corpus)
    all_notes = list(notes) + summary + skipped
    views = {}
    for view, recs in records.items():
        recs.sort(key=lambda r: r.id)
        mine = [n for n in skipped if f" {view} record" in n] + view_notes.get(view, summary[:1])
        views[view] = Manifest(corpus=corpus, root=str(root), records=recs, notes=list(notes) + mine)
    return CaptionCorpus(corpus=corpus, views=views, rejected=rejections.items, notes=all_notes)


# -- output and evaluation helpers -----------------------------------------------------------------------------
def write_caption_corpus(corpus: CaptionCorpus, out_dir: str | Path) -> list[Path]:
    """The directory <out_dir>/ with <view>.jsonl per view ("image", then each language) and
    rejected.jsonl (always, empty when nothing was left out), written as a whole, atomically.

    The features stage then reads view <view> as corpus "<name>/<view>" (data/manifests/<name>/<view>.jsonl)."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for view, manifest in corpus.views.items():
            write_manifest(tmp / f"{view}.jsonl", manifest)
        with open(tmp / "rejected.jsonl", "w", encoding="utf-8") as f:
            for item in corpus.rejected:
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return [out_dir / f"{view}.jsonl" for view in corpus.views] + [out_dir / "rejected.jsonl"]


def one_caption_per_image(corpus: CaptionCorpus, view: str, seed: int, split: str = "test") -> list[ManifestRecord]:
    """One caption per image of `split`, chosen with `seed` (images in id order).

    For the 1,000 image / 1,000 caption retrieval protocol; docs/caption-corpora.md says when to use
    it instead of all captions."""
    if view not in corpus.views or view == IMAGE_VIEW:
        raise ParamError(f"{corpus.corpus} has no caption view {view!r}", hint="views: " + ", ".join(corpus.languages))
    by_image: dict[str, list[ManifestRecord]] = {}
    for r in corpus.views[view].split(split):
        by_image.setdefault(r.extra["datapoint"], []).append(r)
    rng = np.random.default_rng(seed)
    return [sorted(caps, key=lambda r: r.id)[int(rng.integers(len(caps)))] for _, caps in sorted(by_image.items())]
