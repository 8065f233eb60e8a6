"""Prefect flows over the DVC pipeline.

`dvc_pipeline` turns the DVC stage graph into Prefect tasks: one task run per stage, named
after the stage, started as soon as its upstream stages have finished, at most `max_parallel`
at a time. DVC decides what is stale and caches outputs (see pipeline/runner.py for how
stages share one repository); Prefect decides when things run and shows them. After the
stages, every paper's results become artifacts (pipeline/artifacts.py).

`dvc_experiment` runs one grid point of a sweep as a DVC experiment; it is what the sweep
work-pool deployment runs (pipeline/sweep.py).

Each flow run works out its CPU budget when it starts (vgs/utils/threads.py: the cores divided by
the stage processes that may run at once on this machine, counting the other workers there) and
gives it to every stage command through the environment.
"""
from __future__ import annotations

import os
import queue
import time
from contextlib import nullcontext
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled, Completed
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.artifacts import artifact_key, publish_results
from pipeline.dag import load_stage_graph
from pipeline.runner import Outcome, pipeline_status, reproduce_stage, terminate_children
from pipeline.settings import load_orchestration
from vgs.errors import VgsError
from vgs.utils.threads import RUNNER_ENV, registered_runner, thread_budget

FLOW_NAME = "dvc-pipeline"
EXPERIMENT_FLOW_NAME = "dvc-experiment"
# The scheduler below never has more than `max_parallel` stages in flight, so this is only a
# ceiling for the setting.
MAX_PARALLEL_CEILING = 32


class PipelineFailed(VgsError):
    """One or more stages failed; the message names them and shows their last output."""


def resolve_repo(repo: str | None) -> Path:
    """The project root: the argument, else $VGS_REPO, else the nearest parent with dvc.yaml."""
    from vgs.utils.entry import repo_root

    path = Path(repo or os.environ.get("VGS_REPO") or repo_root()).resolve()
    if not (path / "dvc.yaml").exists() and not (path / ".dvc").is_dir():
        raise VgsError(f"{path} holds no DVC project (no dvc.yaml, no .dvc/)",
                       hint="run from the project root, set VGS_REPO, or pass --repo")
    return path


def _claim_cores(root: Path, stages_at_once: int, what: str):
    """Run by a `vgs worker`, the worker's registry entry stands for this run; run in the
    foreground (`vgs flow`, a test), the run registers itself so that workers count its stages."""
    return nullcontext() if os.environ.get(RUNNER_ENV) else registered_runner(root, stages_at_once, what)


@task(name="dvc-stage", cache_policy=NO_CACHE)
def dvc_stage(stage: str, repo: str, busy_wait_seconds: float = 600.0, known_up_to_date: bool = False,
              threads: int | None = None):
    """One DVC stage; its output lines go to this task run's log."""
    logger = get_run_logger()
    result = reproduce_stage(repo, stage, logger.info, busy_wait_seconds=busy_wait_seconds,
                             known_up_to_date=known_up_to_date, threads=threads)
    data = {"stage": stage, "outcome": result.outcome.value, "seconds": round(result.seconds, 2),
            "reason": result.reason}
    if result.outcome is Outcome.UP_TO_DATE:
        return Completed(name="Up to date", message=f"{stage}: DVC finds it up to date; not run", data=data)
    if result.outcome is Outcome.RESTORED:
        return Completed(name="Restored", message=f"{stage}: outputs restored from the DVC run-cache",
                         data=data)
    return Completed(message=f"{stage}: ran in {result.seconds:.1f} s ({result.reason})", data=data)


@task(name="dvc-stage-skipped", cache_policy=NO_CACHE)
def skipped_stage(stage: str, blocked_by: list[str]):
    """A stage left out because an upstream stage failed (shown so the UI lists every stage)."""
    return Cancelled(name="Skipped", message=f"{stage}: not run, upstream stage(s) failed: {', '.join(blocked_by)}",
                     data={"stage": stage, "outcome": "skipped", "blocked_by": blocked_by})


@task(name="publish-results", cache_policy=NO_CACHE)
def publish_results_task(repo: str) -> list[str]:
    logger = get_run_logger()
    return publish_results(repo, log=logger.info)


def _stage_task(stage: str, settings):
    rule = settings.retry_for(stage)
    options = {"name": stage, "task_run_name": stage}
    if rule is not None and rule.retries > 0:
        options.update(retries=rule.retries, retry_delay_seconds=rule.delays())
    return dvc_stage.with_options(**options)


def run_stage_graph(graph, root: Path, settings, max_parallel: int, logger,
                    threads: int | None = None) -> dict[str, dict]:
    """Start each stage when all its upstream stages completed; keep `max_parallel` in flight."""
    # One `dvc status` up front: a stage it finds up to date stays so while nothing upstream
    # of it runs, and then needs no DVC process of its own.
    initial = pipeline_status(root, graph.order) or {}
    up_to_date_at_start = {name for name, reason in initial.items() if not reason}
    logger.info("DVC status: %d of %d stages up to date", len(up_to_date_at_start), len(graph))
    done: "queue.Queue[str]" = queue.Queue()
    futures: dict = {}
    outcome: dict[str, dict] = {}
    pending = list(graph.order)
    running: set[str] = set()
    failed: set[str] = set()          # failed or skipped: their downstream stages cannot run

    while pending or running:
        for name in list(pending):
            ups = graph.upstream(name)
            blocked = [u for u in ups if u in failed]
            if blocked:
                pending.remove(name)
                failed.add(name)
                state = skipped_stage.with_options(name=name, task_run_name=name)(
                    name, blocked, return_state=True)
                outcome[name] = {"stage": name, "outcome": "skipped", "seconds": 0.0,
                                 "reason": f"upstream failed: {', '.join(blocked)}", "state": state}
                continue
            if len(running) >= max_parallel or any(u not in outcome for u in ups):
                continue
            pending.remove(name)
            running.add(name)
            known = name in up_to_date_at_start and all(outcome[u]["outcome"] == "up to date" for u in ups)
            # wait_for on finished futures costs nothing and draws the DAG edges in the UI.
            future = _stage_task(name, settings).submit(
                name, str(root), settings.busy_wait_seconds, known, threads, wait_for=[futures[u] for u in ups])
            futures[name] = future
            future.add_done_callback(lambda f, name=name: done.put(name))
        if not running:
            continue
        name = done.get()
        running.discard(name)
        futures[name].wait()          # done already; this loads its final state
        state = futures[name].state
        if state.is_completed():
            data = state.result(raise_on_failure=False) or {}
            outcome[name] = {**data, "state": state}
        else:
            failed.add(name)
            outcome[name] = {"stage": name, "outcome": "failed", "seconds": 0.0,
                             "reason": state.message or state.name, "state": state}
            logger.error("%s failed: %s", name, state.message)
    return outcome


@flow(name=FLOW_NAME, task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_CEILING))
def dvc_pipeline(targets: list[str] | None = None, max_parallel: int | None = None,
                 repo: str | None = None, publish: bool = True) -> dict:
    """Bring the DVC pipeline (or `targets` and their upstream stages) up to date.

    targets: stage names, foreach groups (`features`) or globs (`pairs@*`); default: all stages.
    max_parallel: stages in flight at once; default: orchestration.max_parallel in params.yaml.
    repo: the project root; default: $VGS_REPO, else the working directory's project.
    publish: turn results/<paper-id>/table*.csv and report.md into artifacts afterwards.
    """
    logger = get_run_logger()
    root = resolve_repo(repo)
    settings = load_orchestration(root)
    graph = load_stage_graph(root, targets)
    jobs = max_parallel or settings.max_parallel
    if not 1 <= jobs <= MAX_PARALLEL_CEILING:
        raise VgsError(f"max_parallel must be in [1, {MAX_PARALLEL_CEILING}], got {jobs}")
    logger.info("%d DVC stages in %s, up to %d at once: %s", len(graph), root, jobs, ", ".join(graph.order))
    with _claim_cores(root, jobs, f"vgs flow -j {jobs}") as claimed:
        budget = thread_budget(root, parallel=jobs, claimed=claimed)
        logger.info("CPU budget: %s", budget.describe())
        start = time.monotonic()
        try:
            outcome = run_stage_graph(graph, root, settings, jobs, logger, threads=budget.threads)
        except BaseException:
            # Cancelled or stopped: end the stages' DVC processes now, the way DVC can clean up
            # after, rather than leave them to the interpreter's exit.
            terminate_children()
            raise
    wall = time.monotonic() - start

    rows = [{"stage": n, "outcome": outcome[n]["outcome"], "seconds": outcome[n].get("seconds", 0.0),
             "reason": (outcome[n].get("reason") or "").splitlines()[0][:200] if outcome[n].get("reason") else ""}
            for n in graph.order]
    create_table_artifact(table=rows, key=artifact_key(FLOW_NAME, "stages"),
                          description=f"What DVC did with each stage ({wall:.1f} s wall)")
    published = publish_results_task(str(root)) if publish else []

    failed = [n for n in graph.order if outcome[n]["outcome"] == "failed"]
    if failed:
        details = "\n\n".join(f"{n}: {outcome[n]['reason']}" for n in failed)
        raise PipelineFailed(f"{len(failed)} stage(s) failed: {', '.join(failed)}\n\n{details}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    logger.info("done in %.1f s: %s", wall, ", ".join(f"{v} {k}" for k, v in counts.items()))
    return {"stages": {r["stage"]: r["outcome"] for r in rows}, "artifacts": published,
            "seconds": round(wall, 2)}


@flow(name=EXPERIMENT_FLOW_NAME)
def dvc_experiment(params: dict[str, str], name: str | None = None, targets: list[str] | None = None,
                   repo: str | None = None, pull: bool = False, push_remote: str | None = None) -> dict:
    """One sweep point: `dvc exp run --temp -S key=value ...` in the project, then its metrics.

    params: overrides, e.g. {"leidal2017.lambda_ig": "0.1"} (values are parsed by DVC as YAML).
    name: the experiment's name in `dvc exp show`.
    targets: stages to reproduce (default: the whole pipeline, as `dvc exp run` does).
    pull: let DVC pull missing inputs from the default remote (a fresh clone on another machine).
    push_remote: a git remote to `dvc exp push` the finished experiment to (results and outputs
    then reach every machine sharing that git remote and the DVC remote).
    """
    from pipeline.sweep import experiment_rows, run_experiment

    logger = get_run_logger()
    root = resolve_repo(repo)
    with _claim_cores(root, 1, f"dvc-experiment {name or ''}".strip()) as claimed:
        budget = thread_budget(root, parallel=1, claimed=claimed)
        logger.info("CPU budget: %s", budget.describe())
        run_experiment(root, params, name, targets, pull=pull, push_remote=push_remote, log=logger.info,
                       threads=budget.threads)
    rows = experiment_rows(root, [name] if name else None)
    if rows:
        create_table_artifact(table=rows, key=artifact_key("exp", name or "latest"),
                              description=f"DVC experiment {name}: params and metrics (`dvc exp show`)")
    return {"name": name, "params": params, "rows": rows}
