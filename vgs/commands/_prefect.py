"""Shared bits of the Prefect commands (ui, flow, schedule, worker, sweep): project root, API URL
and the environment, applied before prefect is imported."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_api_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", default=None, metavar="URL",
                        help="Prefect API (default: $PREFECT_API_URL, else http://127.0.0.1:4200/api)")
    parser.add_argument("--repo", default=None, metavar="DIR",
                        help="project root (default: the nearest parent holding dvc.yaml)")


def project_root(args) -> Path:
    from vgs.utils.entry import repo_root

    return Path(args.repo).resolve() if getattr(args, "repo", None) else repo_root().resolve()


def connect(args) -> tuple[Path, str]:
    """Project root and API URL, with PREFECT_HOME etc. applied and the server checked."""
    from pipeline.server import configure, require_server

    root = project_root(args)
    api = configure(root, args.api_url)
    require_server(api)
    return root, api


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    if not rows:
        print("(none)")
        return
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
