"""Feature configs from the repo's params.yaml, speech-like test audio, hand-built WAV files and a
feature store's files byte for byte (shared by the feature extraction and knf_bulk tests)."""
import struct
from pathlib import Path

import numpy as np

from conftest import REPO
from vgs.features.config import load_feature_config
from vgs.params import Params

REPO_PARAMS = Params.load(REPO / "params.yaml")


def cfg_of(name: str, **override):
    data = REPO_PARAMS.to_dict()
    data["features"][name].update(override)
    return load_feature_config(Params(data), name)


def speechlike(n: int, seed: int = 0, rate: int = 8000) -> np.ndarray:
    """Noise through a moving formant plus a pitch train: varied spectra, no silent frames."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    pitch = 0.2 * np.sign(np.sin(2 * np.pi * (110 + 40 * seed) * t))
    formant = np.sin(2 * np.pi * (500 + 300 * np.sin(2 * np.pi * 3 * t)) * t)
    return (0.3 * pitch * formant + 0.02 * rng.standard_normal(n)).astype(np.float32)


# -- WAV files built chunk by chunk ------------------------------------------------------------------
def riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"WAVE"
    for cid, data in chunks:
        body += cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt_chunk(channels=1, rate=8000, bits=16, tag=1) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


# -- whole stores ------------------------------------------------------------------------------------
def store_files(path: Path) -> dict:
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
