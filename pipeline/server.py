"""The local Prefect server and the environment every `vgs` Prefect command runs in.

Prefect keeps its database, profiles and settings under PREFECT_HOME (default ~/.prefect); we
keep it in the project (.prefect/, git-ignored) so runs, deployments and schedules belong to
the checkout. Analytics are switched off. Set these before importing prefect: its settings are
read once, at first use.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from vgs.errors import VgsError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200
HOME_DIR = ".prefect"

# Basic authentication of the self-hosted server (docs/orchestration.md, "A server others can
# reach"). Prefect's own settings carry it: the server checks PREFECT_SERVER_API_AUTH_STRING on
# every API request and websocket, clients send PREFECT_API_AUTH_STRING. vgs takes it from either,
# else from a file outside the checkout: $VGS_PREFECT_AUTH_FILE, default ~/.config/vgs/prefect-auth,
# holding `user:password` and readable by its owner alone.
SERVER_AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_AUTH_ENV = "PREFECT_API_AUTH_STRING"
AUTH_FILE_ENV = "VGS_PREFECT_AUTH_FILE"
DEFAULT_AUTH_FILE = "~/.config/vgs/prefect-auth"


class ServerError(VgsError):
    """The Prefect server is not reachable, or would not start."""


def api_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"http://{host}:{port}/api"


def ui_url(api: str) -> str:
    return api[: -len("/api")] if api.endswith("/api") else api


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_string(root: str | Path, env: dict | None = None) -> str | None:
    """The server's `user:password`: from the environment, else from the auth file, else None.

    The file must lie outside the project (so it is never committed) and be private (mode 600)."""
    env = os.environ if env is None else env
    for key in (CLIENT_AUTH_ENV, SERVER_AUTH_ENV):
        if env.get(key):
            return env[key]
    named = env.get(AUTH_FILE_ENV)
    text = named or DEFAULT_AUTH_FILE
    # `~` is the home of the environment given (a worker's may differ from this process's).
    path = Path(env.get("HOME", "~") + text[1:]).expanduser() if text.startswith("~") else Path(text)
    if not path.is_file():
        if named:
            raise ServerError(f"{AUTH_FILE_ENV}={named} is not a file",
                              hint="write `user:password` into it (chmod 600), or unset the variable")
        return None
    resolved, project = path.resolve(), Path(root).resolve()
    if resolved == project or project in resolved.parents:
        raise ServerError(f"the Prefect auth file {path} lies inside the project {project}, where git can pick it up",
                          hint=f"move it outside, e.g. to {DEFAULT_AUTH_FILE}, and point {AUTH_FILE_ENV} at it")
    if path.stat().st_mode & 0o077:
        raise ServerError(f"the Prefect auth file {path} can be read by other users",
                          hint=f"chmod 600 {path}")
    text = path.read_text().strip()
    if ":" not in text or text.startswith(":") or "\n" in text:
        raise ServerError(f"the Prefect auth file {path} must hold one line `user:password`",
                          hint="e.g. printf '%s' \"vgs:$(openssl rand -hex 16)\" > " + str(path))
    return text


def project_env(root: str | Path, api: str | None = None, base: dict | None = None) -> dict:
    """Environment for Prefect in this project: PREFECT_HOME inside it, analytics off, the API,
    and the server's auth string for clients when one is configured (auth_string)."""
    env = dict(os.environ if base is None else base)
    home = Path(root).resolve() / HOME_DIR
    env["PREFECT_HOME"] = str(home)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    if api:
        env["PREFECT_API_URL"] = api
    auth = auth_string(root, env)
    if auth and not env.get(CLIENT_AUTH_ENV):
        env[CLIENT_AUTH_ENV] = auth
    return env


def configure(root: str | Path, api: str | None = None) -> str:
    """Apply project_env to this process (before prefect is imported); return the API URL in use.

    The API URL: the argument, else $PREFECT_API_URL, else the local server's.
    """
    api = api or os.environ.get("PREFECT_API_URL") or api_url()
    if "prefect" in sys.modules:
        # Settings are already loaded; changing the environment now would silently do nothing.
        from prefect.settings import PREFECT_API_URL

        current = PREFECT_API_URL.value()
        if current and current.rstrip("/") != api.rstrip("/"):
            raise ServerError(f"prefect was imported with PREFECT_API_URL={current}, not {api}",
                              hint="set PREFECT_API_URL before starting the process")
    os.environ.update(project_env(root, api))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    return api


def is_healthy(api: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200 and json.loads(resp.read() or b"false") is True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def require_server(api: str) -> None:
    if not is_healthy(api):
        raise ServerError(f"no Prefect server answers at {api}",
                          hint="start one with `make ui` (or `vgs ui`) in another terminal, "
                               "or point PREFECT_API_URL at yours")


def unauthenticated_refusal(host: str, port: int) -> ServerError:
    return ServerError(f"refusing to serve the Prefect API on {host} without authentication: anyone who "
                       f"reaches port {port} could run DVC commands on every worker",
                       hint=f"put `user:password` into {DEFAULT_AUTH_FILE} (chmod 600; or set "
                            f"{AUTH_FILE_ENV} or {SERVER_AUTH_ENV}), or pass --insecure-no-auth "
                            "on a network you trust (docs/orchestration.md)")


def start_server(root: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 log_path: str | Path | None = None, env: dict | None = None,
                 allow_no_auth: bool = False) -> subprocess.Popen:
    """Start `prefect server start` in the background (its output goes to `log_path`).

    With an auth string (auth_string) every API request and websocket must carry it. A server
    that listens beyond the loopback interface without one is refused unless `allow_no_auth`:
    whoever reaches it could create deployments and flow runs, which run DVC commands with their
    parameters on every worker."""
    env = dict(env or project_env(root))
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    auth = auth_string(root, env)
    if auth:
        env[SERVER_AUTH_ENV] = auth
    elif not is_loopback(host) and not allow_no_auth:
        raise unauthenticated_refusal(host, port)
    # The server's own settings must not point it at another API.
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_SERVER_API_HOST"] = host
    env["PREFECT_SERVER_API_PORT"] = str(port)
    if host not in ("0.0.0.0", "::"):
        # The browser UI asks this address for its data; prefect's default is port 4200
        # whatever --port says. Behind 0.0.0.0 only the user knows the reachable name:
        # they set PREFECT_UI_API_URL=http://<host>:<port>/api themselves.
        env.setdefault("PREFECT_UI_API_URL", api_url(host, port))
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        # Its own process group: a Ctrl-C meant for `vgs ui` must not stop the server before the
        # worker has reported its cancelled runs to it; `vgs ui` stops both, in that order.
        return subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host,
                                 "--port", str(port)], cwd=str(root), env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0)
    finally:
        if log_path:
            out.close()


def wait_healthy(api: str, proc: subprocess.Popen | None = None, timeout: float = 180.0,
                 log_path: str | Path | None = None) -> float:
    """Wait until the server answers; return the seconds it took. Fail early if it died."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if is_healthy(api, timeout=1.0):
            return time.monotonic() - start
        if proc is not None and proc.poll() is not None:
            tail = ""
            if log_path and Path(log_path).exists():
                tail = "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-20:])
            raise ServerError(f"the Prefect server exited with code {proc.returncode} before answering"
                              + (f":\n{tail}" if tail else ""),
                              hint=f"see {log_path}" if log_path else None)
        time.sleep(0.5)
    raise ServerError(f"the Prefect server at {api} did not answer within {timeout:.0f} s",
                      hint=f"see {log_path}" if log_path else None)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Ctrl-C first (prefect shuts its services down on it), then SIGTERM, then SIGKILL."""
    import signal

    for send in (lambda: proc.send_signal(signal.SIGINT), proc.terminate, proc.kill):
        if proc.poll() is not None:
            return
        send()
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def start_worker(root: str | Path, pool: str, api: str, limit: int = 1,
                 log_path: str | Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """`vgs worker` for a process work pool (created if missing), in its own process group.

    Stop it with `stop(proc, timeout=WORKER_STOP_SECONDS)`: it then stops the flow runs it
    started (pipeline/worker.py), which can take a while.
    """
    argv = [sys.executable, "-m", "vgs.cli", "worker", "--pool", pool, "--limit", str(limit),
            "--repo", str(Path(root).resolve()), "--api-url", api]
    out = open(log_path, "ab") if log_path else None
    try:
        return subprocess.Popen(argv, cwd=str(root), env=env or project_env(root, api), stdout=out,
                                stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL,
                                process_group=0)
    finally:
        if out:
            out.close()


# How long `vgs ui` lets its worker stop its flow runs before the next signal hurries it.
WORKER_STOP_SECONDS = 150.0
