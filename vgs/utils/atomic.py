"""Write outputs so that a reader sees either nothing or the finished thing.

Every stage writes into a sibling temporary path and renames it over the target at the end. A
killed process leaves only a `.tmp-*` sibling, which no stage reads and the next run removes.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

TMP_MARK = ".tmp-"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def remove_stale_temporaries(target: Path) -> None:
    """Delete leftovers of earlier killed writes of `target`."""
    target = Path(target)
    if not target.parent.exists():
        return
    for leftover in target.parent.glob(f".{target.name}{TMP_MARK}*"):
        _remove(leftover)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path next to `target`; on success move it over `target`.

    Works for files and directories. On an exception the temporary is removed and `target` is
    left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.parent / f".{target.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if not tmp.exists():
        raise FileNotFoundError(f"nothing was written to {tmp} for {target}")
    if target.is_dir() and not target.is_symlink():
        # os.replace cannot replace a non-empty directory: move the old one aside first.
        old = target.parent / f".{target.name}{TMP_MARK}old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        os.replace(tmp, target)
        _remove(old)
    else:
        os.replace(tmp, target)


def own_copies(directory: str | os.PathLike) -> list[Path]:
    """Give every hard-linked file under `directory` its own inode, and return those files.

    The DVC cache shares files with the workspace by hard link (.dvc/config `cache.type`), so a
    write in place into an output would also change the cached copy, and DVC's read-only mode on
    linked files does not stop root. `dvc repro` unprotects `persist: true` outputs before their
    stage runs; this covers a stage script run by hand, before anything is appended in place.
    Files written by temporary path and rename never need it.
    """
    copied = []
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() and not path.is_symlink() and path.stat().st_nlink > 1:
            with atomic_path(path) as tmp:
                shutil.copy2(path, tmp)
            os.chmod(path, 0o644)
            copied.append(path)
    return copied


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def atomic_write_json(target: str | os.PathLike, obj, indent: int = 2) -> None:
    atomic_write_text(target, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
