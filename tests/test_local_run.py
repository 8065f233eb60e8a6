"""`vgs repro -j N` / `make run` (pipeline/local.py): independent stages at once, no Prefect server.

On the tiny real DVC pipeline of orchestration_support: gen_a and gen_b only succeed when they run
at the same time (each waits for the other to start), so a pass proves concurrency; combine reads
both, so it proves the DAG order; `broken` fails and `after_broken` depends on it.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration_support import TINY_DVC, executions, make_tiny_project
from pipeline.dag import Stage, StageGraph
from pipeline.local import LocalRunFailed, critical_path, run_local
from vgs.utils.threads import machine_cores

pytestmark = pytest.mark.slow

STAGES = {"stages": {k: v for k, v in TINY_DVC["stages"].items() if k not in ("flaky",)}}
STAGES["stages"]["report"] = {**TINY_DVC["stages"]["report"], "deps": ["c.txt"]}
ENV_SCRIPT_STAGE = {"cmd": "python -c \"import os; open('threads.txt','w').write(os.environ.get('OMP_NUM_THREADS', ''))\"",
                    "outs": ["threads.txt"]}


def test_runs_independent_stages_together_stops_only_what_a_failure_blocks_and_names_it(tmp_path):
    project = make_tiny_project(tmp_path / "p", stages={"stages": {**STAGES["stages"], "threads": ENV_SCRIPT_STAGE}},
                                params={})
    lines = []
    with pytest.raises(LocalRunFailed, match=r"1 stage\(s\) failed: broken; 1 downstream not run") as failed:
        run_local(project, jobs=2, log=lines.append)
    assert "broken on purpose" in str(failed.value)          # the stage's own last lines
    ran = executions(project)
    assert {"gen_a", "gen_b", "combine", "report", "broken"} <= set(ran) and "after_broken" not in ran
    assert ran.index("combine") > max(ran.index("gen_a"), ran.index("gen_b"))
    assert (project / "c.txt").read_text() == "gen_a\ngen_b\n"
    assert (project / "results/tinypaper/table1.csv").is_file()
    # The CPU budget: cores shared by the stages that run at once.
    assert (project / "threads.txt").read_text() == str(max(1, machine_cores() // 2))
    assert any(line.startswith("== ") and "done" in line and "waiting" in line for line in lines)

    # Without the broken stage, a second run has nothing to do and starts no stage.
    (project / "dvc.yaml").write_text((project / "dvc.yaml").read_text().replace("broken broken", "broken write never.txt"))
    run_local(project, jobs=2, log=lines.append)
    before = len(executions(project))
    summary = run_local(project, jobs=2, log=lines.append)
    assert len(executions(project)) == before
    assert set(summary.outcome.values()) == {"up to date"}


def test_longest_chain_first():
    graph = StageGraph({
        "short": Stage("short", "x", ()),
        "long1": Stage("long1", "x", ()),
        "long2": Stage("long2", "x", ("long1",)),
        "long3": Stage("long3", "x", ("long2",)),
    })
    path = critical_path(graph, lambda s: 10.0 if s.startswith("long") else 15.0)
    assert path == {"long3": 10.0, "long2": 20.0, "long1": 30.0, "short": 15.0}


def test_one_at_a_time_follows_the_critical_path(tmp_path):
    stages = {"stages": {
        "short": {"cmd": "python tiny.py short write s.txt", "deps": ["tiny.py"], "outs": ["s.txt"]},
        "long1": {"cmd": "python tiny.py long1 write l1.txt", "deps": ["tiny.py"], "outs": ["l1.txt"]},
        "long2": {"cmd": "python tiny.py long2 concat l2.txt l1.txt", "deps": ["l1.txt"], "outs": ["l2.txt"]},
    }}
    project = make_tiny_project(tmp_path / "p", stages=stages, params={})
    run_local(project, jobs=1, log=lambda line: None)
    # long1 heads the longest chain, so it goes before short although dvc.yaml lists short first;
    # then short and long2 tie (8 s each by the estimate) and dvc.yaml order decides.
    assert executions(project) == ["long1", "short", "long2"]


def test_ctrl_c_leaves_no_process_and_no_output(tmp_path):
    slow = "import pathlib, time; time.sleep(120); pathlib.Path('slow.txt').write_text('done')"
    stages = {"stages": {"slow": {"cmd": f'python -c "{slow}"', "outs": ["slow.txt"]}}}
    project = make_tiny_project(tmp_path / "p", stages=stages, params={})
    proc = subprocess.Popen([sys.executable, "-m", "vgs.cli", "repro", "-j", "2", "--repo", str(project)],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline and "time.sleep(120)" not in subprocess.run(
            ["ps", "-eo", "args"], capture_output=True, text=True).stdout:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    time.sleep(1)
    assert "time.sleep(120)" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not (project / "slow.txt").exists()
    assert not (Path(project) / ".dvc" / "tmp" / "lock").exists() or \
        subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project, capture_output=True).returncode == 0


MANIFEST_SCRIPT = """import hashlib, json, os, sys
os.makedirs('data/code', exist_ok=True)
for stage, source in (('a', 'src/a.py'), ('b', 'src/b.py')):
    digest = hashlib.sha256(open(source, 'rb').read()).hexdigest()
    json.dump({'stage': stage, 'files': {source: digest}}, open(f'data/code/{stage}.json', 'w'))
"""
STAGE_SCRIPT = "import sys; open('runs.log', 'a').write(sys.argv[1] + ' '); open(sys.argv[1] + '.out', 'w').write('x')"


def test_code_run_with_unchanged_manifests_asks_dvc_about_no_other_stage(tmp_path, monkeypatch):
    """A `code` stage (as the repo's: manifests of the files each stage imports) re-runs after any
    edit under its folder; the stages whose manifest it wrote unchanged are up to date, known without
    a `dvc status` each; the stage whose manifest changed runs."""
    import pipeline.runner as runner
    stages = {"stages": {
        "code": {"cmd": "python manifests.py", "deps": ["src", "manifests.py"], "outs": [{"data/code": {"cache": False}}]},
        **{s: {"cmd": f"python stage.py {s}", "deps": [f"data/code/{s}.json", "stage.py"], "outs": [f"{s}.out"]}
           for s in ("a", "b")}}}
    project = make_tiny_project(tmp_path / "p", stages=stages, params={})
    (project / "manifests.py").write_text(MANIFEST_SCRIPT)
    (project / "stage.py").write_text(STAGE_SCRIPT)
    (project / "src").mkdir()
    for name in ("a.py", "b.py", "unimported.py"):
        (project / "src" / name).write_text("x = 1\n")
    first = run_local(project, jobs=2, log=lambda line: None)
    assert set(first.outcome.values()) == {"ran"} and sorted(executions(project)) == ["a", "b"]

    asked = []
    real_status = runner.stage_status

    def counting_status(root, stage):
        asked.append(stage)
        return real_status(root, stage)

    monkeypatch.setattr(runner, "stage_status", counting_status)
    (project / "src" / "unimported.py").write_text("x = 2  # an edit no stage imports\n")
    lines = []
    edit = run_local(project, jobs=2, log=lines.append)
    assert edit.outcome == {"code": "ran", "a": "up to date", "b": "up to date"}, lines
    assert asked == [] and sorted(executions(project)) == ["a", "b"]
    assert any("code manifests: 0 changed, 2 as before" in line for line in lines), lines

    (project / "src" / "a.py").write_text("x = 3  # what stage a imports\n")
    imported = run_local(project, jobs=2, log=lambda line: None)
    assert imported.outcome == {"code": "ran", "a": "ran", "b": "up to date"}
    assert asked == ["a"] and sorted(executions(project)) == ["a", "a", "b"]
    assert "up to date" in subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project,
                                          capture_output=True, text=True).stdout
