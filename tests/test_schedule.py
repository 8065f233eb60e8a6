"""`vgs schedule` creates a scheduled deployment on a real server, whose scheduler lists the next run."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import timezone

from orchestration_support import make_tiny_project, shared_server


def vgs(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", "vgs.cli", *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=300)


def test_cron_schedule_makes_a_deployment_and_the_next_run_appears(tmp_path):
    server = shared_server()
    project = make_tiny_project(tmp_path / "sched", params={})
    out = vgs("schedule", "--cron", "0 2 * * *", "--name", "nightly-test", "report",
              "--api-url", server.api, cwd=project, env=server.client_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dvc-pipeline/nightly-test" in out.stdout and "vgs-local" in out.stdout

    from prefect import get_client

    from pipeline.deployments import upcoming_runs

    with server.settings(), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("dvc-pipeline/nightly-test")
        assert deployment.work_pool_name == "vgs-local"
        assert deployment.entrypoint == "pipeline.flows.dvc_pipeline"
        assert deployment.parameters["targets"] == ["report"]
        assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
        assert all(s.active for s in deployment.schedules)
        deadline = time.monotonic() + 90
        runs = upcoming_runs(str(deployment.id))
        while not runs and time.monotonic() < deadline:
            time.sleep(2)
            runs = upcoming_runs(str(deployment.id))
    assert runs, "the server's scheduler created no run for the deployment within 90 s"
    first = runs[0].expected_start_time.astimezone(timezone.utc)
    assert (first.hour, first.minute) == (2, 0)
    assert runs[0].state.name == "Scheduled"


def test_bad_schedules_are_clear_errors():
    import pytest

    from pipeline.deployments import schedule_pipeline
    from vgs.errors import VgsError

    with pytest.raises(VgsError, match="invalid cron expression 'every night'"):
        schedule_pipeline(cron="every night")
    with pytest.raises(VgsError, match="exactly one of --cron or --interval"):
        schedule_pipeline(cron="0 2 * * *", interval=60)
    with pytest.raises(VgsError, match="positive number of seconds"):
        schedule_pipeline(interval=-5)


def test_vgs_ui_keeps_prefect_home_in_the_project():
    from pipeline.server import is_healthy, project_env

    server = shared_server()
    assert (server.home / ".prefect" / "prefect.db").exists()
    assert f"PREFECT_HOME={server.home / '.prefect'}" in server.output.read_text()
    env = project_env("/some/checkout", base={"PREFECT_HOME": "/elsewhere"})
    assert env["PREFECT_HOME"] == "/some/checkout/.prefect"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert is_healthy(server.api)
