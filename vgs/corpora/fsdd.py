"""Free Spoken Digit Dataset (Jackson et al.), release v1.0.10: 6 speakers x 10 digits x 50 takes."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vgs.corpora.audio_info import audio_info
from vgs.corpora.manifest import Manifest, ManifestRecord
from vgs.errors import DataError

NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
LAYOUT = """expected layout (FSDD release v1.0.10):
  <root>/recordings/<digit>_<speaker>_<index>.wav   e.g. recordings/7_jackson_32.wav
  (8 kHz mono 16-bit PCM; index 0-4 is the official test set)"""
TEST_INDICES = range(0, 5)


def prepare_fsdd(root: str | Path, val_fraction: float = 0.1, seed: int = 0) -> Manifest:
    """Official split (takes 0-4 are test); `val` takes a seeded share of each speaker-digit's
    training takes, so every speaker and digit is represented in validation."""
    root = Path(root)
    rec_dir = root / "recordings"
    if not rec_dir.is_dir():
        raise DataError(f"FSDD recordings directory {rec_dir} not found", hint=LAYOUT)
    parsed = []
    for path in sorted(rec_dir.iterdir()):
        m = NAME.match(path.name)
        if not m:
            continue
        parsed.append((path, int(m.group(1)), m.group(2), int(m.group(3))))
    if not parsed:
        raise DataError(f"no <digit>_<speaker>_<index>.wav files in {rec_dir}", hint=LAYOUT)

    rng = np.random.default_rng(seed)
    val_ids: set[tuple] = set()
    groups: dict[tuple, list[int]] = {}
    for _, digit, speaker, index in parsed:
        if index not in TEST_INDICES:
            groups.setdefault((speaker, digit), []).append(index)
    for key in sorted(groups):
        takes = sorted(groups[key])
        n_val = int(round(val_fraction * len(takes)))
        for index in rng.choice(takes, size=n_val, replace=False).tolist():
            val_ids.add((*key, index))

    records = []
    for path, digit, speaker, index in parsed:
        info = audio_info(path)
        split = "test" if index in TEST_INDICES else ("val" if (speaker, digit, index) in val_ids else "train")
        records.append(ManifestRecord(
            id=f"fsdd-{path.stem}", source=f"recordings/{path.name}", modality="audio", split=split,
            label=digit, transcript=str(digit), speaker=speaker,
            num_samples=info.frames, sample_rate=info.samplerate,
            extra={"channels": info.channels} if info.channels != 1 else {}))
    return Manifest(corpus="fsdd", root=str(root), records=records)
