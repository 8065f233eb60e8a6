"""Deployments: the pipeline on a schedule, executed by a worker of a local process work pool.

`vgs schedule --cron "0 2 * * *"` creates (or updates) the deployment `dvc-pipeline/<name>` in
the work pool `vgs-local`. The server's scheduler creates the runs; a process worker of that pool
(`vgs ui` starts one next to the server, `vgs worker --pool vgs-local` starts one alone) runs
each in a subprocess, in the project named by $VGS_REPO. The deployment refers to the flow by
module path (pipeline.flows.dvc_pipeline), so no code is copied or stored anywhere.
"""
from __future__ import annotations

# The sweep's pool and deployment names live with the sweep (pipeline/sweep.py), which imports
# nothing above it: deployments -> flows -> sweep, never back.
from pipeline.sweep import SWEEP_DEPLOYMENT, SWEEP_POOL

LOCAL_POOL = "vgs-local"
DEFAULT_SCHEDULE_NAME = "scheduled"


def ensure_process_pool(pool: str) -> None:
    """Create a process-type work pool unless it exists."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))


def schedule_pipeline(cron: str | None = None, interval: float | None = None,
                      name: str = DEFAULT_SCHEDULE_NAME, targets: list[str] | None = None,
                      timezone: str | None = None, pool: str = LOCAL_POOL,
                      max_parallel: int | None = None) -> str:
    """Create or update the scheduled deployment; returns its id."""
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.schedules import Schedule

    from pipeline.flows import dvc_pipeline
    from vgs.errors import VgsError

    if (cron is None) == (interval is None):
        raise VgsError("give exactly one of --cron or --interval")
    if cron is not None:
        try:
            CronSchedule(cron=cron, timezone=timezone)
        except ValueError as exc:
            raise VgsError(f"invalid cron expression {cron!r}: {exc}",
                           hint='five fields: minute hour day month weekday, e.g. "0 2 * * *"') from None
        schedule = Schedule(cron=cron, timezone=timezone)
    else:
        if interval <= 0:
            raise VgsError(f"--interval must be a positive number of seconds, got {interval}")
        IntervalSchedule(interval=interval)
        schedule = Schedule(interval=interval, timezone=timezone)
    return apply_deployment(
        dvc_pipeline, name, pool, schedules=[schedule],
        parameters={"targets": targets, "max_parallel": max_parallel},
        description="The DVC pipeline on a schedule (vgs schedule); stage tasks and result "
                    "artifacts appear under each run.")


def apply_deployment(flow, name: str, pool: str, **options) -> str:
    """Register `flow` as deployment `<flow>/<name>` in process pool `pool`; returns its id.

    The flow is named by module path (pipeline.flows...), so a worker imports it from its own
    installed project and nothing needs storing or building (what `Flow.deploy()` is about).
    """
    from prefect.deployments.runner import EntrypointType

    ensure_process_pool(pool)
    deployment = flow.to_deployment(name=name, work_pool_name=pool,
                                    entrypoint_type=EntrypointType.MODULE_PATH, **options)
    return str(deployment.apply())


def upcoming_runs(deployment_id: str, limit: int = 3) -> list:
    """The deployment's next scheduled flow runs (the server's scheduler creates them)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.SCHEDULED]))),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=limit)


def deploy_sweep(pool: str = SWEEP_POOL, name: str = SWEEP_DEPLOYMENT, pull: bool = False,
                 push_remote: str | None = None) -> str:
    """Create the process work pool (if missing) and the `dvc-experiment/<name>` deployment.

    The deployment names the flow by module path (pipeline.flows), so a worker runs it from its
    own installed project; the flow finds its checkout through $VGS_REPO, which `vgs worker`
    sets. Nothing here depends on this machine's paths, so workers anywhere can share it.
    """
    from pipeline.flows import dvc_experiment

    return apply_deployment(
        dvc_experiment, name, pool, parameters={"pull": pull, "push_remote": push_remote},
        description="One sweep point as a DVC experiment (`dvc exp run --temp -S ...`); "
                    "submit points with `vgs sweep submit`.")


def submit_sweep(grid: list[dict[str, str]], prefix: str, targets: list[str] | None,
                 deployment: str = SWEEP_DEPLOYMENT) -> list[tuple[str, str]]:
    """One flow run per point; returns (experiment name, flow run id)."""
    from prefect.deployments import run_deployment

    from pipeline.flows import EXPERIMENT_FLOW_NAME
    from pipeline.sweep import point_name

    runs = []
    for point in grid:
        name = point_name(prefix, point)
        run = run_deployment(f"{EXPERIMENT_FLOW_NAME}/{deployment}", timeout=0,
                             parameters={"params": point, "name": name, "targets": targets},
                             flow_run_name=name)
        runs.append((name, str(run.id)))
    return runs
