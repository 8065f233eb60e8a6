"""The CPU budget: how many torch/OpenMP/BLAS threads each stage process that vgs starts may use.

One rule decides it: the machine's cores divided by the runs that share the machine, at least 1;
`VGS_THREADS=<n>` overrides it. Why it matters: torch (OpenMP) starts one spinning thread per
core by default, so two trainings on a 2-core machine put 4 busy threads on 2 cores, and each
then runs 10-25x slower instead of 2x (issue 22). With one thread each they keep the throughput
of one run alone.

Who shares the machine: every `vgs worker` (its `--limit` flow runs at once), a foreground
`vgs flow` (its `max_parallel` stages) and `vgs sweep queue` (its `-j` DVC queue jobs) registers
itself while it runs, as one small JSON file under `<project>/.prefect/runners/` (PID, host,
start time, slots). A run reads the registry when it starts, so a worker started later is
counted by the runs that start after it; entries of processes that have ended (or of a PID
reused since) are ignored and removed.

The budget reaches the stage processes through the environment (`thread_env`): torch takes its
default intra-op thread count from OMP_NUM_THREADS, so neither the trainer nor the stage scripts
need to know about it. A stage with an explicit `num_threads` param still sets its own count.
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Mapping

from vgs.errors import VgsError

THREADS_ENV = "VGS_THREADS"
# Set by `vgs worker` for the flow runs it starts: the registry key of that worker, whose
# slots already include the run that reads it.
RUNNER_ENV = "VGS_RUNNER"
# Every variable a library in our stages reads for its thread pool: torch/OpenMP, MKL
# (numpy/scipy wheels), OpenBLAS, numexpr, and Apple's Accelerate.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
RUNNERS_DIR = Path(".prefect") / "runners"


class ThreadBudgetError(VgsError):
    """A bad VGS_THREADS value."""


def machine_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores)


def _cgroup_cpu_quota() -> int | None:
    """Whole CPUs allowed by a cgroup v2 (`cpu.max`) or v1 (`cfs_quota_us`) quota, if any."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return max(1, math.ceil(int(text[0]) / int(text[1])))
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def threads_override(environ: Mapping[str, str] | None = None) -> int | None:
    """The VGS_THREADS value as a number, None when unset or empty."""
    environ = os.environ if environ is None else environ
    raw = (environ.get(THREADS_ENV) or "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ThreadBudgetError(
            f"{THREADS_ENV}={raw!r} is not a number of threads (a whole number >= 1)",
            hint=f"e.g. `export {THREADS_ENV}=2`, or `unset {THREADS_ENV}` to divide the cores among the runs")
    return value


# -- who shares the machine ------------------------------------------------------------------

@dataclass(frozen=True)
class Runner:
    """One registered process that runs stage processes on this machine."""
    key: str            # file name stem: <host>-<pid>-<n>
    host: str
    pid: int
    started: float      # the process's start time, so that a reused PID is not taken for it
    slots: int          # stage processes it may run at once
    what: str           # for people: the command, e.g. "vgs worker --pool vgs-sweep --limit 1"


def runners_dir(root: str | Path) -> Path:
    return Path(root) / RUNNERS_DIR


def _process_start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _is_alive(runner: Runner) -> bool:
    started = _process_start_time(runner.pid)
    # create_time() is rounded differently across calls on some systems; a reused PID is
    # seconds to days apart.
    return started is not None and abs(started - runner.started) < 1.0


_serial = 0


def register_runner(root: str | Path, slots: int, what: str) -> Runner:
    """Add this process to the machine's registry with `slots` stage processes at once."""
    global _serial
    _serial += 1
    host = socket.gethostname()
    pid = os.getpid()
    runner = Runner(key=f"{host}-{pid}-{_serial}", host=host, pid=pid,
                    started=_process_start_time(pid) or time.time(), slots=max(1, int(slots)), what=what)
    directory = runners_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{runner.key}.tmp"
    tmp.write_text(json.dumps(asdict(runner)))
    os.replace(tmp, directory / f"{runner.key}.json")
    return runner


def unregister_runner(root: str | Path, runner: Runner) -> None:
    (runners_dir(root) / f"{runner.key}.json").unlink(missing_ok=True)


@contextmanager
def registered_runner(root: str | Path, slots: int, what: str) -> Iterator[Runner]:
    runner = register_runner(root, slots, what)
    try:
        yield runner
    finally:
        unregister_runner(root, runner)


def live_runners(root: str | Path) -> list[Runner]:
    """Registered runners on this host whose process still runs; removes entries of ended ones."""
    directory = runners_dir(root)
    if not directory.is_dir():
        return []
    host = socket.gethostname()
    live = []
    for path in sorted(directory.glob("*.json")):
        try:
            runner = Runner(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue          # being written, or not ours: neither counts
        if runner.host != host:
            continue          # a project directory shared between machines: not our cores
        if _is_alive(runner):
            live.append(runner)
        else:
            path.unlink(missing_ok=True)
    return live


# -- the budget ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThreadBudget:
    threads: int
    cores: int
    runs: int                          # stage processes that may run at once on this machine
    overridden: bool = False
    sharing: tuple[str, ...] = ()      # the other runners counted, for the log

    def describe(self) -> str:
        per = f"{self.threads} thread{'s' if self.threads != 1 else ''} per stage process"
        if self.overridden:
            return f"{per} ({THREADS_ENV}={self.threads}; {self.cores} cores here)"
        others = f"; also counted: {', '.join(self.sharing)}" if self.sharing else ""
        return f"{per}: {self.cores} cores shared by {self.runs} stage process(es) at once{others}"

    def env(self, base: Mapping[str, str] | None = None) -> dict:
        return thread_env(self.threads, base)


def thread_env(threads: int, base: Mapping[str, str] | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def threads_for(runs: int, cores: int | None = None, environ: Mapping[str, str] | None = None) -> ThreadBudget:
    """The rule itself: cores // runs, at least 1; VGS_THREADS wins."""
    cores = cores or machine_cores()
    runs = max(1, int(runs))
    override = threads_override(environ)
    if override is not None:
        return ThreadBudget(override, cores, runs, overridden=True)
    return ThreadBudget(max(1, cores // runs), cores, runs)


def thread_budget(root: str | Path | None, parallel: int = 1, claimed: Runner | None = None,
                  environ: Mapping[str, str] | None = None, cores: int | None = None) -> ThreadBudget:
    """The budget of a run that starts now and runs `parallel` stage processes at once.

    root: the project whose registry to read (None: count only this run).
    claimed: this run's own registry entry (a foreground flow or queue), already in `parallel`.
    A run started by `vgs worker` finds its worker through $VGS_RUNNER: one of that worker's
    slots is this run, so it counts `parallel` instead.
    """
    environ = os.environ if environ is None else environ
    threads_override(environ)                 # a bad value fails before the registry is read
    own_worker = environ.get(RUNNER_ENV)
    runs = max(1, int(parallel))
    sharing = []
    for runner in live_runners(root) if root is not None else []:
        if claimed is not None and runner.key == claimed.key:
            continue
        others = runner.slots - 1 if runner.key == own_worker else runner.slots
        if others > 0:
            runs += others
            sharing.append(f"{runner.what} (pid {runner.pid}, {others} slot{'s' if others != 1 else ''})")
    budget = threads_for(runs, cores, environ)
    return ThreadBudget(budget.threads, budget.cores, budget.runs, budget.overridden, tuple(sharing))
