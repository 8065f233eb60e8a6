"""Run the DVC pipeline once as a Prefect flow against the running server (`make ui`).

  vgs flow                          # every stage in dvc.yaml, as `dvc repro` would
  vgs flow pairs@mnist-fsdd         # a stage and everything upstream of it
  vgs flow 'features@*' -j 3        # globs and foreach groups; 3 stages at a time

Each DVC stage is one task run named after the stage; stages DVC finds up to date finish at
once. Afterwards results/<paper-id>/table*.csv and report.md appear as artifacts.
"""
from __future__ import annotations

import argparse

from vgs.commands._prefect import add_api_argument

HELP = "run the DVC pipeline (or some stages) once as a Prefect flow"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", help="stages, foreach groups or globs (default: all)")
    parser.add_argument("-j", "--max-parallel", type=int, default=None,
                        help="stages at once (default: orchestration.max_parallel in params.yaml)")
    parser.add_argument("--no-publish", action="store_true", help="do not create result artifacts")
    add_api_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from vgs.commands._prefect import connect

    root, api = connect(args)
    from pipeline.flows import dvc_pipeline
    from pipeline.server import ui_url

    state = dvc_pipeline(targets=args.targets or None, max_parallel=args.max_parallel,
                         repo=str(root), publish=not args.no_publish, return_state=True)
    print(f"\nflow run {state.name}; see {ui_url(api)}/runs")
    return 0 if state.is_completed() else 1
