"""The Prefect flow over a tiny DVC pipeline, against a real Prefect server (see
orchestration_support.py), plus the pure parts: stage graph, settings, artifact keys, grids."""
from __future__ import annotations

import csv
import textwrap

import pytest
import yaml
from orchestration_support import (dvc, executions, make_tiny_project, shared_server, task_logs,
                                   task_runs, tiny_flow_run)

from pipeline.artifacts import artifact_key, discover_results, read_table
from pipeline.dag import PipelineError, load_stage_graph
from pipeline.runner import _LineSplitter, describe_status
from pipeline.settings import load_orchestration
from pipeline.sweep import SweepError, parse_grid, point_name
from vgs.errors import ParamError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_flow_run(tmp_path_factory.mktemp("orchestration"))


# -- the flow against a real server ----------------------------------------------------------

def test_task_names_are_stage_names_and_states_say_what_dvc_did(tiny):
    first = tiny["first"]
    runs = task_runs(first.state_details.flow_run_id)
    stages = {"gen_a", "gen_b", "combine", "flaky", "broken", "after_broken", "report"}
    assert stages <= set(runs), sorted(runs)
    for name in ("gen_a", "gen_b", "combine", "flaky", "report"):
        assert runs[name].state.type.value == "COMPLETED", (name, runs[name].state)
        assert runs[name].state.name == "Completed"
    assert runs["broken"].state.type.value == "FAILED"
    assert runs["after_broken"].state.name == "Skipped"
    assert "broken" in runs["after_broken"].state.message


def test_independent_stages_ran_at_the_same_time(tiny):
    # gen_a and gen_b each wait (up to 90 s) for the other to start before finishing; run one
    # after the other they would fail instead.
    runs = task_runs(tiny["first"].state_details.flow_run_id)
    a, b = runs["gen_a"], runs["gen_b"]
    assert a.start_time < b.end_time and b.start_time < a.end_time
    assert tiny["after_first"].count("gen_a") == 1 and tiny["after_first"].count("gen_b") == 1


def test_each_task_log_holds_its_stage_output(tiny):
    runs = task_runs(tiny["first"].state_details.flow_run_id)
    logs = "\n".join(task_logs(runs["gen_a"].id))
    assert "gen_a wrote a.txt" in logs
    assert "Running stage 'gen_a'" in logs           # DVC's own output
    assert "gen_b wrote" not in logs


def test_failing_stage_fails_the_flow_with_its_error(tiny):
    first = tiny["first"]
    assert first.is_failed()
    assert "broken" in first.message and "broken on purpose" in first.message
    runs = task_runs(first.state_details.flow_run_id)
    assert "broken on purpose" in runs["broken"].state.message
    assert "broken on purpose" in "\n".join(task_logs(runs["broken"].id))
    # Not retryable (no rule matches it): one execution.
    assert tiny["after_first"].count("broken") == 1
    assert runs["broken"].run_count == 1
    assert "after_broken" not in tiny["after_first"]


def test_retryable_stage_is_retried(tiny):
    runs = task_runs(tiny["first"].state_details.flow_run_id)
    assert runs["flaky"].run_count == 2
    assert tiny["after_first"].count("flaky") == 2
    assert runs["flaky"].state.name == "Completed"


def test_up_to_date_stages_finish_at_once_and_are_not_rerun(tiny):
    second = tiny["second"]
    assert second.is_completed(), second.message
    runs = task_runs(second.state_details.flow_run_id)
    for name in ("gen_a", "gen_b", "combine", "flaky", "report"):
        assert runs[name].state.name == "Up to date", (name, runs[name].state)
    assert "broken" not in runs          # not upstream of the target
    assert tiny["after_second"] == tiny["after_first"]
    assert second.result()["stages"]["report"] == "up to date"


def test_result_tables_and_report_become_artifacts(tiny):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_run_id = tiny["first"].state_details.flow_run_id
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    by_key = {a.key: a for a in arts}
    assert {"tinypaper-table1", "tinypaper-report", "dvc-pipeline-stages"} <= set(by_key)
    table = by_key["tinypaper-table1"]
    assert table.type == "table"
    rows = table.data if isinstance(table.data, list) else yaml.safe_load(table.data)
    with open(tiny["project"] / "results/tinypaper/table1.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["purity_ours"] for r in rows] == [r["purity_ours"] for r in csv_rows]
    assert rows[1]["purity_paper"] == "n/a"          # a value the paper text lost
    assert by_key["tinypaper-report"].type == "markdown"
    assert "Purity of the tiny run" in by_key["tinypaper-report"].data


def test_vgs_flow_command_runs_against_the_server(tmp_path):
    """`vgs flow` on a fresh two-stage project; the CLI is what users type."""
    import subprocess
    import sys

    server = shared_server()
    stages = {"stages": {
        "one": {"cmd": "python tiny.py one concat one.txt tiny.py", "deps": ["tiny.py"], "outs": ["one.txt"]},
        "two": {"cmd": "python tiny.py two concat two.txt one.txt", "deps": ["one.txt"], "outs": ["two.txt"]},
    }}
    project = make_tiny_project(tmp_path / "cli", stages=stages, params={})
    out = subprocess.run([sys.executable, "-m", "vgs.cli", "flow", "--repo", str(project),
                          "--api-url", server.api], capture_output=True, text=True,
                         env={**server.client_env}, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert executions(project) == ["one", "two"]
    assert "Completed" in out.stdout


def test_vgs_flow_without_a_server_says_how_to_start_one(tmp_path):
    import subprocess
    import sys

    project = make_tiny_project(tmp_path / "noserver", params={})
    out = subprocess.run([sys.executable, "-m", "vgs.cli", "flow", "--repo", str(project),
                          "--api-url", "http://127.0.0.1:9/api"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "no Prefect server answers" in out.stderr and "make ui" in out.stderr
    assert "Traceback" not in out.stderr


# -- the stage graph, read from DVC ----------------------------------------------------------

def test_stage_graph_comes_from_dvc(tmp_path):
    project = make_tiny_project(tmp_path / "graph", params={})
    graph = load_stage_graph(project)
    assert graph.order.index("gen_a") < graph.order.index("combine")
    assert graph.upstream("combine") == ("gen_a", "gen_b")
    assert graph.upstream("report") == ("combine", "flaky")
    assert set(graph.select(["report"]).order) == {"gen_a", "gen_b", "combine", "flaky", "report"}
    # A stage added to dvc.yaml shows up with no other change.
    spec = yaml.safe_load((project / "dvc.yaml").read_text())
    spec["stages"]["extra"] = {"cmd": "python tiny.py extra concat e.txt c.txt", "deps": ["c.txt"], "outs": ["e.txt"]}
    (project / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert load_stage_graph(project).upstream("extra") == ("combine",)


def test_foreach_stages_groups_and_globs(tmp_path):
    stages = {"stages": {
        "make": {"foreach": ["x", "y"], "do": {"cmd": "python tiny.py make-${item} concat ${item}.txt tiny.py",
                                               "deps": ["tiny.py"], "outs": ["${item}.txt"]}},
        "use": {"cmd": "python tiny.py use concat u.txt x.txt", "deps": ["x.txt"], "outs": ["u.txt"]},
    }}
    project = make_tiny_project(tmp_path / "foreach", stages=stages, params={})
    graph = load_stage_graph(project)
    assert graph.order == ["make@x", "make@y", "use"]
    assert graph.upstream("use") == ("make@x",)
    assert graph.resolve("make") == ["make@x", "make@y"]
    assert graph.resolve("make@*") == ["make@x", "make@y"]
    assert graph.select(["use"]).order == ["make@x", "use"]
    with pytest.raises(PipelineError, match="no DVC stage matches 'mkae'"):
        graph.resolve("mkae")


def test_stage_names_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    project = make_tiny_project(tmp_path / "cwd", params={})
    (project / "sub").mkdir()
    (project / "sub/dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"inner": {"cmd": "echo hi > hi.txt", "outs": ["hi.txt"]}}}))
    monkeypatch.chdir(tmp_path)          # a worker runs flows from a temporary directory
    graph = load_stage_graph(project)
    assert "sub/dvc.yaml:inner" in graph and "gen_a" in graph


def test_broken_dvc_yaml_is_a_clear_error(tmp_path):
    project = make_tiny_project(tmp_path / "bad", params={})
    (project / "dvc.yaml").write_text("stages:\n  x:\n    cmd: [unclosed\n")
    with pytest.raises(PipelineError, match="cannot read the DVC pipeline"):
        load_stage_graph(project)


# -- settings --------------------------------------------------------------------------------

def test_orchestration_settings_and_retry_rules(tmp_path):
    (tmp_path / "params.yaml").write_text(textwrap.dedent("""
        orchestration:
          max_parallel: 3
          retry:
            - stages: [fetch@*, download]
              retries: 3
              delay_seconds: 5
              backoff: 3
    """))
    settings = load_orchestration(tmp_path)
    assert settings.max_parallel == 3
    assert settings.retry_for("fetch@mnist").delays() == [5, 15, 45]
    assert settings.retry_for("download").retries == 3
    assert settings.retry_for("prepare@mnist") is None
    assert load_orchestration(tmp_path / "nowhere").max_parallel == 2


def test_bad_orchestration_settings_name_the_key(tmp_path):
    (tmp_path / "params.yaml").write_text("orchestration:\n  max_parallel: 0\n")
    with pytest.raises(ParamError, match="orchestration.max_parallel"):
        load_orchestration(tmp_path)
    (tmp_path / "params.yaml").write_text("orchestration:\n  retry:\n    - stages: []\n      retries: 1\n")
    with pytest.raises(ParamError, match=r"orchestration.retry\[0\].stages"):
        load_orchestration(tmp_path)


def test_project_params_yaml_has_a_valid_orchestration_section():
    from orchestration_support import REPO_ROOT

    settings = load_orchestration(REPO_ROOT)
    assert settings.max_parallel >= 1
    assert settings.retry_for("fetch@mnist") is not None


# -- artifacts, grids, log lines -------------------------------------------------------------

def test_artifact_keys_are_sanitised():
    assert artifact_key("leidal2017", "table1") == "leidal2017-table1"
    assert artifact_key("Leidal_2017", "Table 2") == "leidal-2017-table-2"
    assert artifact_key("smart", "table3.v2") == "smart-table3-v2"
    with pytest.raises(ValueError):
        artifact_key("__", "")


def test_results_are_discovered_generically(tmp_path):
    for paper, files in {"pvae2018": ["table10.csv", "table2.csv", "report.md"],
                         "smart": ["report.md"], "empty": [], ".hidden": ["table1.csv"]}.items():
        (tmp_path / "results" / paper).mkdir(parents=True)
        for name in files:
            (tmp_path / "results" / paper / name).write_text("a,b\n1,\n")
    found = discover_results(tmp_path)
    assert [p.paper_id for p in found] == ["pvae2018", "smart"]
    assert [t.name for t in found[0].tables] == ["table2.csv", "table10.csv"]
    assert found[0].table_key(found[0].tables[1]) == "pvae2018-table10"
    assert found[1].tables == [] and found[1].report_key == "smart-report"
    columns, rows = read_table(found[0].tables[0])
    assert columns == ["a", "b"] and rows == [{"a": "1", "b": "n/a"}]


def test_sweep_grid_is_the_cartesian_product():
    grid = parse_grid(["train.lr=0.1,0.01", "train.seed=1,2"])
    assert grid == [{"train.lr": "0.1", "train.seed": "1"}, {"train.lr": "0.1", "train.seed": "2"},
                    {"train.lr": "0.01", "train.seed": "1"}, {"train.lr": "0.01", "train.seed": "2"}]
    assert parse_grid(["dims=[1,2];[3,4]"]) == [{"dims": "[1,2]"}, {"dims": "[3,4]"}]
    assert point_name("demo", grid[1]) == "demo-lr0.1-seed2"
    assert point_name("s", {"a.b": "1e-5"}) == "s-b1e-5"
    for bad in ([], ["novalue"], ["a=1,1"], ["a=1", "a=2"]):
        with pytest.raises(SweepError):
            parse_grid(bad)


def test_progress_bar_redraws_are_throttled():
    lines: list[str] = []
    from collections import deque

    splitter = _LineSplitter(lines.append, deque(maxlen=5))
    splitter.feed("start\n" + "".join(f"\rstep {i}/100" for i in range(100)) + "\ndone")
    splitter.close()
    assert lines[0] == "start" and lines[-1] == "done"
    assert "step 99/100" in lines          # the last state of the bar is kept
    assert len(lines) <= 4                 # not one line per redraw


def test_status_reasons_read_well():
    assert describe_status([{"changed deps": {"a.txt": "modified"}}, "changed command"]) == \
        "changed deps: a.txt (modified); changed command"


def test_concurrent_dvc_repro_of_independent_stages_overlaps(tmp_path):
    """The premise of the flow's concurrency: DVC releases its lock while a command runs."""
    import subprocess
    import sys

    stages = {"stages": {
        s: {"cmd": f"python tiny.py {s} write {s}.txt {other}", "deps": ["tiny.py"], "outs": [f"{s}.txt"]}
        for s, other in (("p", "q"), ("q", "p"))}}
    project = make_tiny_project(tmp_path / "lock", stages=stages, params={})
    procs = [subprocess.Popen([sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", s],
                              cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for s in ("p", "q")]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert dvc("status", "--json", cwd=project).stdout.strip() == "{}"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"p", "q"}           # both entries survived the concurrent writes


# -- CPU budget and clean stops (issue 22) ------------------------------------------------------

def test_pipeline_stages_get_the_runs_thread_budget(tmp_path, monkeypatch):
    """A foreground pipeline run with 2 stages at once, on a machine taken to have 6 cores: each
    stage command gets 3 threads; while it runs, it is registered for workers to count."""
    from pipeline.flows import dvc_pipeline
    from vgs.utils import threads

    server = shared_server()
    probe = ("import os, pathlib, sys; from vgs.utils.threads import live_runners; "
             "pathlib.Path(sys.argv[1]).write_text(os.environ['OMP_NUM_THREADS'] + ' ' + "
             "str(sum(r.slots for r in live_runners('.'))))")
    stages = {"stages": {s: {"cmd": f'python -c "{probe}" {s}.txt', "outs": [f"{s}.txt"]} for s in ("a", "b")}}
    project = make_tiny_project(tmp_path / "budget", stages=stages, params={})
    monkeypatch.setattr(threads, "machine_cores", lambda: 6)
    monkeypatch.delenv("VGS_THREADS", raising=False)
    monkeypatch.delenv(threads.RUNNER_ENV, raising=False)
    with server.settings():
        state = dvc_pipeline(repo=str(project), max_parallel=2, publish=False, return_state=True)
    assert state.is_completed(), state.message
    assert (project / "a.txt").read_text() == "3 2" and (project / "b.txt").read_text() == "3 2"
    assert threads.live_runners(project) == []


FAKE_DVC = textwrap.dedent('''
    # Behaves like DVC running a stage: ignores SIGINT while its command runs, then cleans up;
    # SIGTERM would kill it before it could.
    import pathlib, signal, subprocess, sys
    marks = pathlib.Path(sys.argv[1])
    stage = subprocess.Popen([sys.executable, "-c", """
    import pathlib, signal, sys, time
    def on_term(signum, frame):
        pathlib.Path(sys.argv[1], "checkpoint").write_text("saved")
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)
    pathlib.Path(sys.argv[1], "stage.pid").write_text(str(__import__("os").getpid()))
    time.sleep(120)
    """, str(marks)])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("stage running", flush=True)
    code = stage.wait()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    (marks / "cleaned").write_text(f"stage exited {code}")
    sys.exit(1)
''')


def test_an_interrupted_run_ends_its_stage_first_so_dvc_cleans_up(tmp_path):
    import signal
    import sys
    import time

    from pipeline.runner import _live, run_streaming

    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop()

    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "fake_dvc.py"
    script.write_text(FAKE_DVC)
    lines: list[str] = []
    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 4.0)        # a cancel arriving while the stage runs
    start = time.monotonic()
    try:
        with pytest.raises(Stop):
            run_streaming([sys.executable, str(script), str(marks)], tmp_path, lines.append)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert "stage running" in lines
    assert (marks / "checkpoint").read_text() == "saved"             # the stage got SIGTERM
    assert (marks / "cleaned").read_text() == "stage exited 143"      # "DVC" outlived it and cleaned up
    assert not _running(int((marks / "stage.pid").read_text()))
    assert not _live and time.monotonic() - start < 30


def test_a_process_left_holding_the_output_does_not_hold_the_run(tmp_path):
    import sys
    import time

    from pipeline.processes import LEFTOVER_GRACE_SECONDS
    from pipeline.runner import run_streaming

    pid_file = tmp_path / "leftover.pid"
    leave_one = ("import subprocess, sys; "
                 "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
                 f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('left one behind')")
    start = time.monotonic()
    code, tail = run_streaming([sys.executable, "-c", leave_one], tmp_path, lambda line: None)
    assert code == 0 and tail[0] == "left one behind"
    assert time.monotonic() - start < LEFTOVER_GRACE_SECONDS + 15
    time.sleep(0.5)
    assert not _running(int(pid_file.read_text()))


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE      # a zombie has ended
    except psutil.NoSuchProcess:
        return False
