"""Start a Prefect worker for this project (foreground; Ctrl-C or SIGTERM stops it cleanly).

  vgs worker                       # takes sweep points from the work pool vgs-sweep
  vgs worker --pool vgs-local      # runs scheduled pipeline runs (vgs ui starts one already)
  PREFECT_API_URL=http://server:4200/api vgs worker     # on another machine

This runs `prefect worker start --pool <pool> --type process` with PREFECT_HOME in the project and
VGS_REPO set to it, so the flow runs it starts use this checkout and its .venv, and:

- Workers on one machine share its cores: each flow run gives its stage commands
  cores // (flow runs that may run at once on this machine) torch/OpenMP threads, counting every
  `vgs worker --limit` of this project on this machine (VGS_THREADS=<n> overrides; `vgs threads`
  shows the numbers). So on one machine, N workers with --limit 1 each is the same as one with
  --limit N: use as many as the machine has cores at most, and fewer for memory-hungry runs.
- Stopping it (Ctrl-C, SIGTERM) stops the flow runs it started: their stage commands get
  SIGTERM (training saves a checkpoint), DVC removes the experiment's temporary workspace, every
  process ends (SIGKILL after a grace period; a second Ctrl-C skips it), and the runs become
  Cancelled in the UI (runs claimed but not started go back to the pool).
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
    from vgs.commands._prefect import connect
    from vgs.errors import VgsError

    if args.limit < 1:
        raise VgsError(f"--limit must be at least 1, got {args.limit}",
                       hint="--limit 1 runs one flow run at a time; start more workers for more")
    root, api = connect(args)
    from pipeline.server import project_env
    from pipeline.worker import WorkerSupervisor
    from vgs.utils.threads import thread_budget

    env = project_env(root, api)
    env["VGS_REPO"] = str(root)
    # A bad VGS_THREADS fails here, not in every flow run.
    thread_budget(None)
    print(f"worker for pool {args.pool} on {api}, project {root}, up to {args.limit} flow run(s) at once",
          flush=True)
    supervisor = WorkerSupervisor(root, args.pool, args.limit, api, env,
                                  log=lambda line: print(f"vgs worker: {line}", flush=True))
    return supervisor.run()
