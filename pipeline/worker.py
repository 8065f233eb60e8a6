"""`vgs worker`: a Prefect process worker that leaves nothing behind when it is stopped.

`prefect worker start` alone, stopped with Ctrl-C or SIGTERM, exits but leaves the flow runs it
started in the Running state, and may leave their processes running (each flow run is a
separate session, out of reach of the terminal's Ctrl-C) or a `dvc exp run --temp` workspace
half-written (issue 22). So `vgs worker` runs it as a child and stays in front of it:

- It registers itself (its --limit) in the project's CPU-budget registry (vgs/utils/threads.py)
  and tells its flow runs which entry is theirs ($VGS_RUNNER).
- It becomes the "child subreaper" of everything under it (Linux), so a process whose parent
  died is handed to it rather than to init: such an orphan (e.g. a DVC process whose flow-run
  process was killed) is ended at once, the way DVC can clean up after (pipeline/processes.py).
- On SIGINT, SIGTERM or SIGHUP it stops every flow run it started, then the Prefect worker:
  1. SIGTERM to each flow run's own process group. Prefect's engine turns it into an exception
     in the flow, whose DVC processes (in groups of their own) are then ended in order: the
     stage command first (the trainer saves a checkpoint), then DVC, which removes its
     temporary experiment workspace or, for `dvc repro`, leaves a checkpoint the next run resumes.
  2. After a grace period, SIGKILL to whatever is left, including processes adopted meanwhile.
  3. In the Prefect API, each flow run it stopped becomes Cancelled, with a message that says
     why; a run it had claimed but not started is handed back to the pool (Scheduled).
  4. A `dvc exp run --temp` workspace that DVC had no chance to remove is removed.
  A second signal skips the grace periods.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from pipeline.processes import STOP_GRACE_SECONDS, end_dvc_tree, kill_group, still_running
from vgs.utils.threads import RUNNER_ENV, registered_runner

FLOW_RUN_ENV = "PREFECT__FLOW_RUN_ID"        # Prefect sets it for every flow-run process
# Longer than the flow's own grace for its DVC processes, so that the flow finishes its
# orderly stop before anything is killed.
RUN_STOP_GRACE_SECONDS = STOP_GRACE_SECONDS + 30
PREFECT_WORKER_STOP_SECONDS = 20.0
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Have orphaned descendants re-parented to this process (Linux); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _environ(proc: psutil.Process) -> dict:
    try:
        return proc.environ()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return {}


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


def _is_flow_run_process(proc: psutil.Process) -> bool:
    """Prefect's own process of a flow run (engine or workspace supervisor), not DVC or a stage."""
    return any(part.startswith("prefect.engine") or part.startswith("prefect.runner") for part in _cmdline(proc))


def _experiment_name(proc: psutil.Process) -> str | None:
    """The `-n NAME` of a `dvc exp run` command line."""
    argv = _cmdline(proc)
    if "exp" in argv and "run" in argv and "-n" in argv:
        i = argv.index("-n")
        return argv[i + 1] if i + 1 < len(argv) else None
    return None


@dataclass
class FlowRunProcesses:
    flow_run_id: str
    leaders: list[psutil.Process] = field(default_factory=list)    # Prefect's processes at the top
    procs: list[psutil.Process] = field(default_factory=list)      # everything seen under them
    experiments: set[str] = field(default_factory=set)


class WorkerSupervisor:
    """Runs `prefect worker start` and stops it, and its flow runs, cleanly (see the module doc)."""

    def __init__(self, root: Path, pool: str, limit: int, api: str, env: dict,
                 log: Callable[[str], None] = print, grace: float = RUN_STOP_GRACE_SECONDS):
        self.root = Path(root)
        self.pool = pool
        self.limit = limit
        self.api = api
        self.env = env
        self.log = log
        self.grace = grace
        self.name = f"vgs-{socket.gethostname()}-{os.getpid()}"
        self.worker: subprocess.Popen | None = None
        self.stop_reason: str | None = None
        self.hurry = False
        self._orphans_seen: set[int] = set()

    # -- running -------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.stop_reason is None:
            self.stop_reason = name
        else:
            self.hurry = True
            self.log(f"{name} again: ending the flow runs' processes now")

    def run(self) -> int:
        adopts = become_subreaper()
        what = f"vgs worker --pool {self.pool} --limit {self.limit}"
        with registered_runner(self.root, self.limit, what) as me:
            env = {**self.env, RUNNER_ENV: me.key}
            argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", self.pool, "--type", "process",
                    "--limit", str(self.limit), "--name", self.name]
            handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
            previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
            try:
                # Its own process group: a Ctrl-C in the terminal reaches only this process,
                # which then stops things in order.
                self.worker = subprocess.Popen(argv, cwd=str(self.root), env=env, stdin=subprocess.DEVNULL,
                                               process_group=0)
                if not adopts:
                    self.log("note: this system cannot hand orphaned processes to `vgs worker`; "
                             "it stops the flow runs it finds when stopped")
                code = None
                while self.stop_reason is None:
                    code = self.worker.poll()
                    if code is not None:
                        break
                    self._end_orphans()
                    time.sleep(0.5)
                reason = self.stop_reason or f"its Prefect worker exited with code {code}"
                self.shutdown(reason)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return 0 if self.stop_reason else (code or 1)

    def _end_orphans(self) -> None:
        """End processes handed to this process because their parent died (see the module doc)."""
        try:
            children = psutil.Process().children()
        except psutil.Error:
            return
        for child in children:
            if self.worker is not None and child.pid == self.worker.pid:
                continue
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    os.waitpid(child.pid, os.WNOHANG)
                    continue
            except (psutil.Error, ChildProcessError):
                continue
            if child.pid in self._orphans_seen:
                continue
            self._orphans_seen.add(child.pid)
            self.log(f"ending orphaned process {child.pid} ({' '.join(_cmdline(child))[:120]})")
            if _is_flow_run_process(child):
                # Its worker died under it: stop it the way a stop of this worker would.
                self._signal_flow_run(child)
            else:
                threading.Thread(target=end_dvc_tree, args=(child.pid,), daemon=True).start()

    # -- stopping ------------------------------------------------------------------------------
    def flow_runs(self) -> dict[str, FlowRunProcesses]:
        """The flow runs under this process, by flow run id, from their processes' environment."""
        try:
            below = psutil.Process().children(recursive=True)
        except psutil.Error:
            return {}
        runs: dict[str, FlowRunProcesses] = {}
        ids = {proc.pid: _environ(proc).get(FLOW_RUN_ENV) for proc in below}
        for proc in below:
            run_id = ids.get(proc.pid)
            if not run_id:
                continue
            run = runs.setdefault(run_id, FlowRunProcesses(run_id))
            run.procs.append(proc)
            try:
                parent_id = ids.get(proc.ppid())
            except psutil.Error:
                parent_id = None
            if parent_id != run_id:
                run.leaders.append(proc)
            name = _experiment_name(proc)
            if name:
                run.experiments.add(name)
        return runs

    def _signal_flow_run(self, leader: psutil.Process) -> None:
        """SIGTERM to a flow run's own process group, as Prefect's cancellation does: the
        engine and Prefect's supervisor, not DVC, whose processes lead groups of their own."""
        try:
            pgid = os.getpgid(leader.pid)
            if pgid == leader.pid:
                os.killpg(pgid, signal.SIGTERM)
            else:
                leader.send_signal(signal.SIGTERM)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass

    def _wait(self, procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
        deadline = time.monotonic() + timeout
        left = still_running(procs)
        while left and not self.hurry and time.monotonic() < deadline:
            self._end_orphans()
            time.sleep(0.5)
            left = still_running(left)
        return left

    def _stop_flow_runs(self, runs: dict[str, FlowRunProcesses], grace: float) -> None:
        for run in runs.values():
            for leader in run.leaders:
                self._signal_flow_run(leader)
        everything = [p for run in runs.values() for p in run.procs]
        left = self._wait(everything, grace)
        for proc in left:
            try:
                if os.getpgid(proc.pid) == proc.pid:
                    kill_group(proc.pid)
                proc.kill()
            except (ProcessLookupError, psutil.Error):
                pass

    def _stop_prefect_worker(self) -> None:
        if self.worker is None:
            return
        for send, wait in ((lambda: self.worker.send_signal(signal.SIGINT), PREFECT_WORKER_STOP_SECONDS),
                           (self.worker.terminate, 10.0), (self.worker.kill, 10.0)):
            if self.worker.poll() is not None:
                return
            send()
            try:
                self.worker.wait(timeout=0 if self.hurry and wait != 10.0 else wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _kill_everything_left(self) -> None:
        """SIGKILL every process still under this one (adopted included) and reap them."""
        try:
            left = psutil.Process().children(recursive=True)
        except psutil.Error:
            return
        for proc in left:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=10)
        for child in psutil.Process().children():
            try:
                os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def shutdown(self, reason: str) -> dict[str, FlowRunProcesses]:
        """Stop the flow runs, then the Prefect worker, then tidy the API and DVC; returns what it stopped."""
        stopped = self.flow_runs()
        if stopped:
            self.log(f"{reason}: stopping {len(stopped)} flow run(s) and the worker; waiting up to "
                     f"{self.grace:.0f} s for their stages to stop cleanly (again to hurry)")
        else:
            self.log(f"{reason}: stopping the worker")
        self._stop_flow_runs(stopped, self.grace)
        self._stop_prefect_worker()
        # Runs the Prefect worker started while the others were being stopped, and anything
        # adopted meanwhile.
        late = {k: v for k, v in self.flow_runs().items() if k not in stopped}
        if late:
            self._stop_flow_runs(late, min(self.grace, 30.0))
            stopped.update(late)
        self._kill_everything_left()
        self._settle_states(stopped, reason)
        self._discard_experiments(stopped)
        self.log("stopped")
        return stopped

    def _settle_states(self, stopped: dict[str, FlowRunProcesses], reason: str) -> None:
        """Stopped runs become Cancelled; runs claimed but never started go back to the pool."""
        try:
            from prefect import get_client
            from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterState,
                                                        FlowRunFilterStateType, WorkPoolFilter,
                                                        WorkPoolFilterName)
            from prefect.client.schemas.objects import StateType
            from prefect.states import Cancelled, Scheduled

            with get_client(sync_client=True) as client:
                held = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                        any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]))),
                    work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self.pool])))
                mine = {str(r.id): r for r in held if (r.labels or {}).get("prefect.worker.name") == self.name}
                for run_id in stopped:
                    if run_id not in mine:
                        mine[run_id] = client.read_flow_run(run_id)
                for run_id, run in mine.items():
                    state = run.state
                    if run_id in stopped:
                        if state is not None and state.is_completed():
                            continue        # it finished on its own before it was stopped
                        cancel = True       # whatever the engine said on its way out (Crashed, Failed)
                    elif state is None or state.is_final():
                        continue
                    else:
                        cancel = not (state.is_pending() or state.is_scheduled())
                    if cancel:
                        experiment = (run.parameters or {}).get("name")
                        discarded = f" and its unfinished DVC experiment {experiment} discarded" if experiment else ""
                        message = (f"Cancelled because the vgs worker running it ({self.name}) was stopped "
                                   f"({reason}); its processes were ended{discarded}. Submit it again to re-run it.")
                        client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
                        self.log(f"flow run {run.name}: Cancelled")
                    else:
                        client.set_flow_run_state(run.id, Scheduled(message=(
                            f"Handed back to work pool {self.pool}: the vgs worker that had claimed it "
                            f"({self.name}) was stopped before starting it.")), force=True)
                        self.log(f"flow run {run.name}: handed back to the pool")
        except Exception as exc:       # the server may be gone already; the processes are
            self.log(f"could not update the flow runs' states in the Prefect API at {self.api}: {exc}")

    def _discard_experiments(self, stopped: dict[str, FlowRunProcesses]) -> None:
        from pipeline.sweep import discard_unfinished_experiments

        names = sorted({n for run in stopped.values() for n in run.experiments})
        if not names:
            return
        for workspace in discard_unfinished_experiments(self.root, names):
            self.log(f"removed the unfinished experiment workspace {workspace}")
