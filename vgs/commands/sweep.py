"""Parameter sweeps as DVC experiments: through DVC's queue, or through Prefect workers.

A grid is given with -S (repeatable; values separated by commas; the cartesian product runs):

  vgs sweep queue -S train.lr=0.1,0.01 -S train.seed=1,2 -j 2 [stage ...]
      dvc exp run --queue per point, then `dvc queue start -j 2` with each job's CPU budget
      (cores // 2 threads; `vgs threads`); waits and prints the results.

  vgs sweep deploy                        # once: the dvc-experiment/sweep deployment, pool vgs-sweep
  vgs worker & vgs worker &               # N workers, here (at most one per core) or on other machines
  vgs sweep submit -S leidal2017.lambda_ig=0,0.1,1,10 --wait [stage ...]
      one flow run per point; each worker runs `dvc exp run --temp -S ...` for the point it takes.

  vgs sweep show [--name PREFIX]          # `dvc exp show` as a table (also: dvc exp show)
"""
from __future__ import annotations

import argparse
import time

from vgs.commands._prefect import add_api_argument

HELP = "parameter sweeps as DVC experiments (DVC queue or Prefect work pool)"


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-S", "--set-param", dest="grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="a sweep axis (repeat for a grid)")
    p.add_argument("--name", default=None, metavar="PREFIX",
                   help="experiment name prefix (default: sweep-<MMDD-HHMMSS>)")
    p.add_argument("targets", nargs="*", help="stages to reproduce (default: the whole pipeline)")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sweep_command", metavar="<subcommand>")

    q = sub.add_parser("queue", help="run the grid with `dvc exp run --queue` + `dvc queue start -j N`")
    _grid_args(q)
    q.add_argument("-j", "--jobs", type=int, default=2, help="DVC queue workers (default: 2)")
    q.add_argument("--no-wait", action="store_true", help="return once the queue is started")
    q.add_argument("--repo", default=None, metavar="DIR", help="project root")
    q.set_defaults(func=run_queue)

    d = sub.add_parser("deploy", help="create the work pool and the dvc-experiment deployment")
    d.add_argument("--pool", default="vgs-sweep", help="work pool (default: vgs-sweep)")
    d.add_argument("--deployment", default="sweep", help="deployment name (default: sweep)")
    d.add_argument("--pull", action="store_true",
                   help="workers `dvc pull` missing inputs from the default DVC remote (fresh clones)")
    d.add_argument("--push-remote", default=None, metavar="GIT_REMOTE",
                   help="workers `dvc exp push` each finished experiment to this git remote")
    add_api_argument(d)
    d.set_defaults(func=run_deploy)

    s = sub.add_parser("submit", help="one flow run of the deployment per grid point")
    _grid_args(s)
    s.add_argument("--deployment", default="sweep", help="deployment name (default: sweep)")
    s.add_argument("--wait", action="store_true", help="wait for every run, then print `dvc exp show`")
    s.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")
    add_api_argument(s)
    s.set_defaults(func=run_submit)

    sh = sub.add_parser("show", help="experiments with their params and metrics")
    sh.add_argument("--name", default=None, metavar="PREFIX", help="only experiments whose name starts so")
    sh.add_argument("--repo", default=None, metavar="DIR", help="project root")
    sh.set_defaults(func=run_show)


def _prefix(args) -> str:
    return args.name or time.strftime("sweep-%m%d-%H%M%S")


def _show(root, prefix: str | None) -> None:
    from pipeline.sweep import experiment_rows
    from vgs.commands._prefect import print_table

    rows = experiment_rows(root)
    if prefix:
        rows = [r for r in rows if str(r["experiment"]).startswith(prefix)]
    print_table(sorted(rows, key=lambda r: str(r["experiment"])))


def run_queue(args) -> int:
    from pipeline.sweep import parse_grid, queue_sweep
    from vgs.commands._prefect import project_root

    root = project_root(args)
    grid = parse_grid(args.grid)
    prefix = _prefix(args)
    print(f"{len(grid)} experiments, {args.jobs} at a time (DVC queue)")
    queue_sweep(root, grid, prefix, args.targets or None, args.jobs, wait=not args.no_wait)
    if args.no_wait:
        print("queued; follow with `dvc queue status`, then `dvc exp show`")
    else:
        _show(root, prefix)
    return 0


def run_deploy(args) -> int:
    from vgs.commands._prefect import connect

    connect(args)
    from pipeline.deployments import deploy_sweep

    deployment_id = deploy_sweep(args.pool, args.deployment, pull=args.pull, push_remote=args.push_remote)
    print(f"deployment dvc-experiment/{args.deployment} ({deployment_id}) in work pool {args.pool}\n"
          f"start workers with `vgs worker --pool {args.pool}` (one per concurrent experiment)")
    return 0


def run_submit(args) -> int:
    from vgs.commands._prefect import connect

    root, _ = connect(args)
    from pipeline.deployments import submit_sweep
    from pipeline.sweep import parse_grid, wait_for_runs

    grid = parse_grid(args.grid)
    prefix = _prefix(args)
    runs = submit_sweep(grid, prefix, args.targets or None, args.deployment)
    for name, run_id in runs:
        print(f"submitted {name}: flow run {run_id}")
    if not args.wait:
        return 0
    states = wait_for_runs([rid for _, rid in runs], timeout=args.timeout)
    bad = [name for name, rid in runs if states[rid] != "Completed"]
    for name, rid in runs:
        print(f"{name}: {states[rid]}")
    _show(root, prefix)
    return 1 if bad else 0


def run_show(args) -> int:
    from vgs.commands._prefect import project_root

    _show(project_root(args), args.name)
    return 0
