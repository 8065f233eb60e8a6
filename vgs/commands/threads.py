"""Show the CPU budget: how many torch/OpenMP threads a run started now would give each stage.

  vgs threads                 # the budget of one more run, and who shares this machine
  vgs threads -j 2            # ... of something that runs 2 stage processes at once
  eval "$(vgs threads -j 2 --export)"; dvc queue start -j 2      # plain DVC, with the budget

The rule (vgs/utils/threads.py): cores // (stage processes that may run at once on this
machine), at least 1, where every `vgs worker` of this project counts its --limit, a foreground
`vgs flow` its -j and `vgs sweep queue` its -j. VGS_THREADS=<n> overrides it. Runs started by
`vgs worker`, `vgs flow` and `vgs sweep queue` apply it themselves (OMP_NUM_THREADS,
MKL_NUM_THREADS, OPENBLAS_NUM_THREADS, ... in their stage commands' environment); plain
`dvc repro` and `dvc queue start` do not.
"""
from __future__ import annotations

import argparse

HELP = "show the CPU threads each stage process gets, and the runs sharing this machine"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="stage processes the run would start at once (default: 1)")
    parser.add_argument("--export", action="store_true",
                        help="print `export OMP_NUM_THREADS=...` lines for a shell instead")
    parser.add_argument("--repo", default=None, metavar="DIR", help="project root")
    parser.set_defaults(func=run)


def run(args) -> int:
    from vgs.commands._prefect import project_root
    from vgs.errors import VgsError
    from vgs.utils.threads import THREAD_VARIABLES, live_runners, thread_budget

    if args.jobs < 1:
        raise VgsError(f"-j must be at least 1, got {args.jobs}")
    root = project_root(args)
    budget = thread_budget(root, parallel=args.jobs)
    if args.export:
        for name in THREAD_VARIABLES:
            print(f"export {name}={budget.threads}")
        return 0
    print(budget.describe())
    runners = live_runners(root)
    if runners:
        print("registered on this machine:")
        for r in runners:
            print(f"  pid {r.pid}: {r.what} ({r.slots} at once)")
    else:
        print("no vgs worker, vgs flow or vgs sweep queue of this project runs on this machine")
    return 0
