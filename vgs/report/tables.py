"""Result tables (paper value beside ours), metrics files and the run facts every report shows."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from pathlib import Path

from vgs.utils.atomic import atomic_write_text


def fmt(v, digits: int = 3) -> str:
    """Table cell text: empty for a value the paper lost (None), fixed digits for floats."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def write_csv(path: str | Path, rows: list[dict], columns: list[str], digits: int = 3) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([fmt(r.get(c), digits) for c in columns])
    atomic_write_text(path, buf.getvalue())


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def markdown_table(rows: list[dict], columns: list[str], digits: int = 3, empty: str = "n/a") -> str:
    """A GitHub markdown table; empty cells (values the paper lost) print as `empty`."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c), digits) or empty for c in columns) + " |")
    return "\n".join(lines)


def write_metrics(path: str | Path, metrics: dict) -> None:
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def hardware_summary() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({cpu}), {device}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")
