"""Run the DVC pipeline on a schedule, as a Prefect deployment.

  vgs schedule --cron "0 2 * * *"                 # every night at 02:00 (server time zone: UTC)
  vgs schedule --cron "0 2 * * *" --timezone Europe/Berlin
  vgs schedule --interval 3600 --name hourly pairs@mnist-fsdd

Creates or updates the deployment dvc-pipeline/<name> in the work pool vgs-local. The runs
execute where a worker of that pool runs: `vgs ui` starts one; `vgs worker --pool vgs-local`
starts one alone. Pause or delete schedules in the UI (Deployments) or with
`prefect deployment delete dvc-pipeline/<name>`.
"""
from __future__ import annotations

import argparse

from vgs.commands._prefect import add_api_argument

HELP = "create a deployment that runs the pipeline on a cron or interval schedule"


def register(parser: argparse.ArgumentParser) -> None:
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='cron expression, e.g. "0 2 * * *"')
    when.add_argument("--interval", type=float, help="seconds between runs")
    parser.add_argument("--timezone", default=None, help="time zone of the cron expression (default: UTC)")
    parser.add_argument("--name", default="scheduled", help="deployment name (default: scheduled)")
    parser.add_argument("targets", nargs="*", help="stages to bring up to date (default: all)")
    parser.add_argument("-j", "--max-parallel", type=int, default=None, help="stages at once")
    add_api_argument(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from vgs.commands._prefect import connect

    connect(args)
    from pipeline.deployments import LOCAL_POOL, schedule_pipeline, upcoming_runs
    from pipeline.flows import FLOW_NAME

    deployment_id = schedule_pipeline(cron=args.cron, interval=args.interval, name=args.name,
                                      targets=args.targets or None, timezone=args.timezone,
                                      max_parallel=args.max_parallel)
    print(f"deployment {FLOW_NAME}/{args.name} ({deployment_id}) in work pool {LOCAL_POOL}")
    import time

    # The server's scheduler picks up a new deployment within seconds.
    deadline = time.monotonic() + 15
    runs = upcoming_runs(deployment_id)
    while not runs and time.monotonic() < deadline:
        time.sleep(1)
        runs = upcoming_runs(deployment_id)
    for r in runs:
        print(f"  next run: {r.expected_start_time} ({r.name})")
    if not runs:
        print("  the server's scheduler lists the next runs within a minute (UI: Deployments)")
    print(f"Runs execute while a {LOCAL_POOL} worker runs (`vgs ui` starts one).")
    return 0
