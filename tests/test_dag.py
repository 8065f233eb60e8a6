"""The DAG end to end: a tiny DVC project built from the repo's own foundation stages.

The project in tmp_path gets copies of stages/, vgs/ and the fetch/prepare/features/pairs stages
of dvc.yaml, and the repo's params.yaml with smaller lists. Its corpora are tiny fixtures in the
real MNIST (IDX .gz) and FSDD (recordings/*.wav) layouts, placed where fetch would put them.
`dag.fetch` is empty: fetch verifies every file against the sums recorded for the real releases,
so it cannot accept a tiny corpus; it has its own tests over HTTP (tests/test_fetch.py).

Checks: one `dvc repro` runs every stage; a second runs nothing; after changing
features.fbank80.num_mel_bins exactly that features stage and the pairs stage reading its store
run again.
"""
import copy
import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parent.parent
FOUNDATION_STAGES = ("fetch", "prepare", "features", "pairs")
pytestmark = pytest.mark.slow


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


def make_project(proj: Path) -> None:
    proj.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "vgs", proj / "vgs", ignore=ignore)
    (proj / "stages").mkdir()
    for stage in FOUNDATION_STAGES:
        shutil.copy(REPO / "stages" / f"{stage}.py", proj / "stages")
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    dvc["stages"] = {k: v for k, v in dvc["stages"].items() if k in FOUNDATION_STAGES}
    (proj / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dag"]["fetch"] = []
    params["dag"]["prepare"] = ["mnist", "fsdd"]
    params["corpora"]["mnist"]["val_size"] = 10
    params["corpora"]["fsdd"]["val_fraction"] = 0.34
    params["feature_sets"] = {k: params["feature_sets"][k] for k in ("mnist-image28", "fsdd-fbank80", "fsdd-logmel40")}
    pairing = copy.deepcopy(params["pairing"]["mnist-fsdd"])
    pairing["epochs"] = {"train": 2, "val": 1, "test": 1}
    params["pairing"] = {"mnist-fsdd": pairing}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_corpora(proj / "data")


def dvc(proj: Path, *args: str) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(proj), TQDM_DISABLE="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=proj, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def ran(output: str) -> set:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_repro_then_one_key_change_reruns_only_its_stages(tmp_path):
    proj = tmp_path / "proj"
    make_project(proj)
    dvc(proj, "init", "--no-scm", "-q")

    first = dvc(proj, "repro")
    assert ran(first) == {"prepare@mnist", "prepare@fsdd", "features@mnist-image28", "features@fsdd-fbank80",
                          "features@fsdd-logmel40", "pairs@mnist-fsdd"}, first

    again = dvc(proj, "repro")
    assert ran(again) == set(), again
    assert "up to date" in dvc(proj, "status")

    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["features"]["fbank80"]["num_mel_bins"] = 40
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(proj, "status")
    changed = set(re.findall(r"^(\S+@\S+):\s*$", status, flags=re.M))
    assert changed == {"features@fsdd-fbank80"}, status
    assert re.search(r"modified:\s+features\.fbank80\b", status), status

    after = dvc(proj, "repro")
    assert ran(after) == {"features@fsdd-fbank80", "pairs@mnist-fsdd"}, after
    from vgs.store.feature_store import FeatureStore

    assert FeatureStore(proj / "data/features/fsdd/fbank80.zarr").dim == 40
    assert FeatureStore(proj / "data/features/fsdd/logmel40.zarr").dim == 40
    assert ran(dvc(proj, "repro")) == set()
