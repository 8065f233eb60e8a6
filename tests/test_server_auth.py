"""A Prefect server others can reach, but not everyone (pipeline/server.py, `vgs ui`).

Without the auth string the API answers 401, over HTTP and over its websockets (Prefect 3.8 closes
an event socket that does not authenticate when auth is configured); a non-loopback `vgs ui` without
one refuses to start; the string comes from the environment or a private file outside the project.
"""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestration_support import make_tiny_project
from pipeline import server
from vgs.errors import VgsError

AUTH = "vgs-team:s3cret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in (server.SERVER_AUTH_ENV, server.CLIENT_AUTH_ENV, server.AUTH_FILE_ENV, "PREFECT_API_URL")}
    return {**env, "HOME": str(home), **extra}


def private_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_the_auth_string_comes_from_the_environment_or_a_private_file_outside_the_project(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "home"
    assert server.auth_string(project, clean_env(home)) is None
    assert server.auth_string(project, clean_env(home, PREFECT_SERVER_API_AUTH_STRING=AUTH)) == AUTH
    private_file(home / ".config/vgs/prefect-auth", AUTH + "\n")
    assert server.auth_string(project, clean_env(home)) == AUTH
    env = server.project_env(project, "http://127.0.0.1:1/api", base=clean_env(home))
    assert env[server.CLIENT_AUTH_ENV] == AUTH                       # workers, vgs sweep, vgs flow send it

    inside = private_file(project / "prefect-auth", AUTH)
    with pytest.raises(VgsError, match="inside the project"):
        server.auth_string(project, clean_env(home, VGS_PREFECT_AUTH_FILE=str(inside)))
    shared = private_file(tmp_path / "shared-auth", AUTH)
    shared.chmod(0o644)
    with pytest.raises(VgsError, match="can be read by other users") as err:
        server.auth_string(project, clean_env(home, VGS_PREFECT_AUTH_FILE=str(shared)))
    assert "chmod 600" in str(err.value)
    bad = private_file(tmp_path / "bad-auth", "no-colon-here")
    with pytest.raises(VgsError, match="user:password"):
        server.auth_string(project, clean_env(home, VGS_PREFECT_AUTH_FILE=str(bad)))
    with pytest.raises(VgsError, match="is not a file"):
        server.auth_string(project, clean_env(home, VGS_PREFECT_AUTH_FILE=str(tmp_path / "missing")))


def test_a_server_beyond_loopback_without_auth_is_refused_before_it_starts(tmp_path):
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1") and server.is_loopback("localhost")
    assert not server.is_loopback("0.0.0.0") and not server.is_loopback("192.0.2.7")
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "vgs.cli", "ui", "--host", "0.0.0.0", "--port", str(port),
                          "--no-worker", "--repo", str(tmp_path)], env=clean_env(tmp_path / "home"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "refusing to serve the Prefect API on 0.0.0.0" in out.stderr
    assert "--insecure-no-auth" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / ".prefect" / "server.log").exists()      # nothing was started


@pytest.mark.slow
def test_without_the_auth_string_the_api_answers_401_and_closes_event_sockets(tmp_path):
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    private_file(home / ".config/vgs/prefect-auth", AUTH)
    port = free_port()
    api = server.api_url("127.0.0.1", port)
    log = tmp_path / "ui.out"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "vgs.cli", "ui", "--no-worker", "--port", str(port),
                                 "--repo", str(project)], env=clean_env(home), stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "Prefect UI:" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert "basic authentication on" in log.read_text()

        def post(path: str, auth: str | None) -> int:
            request = urllib.request.Request(f"{api}{path}", data=b"{}", method="POST",
                                             headers={"Content-Type": "application/json"})
            if auth:
                request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert post("/flows/filter", None) == 401
        assert post("/flows/filter", "vgs-team:wrong") == 401
        assert post("/deployments/filter", None) == 401
        assert post("/flows/filter", AUTH) == 200
        assert server.is_healthy(api)                                  # /health stays open for probes

        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.sync.client import connect

        ws = api.replace("http://", "ws://") + "/events/out"
        for subprotocols, first in ((None, None), (["prefect"], {"type": "auth", "token": None}),
                                    (["prefect"], {"type": "auth", "token": "vgs-team:wrong"})):
            with pytest.raises((ConnectionClosed, InvalidStatus)):
                with connect(ws, subprotocols=subprotocols, open_timeout=30) as sock:
                    if first is not None:
                        sock.send(json.dumps(first))
                    sock.send(json.dumps({"type": "filter", "filter": {}}))
                    sock.recv(timeout=30)
        with connect(ws, subprotocols=["prefect"], open_timeout=30) as sock:    # with it, the socket opens
            sock.send(json.dumps({"type": "auth", "token": AUTH}))
            assert json.loads(sock.recv(timeout=30))["type"] == "auth_success"

        # With the string (from the same private file), a sweep point runs through a worker.
        tiny = make_tiny_project(tmp_path / "tiny", params={"train": {"lr": 1.0}}, commit=True, stages={"stages": {
            "train": {"cmd": "python tiny.py train write out.txt", "deps": ["tiny.py"], "params": ["train"],
                      "outs": ["out.txt"]}}})
        env = {**clean_env(home), "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}

        def vgs(*args):
            return subprocess.run([sys.executable, "-m", "vgs.cli", *args, "--api-url", api], cwd=tiny, env=env,
                                  capture_output=True, text=True, timeout=600)

        deployed = vgs("sweep", "deploy", "--pool", "auth-pool")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        with open(tmp_path / "worker.log", "w") as wlog:
            worker = subprocess.Popen([sys.executable, "-m", "vgs.cli", "worker", "--pool", "auth-pool",
                                       "--api-url", api], cwd=tiny, env=env, stdout=wlog, stderr=subprocess.STDOUT)
        try:
            out = vgs("sweep", "submit", "--name", "auth", "-S", "train.lr=0.5", "--wait", "--timeout", "400")
            assert out.returncode == 0, out.stdout + out.stderr + (tmp_path / "worker.log").read_text()[-3000:]
            assert "auth-lr0.5" in out.stdout
        finally:
            server.stop(worker, timeout=server.WORKER_STOP_SECONDS)
    finally:
        server.stop(proc)
