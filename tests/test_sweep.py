"""A four-point sweep as DVC experiments, two at a time: by DVC's queue, and by two Prefect
workers sharing a work pool (which also run a scheduled pipeline run of the same project).

The experiment's stage waits until a second experiment has started (a rendezvous in a shared
directory), so the sweep only succeeds if two experiments really run at the same time.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from orchestration_support import TINY_SCRIPT, make_tiny_project, shared_server

from pipeline.sweep import experiment_rows, parse_grid, queue_sweep

pytestmark = pytest.mark.slow

SWEEP_SCRIPT = TINY_SCRIPT + textwrap.dedent('''
    if action == "train":                      # train: one sweep point
        import json, yaml
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
                   "start": start, "end": time.time()}, open("metrics.json", "w"))
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

    def run_streaming(argv, root, log):
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
    monkeypatch.setattr(sweep, "run_streaming", lambda argv, root, log: (commands.append(argv), (0, []))[1])
    monkeypatch.setattr(sweep, "_wait_for_queue",
                        lambda root, names, poll: {"q-lr2-seed2": "ca63ec0  q-lr2-seed2  06:12 AM   Failed"})
    monkeypatch.setattr(sweep, "_queue_logs", lambda root, name: "ERROR: failed to reproduce 'train': exit 1")
    with pytest.raises(sweep.SweepError, match="q-lr2-seed2"):
        queue_sweep(tmp_path, parse_grid(GRID), "q", None, jobs=2, log=lambda line: None)
    assert not any("remove" in argv for argv in commands) and len(commands) == 5
