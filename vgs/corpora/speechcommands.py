"""Google Speech Commands (Warden 2018), v0.01 or v0.02: the ten digit words only.

Layout: one folder per word holding `<speaker hash>_nohash_<n>.wav` (16 kHz mono, at most 1 s),
plus `validation_list.txt` and `testing_list.txt` naming the validation and test files as
`<word>/<file>.wav`. Everything not listed is training data; that is the split the dataset's
authors define (it hashes speaker ids, so the three splits are speaker-disjoint). Other words and
`_background_noise_/` are not digits and are skipped.
"""
from __future__ import annotations

import re
from pathlib import Path

from tqdm import tqdm

from vgs.corpora.audio_info import audio_info
from vgs.corpora.manifest import Manifest, ManifestRecord
from vgs.errors import DataError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NAME = re.compile(r"^([0-9a-f]+)_nohash_(\d+)\.wav$")
LIST_FILES = {"val": "validation_list.txt", "test": "testing_list.txt"}
LAYOUT = """expected layout (Google Speech Commands v0.01 or v0.02, as unpacked from the .tar.gz):
  <root>/<word>/<speaker hash>_nohash_<n>.wav   e.g. seven/0a7c2a8d_nohash_0.wav
  <root>/validation_list.txt                     lines like  seven/0a7c2a8d_nohash_0.wav
  <root>/testing_list.txt
  <root>/_background_noise_/                     (ignored)
  The ten digit words zero ... nine are used; other words are skipped."""


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        raise DataError(f"Speech Commands split list {path} is missing", hint=LAYOUT)
    return {line.strip().replace("\\", "/") for line in path.read_text().splitlines() if line.strip()}


def prepare_speechcommands(root: str | Path) -> Manifest:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Speech Commands root {root} does not exist", hint=LAYOUT)
    listed = {split: _read_list(root / name) for split, name in LIST_FILES.items()}
    both = listed["val"] & listed["test"]
    if both:
        raise DataError(f"{len(both)} file(s) are in both validation_list.txt and testing_list.txt, "
                        f"e.g. {sorted(both)[0]}", hint="restore the list files from the original archive")
    missing_words = [w for w in DIGIT_WORDS if not (root / w).is_dir()]
    if len(missing_words) == len(DIGIT_WORDS):
        raise DataError(f"{root} has none of the digit word folders zero ... nine", hint=LAYOUT)

    other_dirs = [p for p in sorted(root.iterdir()) if p.is_dir() and p.name not in DIGIT_WORDS]
    other_files = sum(1 for d in other_dirs for f in d.iterdir() if f.is_file())
    files = []
    odd_names = 0
    for label, word in enumerate(DIGIT_WORDS):
        word_dir = root / word
        if not word_dir.is_dir():
            continue
        for path in sorted(word_dir.iterdir()):
            m = NAME.match(path.name)
            if not m:
                odd_names += path.is_file()
                continue
            files.append((label, word, m.group(1), path))

    records = []
    for label, word, speaker, path in tqdm(files, desc="speechcommands headers", unit="file",
                                           disable=len(files) < 2000):
        rel = f"{word}/{path.name}"
        split = "test" if rel in listed["test"] else ("val" if rel in listed["val"] else "train")
        info = audio_info(path)
        records.append(ManifestRecord(
            id=f"speechcommands-{word}-{path.stem}", source=rel, modality="audio", split=split,
            label=label, transcript=word, speaker=speaker, num_samples=info.frames,
            sample_rate=info.samplerate, extra={"channels": info.channels} if info.channels != 1 else {}))
    if not records:
        raise DataError(f"no <hash>_nohash_<n>.wav files in the digit folders of {root}", hint=LAYOUT)
    notes = [f"kept {len(records)} digit-word utterances from {len({r.speaker for r in records})} speakers; "
             f"skipped {other_files} files in {len(other_dirs)} non-digit folders"
             + (" (including _background_noise_)" if (root / "_background_noise_").is_dir() else "")
             + (f" and {odd_names} misnamed files in digit folders" if odd_names else "")]
    if missing_words:
        notes.append("digit folders missing: " + ", ".join(missing_words))
    return Manifest(corpus="speechcommands", root=str(root), records=records, notes=notes)
