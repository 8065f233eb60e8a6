"""Shared by the orchestration tests: one real Prefect server per test session, and tiny DVC
projects built in temporary directories.

The server is what `make ui` starts: `vgs ui`, a real `prefect server start` (UI included,
which prefect_test_harness leaves out), here on a free loopback port with the project, and so
PREFECT_HOME, in a temporary directory. It is started once per pytest process, by whichever
test needs it first, and stopped at exit.
"""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_OUTPUT = REPO_ROOT / "test-output"

# DVC asks no questions and sends nothing anywhere.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    """`vgs ui --no-worker` on a free port, with the project (and so PREFECT_HOME) in a temp dir."""

    def __init__(self):
        import time

        from pipeline import server

        self.home = Path(tempfile.mkdtemp(prefix="vgs-prefect-test-"))
        self.port = free_port()
        self.api = server.api_url("127.0.0.1", self.port)
        self.ui = server.ui_url(self.api)
        self.output = self.home / "vgs-ui.out"
        self.env = server.project_env(self.home)
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "vgs.cli", "ui", "--no-worker", "--port",
                                          str(self.port), "--repo", str(self.home)], env=dict(os.environ),
                                         stdout=out, stderr=subprocess.STDOUT)
        start = time.monotonic()
        while f"Prefect UI: {self.ui}" not in self.output.read_text():
            if self.proc.poll() is not None or time.monotonic() - start > 240:
                self.stop()
                raise RuntimeError(f"`vgs ui` did not start a server:\n{self.output.read_text()}")
            time.sleep(0.5)
        self.startup_seconds = time.monotonic() - start
        assert server.is_healthy(self.api)
        self.client_env = {**self.env, "PREFECT_API_URL": self.api}
        # Flows run in this process talk to the test server and keep their files in its home.
        os.environ.update({"PREFECT_API_URL": self.api, "PREFECT_HOME": self.env["PREFECT_HOME"],
                           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        atexit.register(self.stop)

    def settings(self):
        """Prefect settings pointing at this server, for a prefect imported before it started."""
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.api, PREFECT_HOME: self.env["PREFECT_HOME"]})

    def stop(self):
        """SIGTERM to `vgs ui`, which stops its server (as a service manager would)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.home, ignore_errors=True)


_server: PrefectServer | None = None


def shared_server() -> PrefectServer:
    global _server
    if _server is None:
        _server = PrefectServer()
    return _server


def run(argv, cwd, env=None, check=True, timeout=300) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{argv} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def dvc(*args, cwd, check=True, timeout=300):
    return run([sys.executable, "-m", "dvc", *args], cwd, check=check, timeout=timeout)


# The tiny pipeline's one script. Every execution appends the stage name to runs.log (outside
# DVC's view), so tests can count what really ran.
TINY_SCRIPT = textwrap.dedent('''
    import csv, pathlib, sys, time

    here = pathlib.Path(__file__).parent
    stage, action, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(here / "runs.log", "a") as f:
        f.write(stage + "\\n")
    scratch = here / "scratch"
    scratch.mkdir(exist_ok=True)

    if action == "write":                      # write OUT [PARTNER]: PARTNER must run meanwhile
        out = pathlib.Path(args[0])
        if len(args) > 1:
            (scratch / (stage + ".started")).touch()
            deadline = time.time() + 90
            while not (scratch / (args[1] + ".started")).exists():
                if time.time() > deadline:
                    sys.exit(f"{stage}: {args[1]} never started while {stage} ran")
                time.sleep(0.2)
        out.write_text(stage + "\\n")
        print(f"{stage} wrote {out}")
    elif action == "concat":                   # concat OUT IN...
        pathlib.Path(args[0]).write_text("".join(pathlib.Path(p).read_text() for p in args[1:]))
        print(f"{stage} joined {len(args) - 1} files")
    elif action == "flaky":                    # fails on its first attempt only
        count = scratch / "flaky.count"
        n = int(count.read_text()) + 1 if count.exists() else 1
        count.write_text(str(n))
        if n < 2:
            sys.exit(f"{stage}: transient failure on attempt {n}")
        pathlib.Path(args[0]).write_text("ok\\n")
        print(f"{stage} succeeded on attempt {n}")
    elif action == "broken":
        print(f"{stage}: about to fail", flush=True)
        sys.exit(f"{stage}: broken on purpose (tiny pipeline)")
    elif action == "results":                  # results DIR IN: a paper-style table and report
        out = pathlib.Path(args[0])
        out.mkdir(parents=True, exist_ok=True)
        n = len(pathlib.Path(args[1]).read_text().split())
        with open(out / "table1.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["config", "data", "purity_paper", "purity_ours"])
            w.writerow(["tiny-a", "tiny synthetic", "0.912", f"{0.5 + n / 100:.3f}"])
            w.writerow(["tiny-b", "tiny synthetic", "", "0.777"])
        (out / "report.md").write_text("# Tiny paper\\n\\nPurity of the tiny run: **0.777**.\\n")
        print(f"{stage} wrote {out}/table1.csv")
''')

TINY_DVC = {
    "stages": {
        "gen_a": {"cmd": "python tiny.py gen_a write a.txt gen_b", "deps": ["tiny.py"], "outs": ["a.txt"]},
        "gen_b": {"cmd": "python tiny.py gen_b write b.txt gen_a", "deps": ["tiny.py"], "outs": ["b.txt"]},
        "combine": {"cmd": "python tiny.py combine concat c.txt a.txt b.txt",
                    "deps": ["a.txt", "b.txt"], "outs": ["c.txt"]},
        "flaky": {"cmd": "python tiny.py flaky flaky f.txt", "deps": ["tiny.py"], "outs": ["f.txt"]},
        "broken": {"cmd": "python tiny.py broken broken", "deps": ["tiny.py"], "outs": ["never.txt"]},
        "after_broken": {"cmd": "python tiny.py after_broken concat z.txt never.txt",
                         "deps": ["never.txt"], "outs": ["z.txt"]},
        "report": {"cmd": "python tiny.py report results results/tinypaper c.txt",
                   "deps": ["c.txt", "f.txt"],
                   "outs": [{"results/tinypaper": {"cache": False}}]},
    }
}

TINY_PARAMS = {
    "orchestration": {
        "max_parallel": 2,
        "retry": [{"stages": ["flaky"], "retries": 2, "delay_seconds": 1, "backoff": 2}],
    }
}


def make_tiny_project(path: Path, stages: dict | None = None, params: dict | None = None,
                      script: str = TINY_SCRIPT, commit: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], path)
    run(["git", "config", "user.email", "tests@vgs.invalid"], path)
    run(["git", "config", "user.name", "vgs tests"], path)
    dvc("init", "-q", cwd=path)
    (path / "tiny.py").write_text(script)
    (path / "dvc.yaml").write_text(yaml.safe_dump(stages or TINY_DVC, sort_keys=False))
    (path / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS if params is None else params, sort_keys=False))
    (path / ".gitignore").write_text("runs.log\nscratch/\n")
    if commit:
        run(["git", "add", "-A"], path)
        run(["git", "commit", "-qm", "tiny project"], path)
    return path


def executions(project: Path) -> list[str]:
    log = project / "runs.log"
    return log.read_text().split() if log.exists() else []


def task_runs(flow_run_id) -> dict:
    """{task run name: TaskRun} of one flow run, from the API."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r for r in runs}


def task_logs(task_run_id) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id])))
    return [entry.message for entry in logs]


_tiny_run: dict | None = None


def tiny_flow_run(base: Path) -> dict:
    """Run the tiny pipeline twice (once from scratch, once again) against the shared server.

    Cached per test session so that the orchestration and UI tests look at the same runs.
    """
    global _tiny_run
    if _tiny_run is not None:
        return _tiny_run
    server = shared_server()
    project = make_tiny_project(base / "tiny")
    from pipeline.flows import dvc_pipeline

    with server.settings():
        first = dvc_pipeline(repo=str(project), return_state=True)
        after_first = executions(project)
        # Everything but the broken branch: now up to date.
        second = dvc_pipeline(targets=["report"], repo=str(project), return_state=True)
        after_second = executions(project)
    _tiny_run = {"server": server, "project": project, "first": first, "second": second,
                 "after_first": after_first, "after_second": after_second}
    return _tiny_run
