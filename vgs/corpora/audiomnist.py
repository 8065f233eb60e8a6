"""AudioMNIST (Becker et al. 2018): 60 speakers x 10 digits x 50 repetitions, 48 kHz mono WAV.

AudioMNIST ships no split. Ours is speaker-disjoint:
- test: `test_speakers`, by default the test speakers of fold 0 of the authors' own five-fold
  digit split (audiomnist/train/splits.py in their repository): 05 13 18 22 26 32 33 42 45 51 52 60;
- val: a seeded share of the remaining speakers, the same share of each gender
  (`val_by: speaker`), or a seeded share of each digit's training utterances (`val_by: utterance`).

Speaker metadata comes from audioMNIST_meta.txt, a JSON object keyed by speaker ("01".."60").
Gender, age, accent and native-speaker status go into each record's `extra`. Versions of the upstream
file lack a few speakers and have odd values (one age is "1234"); missing or implausible values are
left out rather than guessed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from tqdm import tqdm

from vgs.corpora.audio_info import audio_info
from vgs.corpora.manifest import Manifest, ManifestRecord
from vgs.corpora.splits import check_val_by, choose_per_group
from vgs.errors import DataError, ParamError

DEFAULT_TEST_SPEAKERS = ("05", "13", "18", "22", "26", "32", "33", "42", "45", "51", "52", "60")
NAME = re.compile(r"^(\d)_(\d{2})_(\d+)\.wav$")
META = "audioMNIST_meta.txt"
LAYOUT = """expected layout (AudioMNIST, github.com/soerenab/AudioMNIST):
  <root>/data/<NN>/<digit>_<NN>_<repetition>.wav   e.g. data/07/3_07_42.wav  (NN = speaker 01..60)
  <root>/data/audioMNIST_meta.txt                  JSON: {"01": {"gender": "male", "age": 30, ...}, ...}
  (<root> may also be the data/ folder itself)"""


def _data_dir(root: Path) -> Path:
    for candidate in (root / "data", root):
        if candidate.is_dir() and any(p.is_dir() and re.fullmatch(r"\d{2}", p.name) for p in candidate.iterdir()):
            return candidate
    raise DataError(f"no speaker folders data/<NN>/ under {root}", hint=LAYOUT)


def _load_meta(data_dir: Path, root: Path) -> tuple[dict, str | None]:
    for path in (data_dir / META, root / META):
        if path.is_file():
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"{path} is not valid JSON: {exc}", hint=LAYOUT) from None
            if not isinstance(meta, dict):
                raise DataError(f"{path} must hold a JSON object keyed by speaker", hint=LAYOUT)
            return meta, None
    return {}, f"{META} not found; records carry no speaker metadata and val is not gender-stratified"


def _speaker_extra(info: dict) -> dict:
    extra = {}
    gender = str(info.get("gender", "")).strip().lower()
    if gender in ("male", "female"):
        extra["gender"] = gender
    try:
        age = int(str(info.get("age", "")).strip())
        if 5 <= age <= 110:
            extra["age"] = age
    except ValueError:
        pass
    if info.get("accent"):
        extra["accent"] = str(info["accent"])
    native = str(info.get("native speaker", "")).strip().lower()
    if native in ("yes", "no"):
        extra["native_speaker"] = native == "yes"
    return extra


def _normalise_speakers(speakers) -> list[str]:
    out = []
    for s in speakers:
        try:
            out.append(f"{int(s):02d}")
        except (TypeError, ValueError):
            raise ParamError(f"corpora.audiomnist.test_speakers: {s!r} is not a speaker number (01..60)") from None
    return out


def prepare_audiomnist(root: str | Path, test_speakers=None, val_fraction: float = 0.1, seed: int = 0,
                       val_by: str = "speaker") -> Manifest:
    root = Path(root)
    check_val_by(val_by, "audiomnist")
    if not root.is_dir():
        raise DataError(f"AudioMNIST root {root} does not exist", hint=LAYOUT)
    data_dir = _data_dir(root)
    meta, meta_note = _load_meta(data_dir, root)

    files = []
    misnamed = 0
    for speaker_dir in sorted(p for p in data_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d{2}", p.name)):
        for path in sorted(speaker_dir.iterdir()):
            m = NAME.match(path.name)
            if not m or m.group(2) != speaker_dir.name:
                misnamed += path.is_file()  # e.g. data/36/notes.txt upstream
                continue
            files.append((int(m.group(1)), speaker_dir.name, int(m.group(3)), path))
    if not files:
        raise DataError(f"no <digit>_<NN>_<rep>.wav files under {data_dir}", hint=LAYOUT)

    speakers = sorted({s for _, s, _, _ in files})
    test = set(_normalise_speakers(DEFAULT_TEST_SPEAKERS if test_speakers is None else test_speakers))
    notes = []
    absent = sorted(test - set(speakers))
    if absent:
        notes.append("test speakers not in this copy: " + " ".join(absent))
    if not test & set(speakers):
        raise DataError(f"none of the test speakers {sorted(test)} is in {data_dir}",
                        hint="set corpora.audiomnist.test_speakers to speakers you have")
    train_speakers = [s for s in speakers if s not in test]
    if val_by == "speaker":
        by_gender: dict[str, list[str]] = {}
        for s in train_speakers:
            by_gender.setdefault(_speaker_extra(meta.get(s, {})).get("gender", "unknown"), []).append(s)
        val_speakers = choose_per_group(by_gender, val_fraction, seed, keep_one=True)
        val_keys = {(d, s, r) for d, s, r, _ in files if s in val_speakers}
    else:
        by_digit: dict[int, list[tuple]] = {}
        for d, s, r, _ in files:
            if s not in test:
                by_digit.setdefault(d, []).append((d, s, r))
        val_keys = choose_per_group(by_digit, val_fraction, seed)

    records = []
    for digit, speaker, rep, path in tqdm(files, desc="audiomnist headers", unit="file", disable=len(files) < 2000):
        info = audio_info(path)
        split = "test" if speaker in test else ("val" if (digit, speaker, rep) in val_keys else "train")
        extra = _speaker_extra(meta.get(speaker, {}))
        if info.channels != 1:
            extra["channels"] = info.channels
        records.append(ManifestRecord(
            id=f"audiomnist-{path.stem}", source=path.relative_to(root).as_posix(), modality="audio",
            split=split, label=digit, transcript=str(digit), speaker=speaker,
            num_samples=info.frames, sample_rate=info.samplerate, extra=extra))
    no_meta = sorted(s for s in speakers if s not in meta)
    notes.insert(0, f"kept {len(records)} utterances from {len(speakers)} speakers"
                 + (f"; skipped {misnamed} other files" if misnamed else ""))
    if meta_note:
        notes.append(meta_note)
    elif no_meta:
        notes.append(f"{META} has no entry for speaker(s) " + " ".join(no_meta))
    return Manifest(corpus="audiomnist", root=str(root), records=records, notes=notes)
