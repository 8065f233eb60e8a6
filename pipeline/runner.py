"""Run one DVC stage the way `dvc repro` would, from any thread, and say what DVC did.

Why several stages can run at once in one repository
-----------------------------------------------------
`dvc repro` holds the repository lock (.dvc/tmp/lock) while it checks, hashes and commits a
stage, but releases it while the stage's command runs (DVC's `unlocked_repo` around the
command). Stages that do not share outputs therefore overlap their commands if each waits for
the short locked phases instead of failing: `dvc --wait-for-lock repro --single-item <stage>`.
Paths are protected by DVC's own read/write lock (.dvc/tmp/rwlock): a stage whose deps or outs
another DVC process is writing fails at once with "is busy"; we wait and try again, since the
flow only starts a stage after its upstream stages finished, so that can only be someone
else's `dvc repro`. DVC keeps every decision: staleness, the run-cache, dvc.lock, persist outs.

Before running, `dvc status <stage>` says whether the stage is up to date; if it is, the stage
is not run at all, and otherwise the log says why it runs (changed deps, params, outs or
command). The flow asks once for all stages first (`pipeline_status`), which spares a DVC
process per stage in the common case of a mostly up-to-date pipeline.

Every DVC process started here leads its own process group and is ended the way DVC can clean
up after (pipeline/processes.py); its stage commands get the run's CPU budget through the
environment (vgs/utils/threads.py).
"""
from __future__ import annotations

import atexit
import codecs
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

from pipeline.processes import LEFTOVER_GRACE_SECONDS, STOP_GRACE_SECONDS, end_dvc_tree, end_leftovers
from vgs.errors import VgsError
from vgs.utils.gpus import gpu_pool
from vgs.utils.threads import thread_env

BUSY_MARK = "is busy, it is being blocked by"
UNCHANGED_MARK = "didn't change, skipping"
RUN_CACHE_MARK = "is cached - skipping run"
TAIL_LINES = 40
# A progress bar redraws a line with '\r' many times a second; the log keeps one redraw per
# this many seconds (and always the last).
PROGRESS_LOG_SECONDS = 20.0

Log = Callable[[str], None]


class Outcome(str, Enum):
    UP_TO_DATE = "up to date"
    RAN = "ran"
    RESTORED = "restored from the DVC run-cache"


class StageFailed(VgsError):
    """A DVC stage ended with an error. The message holds the last lines of its output."""

    def __init__(self, stage: str, message: str, tail: list[str]):
        text = f"stage {stage} failed: {message}"
        if tail:
            text += "\n--- last lines of its output ---\n" + "\n".join(tail)
        super().__init__(text, hint=f"fix it, then re-run the flow (or `dvc repro {stage}`)")
        self.stage = stage
        self.tail = tail


@dataclass
class StageResult:
    stage: str
    outcome: Outcome
    seconds: float
    reason: str = ""      # why DVC considered the stage stale ("" when up to date)
    attempts: int = 1     # dvc repro invocations, counting waits for busy paths


def dvc_argv(*args: str) -> list[str]:
    """DVC from this interpreter's environment, whichever `dvc` is first on PATH."""
    return [sys.executable, "-m", "dvc", *args]


def stage_env(base: dict | None = None, threads: int | None = None) -> dict:
    """Environment for DVC and the stage commands it starts.

    Stage commands say `python ...`; putting this interpreter's bin directory first makes that
    the project's venv even when the flow runs under a Prefect worker that was not activated.
    threads: the run's CPU budget (OMP_NUM_THREADS etc.; vgs.utils.threads), if it has one.
    """
    env = dict(os.environ if base is None else base)
    if threads is not None:
        env = thread_env(threads, env)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")       # stage output reaches the log as it happens
    env.setdefault("TQDM_MININTERVAL", "5")       # fewer progress redraws in a non-terminal log
    return env


_live: set[subprocess.Popen] = set()
_stopping: set[int] = set()          # PIDs one thread is already ending: a second SIGINT would
_live_guard = threading.Lock()       # interrupt DVC's own clean-up


def stop_process(proc: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """End a DVC process started by run_streaming, and its stage commands (pipeline/processes.py)."""
    with _live_guard:
        first = proc.pid not in _stopping
        _stopping.add(proc.pid)
    if first and proc.poll() is None:
        end_dvc_tree(proc.pid, grace, wait_root=lambda timeout: proc.wait(timeout=timeout))
    try:
        proc.wait(timeout=10 if first else grace + 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def terminate_children(grace: float = STOP_GRACE_SECONDS) -> None:
    """End every DVC process this process started, all at once (on cancel or interpreter exit)."""
    with _live_guard:
        procs = [p for p in _live if p.poll() is None]
    stoppers = [threading.Thread(target=stop_process, args=(proc, grace), daemon=True) for proc in procs]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()


atexit.register(terminate_children)


class _LineSplitter:
    """Turn a byte stream into log lines; throttle '\r' progress redraws."""

    def __init__(self, log: Log, tail: deque):
        self.log = log
        self.tail = tail
        self.buf = ""
        self.last_progress_log = 0.0
        self.pending_progress = ""

    def _emit(self, text: str) -> None:
        text = text.rstrip()
        if text:
            self.log(text)
            self.tail.append(text)

    def feed(self, chunk: str) -> None:
        self.buf += chunk
        while True:
            cut = min((i for i in (self.buf.find("\n"), self.buf.find("\r")) if i >= 0), default=-1)
            if cut < 0:
                return
            piece, sep, self.buf = self.buf[:cut], self.buf[cut], self.buf[cut + 1:]
            if sep == "\n":
                # A '\n' ends a progress line too: its last redraw is the one worth keeping.
                self.pending_progress = ""
                self._emit(piece)
            elif piece.strip():
                now = time.monotonic()
                if now - self.last_progress_log >= PROGRESS_LOG_SECONDS:
                    self.last_progress_log = now
                    self.pending_progress = ""
                    self._emit(piece)
                else:
                    self.pending_progress = piece

    def close(self) -> None:
        if self.pending_progress:
            self._emit(self.pending_progress)
        if self.buf:
            self._emit(self.buf)
        self.buf = self.pending_progress = ""


def _exited_unreaped(proc: subprocess.Popen) -> bool:
    """Whether `proc` has exited, leaving it unreaped: while it is a zombie its PID, and so the
    number of its process group, cannot be given to another process that end_leftovers would hit."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return proc.poll() is not None


def run_streaming(argv: list[str], cwd: Path, log: Log, env: dict | None = None) -> tuple[int, list[str]]:
    """Run `argv`, sending each output line (stdout and stderr, in order) to `log`.

    Returns the exit code and the last TAIL_LINES lines. The process leads its own process group;
    if this is interrupted (Ctrl-C, a cancelled flow run), it is ended with stop_process.
    """
    tail: deque = deque(maxlen=TAIL_LINES)
    splitter = _LineSplitter(log, tail)
    proc = subprocess.Popen(argv, cwd=str(cwd), env=env or stage_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0)
    with _live_guard:
        _live.add(proc)
    try:
        assert proc.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        fd = proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        exited_at = None
        while True:
            if poller.poll(1000):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                splitter.feed(decoder.decode(chunk))
            elif _exited_unreaped(proc):
                # DVC has exited, but something its stage started still holds the output pipe
                # (and would hold this run with it): end what is left of DVC's group.
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > LEFTOVER_GRACE_SECONDS:
                    left = end_leftovers(proc.pid)
                    if left:
                        log(f"ended {len(left)} process(es) left running by the stage: PIDs {left}")
                    if time.monotonic() - exited_at > 3 * LEFTOVER_GRACE_SECONDS:
                        break          # the pipe's holder left the group: stop listening
        splitter.feed(decoder.decode(b"", final=True))
        splitter.close()
        return proc.wait(), list(tail)
    finally:
        if proc.poll() is None:
            stop_process(proc)
        proc.stdout.close()
        with _live_guard:
            _live.discard(proc)
            _stopping.discard(proc.pid)


def describe_status(entries: list) -> str:
    """One line from `dvc status --json` entries, e.g. `changed deps: vgs/features (modified)`."""
    parts = []
    for entry in entries:
        if isinstance(entry, str):
            parts.append(entry)
        elif isinstance(entry, dict):
            for what, detail in entry.items():
                if isinstance(detail, dict):
                    items = ", ".join(f"{k} ({v})" if isinstance(v, str) else str(k) for k, v in detail.items())
                    parts.append(f"{what}: {items}")
                else:
                    parts.append(f"{what}: {detail}")
    return "; ".join(parts) or "stale"


def stage_status(root: Path, stage: str) -> tuple[bool, str]:
    """(up_to_date, reason) according to `dvc status <stage>`."""
    out = subprocess.run(dvc_argv("--wait-for-lock", "status", "--json", stage), cwd=str(root),
                         env=stage_env(), capture_output=True, text=True)
    if out.returncode != 0:
        lines = (out.stdout + out.stderr).strip().splitlines()
        raise StageFailed(stage, "`dvc status` failed", lines[-TAIL_LINES:])
    text = out.stdout.strip()
    try:
        status = json.loads(text[text.index("{"):]) if "{" in text else {}
    except ValueError:
        raise StageFailed(stage, "could not read `dvc status --json` output", text.splitlines()[-5:]) from None
    entries = status.get(stage)
    if not entries:
        return True, ""
    return False, describe_status(entries)


def pipeline_status(root: str | Path, stages: list[str]) -> dict[str, str] | None:
    """One `dvc status` for many stages: {stage: reason it is stale, "" if up to date}.

    None if DVC could not answer (each stage then asks for itself and reports the error).
    """
    if not stages:
        return {}
    # DVC collects the pipeline once per target: for all 172 stages one `dvc status` over the whole
    # pipeline takes 10 s, the same with every stage named took minutes. Ask for everything and
    # pick; a stage DVC finds up to date is left out of its answer either way.
    out = subprocess.run(dvc_argv("--wait-for-lock", "status", "--json"), cwd=str(Path(root)),
                         env=stage_env(), capture_output=True, text=True)
    text = out.stdout.strip()
    if out.returncode != 0 or "{" not in text:
        return None
    try:
        status = json.loads(text[text.index("{"):])
    except ValueError:
        return None
    return {s: describe_status(status[s]) if status.get(s) else "" for s in stages}


def reproduce_stage(root: str | Path, stage: str, log: Log, busy_wait_seconds: float = 600.0,
                    busy_poll_seconds: float = 5.0, known_up_to_date: bool = False,
                    threads: int | None = None, known_stale: str | None = None,
                    force: bool = False) -> StageResult:
    """Bring one stage up to date with DVC; raise StageFailed if its command fails.

    known_up_to_date: the flow's `dvc status` at its start found this stage up to date and no
    stage upstream of it has run since, so nothing can have changed its inputs; skip asking.
    known_stale: that status found it stale, for this reason; since a stale stage stays stale
    until it runs, skip asking too (a DVC process fewer per stage).
    threads: the CPU budget of the stage's command (vgs.utils.threads).
    force: run it even if up to date (`dvc repro --force`, run-cache not used; benchmarks).
    """
    root = Path(root).resolve()
    start = time.monotonic()
    if force:
        reason = "forced"
    elif known_up_to_date:
        log(f"{stage}: DVC finds it up to date (status at the start of the run; nothing upstream ran); not run")
        return StageResult(stage, Outcome.UP_TO_DATE, time.monotonic() - start)
    elif known_stale:
        reason = known_stale
    else:
        up_to_date, reason = stage_status(root, stage)
        if up_to_date:
            log(f"{stage}: DVC finds it up to date; not run")
            return StageResult(stage, Outcome.UP_TO_DATE, time.monotonic() - start)
    log(f"{stage}: stale ({reason}); running `dvc repro --single-item {stage}`")
    attempts = 0
    while True:
        attempts += 1
        argv = dvc_argv("--wait-for-lock", "repro", "--single-item", *(["--force"] if force else []), stage)
        with gpu_pool().claim() as gpu_env:
            code, tail = run_streaming(argv, root, log, env={**stage_env(threads=threads), **gpu_env})
        text = "\n".join(tail)
        if code == 0:
            if UNCHANGED_MARK in text:
                # Someone else's `dvc repro` brought it up to date since our status check.
                outcome = Outcome.UP_TO_DATE
            elif RUN_CACHE_MARK in text:
                outcome = Outcome.RESTORED
            else:
                outcome = Outcome.RAN
            return StageResult(stage, outcome, time.monotonic() - start, reason, attempts)
        waited = time.monotonic() - start
        if BUSY_MARK in text and waited < busy_wait_seconds:
            log(f"{stage}: paths busy in another DVC process; trying again in {busy_poll_seconds:.0f} s")
            time.sleep(busy_poll_seconds)
            continue
        raise StageFailed(stage, f"`dvc repro --single-item {stage}` exited with code {code}", tail)
