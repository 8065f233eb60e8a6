"""A four-point sweep as DVC experiments, two at a time: by DVC's queue, and by two Prefect
workers sharing a work pool (which also run a scheduled pipeline run of the same project).

The experiment's stage waits until a second experiment has started (a rendezvous in a shared
directory), so the sweep only succeeds if two experiments really run at the same time. It also
reports the thread budget it received: two at once on this machine, each gets half the cores.

Then workers (and `vgs ui`, which starts one) stopped in the middle of a run: the run ends
Cancelled, no process of it is left, and the next sweep on that checkout works.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import psutil
import pytest
import yaml
from orchestration_support import TINY_SCRIPT, free_port, make_tiny_project, shared_server

from pipeline.sweep import TEMPDIR_EXPERIMENTS, experiment_rows, parse_grid, queue_sweep
from vgs.utils.threads import live_runners, machine_cores

pytestmark = pytest.mark.slow

SWEEP_SCRIPT = TINY_SCRIPT + textwrap.dedent('''
    if action == "train":                      # train: one sweep point
        import json, os, yaml
        p = yaml.safe_load(open("params.yaml"))["train"]
        shared = pathlib.Path(p["rendezvous_dir"])
        shared.mkdir(parents=True, exist_ok=True)
        me = f"lr{p['lr']}-seed{p['seed']}"
        start = time.time()
        (shared / f"{me}.started").touch()
        deadline = time.time() + 240
        while len(list(shared.glob("*.started"))) < 2:
            if time.time() > deadline:
                sys.exit(f"{me}: no second experiment ran at the same time")
            time.sleep(0.2)
        json.dump({"loss": round(1.0 / (1.0 + float(p["lr"])) + int(p["seed"]) / 1000, 6),
                   "start": start, "end": time.time(), "omp_threads": int(os.environ.get("OMP_NUM_THREADS", 0))},
                  open("metrics.json", "w"))
        print(f"{me}: loss written")
''')

SWEEP_DVC = {"stages": {
    "prep": {"cmd": "python tiny.py prep concat prep.txt tiny.py", "deps": ["tiny.py"], "outs": ["prep.txt"]},
    "train": {"cmd": "python tiny.py train train", "deps": ["tiny.py", "prep.txt"], "params": ["train"],
              "metrics": [{"metrics.json": {"cache": False}}]},
}}

GRID = ["train.lr=0.5,2", "train.seed=1,2"]


def sweep_project(path, rendezvous):
    params = {"train": {"lr": 1.0, "seed": 0, "rendezvous_dir": str(rendezvous)}}
    return make_tiny_project(path, stages=SWEEP_DVC, params=params, script=SWEEP_SCRIPT, commit=True)


def check_results(project, prefix):
    rows = {r["experiment"]: r for r in experiment_rows(project) if str(r["experiment"]).startswith(prefix)}
    assert len(rows) == 4, sorted(rows)
    for point in parse_grid(GRID):
        row = rows[f"{prefix}-lr{point['train.lr']}-seed{point['train.seed']}"]
        lr, seed = float(point["train.lr"]), int(point["train.seed"])
        assert float(row["train.lr"]) == lr and int(row["train.seed"]) == seed
        assert row["loss"] == pytest.approx(1.0 / (1.0 + lr) + seed / 1000)
    spans = sorted((r["start"], r["end"]) for r in rows.values())
    assert any(a_end > b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans
    # Two experiments at once on this machine: each gets half its cores (issue 22).
    assert {r["omp_threads"] for r in rows.values()} == {max(1, machine_cores() // 2)}, rows
    return rows


def test_dvc_queue_runs_a_four_point_sweep_two_at_a_time(tmp_path):
    project = sweep_project(tmp_path / "queue", tmp_path / "rendezvous-queue")
    names = queue_sweep(project, parse_grid(GRID), "q", None, jobs=2, log=lambda line: None)
    assert len(names) == 4
    check_results(project, "q")


def test_two_prefect_workers_share_a_sweep_and_a_scheduled_run(tmp_path):
    server = shared_server()
    project = sweep_project(tmp_path / "pool", tmp_path / "rendezvous-pool")
    env = {**server.client_env, "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}

    def vgs(*args, timeout=600):
        return subprocess.run([sys.executable, "-m", "vgs.cli", *args, "--api-url", server.api],
                              cwd=str(project), env=env, capture_output=True, text=True, timeout=timeout)

    out = vgs("sweep", "deploy", "--pool", "test-pool")
    assert out.returncode == 0, out.stdout + out.stderr

    # A scheduled pipeline deployment in the same pool, first run due in a few seconds.
    from prefect.schedules import Schedule

    from pipeline.deployments import apply_deployment
    from pipeline.flows import dvc_pipeline

    with server.settings():
        scheduled_id = apply_deployment(
            dvc_pipeline, "tiny-scheduled", "test-pool", parameters={"targets": ["prep"]},
            schedules=[Schedule(interval=3600, anchor_date=datetime.now(timezone.utc) + timedelta(seconds=10))])

    logs = [open(tmp_path / f"worker{i}.log", "w") for i in (1, 2)]
    workers = [subprocess.Popen([sys.executable, "-m", "vgs.cli", "worker", "--pool", "test-pool",
                                 "--api-url", server.api], cwd=str(project), env=env,
                                stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        # A run counts the workers registered when it starts: both, once they are up.
        wait_until(lambda: len(live_runners(project)) == 2, 120, "two workers registered")
        args = ["sweep", "submit", "--name", "w", "--wait", "--timeout", "540"]
        for axis in GRID:
            args += ["-S", axis]
        out = vgs(*args)
        assert out.returncode == 0, out.stdout + out.stderr + "".join(
            open(tmp_path / f"worker{i}.log").read()[-3000:] for i in (1, 2))
        rows = check_results(project, "w")
        assert "w-lr2-seed2" in out.stdout          # the table `vgs sweep submit --wait` prints

        from prefect import get_client
        from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, DeploymentFilter,
                                                    DeploymentFilterId, FlowRunFilter, FlowRunFilterId)

        from pipeline.sweep import wait_for_runs

        with server.settings(), get_client(sync_client=True) as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[scheduled_id])),
                                         limit=5)
            due = [r for r in runs if r.expected_start_time <= datetime.now(timezone.utc)]
            assert due, [(r.name, r.state_name) for r in runs]
            states = wait_for_runs([str(due[0].id)], timeout=300)
            assert list(states.values()) == ["Completed"]
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[due[0].id])), limit=50)
            assert "prep" in {t.name for t in tasks}
            arts = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[due[0].id])), limit=50)
            assert "dvc-pipeline-stages" in {a.key for a in arts}
            sweep_arts = client.read_artifacts(limit=200)
            assert {f"exp-{name.replace('.', '-')}" for name in rows} <= {a.key for a in sweep_arts}
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        for log in logs:
            log.close()
    assert os.path.exists(project / "dvc.yaml")
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["lr"] == 1.0   # workspace untouched


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(0.5)


# A stage like a training run: it runs until stopped; on SIGTERM it saves a "checkpoint" and exits
# as the trainer does. It starts a child that ignores SIGTERM, which only SIGKILL ends.
HOLD_SCRIPT = TINY_SCRIPT + textwrap.dedent('''
    if action == "hold":
        import json, os, signal, subprocess, yaml
        p = yaml.safe_load(open("params.yaml"))["train"]
        if not p["hold"]:
            json.dump({"loss": float(p["lr"])}, open("metrics.json", "w"))
            sys.exit(0)
        marks = pathlib.Path(p["marks_dir"])
        marks.mkdir(parents=True, exist_ok=True)
        stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(900)"
        child = subprocess.Popen([sys.executable, "-c", stubborn])

        def on_sigterm(signum, frame):
            (marks / "checkpoint").write_text("saved on SIGTERM")
            sys.exit(143)

        signal.signal(signal.SIGTERM, on_sigterm)
        (marks / "pids.json").write_text(json.dumps({"stage": os.getpid(), "child": child.pid}))
        time.sleep(900)
''')
HOLD_DVC = {"stages": {"train": {"cmd": "python tiny.py train hold", "deps": ["tiny.py"], "params": ["train"],
                                 "metrics": [{"metrics.json": {"cache": False}}]}}}


def hold_project(path, marks):
    params = {"train": {"lr": 1.0, "hold": False, "marks_dir": str(marks)}}
    return make_tiny_project(path, stages=HOLD_DVC, params=params, script=HOLD_SCRIPT, commit=True)


def processes_under(pid, marks) -> list[psutil.Process]:
    """Every process of the run: the tree under `pid` now, and the stage's own PIDs."""
    procs = psutil.Process(pid).children(recursive=True)
    pids = json.loads((marks / "pids.json").read_text())
    return procs + [psutil.Process(pids["stage"]), psutil.Process(pids["child"])]


def still_running(procs: list[psutil.Process]) -> list[str]:
    left = []
    for proc in procs:
        try:
            # is_running() also compares the start time: a reused PID is not "still running".
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {' '.join(proc.cmdline())[:100]}")
        except psutil.NoSuchProcess:
            continue
    return left


def flow_run_state(run_id):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def assert_stopped_cleanly(project, marks, procs, experiment):
    assert (marks / "checkpoint").read_text() == "saved on SIGTERM"      # asked to stop, not killed
    assert still_running(procs) == []
    tempdirs = list((project / TEMPDIR_EXPERIMENTS).glob("tmp*"))
    assert tempdirs == [], tempdirs                                      # no half-written workspace
    assert experiment not in {r["experiment"] for r in experiment_rows(project)}   # not "Running" for ever
    assert live_runners(project) == []                                   # the worker left the registry


@pytest.mark.parametrize("stop_with", ["SIGTERM", "SIGINT"])
def test_a_worker_stopped_mid_run_cancels_it_and_leaves_nothing_behind(tmp_path, stop_with):
    server = shared_server()
    marks = tmp_path / "marks"
    project = hold_project(tmp_path / "stop", marks)
    pool = f"stop-{stop_with.lower()}"
    env = {**server.client_env, "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}

    def vgs(*args, timeout=600):
        return subprocess.run([sys.executable, "-m", "vgs.cli", *args, "--api-url", server.api],
                              cwd=str(project), env=env, capture_output=True, text=True, timeout=timeout)

    def start_worker(log_name):
        with open(tmp_path / log_name, "w") as log:
            return subprocess.Popen([sys.executable, "-m", "vgs.cli", "worker", "--pool", pool,
                                     "--api-url", server.api], cwd=str(project), env=env,
                                    stdout=log, stderr=subprocess.STDOUT)

    def worker_log(name):
        return (tmp_path / name).read_text()[-4000:]

    assert vgs("sweep", "deploy", "--pool", pool).returncode == 0
    worker = start_worker("worker.log")
    try:
        out = vgs("sweep", "submit", "--name", "held", "-S", "train.hold=true")
        assert out.returncode == 0, out.stdout + out.stderr
        run_id = out.stdout.split("flow run ")[1].split()[0]
        wait_until(lambda: (marks / "pids.json").exists(), 240, "the stage to start\n" + worker_log("worker.log"))
        procs = processes_under(worker.pid, marks)
        assert len(procs) >= 5          # prefect worker, flow run, dvc exp run, the stage, its child
        worker.send_signal(getattr(signal, stop_with))
        assert worker.wait(timeout=240) == 0, worker_log("worker.log")
    finally:
        if worker.poll() is None:
            worker.kill()
    log = worker_log("worker.log")
    assert "flow run held-holdtrue: Cancelled" in log, log
    with server.settings():
        state = flow_run_state(run_id)
    assert state.type.value in ("CANCELLED", "CRASHED"), state
    assert f"({stop_with})" in state.message
    assert_stopped_cleanly(project, marks, procs, "held-holdtrue")

    # The next sweep on that checkout works.
    worker = start_worker("worker2.log")
    try:
        out = vgs("sweep", "submit", "--name", "after", "--wait", "--timeout", "300", "-S", "train.lr=2,3")
        assert out.returncode == 0, out.stdout + out.stderr + worker_log("worker2.log")
    finally:
        worker.terminate()
        worker.wait(timeout=120)
    rows = {r["experiment"]: r for r in experiment_rows(project)}
    assert rows["after-lr2"]["loss"] == 2.0 and rows["after-lr3"]["loss"] == 3.0


def test_ctrl_c_to_vgs_ui_stops_its_worker_runs_then_the_server(tmp_path):
    """`vgs ui` starts a server and a worker of the vgs-local pool; Ctrl-C (SIGINT) to it, as from
    its terminal, cancels the run its worker runs before the server stops."""
    marks = tmp_path / "marks"
    project = hold_project(tmp_path / "ui", marks)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "5"})

    def start_ui(*extra):
        log = tmp_path / f"ui{len(list(tmp_path.glob('ui*.log')))}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "vgs.cli", "ui", "--port", str(port), "--repo",
                                     str(project), *extra], cwd=str(project), env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        wait_until(lambda: f"Prefect UI: http://127.0.0.1:{port}" in log.read_text() or proc.poll() is not None,
                   240, "the server to start")
        assert proc.poll() is None, log.read_text()
        return proc

    def vgs(*args):
        return subprocess.run([sys.executable, "-m", "vgs.cli", *args, "--api-url", api], cwd=str(project),
                              env=env, capture_output=True, text=True, timeout=300)

    ui = start_ui()
    try:
        assert vgs("sweep", "deploy", "--pool", "vgs-local").returncode == 0
        out = vgs("sweep", "submit", "--name", "ui", "-S", "train.hold=true")
        assert out.returncode == 0, out.stdout + out.stderr
        run_id = out.stdout.split("flow run ")[1].split()[0]
        wait_until(lambda: (marks / "pids.json").exists(), 240,
                   "the stage to start\n" + (project / ".prefect/worker.log").read_text()[-3000:])
        procs = processes_under(ui.pid, marks)
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=300) == 0
    finally:
        if ui.poll() is None:
            ui.kill()
    assert_stopped_cleanly(project, marks, procs, "ui-holdtrue")
    ui = start_ui("--no-worker")              # the same project, so the same database
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api}):
            state = flow_run_state(run_id)
        assert state.type.value == "CANCELLED", state
        assert "(SIGINT)" in state.message
    finally:
        ui.terminate()
        ui.wait(timeout=60)


def test_a_worker_on_another_checkout_pulls_inputs_and_pushes_its_experiment(tmp_path):
    """The multi-machine path with local stand-ins: a bare git repo for the shared git remote, a
    directory for the shared DVC remote (S3 or SSH are the same commands with another URL)."""
    from orchestration_support import dvc, run

    from pipeline.sweep import run_experiment

    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    for other in ("a", "b"):                       # one point alone: no partner needed
        (rendezvous / f"{other}.started").touch()
    run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], tmp_path)
    lead = sweep_project(tmp_path / "lead", rendezvous)
    dvc("remote", "add", "-d", "shared", str(tmp_path / "dvc-remote"), cwd=lead)
    dvc("repro", "prep", cwd=lead)
    run(["git", "add", "-A"], lead)
    run(["git", "commit", "-qm", "shared remotes"], lead)
    run(["git", "remote", "add", "origin", str(tmp_path / "origin.git")], lead)
    run(["git", "push", "-q", "origin", "HEAD:main"], lead)
    dvc("push", cwd=lead)

    # "Another machine": a fresh clone with no data at all.
    run(["git", "clone", "-q", "-b", "main", str(tmp_path / "origin.git"), str(tmp_path / "gpu1")], tmp_path)
    gpu1 = tmp_path / "gpu1"
    run(["git", "config", "user.email", "tests@vgs.invalid"], gpu1)
    run(["git", "config", "user.name", "vgs tests"], gpu1)
    lines: list[str] = []
    run_experiment(gpu1, {"train.lr": "3"}, "remote-lr3", None, lines.append, pull=True, push_remote="origin")
    assert any("Pulling data for stage: 'prep'" in line for line in lines), lines

    dvc("exp", "pull", "origin", "remote-lr3", cwd=lead)
    rows = {r["experiment"]: r for r in experiment_rows(lead)}
    assert rows["remote-lr3"]["loss"] == pytest.approx(0.25)


@pytest.mark.parametrize("second_failure", [None, "race", "other"])
def test_a_point_lost_to_dvcs_run_cache_race_is_queued_again_once(tmp_path, monkeypatch, second_failure):
    """treeverse/dvc#10673: two queue workers writing one run-cache entry; any other failure is
    reported at once, and a second race is reported too."""
    import pipeline.sweep as sweep

    race_log = ("ERROR: failed to reproduce 'prep': [Errno 2] No such file or directory: "
                f"'{tmp_path}/.dvc/cache/runs/f2/f2b0/.dxvK.tmp'")
    commands, waits = [], []

    def run_streaming(argv, root, log, env=None):
        commands.append(argv[argv.index("dvc") + 1:] if "dvc" in argv else argv)
        return 0, []

    def wait_for_queue(root, names, poll_seconds):
        waits.append(names)
        if len(waits) == 1:
            return {"q-lr0.5-seed1": "946ce74  q-lr0.5-seed1  06:12 AM   Failed"}
        if second_failure and len(waits) == 2:
            return {"q-lr0.5-seed1": "a1b2c3d  q-lr0.5-seed1  06:13 AM   Failed"}
        return {}

    logs = {1: race_log, 2: race_log if second_failure == "race" else "ERROR: train.py: division by zero"}
    monkeypatch.setattr(sweep, "run_streaming", run_streaming)
    monkeypatch.setattr(sweep, "_wait_for_queue", wait_for_queue)
    monkeypatch.setattr(sweep, "_queue_logs", lambda root, name: logs[len(waits)])
    monkeypatch.setattr(sweep, "dvc_argv", lambda *args: ["dvc", *args])
    messages = []
    if second_failure:
        with pytest.raises(sweep.SweepError, match=r"failed:\n.*q-lr0.5-seed1.*06:13"):
            queue_sweep(tmp_path, parse_grid(GRID), "q", None, jobs=2, log=messages.append)
    else:
        assert queue_sweep(tmp_path, parse_grid(GRID), "q", None, jobs=2, log=messages.append) == \
            ["q-lr0.5-seed1", "q-lr0.5-seed2", "q-lr2-seed1", "q-lr2-seed2"]
    requeued = [c for c in commands[5:] if c[0] == "exp"]
    assert ["queue", "remove", "q-lr0.5-seed1"] in commands
    assert len(requeued) == 1 and requeued[0][:5] == ["exp", "run", "--queue", "-n", "q-lr0.5-seed1"]
    assert any("dvc#10673" in m for m in messages)


def test_a_failure_that_is_not_the_race_is_reported_without_a_retry(tmp_path, monkeypatch):
    import pipeline.sweep as sweep

    commands = []
    monkeypatch.setattr(sweep, "run_streaming", lambda argv, root, log, env=None: (commands.append(argv), (0, []))[1])
    monkeypatch.setattr(sweep, "_wait_for_queue",
                        lambda root, names, poll: {"q-lr2-seed2": "ca63ec0  q-lr2-seed2  06:12 AM   Failed"})
    monkeypatch.setattr(sweep, "_queue_logs", lambda root, name: "ERROR: failed to reproduce 'train': exit 1")
    with pytest.raises(sweep.SweepError, match="q-lr2-seed2"):
        queue_sweep(tmp_path, parse_grid(GRID), "q", None, jobs=2, log=lambda line: None)
    assert not any("remove" in argv for argv in commands) and len(commands) == 5


def test_a_stopped_worker_hands_back_runs_it_claimed_but_never_started(tmp_path):
    """What `vgs worker` tells the API when it stops: a run it claimed (Pending, labelled with its
    name) but never started goes back to the pool; a Running one it has no process of is Cancelled."""
    from prefect import get_client
    from prefect.states import Pending, Running

    from pipeline.deployments import deploy_sweep
    from pipeline.worker import WorkerSupervisor

    server = shared_server()
    supervisor = WorkerSupervisor(tmp_path, "handback-pool", 1, server.api, env={}, log=lambda line: None)
    with server.settings(), get_client(sync_client=True) as client:
        deployment_id = deploy_sweep("handback-pool", "handback")
        runs = {}
        for name, state in (("claimed", Pending()), ("orphan", Running()), ("other-worker", Pending())):
            run = client.create_flow_run_from_deployment(deployment_id, name=name, state=state,
                                                         parameters={"params": {}, "name": name})
            worker = supervisor.name if name != "other-worker" else "someone-else"
            client.update_flow_run_labels(run.id, {"prefect.worker.name": worker})
            runs[name] = run.id
        supervisor._settle_states({}, "SIGTERM")
        states = {name: client.read_flow_run(run_id).state for name, run_id in runs.items()}
    assert states["claimed"].type.value == "SCHEDULED" and "Handed back" in states["claimed"].message
    assert states["orphan"].type.value == "CANCELLED" and "(SIGTERM)" in states["orphan"].message
    assert states["other-worker"].type.value == "PENDING"
