"""Flickr8k audio captions (Harwath and Glass 2015): 40,000 spoken captions, 5 per Flickr8k image.

The audio release (flickr_audio.tar.gz) holds `wav2capt.txt` (lines `<wav> <image>.jpg #<n>`: the
WAV reads text caption n of the image), `wav2spk.txt` (`<wav> <speaker>`) and `wavs/`. It has no
images and no text: those come from Flickr8k itself, `Flicker8k_Dataset/<image>.jpg` (sic: the
folder in Flickr8k_Dataset.zip is spelled "Flicker") and the text folder `Flickr8k_text/` with the
split lists `Flickr_8k.{train,dev,test}Images.txt` (6,000 / 1,000 / 1,000 images) and, optionally,
`Flickr8k.token.txt` (`<image>.jpg#<n>\\t<caption text>`), which gives the transcripts.

Splits: trainImages -> train, devImages -> val, testImages -> test. Images in no list are skipped
and listed. Ids: image `flickr8k-<image name without .jpg>`, caption `flickr8k-<wav name without
.wav>` (the wav names are `<image>_<n>.wav`). All five captions of an image are kept; for how the
test set is scored see docs/caption-corpora.md and `one_caption_per_image`.
"""
from __future__ import annotations

import re
from pathlib import Path

from vgs.corpora.captions import (IMAGE_VIEW, Caption, CaptionCorpus, Datapoint, Joiner, Rejections,
                                  build_caption_corpus, common_root, one_caption_per_image, read_lines)
from vgs.errors import DataError

IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset")
SPLIT_LISTS = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
CAPT_LINE = re.compile(r"^(\S+\.wav)\s+(\S+)\s+#(\d+)$")
SPK_LINE = re.compile(r"^(\S+)\s+(\S+)$")
TOKEN_LINE = re.compile(r"^(\S+#\d+)\t(.*\S)\s*$")
LAYOUT = """expected layout (Flickr8k audio captions plus Flickr8k), by default all under one root:
  <root>/flickr_audio/wav2capt.txt      lines  <wav> <image>.jpg #<n>
  <root>/flickr_audio/wav2spk.txt       lines  <wav> <speaker>
  <root>/flickr_audio/wavs/<image>_<n>.wav
  <root>/Flicker8k_Dataset/<image>.jpg  (sic; Flickr8k_Dataset/ is accepted too)
  <root>/Flickr8k_text/Flickr_8k.trainImages.txt, Flickr_8k.devImages.txt, Flickr_8k.testImages.txt
  <root>/Flickr8k_text/Flickr8k.token.txt   (optional)  lines  <image>.jpg#<n><TAB><caption text>
  audio_root (the flickr_audio folder), image_root and text_root can be passed separately."""

__all__ = ["prepare_flickr8k", "one_caption_per_image", "LAYOUT"]


def _roots(root, audio_root, image_root, text_root) -> tuple[Path, Path, Path]:
    if root is None and None in (audio_root, image_root, text_root):
        raise DataError("prepare_flickr8k needs root, or all of audio_root, image_root and text_root", hint=LAYOUT)
    root = Path(root) if root is not None else None
    audio_root = Path(audio_root) if audio_root is not None else root / "flickr_audio"
    if image_root is None:
        image_root = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), root / IMAGE_DIRS[0])
    image_root = Path(image_root)
    text_root = Path(text_root) if text_root is not None else (
        root / "Flickr8k_text" if (root / "Flickr8k_text").is_dir() else root)
    for what, path in (("audio folder", audio_root / "wavs"), ("image folder", image_root), ("text folder", text_root)):
        if not path.is_dir():
            raise DataError(f"Flickr8k {what} {path} not found", hint=LAYOUT)
    return audio_root, image_root, text_root


def prepare_flickr8k(root: str | Path | None = None, *, audio_root: str | Path | None = None,
                     image_root: str | Path | None = None, text_root: str | Path | None = None,
                     on_error: str = "raise", max_frames: int | None = None,
                     frame_shift_ms: float = 10.0) -> CaptionCorpus:
    audio_root, image_root, text_root = _roots(root, audio_root, image_root, text_root)
    rejections = Rejections(on_error)
    joiner = Joiner(rejections)

    split_of: dict[str, str] = {}
    listed_in: dict[str, Path] = {}
    for split, name in SPLIT_LISTS.items():
        path = text_root / name
        for lineno, image in read_lines(path, LAYOUT):
            if image in split_of:
                rejections.fail(DataError(f"{path}:{lineno}: image {image} is also listed in {listed_in[image]}",
                                          hint="restore the split lists from Flickr8k_text.zip"),
                                IMAGE_VIEW, f"flickr8k-{Path(image).stem}", path, "split_conflict")
                split_of[image] = None  # in no split: its captions are skipped below
                continue
            split_of[image], listed_in[image] = split, path

    def fields(path: Path, pattern: re.Pattern, what: str) -> list[tuple[int, tuple[str, ...]]]:
        """The regex groups of each line; a line that does not match is bad input."""
        out = []
        for lineno, line in read_lines(path, LAYOUT):
            m = pattern.match(line)
            if m is None:
                rejections.fail(DataError(f"{path}:{lineno}: expected {what}, got {line!r}", hint=LAYOUT),
                                "en", f"{path.name}:{lineno}", path, "entry")
                continue
            out.append((lineno, m.groups()))
        return out

    wav2spk, token, wav2capt = audio_root / "wav2spk.txt", text_root / "Flickr8k.token.txt", audio_root / "wav2capt.txt"
    speakers = dict(g for _, g in fields(wav2spk, SPK_LINE, "'<wav> <speaker>'")) if wav2spk.is_file() else {}
    texts = dict(g for _, g in fields(token, TOKEN_LINE, "'<image>.jpg#<n><TAB><text>'")) if token.is_file() else {}

    captions_of: dict[str, list[tuple[int, Caption]]] = {}
    for lineno, (wav, image, number) in fields(wav2capt, CAPT_LINE, "'<wav> <image>.jpg #<n>'"):
        cap = Caption(f"flickr8k-{Path(wav).stem}", audio_root / "wavs" / wav, "en", speakers.get(wav),
                      texts.get(f"{image}#{number}"))
        captions_of.setdefault(image, []).append((lineno, cap))
    for image, caps in captions_of.items():
        image_id = f"flickr8k-{Path(image).stem}"
        if image not in split_of:
            dp = Datapoint(image_id, image_root / image, "train", wav2capt.name, [c for _, c in caps])
            rejections.skip_datapoint(dp, f"image {image} is in no split list", "no_split")
        elif split_of[image] is None:  # listed twice; the image was reported above
            for _, cap in caps:
                rejections.skip("en", cap.id, cap.wav, f"its image {image} is in two split lists", "split_conflict")
        else:
            for lineno, cap in caps:
                joiner.add(image_id, image_root / image, split_of[image], f"{wav2capt.name}:{lineno}", cap)
    for image, split in split_of.items():
        if split is not None and image not in captions_of:
            rejections.skip(IMAGE_VIEW, f"flickr8k-{Path(image).stem}", image_root / image,
                            f"image {image} has no spoken caption in {wav2capt}", "no_caption")

    notes = [f"speakers unknown: {wav2spk} not found"] if not speakers else []
    if not texts:
        notes.append(f"transcripts unknown: {token} not found")
    return build_caption_corpus("flickr8k", common_root([audio_root, image_root]), joiner.points.values(),
                                rejections, languages=["en"], layout=LAYOUT, max_frames=max_frames,
                                frame_shift_ms=frame_shift_ms, notes=notes)
