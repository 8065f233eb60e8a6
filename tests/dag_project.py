"""Tiny DVC projects built from the repo's own stages (shared by the DAG and stale-weights tests):
the foundation stages' names, tiny corpora in the real MNIST (IDX .gz) and FSDD (recordings/*.wav)
layouts, and `dvc` run in a project with the stages it ran read back from its output."""
import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import shutil

import numpy as np
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parent.parent
# `code` writes the code manifests that every other stage depends on (vgs/utils/code_deps.py).
FOUNDATION_STAGES = ("code", "fetch", "prepare", "features", "pairs")


def copy_sources(proj: Path, scripts=FOUNDATION_STAGES) -> None:
    """The project's code as the `code` stage watches it: vgs/, pipeline/, pyproject.toml, the stage
    scripts named, and .dvcignore (compiled __pycache__ files are no change of the code)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for package in ("vgs", "pipeline"):
        shutil.copytree(REPO / package, proj / package, ignore=ignore)
    for name in ("pyproject.toml", ".dvcignore"):
        shutil.copy(REPO / name, proj / name)
    (proj / "stages").mkdir(exist_ok=True)
    for script in {*scripts, "code"}:
        shutil.copy(REPO / "stages" / f"{script}.py", proj / "stages")


def code_stage() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["code"]


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_corpora(data: Path) -> None:
    rng = np.random.default_rng(0)
    mnist = data / "raw" / "mnist"
    mnist.mkdir(parents=True)
    for prefix, n in (("train", 40), ("t10k", 20)):
        write_idx(mnist / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, size=(n, 28, 28)))
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    rec = data / "raw" / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    t = np.arange(2400) / 8000
    for digit in range(10):
        for take in range(8):  # takes 0-4 are FSDD's test split; 5-7 train, one of them val
            x = 0.3 * np.sin(2 * np.pi * (200 + 50 * digit + 7 * take) * t) + 0.01 * rng.standard_normal(len(t))
            sf.write(str(rec / f"{digit}_alice_{take}.wav"), x.astype(np.float32), 8000, subtype="PCM_16")


def dvc(proj: Path, *args: str) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(proj), TQDM_DISABLE="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=proj, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def ran(output: str) -> set:
    return set(re.findall(r"Running stage '([^']+)'", output))
