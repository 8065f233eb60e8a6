"""TIDIGITS (Leonard and Doddington, LDC93S10): connected digit strings read by 326 speakers.

Only single-digit utterances are kept, as in Leidal et al. 2017. The file name encodes what was
said: `<digits><take>.wav` with digits from 1-9, 'o' ("oh") and 'z' ("zero"), take 'a' or 'b'.
Both 'o' and 'z' are class 0 (Leidal: "we combined the utterances labeled 'oh' and 'zero' into one
class"); the spoken word stays in `transcript`.

Splits. TIDIGITS has an official speaker-disjoint train/test split, which we keep. Validation is
carved from the training speakers with the seed: by default whole speakers (`val_by: speaker`),
the same share of each speaker category (man, woman, boy, girl), so validation measures what test
measures, generalisation to unseen speakers. `val_by: utterance` instead takes a seeded share of
each digit's training utterances (speakers then appear in both train and val).

Leidal et al. report 6,456 train / 1,076 validation / 1,076 test utterances (8,608, a 6:1:1
ratio) without saying how they split. By the corpus's design (each speaker reads each of the 11
words twice in isolation) there are 326 x 22 = 7,172 single-digit utterances, so their counts
cannot be rebuilt from the description; docs/feature-store.md and the README say what we use.

Audio: the LDC release stores NIST SPHERE under a .wav name, often shorten-compressed. Headers are
read here (vgs.corpora.sphere) so durations come without decoding; compressed files stop the
adapter with the conversion command to run. RIFF WAV files (after `sph2pipe -f wav`) in the same
layout are accepted too.
"""
from __future__ import annotations

import re
from pathlib import Path

from vgs.corpora.audio_info import audio_info
from vgs.corpora.manifest import Manifest, ManifestRecord
from vgs.corpora.sphere import CONVERT_HINT, check_sphere_readable, is_sphere, read_sphere_header
from vgs.corpora.splits import check_val_by, choose_per_group
from vgs.errors import DataError

OFFICIAL_SPLITS = ("train", "test")
GROUPS = ("man", "woman", "boy", "girl")
WORDS = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
         "8": "eight", "9": "nine", "o": "oh", "z": "zero"}
NAME = re.compile(r"^([1-9oz]+)([ab])\.wav$")
LAYOUT = """expected layout (LDC TIDIGITS, LDC93S10):
  <root>/{train,test}/{man,woman,boy,girl}/<speaker>/<digits><a|b>.wav
      e.g. test/man/ah/7a.wav, test/man/ah/oa.wav, train/girl/ab/zb.wav, train/man/ae/1z9a.wav
  (the CD layout <root>/data/{adults,children}/{train,test}/... and <root>/tidigits/... are found too)
  Files are uncompressed NIST SPHERE (despite the .wav name) or RIFF WAV. Only single-digit files
  <digit><a|b>.wav are used; 'o' (oh) and 'z' (zero) are both class 0."""


def _subdirs(path: Path) -> dict[str, Path]:
    """Child directories by lower-cased name (some copies of the CDs are upper case)."""
    return {p.name.lower(): p for p in sorted(path.iterdir()) if p.is_dir()} if path.is_dir() else {}


def _corpus_bases(root: Path) -> list[Path]:
    candidates = [root, root / "tidigits", root / "data" / "adults", root / "data" / "children"]
    bases = []
    for base in candidates:
        splits = _subdirs(base)
        if any(s in splits and set(_subdirs(splits[s])) & set(GROUPS) for s in OFFICIAL_SPLITS):
            bases.append(base)
    return bases


def _audio_facts(path: Path) -> tuple[int, int, int, str | None]:
    """(num_samples, sample_rate, channels, compressed coding or None) from the header only."""
    if is_sphere(path):
        header = read_sphere_header(path)
        if header.compressed:
            return header.sample_count, header.sample_rate, header.channel_count, header.sample_coding
        check_sphere_readable(path, header)
        return header.sample_count, header.sample_rate, header.channel_count, None
    info = audio_info(path)
    return info.frames, info.samplerate, info.channels, None


def prepare_tidigits(root: str | Path, val_fraction: float = 0.1, seed: int = 0,
                     val_by: str = "speaker") -> Manifest:
    root = Path(root)
    check_val_by(val_by, "tidigits")
    if not root.is_dir():
        raise DataError(f"TIDIGITS root {root} does not exist", hint=LAYOUT)
    bases = _corpus_bases(root)
    if not bases:
        raise DataError(f"{root} does not look like TIDIGITS: no train/ or test/ with man, woman, boy or "
                        "girl speaker folders", hint=LAYOUT)

    found = []  # (official split, group, speaker, stem, path)
    multi_digit = other = 0
    for base in bases:
        for split_name, split_dir in _subdirs(base).items():
            if split_name not in OFFICIAL_SPLITS:
                continue
            for group, group_dir in _subdirs(split_dir).items():
                if group not in GROUPS:
                    continue
                for speaker, speaker_dir in _subdirs(group_dir).items():
                    for path in sorted(speaker_dir.iterdir()):
                        m = NAME.match(path.name.lower()) if path.is_file() else None
                        if not m:
                            other += path.is_file()
                            continue
                        if len(m.group(1)) != 1:
                            multi_digit += 1
                            continue
                        found.append((split_name, group, speaker, path.name.lower()[:-4], path))
    if not found:
        raise DataError(f"no single-digit utterances (<digit><a|b>.wav) under {root}", hint=LAYOUT)

    # Speaker codes are initials; make sure one code never names two people across the official
    # splits (LDC's split is speaker-disjoint, so a clash would be two different speakers).
    splits_of: dict[tuple, set] = {}
    for split_name, group, speaker, _, _ in found:
        splits_of.setdefault((group, speaker), set()).add(split_name)

    def speaker_id(split_name: str, group: str, speaker: str) -> str:
        clash = len(splits_of[(group, speaker)]) > 1
        return f"{split_name}-{group}-{speaker}" if clash else f"{group}-{speaker}"

    rows = []
    compressed: list[tuple[Path, str]] = []
    for split_name, group, speaker, stem, path in found:
        num_samples, rate, channels, coding = _audio_facts(path)
        if coding is not None:
            compressed.append((path, coding))
            continue
        rows.append(dict(split=split_name, group=group, speaker=speaker_id(split_name, group, speaker),
                         stem=stem, path=path, num_samples=num_samples, rate=rate, channels=channels))
    if compressed:
        path, coding = compressed[0]
        raise DataError(f"{len(compressed)} of {len(found)} TIDIGITS files are compressed NIST SPHERE "
                        f"(sample_coding {coding!r}), e.g. {path}; libsndfile cannot decode them",
                        hint=CONVERT_HINT)

    train_rows = [r for r in rows if r["split"] == "train"]
    if val_by == "speaker":
        by_group: dict[str, list[str]] = {}
        for r in train_rows:
            by_group.setdefault(r["group"], []).append(r["speaker"])
        val_speakers = choose_per_group(by_group, val_fraction, seed, keep_one=True)
        val_keys = {(r["speaker"], r["stem"]) for r in train_rows if r["speaker"] in val_speakers}
    else:
        by_digit: dict[str, list[tuple[str, str]]] = {}
        for r in train_rows:
            by_digit.setdefault(WORDS[r["stem"][0]], []).append((r["speaker"], r["stem"]))
        val_keys = choose_per_group(by_digit, val_fraction, seed)

    records = []
    for r in rows:
        digit, take = r["stem"][0], r["stem"][1]
        # speaker ids of training speakers never equal those of test speakers, so the key is safe
        split = "val" if r["split"] == "train" and (r["speaker"], r["stem"]) in val_keys else r["split"]
        extra = {"group": r["group"], "take": take, "official_split": r["split"]}
        if r["channels"] != 1:
            extra["channels"] = r["channels"]
        records.append(ManifestRecord(
            id=f"tidigits-{r['split']}-{r['group']}-{r['speaker'].rsplit('-', 1)[-1]}-{r['stem']}",
            source=r["path"].relative_to(root).as_posix(), modality="audio", split=split,
            label=0 if digit in "oz" else int(digit), transcript=WORDS[digit], speaker=r["speaker"],
            num_samples=r["num_samples"], sample_rate=r["rate"], extra=extra))
    records.sort(key=lambda rec: rec.id)
    notes = [f"kept {len(records)} single-digit utterances from {len({r.speaker for r in records})} speakers; "
             f"skipped {multi_digit} multi-digit utterances and {other} other files"]
    return Manifest(corpus="tidigits", root=str(root), records=records, notes=notes)
