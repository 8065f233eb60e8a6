"""Start a Prefect worker for this project (foreground; Ctrl-C stops it).

  vgs worker                       # takes sweep points from the work pool vgs-sweep
  vgs worker --pool vgs-local      # runs scheduled pipeline runs (vgs ui starts one already)
  PREFECT_API_URL=http://server:4200/api vgs worker     # on another machine

This is `prefect worker start --pool <pool> --type process` with PREFECT_HOME in the project and
VGS_REPO set to it, so the flow runs it starts use this checkout and its .venv.
"""
from __future__ import annotations

import argparse

from vgs.commands._prefect import add_api_argument

HELP = "start a Prefect worker (process pool) that runs flow runs in this checkout"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", default="vgs-sweep", help="work pool (default: vgs-sweep)")
    parser.add_argument("--limit", type=int, default=1,
                        help="flow runs this worker runs at once (default: 1; start more workers for more)")
    add_api_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    import os
    import sys

    from vgs.commands._prefect import connect

    root, api = connect(args)
    from pipeline.server import project_env

    env = project_env(root, api)
    env["VGS_REPO"] = str(root)
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", args.pool, "--type", "process",
            "--limit", str(args.limit)]
    print(f"worker for pool {args.pool} on {api}, project {root}", flush=True)
    # Become the worker, so that signals (Ctrl-C, a service manager's SIGTERM) reach it directly.
    os.chdir(root)
    os.execve(sys.executable, argv, env)
