"""Where the SMART evaluation writes, and the samples file format (read by the report stage,
which must not need the models to run)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vgs.errors import StoreError
from vgs.utils.atomic import atomic_path

METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.npz"


def eval_dir(style: str) -> Path:
    return Path("data/eval/smart") / style


def save_samples(path: str | Path, samples: dict[str, dict]) -> None:
    """samples[direction][name] -> array, stored as `direction/name` in one .npz file."""
    arrays = {f"{direction}/{key}": np.asarray(value)
              for direction, s in samples.items() for key, value in s.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_samples(path: str | Path) -> dict[str, dict]:
    out: dict = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            direction, name = key.split("/", 1)
            out.setdefault(direction, {})[name] = z[key]
    return out


def load_record(style: str) -> dict:
    path = eval_dir(style) / METRICS_FILE
    if not path.exists():
        raise StoreError(f"{path} does not exist", hint=f"run the evaluation first: dvc repro smart-evaluate@{style}")
    return json.loads(path.read_text())
