"""The CPU budget (vgs/utils/threads.py): the rule, the override, the registry of runners on one
machine, and the thread count that a run's stage commands really receive, through the
`dvc-experiment` flow (as a worker runs it) and through DVC's queue."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from orchestration_support import TINY_SCRIPT, make_tiny_project, shared_server

from vgs.utils import threads
from vgs.utils.threads import (RUNNER_ENV, THREAD_VARIABLES, ThreadBudgetError, live_runners, register_runner,
                               registered_runner, thread_budget, threads_for, unregister_runner)


# -- the rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cores, runs, expected", [
    (2, 1, 2), (2, 2, 1), (2, 3, 1), (8, 1, 8), (8, 2, 4), (8, 3, 2), (1, 4, 1), (6, 0, 6)])
def test_the_rule_is_cores_divided_by_runs_at_least_one(cores, runs, expected):
    budget = threads_for(runs, cores=cores, environ={})
    assert budget.threads == expected and not budget.overridden
    assert budget.env({})["OMP_NUM_THREADS"] == str(expected)
    assert set(THREAD_VARIABLES) <= set(budget.env({}))


def test_vgs_threads_overrides_the_rule():
    budget = threads_for(3, cores=2, environ={"VGS_THREADS": "4"})
    assert budget.threads == 4 and budget.overridden
    assert "VGS_THREADS=4" in budget.describe()
    assert threads_for(3, cores=2, environ={"VGS_THREADS": " "}).threads == 1     # empty: the rule


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5", "2 threads"])
def test_a_bad_vgs_threads_value_is_a_clear_error(bad):
    with pytest.raises(ThreadBudgetError) as err:
        threads_for(1, cores=2, environ={"VGS_THREADS": bad})
    assert repr(bad) in str(err.value) and "fix: e.g. `export VGS_THREADS=2`" in str(err.value)


def test_vgs_threads_command_prints_the_budget_and_rejects_a_bad_override(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    env = {k: v for k, v in os.environ.items() if k != "VGS_THREADS"}

    def vgs_threads(*args, **extra):
        return subprocess.run([sys.executable, "-m", "vgs.cli", "threads", "--repo", str(project), *args],
                              env={**env, **extra}, capture_output=True, text=True, timeout=60)

    cores = threads.machine_cores()
    out = vgs_threads("-j", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{max(1, cores // 2)} thread")
    out = vgs_threads("--export", VGS_THREADS="3")
    assert "export OMP_NUM_THREADS=3" in out.stdout
    out = vgs_threads(VGS_THREADS="zero")
    assert out.returncode == 2 and "VGS_THREADS='zero'" in out.stderr and "fix:" in out.stderr


# -- the registry -----------------------------------------------------------------------------

def _fake_worker(root, limit, host=None, started=None):
    """A live process registered as a worker with --limit `limit` (the registry counts processes,
    so a sleeping one stands for a worker)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    import psutil

    entry = {"key": f"{host or socket.gethostname()}-{proc.pid}-1", "host": host or socket.gethostname(),
             "pid": proc.pid, "started": started if started is not None else psutil.Process(proc.pid).create_time(),
             "slots": limit, "what": f"vgs worker --limit {limit}"}
    directory = threads.runners_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{entry['key']}.json").write_text(json.dumps(entry))
    return proc, entry


@pytest.fixture
def fake_workers(tmp_path):
    procs = []

    def start(limit=1, root=None, **kwargs):
        proc, entry = _fake_worker(root or tmp_path, limit, **kwargs)
        procs.append(proc)
        return proc, entry

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("workers, expected", [(1, 6), (2, 3), (3, 2)])
def test_a_worker_run_counts_every_live_worker_on_the_machine(tmp_path, fake_workers, workers, expected):
    entries = [fake_workers()[1] for _ in range(workers)]
    # The run belongs to the first worker: one of its slots is the run itself.
    environ = {RUNNER_ENV: entries[0]["key"]}
    assert thread_budget(tmp_path, parallel=1, environ=environ, cores=6).threads == expected
    assert thread_budget(tmp_path, parallel=1, environ={**environ, "VGS_THREADS": "5"}, cores=6).threads == 5


def test_limits_pipeline_stages_and_queue_jobs_all_count(tmp_path, fake_workers):
    _, first = fake_workers(limit=2)
    fake_workers(limit=1)
    # A run of the --limit 2 worker: its other slot, plus the other worker, plus itself.
    assert thread_budget(tmp_path, environ={RUNNER_ENV: first["key"]}, cores=12).runs == 3
    # A pipeline run of that worker with 2 stages at once.
    assert thread_budget(tmp_path, parallel=2, environ={RUNNER_ENV: first["key"]}, cores=12).threads == 3
    # A foreground run or queue (not a worker's): all 3 worker slots plus its own 4 jobs.
    with registered_runner(tmp_path, 4, "vgs sweep queue -j 4") as me:
        budget = thread_budget(tmp_path, parallel=4, claimed=me, environ={}, cores=14)
        assert (budget.runs, budget.threads) == (7, 2)
        assert len(live_runners(tmp_path)) == 3
    assert len(live_runners(tmp_path)) == 2


def test_ended_reused_and_foreign_entries_are_ignored(tmp_path, fake_workers):
    ended, entry = fake_workers()
    ended.kill()
    ended.wait()
    _, reused = fake_workers(started=time.time() - 3600)      # its PID now belongs to another process
    fake_workers(host="another-machine")                     # .prefect on a shared disk
    (threads.runners_dir(tmp_path) / "garbage.json").write_text("{not json")
    assert live_runners(tmp_path) == []
    assert thread_budget(tmp_path, environ={}, cores=4).threads == 4
    files = {p.name for p in threads.runners_dir(tmp_path).iterdir()}
    assert f"{entry['key']}.json" not in files and f"{reused['key']}.json" not in files   # tidied
    assert "garbage.json" in files


def test_register_and_unregister(tmp_path):
    runner = register_runner(tmp_path, 3, "test")
    assert [r.key for r in live_runners(tmp_path)] == [runner.key]
    assert runner.pid == os.getpid() and runner.slots == 3
    unregister_runner(tmp_path, runner)
    assert live_runners(tmp_path) == []


def test_queue_sweep_starts_dvc_queue_workers_with_the_budget(tmp_path, monkeypatch, fake_workers):
    import pipeline.sweep as sweep

    seen = {}

    def run_streaming(argv, root, log, env=None):
        seen[" ".join(argv[argv.index("dvc") + 1:])] = env
        return 0, []

    monkeypatch.setattr(sweep, "run_streaming", run_streaming)
    monkeypatch.setattr(sweep, "dvc_argv", lambda *args: ["dvc", *args])
    monkeypatch.setattr(threads, "machine_cores", lambda: 6)
    monkeypatch.delenv("VGS_THREADS", raising=False)
    grid = sweep.parse_grid(["a=1,2,3"])
    for jobs, expected in ((1, 6), (2, 3), (3, 2)):
        sweep.queue_sweep(tmp_path, grid, f"j{jobs}", None, jobs, log=lambda line: None, wait=False)
        assert seen[f"queue start -j {jobs}"]["OMP_NUM_THREADS"] == str(expected)
        assert seen[f"exp run --queue -n j{jobs}-a1 -S a=1"]["MKL_NUM_THREADS"] == str(expected)
    fake_workers()                          # a worker on the machine too: 3 jobs + 1 run
    sweep.queue_sweep(tmp_path, grid, "w", None, 3, log=lambda line: None, wait=False)
    assert seen["queue start -j 3"]["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("VGS_THREADS", "5")
    sweep.queue_sweep(tmp_path, grid, "o", None, 3, log=lambda line: None, wait=False)
    assert seen["queue start -j 3"]["OPENBLAS_NUM_THREADS"] == "5"


# -- what the stage commands receive ------------------------------------------------------------

# The stage reports what torch and the environment say, from inside the experiment.
THREADS_SCRIPT = TINY_SCRIPT + textwrap.dedent('''
    if action == "threads":
        import json, os, torch, yaml
        tag = yaml.safe_load(open("params.yaml"))["probe"]["tag"]
        json.dump({"tag": tag, "torch_threads": torch.get_num_threads(),
                   **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}},
                  open("threads.json", "w"))
''')
THREADS_DVC = {"stages": {"probe": {"cmd": "python tiny.py probe threads", "deps": ["tiny.py"], "params": ["probe"],
                                    "metrics": [{"threads.json": {"cache": False}}]}}}


def _threads_project(path):
    return make_tiny_project(path, stages=THREADS_DVC, params={"probe": {"tag": "base"}}, script=THREADS_SCRIPT,
                             commit=True)


def _probe_rows(project):
    from pipeline.sweep import experiment_rows

    return {r["experiment"]: r for r in experiment_rows(project)}


@pytest.mark.slow
def test_experiment_flow_runs_get_the_budget_for_1_2_3_workers_and_the_override(tmp_path, monkeypatch, fake_workers):
    """The `dvc-experiment` flow, as a worker's flow run executes it (with $VGS_RUNNER naming its
    worker), on a machine taken to have 6 cores, with 1, 2 and 3 workers registered."""
    server = shared_server()
    project = _threads_project(tmp_path / "flow")
    from pipeline.flows import dvc_experiment

    real_cores = threads.machine_cores()
    monkeypatch.setattr(threads, "machine_cores", lambda: 6)
    monkeypatch.delenv("VGS_THREADS", raising=False)
    own = None
    expected = {}
    with server.settings():
        for workers, threads_expected in ((1, 6), (2, 3), (3, 2)):
            entry = fake_workers(root=project)[1]
            own = own or entry
            monkeypatch.setenv(RUNNER_ENV, own["key"])
            name = f"w{workers}"
            state = dvc_experiment(params={"probe.tag": name}, name=name, repo=str(project), return_state=True)
            assert state.is_completed(), state.message
            expected[name] = threads_expected
        monkeypatch.setenv("VGS_THREADS", "4")
        state = dvc_experiment(params={"probe.tag": "override"}, name="override", repo=str(project),
                               return_state=True)
        assert state.is_completed(), state.message
        expected["override"] = 4
    rows = _probe_rows(project)
    for name, n in expected.items():
        assert rows[name]["OMP_NUM_THREADS"] == str(n) and rows[name]["MKL_NUM_THREADS"] == str(n), rows[name]
        # torch follows OMP_NUM_THREADS, but never uses more threads than the real cores.
        assert rows[name]["torch_threads"] == min(n, real_cores), (name, rows[name])


@pytest.mark.slow
def test_dvc_queue_jobs_get_the_budget(tmp_path, monkeypatch):
    """Three DVC queue jobs on a machine taken to have 6 cores: 2 threads each."""
    from pipeline.sweep import parse_grid, queue_sweep

    project = _threads_project(tmp_path / "queue")
    real_cores = threads.machine_cores()
    monkeypatch.setattr(threads, "machine_cores", lambda: 6)
    monkeypatch.delenv("VGS_THREADS", raising=False)
    names = queue_sweep(project, parse_grid(["probe.tag=a,b,c"]), "q", None, jobs=3, log=lambda line: None)
    rows = _probe_rows(project)
    for name in names:
        assert rows[name]["OPENBLAS_NUM_THREADS"] == "2", rows[name]
        assert rows[name]["torch_threads"] == min(2, real_cores), rows[name]
    assert yaml.safe_load((project / "params.yaml").read_text())["probe"]["tag"] == "base"
