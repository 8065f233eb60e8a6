"""Shared entry-point behaviour for stage scripts and the `vgs` command."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from vgs.errors import VgsError


def repo_root() -> Path:
    """The repository root: the nearest parent holding dvc.yaml, else the working directory."""
    here = Path.cwd()
    for p in (here, *here.parents):
        if (p / "dvc.yaml").exists():
            return p
    return here


def friendly_errors(main):
    """Print VgsErrors as one message with its fix and exit 2, instead of a traceback.

    Set VGS_TRACEBACK=1 to see the full traceback when debugging.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except VgsError as exc:
            if os.environ.get("VGS_TRACEBACK"):
                raise
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
