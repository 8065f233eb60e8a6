"""DVC's commands run from the venv, and a copy of the committed results that its read commands
can run in (shared by the DVC results and UI tests)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

VENV_BIN = Path(sys.executable).parent


def run(argv, cwd, env=None, timeout=1800) -> str:
    out = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{argv} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def dvc_env(**extra) -> dict:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "TQDM_DISABLE": "1", **extra}


def dvc_json(args, cwd, env=None):
    """`dvc <args> --json`: its stdout, whatever DVC warns about on stderr (a missing file of a
    paper not built yet)."""
    out = subprocess.run([str(VENV_BIN / "dvc"), *args, "--json"], cwd=cwd, env=env or dvc_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout)


def repo_copy(dest: Path) -> Path:
    """The results and the pipeline definition in a git repository of their own, so that DVC's
    read commands run without touching the project (whose `dvc repro` may hold its lock)."""
    dest.mkdir()
    for name in ("results", "dvc-plots"):
        shutil.copytree(REPO / name, dest / name)
    for name in ("dvc.yaml", "dvc.lock", "params.yaml"):
        shutil.copy(REPO / name, dest / name)
    (dest / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", dest / ".dvc" / "config")
    shutil.copytree(REPO / ".dvc" / "plots", dest / ".dvc" / "plots")
    run(["git", "init", "-q"], dest)
    return dest
