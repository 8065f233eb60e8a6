"""Bring the DVC pipeline up to date with independent stages running at once (what `make run` does).

  vgs repro                        # every stage, as many at once as the machine has cores
  vgs repro -j 1                   # one at a time
  vgs repro 'crabtree2021-*'       # some stages and everything upstream of them

DVC runs each stage (`dvc repro --single-item`), so what is stale and what gets recorded is DVC's
decision, exactly as under `dvc repro`; this only starts independent stages together, the longest
chains first, and needs no Prefect server (pipeline/local.py). Every paper stage uses the fixed
thread count `stage_threads` of params.yaml, so the numbers do not depend on -j.
"""
from __future__ import annotations

import argparse
import os

HELP = "dvc repro with independent stages at once (-j), no server needed; what `make run` runs"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", help="stages, foreach groups or globs (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=None,
                        help="stages at once (default: the machine's cores)")
    parser.add_argument("--force", action="store_true", help="run the stages even if DVC finds them up to date")
    parser.add_argument("--repo", default=None, metavar="DIR", help="project root")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pipeline.local import run_local
    from vgs.commands._prefect import project_root
    from vgs.utils.threads import machine_cores

    root = project_root(args)
    jobs = args.jobs or machine_cores()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    summary = run_local(root, args.targets or None, jobs=jobs, force=args.force,
                        log=lambda line: print(line, flush=True))
    counts = ", ".join(f"{n} {o}" for o, n in sorted(summary.counts().items()))
    print(f"\n{len(summary.outcome)} stages in {summary.wall_seconds / 60:.1f} min ({counts}); "
          f"{jobs} at a time")
    return 0
