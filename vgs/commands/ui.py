"""Start the local Prefect server and UI, plus a worker that runs scheduled pipeline runs.

  vgs ui                  # http://127.0.0.1:4200 ; Ctrl-C stops the server and the worker
  vgs ui --no-worker      # the server alone
  vgs ui --port 4300

PREFECT_HOME is <project>/.prefect (database, logs: .prefect/server.log, .prefect/worker.log)
and analytics are off. The worker (`vgs worker --pool vgs-local --limit 1`) serves the work pool
`vgs-local`, where `vgs schedule` puts the scheduled pipeline deployment. Ctrl-C or SIGTERM
stops the worker first, which cancels the runs it started (see `vgs worker --help`), then the
server.
"""
from __future__ import annotations

import argparse
import time

HELP = "start the local Prefect server and UI (127.0.0.1:4200) and a worker for scheduled runs"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4200, help="port (default: 4200)")
    parser.add_argument("--no-worker", action="store_true", help="do not start the vgs-local worker")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="serve a non-loopback --host without an auth string (anyone who reaches the "
                             "port can run DVC commands on the workers); see docs/orchestration.md")
    parser.add_argument("--repo", default=None, metavar="DIR",
                        help="project root (default: the nearest parent holding dvc.yaml)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pipeline import server
    from pipeline.deployments import LOCAL_POOL
    from vgs.commands._prefect import project_root

    import signal

    def stop_on_sigterm(signum, frame):
        raise KeyboardInterrupt

    # A service manager's SIGTERM stops the server and the worker too, like Ctrl-C.
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    root = project_root(args)
    api = server.api_url(args.host, args.port)
    env = server.project_env(root)
    home = env["PREFECT_HOME"]
    if server.is_healthy(api):
        print(f"A Prefect server already answers at {api}.\nPrefect UI: {server.ui_url(api)}")
        return 0
    log_path = f"{home}/server.log"
    auth = server.auth_string(root, env)
    if not auth and not server.is_loopback(args.host) and not args.insecure_no_auth:
        raise server.unauthenticated_refusal(args.host, args.port)
    if not auth and not server.is_loopback(args.host):
        print(f"WARNING: serving the Prefect API on {args.host}:{args.port} WITHOUT AUTHENTICATION: anyone who "
              "reaches this port can create flow runs that execute DVC commands on every worker.", flush=True)
    print(f"Starting the Prefect server (PREFECT_HOME={home}, log: {log_path}"
          + (", basic authentication on" if auth else "") + ") ...", flush=True)
    proc = server.start_server(root, args.host, args.port, log_path=log_path, env=env,
                               allow_no_auth=args.insecure_no_auth)
    worker = None
    try:
        took = server.wait_healthy(api, proc, log_path=log_path)
        print(f"Prefect UI: {server.ui_url(api)}   (API {api}, up after {took:.0f} s)", flush=True)
        if not args.no_worker:
            worker_log = f"{home}/worker.log"
            worker = server.start_worker(root, LOCAL_POOL, api, limit=1, log_path=worker_log)
            print(f"Worker for work pool {LOCAL_POOL} started (log: {worker_log}); "
                  "scheduled runs (`vgs schedule`) execute here.", flush=True)
        flow_cmd = ".venv/bin/vgs flow" + ("" if args.port == 4200 and args.host == "127.0.0.1"
                                           else f" --api-url {api}")
        print(f"Run the pipeline as a flow from another terminal: {flow_cmd}   (Ctrl-C here stops the server)",
              flush=True)
        while proc.poll() is None:
            if worker is not None and worker.poll() is not None:
                print(f"warning: the {LOCAL_POOL} worker exited with code {worker.returncode}; "
                      f"see {home}/worker.log", flush=True)
                worker = None
            time.sleep(1)
        print(f"The Prefect server exited with code {proc.returncode}; see {log_path}")
        return proc.returncode or 1
    except KeyboardInterrupt:
        print("stopping ..." + (" (the worker first: it cancels its flow runs)" if worker is not None else ""),
              flush=True)
        return 0
    finally:
        # Ctrl-C reaches only this process (the server and the worker have process groups of
        # their own); a second Ctrl-C while the worker stops is passed on to hurry it.
        if worker is not None:
            _stop_patiently(server, worker)
        server.stop(proc)


def _stop_patiently(server, worker) -> None:
    import signal

    def hurry(signum, frame):
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, hurry) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.stop(worker, timeout=server.WORKER_STOP_SECONDS)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
