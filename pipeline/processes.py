"""Ending a DVC process and everything it started, so that nothing is left running or half-written.

Every DVC process the flows start (pipeline/runner.py) leads its own process group. That keeps
a signal meant for the flow (Ctrl-C in a terminal, Prefect's SIGTERM to a flow run's group)
away from DVC, because DVC dies on SIGTERM without cleaning up: a `dvc exp run --temp` killed so
leaves its temporary workspace behind, listed as Running in `dvc exp show` for ever. Instead the
flow ends DVC's tree in an order DVC handles:

1. SIGTERM to the processes under DVC (the stage command). The trainer saves a checkpoint and
   exits; DVC sees the command fail.
2. SIGINT to DVC itself. DVC ignores it while a stage command runs; otherwise (preparing or
   committing) it is DVC's Ctrl-C. Either way DVC then removes its temporary experiment
   directory (`--temp`) or leaves the workspace as a failed stage leaves it (`dvc repro`: the
   training checkpoint stays, and the next run resumes it).
3. After `grace` seconds, SIGKILL whatever is left of the group, and any descendant that left it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable

import psutil

# Time for a stage to save a checkpoint and for DVC to clean up, before SIGKILL.
STOP_GRACE_SECONDS = 60.0
# After DVC has exited: time for processes it left in its group (a stage command's children)
# to end on their own before they are killed.
LEFTOVER_GRACE_SECONDS = 5.0


def _send(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        pass


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of process group `pgid` (a DVC group outlives DVC while its stage runs)."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return members


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def still_running(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return alive


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = still_running(procs)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = still_running(left)
    return left


def end_dvc_tree(pid: int, grace: float = STOP_GRACE_SECONDS,
                 wait_root: Callable[[float], bool] | None = None) -> None:
    """End DVC process `pid` (leading its own process group) and everything under it (see above).

    wait_root(timeout) -> exited: how to wait for `pid`; its parent must reap it (Popen.wait),
    so the caller that started it passes its own wait. Default: poll.
    A second interrupt while waiting (another Ctrl-C, SIGTERM) skips the grace: kill now.
    """
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    own_group = _getpgid(pid) == pid
    under = _descendants(pid)
    for proc in under:
        _send(proc, signal.SIGTERM)
    _send(root, signal.SIGINT)
    deadline = time.monotonic() + grace
    try:
        if wait_root is not None:
            try:
                wait_root(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        else:
            _wait_gone([root], max(0.0, deadline - time.monotonic()))
        members = group_members(pid) if own_group else []
        _wait_gone(under + members, max(0.0, min(deadline - time.monotonic(), LEFTOVER_GRACE_SECONDS)))
    except BaseException:
        _kill_rest(root, under, own_group)
        raise
    _kill_rest(root, under, own_group)


def _kill_rest(root: psutil.Process, under: list[psutil.Process], own_group: bool) -> None:
    late = _descendants(root.pid)          # started after the snapshot, if DVC still runs
    if own_group:
        kill_group(root.pid)
    for proc in still_running(under + late + [root]):
        _send(proc, signal.SIGKILL)


def end_leftovers(pgid: int, grace: float = LEFTOVER_GRACE_SECONDS) -> list[int]:
    """After a DVC process that led group `pgid` exited: end what it left there (SIGTERM, then
    SIGKILL after `grace`). Returns the PIDs found."""
    members = group_members(pgid)
    for proc in members:
        _send(proc, signal.SIGTERM)
    if _wait_gone(members, grace):
        kill_group(pgid)
    return [p.pid for p in members]


def _getpgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
