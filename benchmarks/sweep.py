"""Sweep throughput on one machine: one experiment at a time against two, through a Prefect work
pool and through DVC's queue (issue 22).

The same four-point sweep (Leidal 2017, `leidal2017-train@ig1` at lambda_IG 0, 0.001, 0.1 and 1,
trained for a reduced number of steps through -S overrides) runs four times in one go:

  prefect pool   1 `vgs worker` / 2 `vgs worker`s taking points from a work pool (`vgs sweep submit`)
  dvc queue      `vgs sweep queue -j 1` / `-j 2`

and each prints its points per minute. Target (issue 22): two at once deliver at least 0.9x the
throughput of one, on both paths (before the CPU budget, two at once ran 10-25x slower each).

Everything runs in a scratch clone of the project, so neither the project's experiments nor its
DVC lock are touched (a `dvc repro` may run there meanwhile, though it takes CPU the timings
would then miss):
  * `git clone` of the project's HEAD (commit first: uncommitted changes are not in the clone;
    the stage scripts do import `vgs` from this venv, i.e. from the project's working tree);
  * its own DVC cache, filled from the project's cache with the inputs of the stage (copies);
  * its own Prefect server on a free port (`vgs ui --no-worker`, PREFECT_HOME in the clone).
Each configuration gets its own value of `leidal2017.train.checkpoint_every_seconds` (how often
a checkpoint is saved: a key that changes no result), so that no point is restored from DVC's
run-cache instead of trained. Workers poll the pool every 2 s (PREFECT_WORKER_QUERY_SECONDS)
instead of Prefect's 10, so polling gaps do not favour two workers over one.

    .venv/bin/python benchmarks/sweep.py                 # 1 epoch of 50 steps per point
    .venv/bin/python benchmarks/sweep.py --epochs 2      # longer points: DVC's per-point overhead weighs less
    .venv/bin/python benchmarks/sweep.py --threads 2     # VGS_THREADS=2 for every run: the oversubscription of issue 22
    .venv/bin/python benchmarks/sweep.py --smoke         # smallest size (2 steps per point): checks the script

Run it with nothing else loading the machine; the numbers are wall-clock. `--check` exits 1 when
a target is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_TWO_VS_ONE = 0.9
STAGE = "leidal2017-train@ig1"
AXIS = "leidal2017.runs.ig1.lambda_ig=0.0,0.001,0.1,1.0"
# Distinct per configuration (see the module doc), from the base value 120.
CHECKPOINT_KEY = "leidal2017.train.checkpoint_every_seconds"


def log(line: str) -> None:
    print(line, flush=True)


def run(argv, cwd, env=None, timeout=3600) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"failed ({out.returncode}): {' '.join(map(str, argv))}\n"
                         f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def dvc(*args, cwd, env=None, timeout=3600):
    return run([sys.executable, "-m", "dvc", *args], cwd, env, timeout)


# -- the scratch project ---------------------------------------------------------------------------

def make_scratch(project: Path, scratch: Path, env: dict) -> Path:
    # --no-optional-locks: a benchmark must not rewrite the project's git index.
    dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"], cwd=project,
                           capture_output=True, text=True).stdout.rstrip()
    if dirty.strip():
        log("warning: the project has uncommitted changes to tracked files; the clone has HEAD only:\n  "
            + "\n  ".join(dirty.splitlines()[:10]))
    clone = scratch / "project"
    run(["git", "clone", "--quiet", str(project), str(clone)], scratch)
    run(["git", "config", "user.email", "bench@vgs.invalid"], clone)
    run(["git", "config", "user.name", "vgs benchmark"], clone)
    dvc("config", "--local", "core.analytics", "false", cwd=clone, env=env)
    dvc("cache", "dir", "--local", str(scratch / "dvc-cache"), cwd=clone, env=env)
    # The project's cache has the layout of a local DVC remote: fetch the stage's inputs from it.
    dvc("remote", "add", "--local", "project-cache", str(project / ".dvc" / "cache"), cwd=clone, env=env)
    start = time.monotonic()
    dvc("fetch", "--quiet", "-r", "project-cache", "--with-deps", STAGE, cwd=clone, env=env)
    dvc("checkout", "--quiet", "--with-deps", STAGE, cwd=clone, env=env)
    status = dvc("status", "--json", "--with-deps", STAGE, cwd=clone, env=env).stdout
    stale = json.loads(status[status.index("{"):]) if "{" in status else {}
    stale = {k: v for k, v in stale.items() if k != STAGE}
    if stale:
        raise SystemExit(f"stages upstream of {STAGE} are not up to date in the clone (they would be rebuilt "
                         f"by every point): {', '.join(stale)}\nfix: commit dvc.lock after `dvc repro`, and keep "
                         "the project's DVC cache (`dvc gc` may have removed the inputs)")
    log(f"scratch clone {clone}: inputs of {STAGE} fetched and checked out in {time.monotonic() - start:.0f} s")
    return clone


class Server:
    """`vgs ui --no-worker` on a free port, PREFECT_HOME inside the clone."""

    def __init__(self, clone: Path, env: dict):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.log_path = clone.parent / "vgs-ui.log"
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "vgs.cli", "ui", "--no-worker", "--port",
                                          str(self.port), "--repo", str(clone)], cwd=str(clone), env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while "Prefect UI:" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Prefect server did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# -- the four configurations -----------------------------------------------------------------------

def sweep_axes(args, config_number: int) -> list[str]:
    axes = [args.axis, f"leidal2017.profiles.cpu.train.epochs={args.epochs}",
            f"{CHECKPOINT_KEY}={120 + config_number}"]
    if args.pairs_per_epoch:
        axes.append(f"leidal2017.profiles.cpu.train.pairs_per_epoch={args.pairs_per_epoch}")
    return axes


def wait_registered(clone: Path, count: int, timeout: float = 180) -> None:
    from vgs.utils.threads import live_runners

    deadline = time.monotonic() + timeout
    while len(live_runners(clone)) != count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} worker(s) did not register within {timeout:.0f} s")
        time.sleep(0.5)


def pool_sweep(clone: Path, server: Server, env: dict, workers: int, args, config_number: int) -> dict:
    from pipeline.deployments import submit_sweep
    from pipeline.sweep import parse_grid, wait_for_runs

    logs = [open(clone.parent / f"worker-{config_number}-{i}.log", "w") for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-m", "vgs.cli", "worker", "--pool", "bench", "--api-url",
                               server.api], cwd=str(clone), env=env, stdout=out, stderr=subprocess.STDOUT)
             for out in logs]
    try:
        wait_registered(clone, workers)     # every run counts both workers from its start
        grid = parse_grid(sweep_axes(args, config_number))
        start = time.monotonic()
        runs = submit_sweep(grid, f"bench{config_number}-pool{workers}", [args.stage])
        states = wait_for_runs([rid for _, rid in runs], poll_seconds=1.0)
        wall = time.monotonic() - start
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                proc.kill()
        for out in logs:
            out.close()
    bad = {rid: s for rid, s in states.items() if s != "Completed"}
    if bad:
        raise SystemExit(f"pool sweep with {workers} worker(s): runs not completed: {bad}; see "
                         f"{clone.parent}/worker-{config_number}-*.log")
    return {"path": "prefect pool", "at_once": workers, "points": len(grid), "wall_s": wall}


def wait_queue_workers_gone(clone: Path, env: dict, timeout: float = 120) -> None:
    """DVC reuses a queue worker that is still up (it leaves after 10 idle seconds), with the
    thread budget it started with: let the last sweep's workers go first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-m", "dvc", "queue", "status"], cwd=str(clone), env=env,
                             capture_output=True, text=True).stdout
        match = re.search(r"Worker status: (\d+) active, (\d+) idle", out)
        if not match or (match.group(1), match.group(2)) == ("0", "0"):
            return
        time.sleep(2)


def queue_sweep_timed(clone: Path, env: dict, jobs: int, args, config_number: int) -> dict:
    from pipeline.sweep import parse_grid, queue_sweep

    wait_queue_workers_gone(clone, env)
    grid = parse_grid(sweep_axes(args, config_number))
    lines: list[str] = []
    start = time.monotonic()
    queue_sweep(clone, grid, f"bench{config_number}-queue{jobs}", [args.stage], jobs, log=lines.append,
                poll_seconds=1.0)
    wall = time.monotonic() - start
    budget = next((line for line in lines if line.startswith("CPU budget")), "")
    if budget:
        log(f"  {budget}")
    return {"path": "dvc queue", "at_once": jobs, "points": len(grid), "wall_s": wall}


# -- main --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=REPO, help="the project to clone (default: this checkout)")
    ap.add_argument("--stage", default=STAGE, help=f"the stage each point reproduces (default: {STAGE})")
    ap.add_argument("--axis", default=AXIS, help=f"the sweep axis (default: {AXIS})")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs per point (default: 1)")
    ap.add_argument("--pairs-per-epoch", type=int, default=None,
                    help="pairs per epoch (default: the cpu profile's 6400, i.e. 50 steps of 128)")
    ap.add_argument("--paths", default="pool,queue", help="which paths to time: pool, queue or both (default)")
    ap.add_argument("--at-once", default="1,2", help="experiments at once to compare (default: 1,2)")
    ap.add_argument("--threads", type=int, default=None,
                    help="set VGS_THREADS for every run (default: the CPU budget decides)")
    ap.add_argument("--smoke", action="store_true", help="smallest size: 1 epoch of 256 pairs (2 steps)")
    ap.add_argument("--scratch", type=Path, default=None, help="scratch directory (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--check", action="store_true", help=f"exit 1 if 2 at once < {TARGET_TWO_VS_ONE}x of 1")
    args = ap.parse_args(argv)
    if args.smoke:
        args.epochs, args.pairs_per_epoch = 1, 256
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    counts = [int(n) for n in args.at_once.split(",")]
    if not set(paths) <= {"pool", "queue"} or not counts or min(counts) < 1:
        ap.error("--paths takes pool and/or queue; --at-once whole numbers >= 1")

    from vgs.utils.threads import machine_cores, threads_for

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="vgs-sweep-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "VGS_THREADS"}
    env.update({"DVC_NO_ANALYTICS": "1", "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2",
                # The clone holds its own (committed) vgs/ and pipeline/; Python must import the
                # ones installed in this venv, not those of the directory it starts in.
                "PYTHONSAFEPATH": "1"})
    if args.threads:
        env["VGS_THREADS"] = str(args.threads)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cores = machine_cores()
    log(f"{cores} cores, load average {os.getloadavg()[0]:.2f}; {args.stage} x 4 points "
        f"({args.epochs} epoch(s){f', {args.pairs_per_epoch} pairs each' if args.pairs_per_epoch else ''}); "
        f"scratch {scratch}")
    server = None
    results = []
    try:
        clone = make_scratch(args.project.resolve(), scratch, env)
        if "pool" in paths:
            server = Server(clone, env)
            os.environ.update({"PREFECT_API_URL": server.api, "PREFECT_HOME": str(clone / ".prefect"),
                               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
            run([sys.executable, "-m", "vgs.cli", "sweep", "deploy", "--pool", "bench", "--api-url", server.api],
                clone, env)
        # The process running the queue sweeps passes VGS_THREADS (or not) on to DVC's queue.
        os.environ.pop("VGS_THREADS", None)
        if args.threads:
            os.environ["VGS_THREADS"] = str(args.threads)
        number = 0
        for path in paths:
            for n in counts:
                number += 1
                threads = threads_for(n, cores, env).threads
                log(f"{'prefect pool' if path == 'pool' else 'dvc queue'}, {n} at once "
                    f"({threads} thread(s) per run) ...")
                result = (pool_sweep(clone, server, env, n, args, number) if path == "pool"
                          else queue_sweep_timed(clone, env, n, args, number))
                result["threads_per_run"] = threads
                result["points_per_min"] = 60.0 * result["points"] / result["wall_s"]
                results.append(result)
                log(f"  {result['points']} points in {result['wall_s']:.1f} s: "
                    f"{result['points_per_min']:.2f} points/min")
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log(f"kept {scratch}")

    log("")
    log("| path | at once | threads per run | points | wall s | points/min | vs 1 at once |")
    log("|---|---|---|---|---|---|---|")
    missed = []
    for r in results:
        base = next((b for b in results if b["path"] == r["path"] and b["at_once"] == 1), None)
        ratio = r["points_per_min"] / base["points_per_min"] if base else None
        if ratio is not None and r["at_once"] == 2 and ratio < TARGET_TWO_VS_ONE:
            missed.append(r["path"])
        log(f"| {r['path']} | {r['at_once']} | {r['threads_per_run']} | {r['points']} | {r['wall_s']:.1f} | "
            f"{r['points_per_min']:.2f} | {f'{ratio:.2f}x' if ratio is not None else '-'} |")
    log(f"\nload average after: {os.getloadavg()[0]:.2f} (above ~0.5 on an idle machine: other work ran meanwhile)")
    if any(r["at_once"] == 2 for r in results) and any(r["at_once"] == 1 for r in results):
        log(f"target: 2 at once >= {TARGET_TWO_VS_ONE}x the throughput of 1: "
            + (f"missed on {', '.join(missed)}" if missed else "met"))
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "epochs": args.epochs,
                                         "pairs_per_epoch": args.pairs_per_epoch, "results": results}, indent=2))
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
