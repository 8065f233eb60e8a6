"""The DVC pipeline on this machine, several independent stages at once, without a Prefect server.

`make run` (and `vgs repro -j N`) use this. Each stage is brought up to date by DVC itself
(`dvc repro --single-item`, pipeline/runner.py), so staleness, the run-cache, dvc.lock and persist
outputs stay DVC's decisions; this module only decides *when* each stage starts:

- a stage starts once every stage upstream of it finished, at most `jobs` at once;
- among the stages that could start, the one with the longest chain of work below it first
  (critical path), so the long training runs do not end up alone on one core at the end;
  the cost of a stage is what it took last time on this machine (recorded in
  `.dvc/tmp/vgs-stage-seconds.json`), else an estimate by kind (COST_ESTIMATE);
- a failing stage stops the stages downstream of it; independent stages go on; the error at the
  end names every failed stage with the last lines of its output;
- after the `code` stage ran, a stage whose own code manifest (data/code/<stage>.json) came out
  byte-identical, and that nothing else upstream changed, is known up to date without asking DVC
  again: an edit that no stage imports costs one `code` run, not a `dvc status` per stage;
- Ctrl-C ends every DVC process the way DVC can clean up after (pipeline/processes.py): no
  stage output is left half-written (stages write to a temporary path and rename).

The stages' torch threads come from `stage_threads` in params.yaml (stages/run.py), not from how
many stages run at once, so the numbers are the same as under a sequential `dvc repro`.
"""
from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable

from pipeline.dag import StageGraph, load_stage_graph
from pipeline.runner import Outcome, StageFailed, pipeline_status, reproduce_stage, terminate_children
from vgs.errors import VgsError
from vgs.utils.code_deps import MANIFEST_DIR
from vgs.utils.threads import registered_runner, thread_budget

SECONDS_FILE = Path(".dvc") / "tmp" / "vgs-stage-seconds.json"
# Seconds a stage takes on a 2-core machine in the cpu profile, by stage name (first match),
# until a run here has measured it: medians of the fresh-clone make run of 2026-12-07 (AMD EPYC,
# two stages at once); Crabtree's training and pretraining from the 9-epoch runs' measured steps. Only the order of magnitude matters: they rank the stages, so that a fresh
# clone starts the long Mortazavi and Leidal trainings early and does not end on one of them alone.
COST_ESTIMATE = (
    ("mortazavi2020-train@*", 460), ("smart-train@*", 360), ("leidal2017-train@*", 330),
    ("digitscenes", 300), ("crabtree2021-train@*", 200), ("pvae2018-train@*", 170), ("smart-judges", 120),
    ("crabtree2021-pretrain", 60), ("*-evaluate@*", 30), ("features@*", 20), ("*-report", 20), ("*", 8),
)

Log = Callable[[str], None]
CODE_STAGE = "code"      # writes every stage's code manifest (stages/code.py)


def manifest_digests(root: Path) -> dict[str, str]:
    """{stage definition: SHA-256 of its code manifest} as the files are now."""
    folder = root / MANIFEST_DIR
    if not folder.is_dir():
        return {}
    return {f.stem: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.glob("*.json"))}


class LocalRunFailed(VgsError):
    """One or more stages failed; the message names them with their last output lines."""


def estimated_seconds(stage: str, measured: dict[str, float]) -> float:
    if stage in measured:
        return measured[stage]
    return next(cost for pattern, cost in COST_ESTIMATE if fnmatchcase(stage, pattern))


def critical_path(graph: StageGraph, cost: Callable[[str], float]) -> dict[str, float]:
    """For each stage, its own cost plus the costliest chain of stages downstream of it."""
    below: dict[str, list[str]] = {name: [] for name in graph.order}
    for name in graph.order:
        for up in graph.upstream(name):
            if up in below:             # a stage outside the graph counts as done
                below[up].append(name)
    path: dict[str, float] = {}
    for name in reversed(graph.order):          # downstream stages first
        path[name] = cost(name) + max((path[d] for d in below[name]), default=0.0)
    return path


def read_measured(root: Path) -> dict[str, float]:
    try:
        return {k: float(v) for k, v in json.loads((root / SECONDS_FILE).read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def write_measured(root: Path, measured: dict[str, float]) -> None:
    path = root / SECONDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(measured, indent=1, sort_keys=True))
    tmp.replace(path)


@dataclass
class RunSummary:
    outcome: dict[str, str] = field(default_factory=dict)      # stage -> ran | up to date | ... | failed | skipped
    seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcome.values():
            out[o] = out.get(o, 0) + 1
        return out


def run_local(root: str | Path, targets: list[str] | None = None, jobs: int = 2, log: Log = print,
              force: bool = False, busy_wait_seconds: float = 600.0, graph: StageGraph | None = None) -> RunSummary:
    """Bring `targets` (default: every stage) up to date, `jobs` stages at once."""
    root = Path(root).resolve()
    if jobs < 1:
        raise VgsError(f"jobs must be at least 1, got {jobs}")
    graph = graph or load_stage_graph(root, targets)
    measured = read_measured(root)
    path = critical_path(graph, lambda s: estimated_seconds(s, measured))
    position = {name: i for i, name in enumerate(graph.order)}
    # Longest chain first; dvc.yaml order among equals, so a run is reproducible.
    priority = {name: (-path[name], position[name]) for name in graph.order}
    status = {} if force else (pipeline_status(root, graph.order) or {})
    manifests_before = manifest_digests(root)
    manifests_after: dict[str, str] = {}
    total = len(graph)
    log(f"{total} DVC stages, {sum(1 for r in status.values() if not r)} up to date, up to {jobs} at once")

    summary = RunSummary()
    done: "queue.Queue[tuple[str, str, float, str]]" = queue.Queue()
    pending = set(graph.order)
    running: set[str] = set()
    failures: dict[str, str] = {}
    lock = threading.Lock()
    start = time.monotonic()

    with registered_runner(root, jobs, f"vgs repro -j {jobs}") as claimed:
        budget = thread_budget(root, parallel=jobs, claimed=claimed)
        log(f"CPU budget: {budget.describe()}")

        def own_manifest_unchanged(name: str) -> bool:
            # The code stage ran (else it counts as up to date above) and wrote this stage's manifest
            # byte for byte as it was when the run's `dvc status` found the stage up to date.
            definition = name.split("@")[0]
            return (summary.outcome.get(CODE_STAGE) in (Outcome.RAN.value, Outcome.RESTORED.value)
                    and definition in manifests_after
                    and manifests_before.get(definition) == manifests_after[definition])

        def run_one(name: str, known_up_to_date: bool, known_stale: str | None) -> None:
            def stage_log(line: str) -> None:
                with lock:
                    log(f"[{name}] {line}" if not line.startswith(name) else line)
            t0 = time.monotonic()
            try:
                result = reproduce_stage(root, name, stage_log, busy_wait_seconds=busy_wait_seconds,
                                         known_up_to_date=known_up_to_date, threads=budget.threads,
                                         known_stale=known_stale, force=force)
                done.put((name, result.outcome.value, time.monotonic() - t0, ""))
            except StageFailed as exc:
                done.put((name, "failed", time.monotonic() - t0, str(exc)))
            except Exception as exc:   # noqa: BLE001 - reported with the stage's name, never lost in a thread
                done.put((name, "failed", time.monotonic() - t0, f"stage {name} failed: {exc!r}"))

        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            while pending or running:
                for name in sorted(pending, key=priority.__getitem__):
                    ups = [u for u in graph.upstream(name) if u in graph]   # others count as done
                    blocked = [u for u in ups if summary.outcome.get(u) in ("failed", "skipped")]
                    if blocked:
                        pending.discard(name)
                        summary.outcome[name] = "skipped"
                        log(f"{name}: not run, upstream failed: {', '.join(blocked)}")
                        continue
                    if len(running) >= jobs or any(u not in summary.outcome for u in ups):
                        continue
                    pending.discard(name)
                    running.add(name)
                    untouched = all(summary.outcome[u] == Outcome.UP_TO_DATE.value
                                    or (u == CODE_STAGE and own_manifest_unchanged(name)) for u in ups)
                    reason = status.get(name)
                    pool.submit(run_one, name, reason == "" and untouched, reason or None)
                if not running:
                    continue
                name, outcome, seconds, error = done.get()
                running.discard(name)
                summary.outcome[name] = outcome
                summary.seconds[name] = seconds
                if outcome == Outcome.RAN.value:
                    measured[name] = round(seconds, 1)
                if name == CODE_STAGE and outcome in (Outcome.RAN.value, Outcome.RESTORED.value):
                    manifests_after.update(manifest_digests(root))
                    same = sum(1 for k, v in manifests_after.items() if manifests_before.get(k) == v)
                    log(f"code manifests: {len(manifests_after) - same} changed, {same} as before (the stages "
                        "of those are up to date unless something else upstream of them ran)")
                if error:
                    failures[name] = error
                finished = len(summary.outcome)
                log(f"== {time.strftime('%H:%M:%S')} {finished}/{total} done ({name}: {outcome}, {seconds:.0f} s); "
                    f"running: {', '.join(sorted(running)) or '-'}; {len(pending)} waiting")
        except BaseException:
            # Ctrl-C or a bug: end the DVC processes so that DVC cleans up after its stages.
            terminate_children()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            if measured:
                write_measured(root, measured)
        pool.shutdown(wait=True)
    summary.wall_seconds = time.monotonic() - start
    if failures:
        skipped = sorted(n for n, o in summary.outcome.items() if o == "skipped")
        text = "\n\n".join(failures[n] for n in graph.order if n in failures)
        raise LocalRunFailed(f"{len(failures)} stage(s) failed: {', '.join(n for n in graph.order if n in failures)}"
                             + (f"; {len(skipped)} downstream not run" if skipped else "") + f"\n\n{text}",
                             hint="fix it, then run again: stages that finished are up to date and do not run")
    return summary
