"""Parameter sweeps as DVC experiments, run by DVC's queue or by Prefect workers.

A grid comes from the command line, `-S key=v1,v2 -S other=a,b` (the cartesian product), and
every point is one DVC experiment (`dvc exp run -S key=value`), so `dvc exp show` compares them
whichever way they ran:

- DVC queue (one machine): `dvc exp run --queue` per point, then `dvc queue start -j N`.
- Prefect work pool (one or many machines): one flow run of the `dvc-experiment` deployment
  per point; every `prefect worker start --pool <pool>` process (or `vgs worker`), on this
  machine or another one pointed at the same server, takes runs from the pool. Each run is
  `dvc exp run --temp`: DVC copies the project into a temporary directory, so several
  experiments run at once without sharing a workspace, and the finished experiment lands in
  the project's `dvc exp show`.

Both ways, each experiment's stage commands get the CPU budget of vgs/utils/threads.py (the
cores divided by the experiments that run at once on this machine), so that N experiments on
one machine deliver N times the work of one instead of fighting over the cores.
"""
from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

from pipeline.runner import dvc_argv, run_streaming, stage_env
from vgs.errors import VgsError
from vgs.utils.threads import registered_runner, thread_budget

SWEEP_POOL = "vgs-sweep"
SWEEP_DEPLOYMENT = "sweep"


class SweepError(VgsError):
    """A malformed grid, or an experiment that failed."""


def parse_grid(specs: list[str]) -> list[dict[str, str]]:
    """`["a.b=1,2", "c=x"]` -> `[{"a.b": "1", "c": "x"}, {"a.b": "2", "c": "x"}]`.

    A value list may be written in brackets to keep commas inside one YAML value out of it:
    `-S 'dims=[1,2]'` is one value; `-S 'dims=[1,2];[3,4]'` is two.
    """
    if not specs:
        raise SweepError("a sweep needs at least one -S key=value[,value...]",
                         hint="e.g. -S leidal2017.lambda_ig=0,0.1,1,10")
    axes = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise SweepError(f"bad sweep axis {spec!r}", hint="write key=value[,value...], e.g. train.lr=0.1,0.01")
        splitter = ";" if values.lstrip().startswith("[") else ","
        options = [v.strip() for v in values.split(splitter) if v.strip()]
        if len(set(options)) != len(options):
            raise SweepError(f"sweep axis {key} repeats a value: {values}")
        axes.append([(key, v) for v in options])
    keys = [a[0][0] for a in axes]
    if len(set(keys)) != len(keys):
        raise SweepError(f"a sweep key appears twice: {', '.join(keys)}")
    return [dict(point) for point in itertools.product(*axes)]


def point_name(prefix: str, point: dict[str, str]) -> str:
    """A DVC experiment name (a valid git ref component) naming the point's values."""
    parts = [prefix] + [f"{key.split('.')[-1]}{value}" for key, value in point.items()]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts))
    return re.sub(r"\.{2,}", ".", name).strip("-.")


def set_param_args(point: dict[str, str]) -> list[str]:
    args = []
    for key, value in point.items():
        args += ["-S", f"{key}={value}"]
    return args


def run_experiment(root: Path, point: dict[str, str], name: str | None, targets: list[str] | None,
                   log, pull: bool = False, push_remote: str | None = None, threads: int | None = None) -> None:
    """`dvc exp run --temp` for one point; its output goes to `log`.

    threads: the CPU budget of its stage commands (vgs.utils.threads); None: the libraries' default.
    """
    # Experiments started at once on one checkout each hold its DVC lock for a moment (stashing
    # the point, collecting the result); without waiting, the second fails at once.
    argv = dvc_argv("--wait-for-lock", "exp", "run", "--temp") + set_param_args(point)
    if name:
        argv += ["-n", name]
    if pull:
        argv.append("--pull")
    argv += list(targets or [])
    log("$ dvc " + " ".join(argv[4:]))
    code, tail = run_streaming(argv, root, log, env=stage_env(threads=threads))
    if code != 0:
        raise SweepError(f"experiment {name or point} failed (`dvc exp run` exited with {code}):\n"
                         + "\n".join(tail))
    if push_remote:
        code, tail = run_streaming(dvc_argv("exp", "push", push_remote, name), root, log)
        if code != 0:
            raise SweepError(f"`dvc exp push {push_remote} {name}` failed:\n" + "\n".join(tail),
                             hint="check the git remote and the DVC remote (`dvc remote list`)")


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def experiment_rows(root: Path, names: list[str] | None = None) -> list[dict]:
    """`dvc exp show --json` as flat rows: experiment name, params and metrics (dotted keys)."""
    out = subprocess.run(dvc_argv("exp", "show", "--json"), cwd=str(root), env=stage_env(),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SweepError("`dvc exp show --json` failed:\n" + (out.stdout + out.stderr)[-2000:])
    rows = []
    for commit in json.loads(out.stdout or "[]"):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                name = rev.get("name") or rev.get("rev")
                if names is not None and name not in names:
                    continue
                data = rev.get("data") or {}
                row = {"experiment": name, "baseline": (commit.get("rev") or "")[:7]}
                for kind in ("params", "metrics"):
                    for _, content in (data.get(kind) or {}).items():
                        _flatten("", (content or {}).get("data") or {}, row)
                rows.append(row)
    return rows


# Two DVC queue workers that run the same stage (one every point shares) can both write its
# run-cache entry at once, and one then fails renaming a temporary file that the other moved
# (treeverse/dvc#10673, open). Such a point is queued again, once; any other failure is reported.
RUN_CACHE_RACE = re.compile(r"No such file or directory: '[^']*\.dvc/cache/runs/")


def queue_sweep(root: Path, grid: list[dict[str, str]], prefix: str, targets: list[str] | None,
                jobs: int, log=print, wait: bool = True, poll_seconds: float = 3.0) -> list[str]:
    """Queue every point with `dvc exp run --queue`, start `jobs` DVC queue workers, wait.

    The queue workers, and so every experiment they run, get the CPU budget for `jobs` runs at
    once plus the other runners registered on this machine. While it waits, the sweep is
    registered itself, so that flow runs starting meanwhile count its jobs.
    """
    points = {point_name(prefix, point): point for point in grid}
    with registered_runner(root, jobs, f"vgs sweep queue -j {jobs}") as claimed:
        budget = thread_budget(root, parallel=jobs, claimed=claimed)
        log(f"CPU budget: {budget.describe()}")
        env = stage_env(threads=budget.threads)
        _queue_and_start(root, points, targets, jobs, log, env)
        if not wait:
            return list(points)
        retried = False
        while True:
            failed = _wait_for_queue(root, list(points), poll_seconds)
            if not failed:
                return list(points)
            raced = [name for name in failed if RUN_CACHE_RACE.search(_queue_logs(root, name))]
            if retried or len(raced) < len(failed):
                rows = [row for name, row in failed.items() if retried or name not in raced]
                raise SweepError("some queued experiments failed:\n" + "\n".join(rows),
                                 hint="see `dvc queue logs <name>`")
            log(f"re-queueing {', '.join(raced)}: DVC's queue workers raced on the run cache (treeverse/dvc#10673)")
            code, tail = run_streaming(dvc_argv("queue", "remove", *raced), root, log)
            if code != 0:
                raise SweepError("`dvc queue remove` failed:\n" + "\n".join(tail))
            _queue_and_start(root, {name: points[name] for name in raced}, targets, jobs, log, env)
            retried = True


def _queue_and_start(root: Path, points: dict[str, dict[str, str]], targets: list[str] | None, jobs: int,
                     log, env: dict | None = None) -> None:
    """Queue the points and start `jobs` queue workers with `env`: DVC's queue workers (and the
    experiments they run) inherit the environment of `dvc queue start`. A worker still up from a
    sweep that ended less than 10 s ago (DVC's idle timeout) is reused with its old one."""
    for name, point in points.items():
        argv = dvc_argv("exp", "run", "--queue", "-n", name) + set_param_args(point) + list(targets or [])
        code, tail = run_streaming(argv, root, log, env=env)
        if code != 0:
            raise SweepError(f"could not queue {name}:\n" + "\n".join(tail))
    code, tail = run_streaming(dvc_argv("queue", "start", "-j", str(jobs)), root, log, env=env)
    if code != 0:
        raise SweepError("`dvc queue start` failed:\n" + "\n".join(tail))


def _wait_for_queue(root: Path, names: list[str], poll_seconds: float) -> dict[str, str]:
    """Wait until none of `names` is queued or running; their `dvc queue status` lines that failed."""
    while True:
        status = subprocess.run(dvc_argv("queue", "status"), cwd=str(root), env=stage_env(),
                                capture_output=True, text=True).stdout
        mine = {n: line for line in status.splitlines() for n in names if f" {n} " in f" {line} "}
        if mine and not any(re.search(r"\b(Queued|Running)\b", line) for line in mine.values()):
            return {n: line for n, line in mine.items() if re.search(r"\bFailed\b", line)}
        time.sleep(poll_seconds)


def _queue_logs(root: Path, name: str) -> str:
    out = subprocess.run(dvc_argv("queue", "logs", name), cwd=str(root), env=stage_env(),
                         capture_output=True, text=True)
    return out.stdout + out.stderr


# Where `dvc exp run --temp` keeps its temporary workspaces and their info files (DVC 3:
# dvc/repo/experiments/queue/tempdir.py).
TEMPDIR_EXPERIMENTS = Path(".dvc") / "tmp" / "exps" / "standalone"


def discard_unfinished_experiments(root: Path, names: list[str]) -> list[str]:
    """Remove what a `dvc exp run --temp` of these experiment names left when it was killed
    before it could clean up: its temporary workspace, and the info file by which `dvc exp show`
    would list it as Running for ever. Call only once the experiments' DVC processes have ended.
    Returns the workspaces removed."""
    from dvc.repo.experiments.executor.base import ExecutorInfo, TaskStatus

    removed = []
    wanted = set(names)
    for infofile in sorted((Path(root) / TEMPDIR_EXPERIMENTS / "run").glob("*/*.run")):
        try:
            info = ExecutorInfo.load_json(str(infofile))
        except (OSError, ValueError, TypeError):
            continue
        if info.name not in wanted or info.status >= TaskStatus.FAILED:
            continue
        if info.root_dir and Path(info.root_dir).exists():
            shutil.rmtree(info.root_dir, ignore_errors=True)
            removed.append(info.root_dir)
        info.status = TaskStatus.CANCELED
        info.dump_json(str(infofile))
    return removed


def wait_for_runs(run_ids: list[str], timeout: float | None = None, poll_seconds: float = 2.0) -> dict:
    """Wait until every flow run is final; return {id: state name}."""
    from prefect import get_client

    start = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            states = {rid: client.read_flow_run(rid).state for rid in run_ids}
            if all(s is not None and s.is_final() for s in states.values()):
                return {rid: s.name for rid, s in states.items()}
            if timeout is not None and time.monotonic() - start > timeout:
                raise SweepError(f"sweep runs not finished after {timeout:.0f} s: "
                                 + ", ".join(f"{rid[:8]} {s.name if s else '?'}" for rid, s in states.items()),
                                 hint="is a worker running? start one with `vgs worker`")
            time.sleep(poll_seconds)
