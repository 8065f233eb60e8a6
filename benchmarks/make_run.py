"""Time the same DVC stages one at a time (`dvc repro`) and several at once (`vgs repro -j N`, what
`make run` runs), from the same starting state, in one run, and print the ratio.

  .venv/bin/python benchmarks/make_run.py 'pvae2018-*'               # a paper's branch
  .venv/bin/python benchmarks/make_run.py --jobs 2 'crabtree2021-*@baseline*' crabtree2021-report

Run it in a project where those stages are up to date (after `make run`), on an otherwise idle
machine. Both arms force exactly the named stages (`--force`; stages upstream of them are not
re-run), so each arm does the same work: first `dvc repro --force --single-item <stages>` in
topological order (one DVC process, as `make run` did before), then `vgs repro --force -j N` over
the same stages (one `dvc repro --single-item` per stage, N at once). Both leave every stage up to
date; with stage_threads fixed, the outputs of the two arms are the same numbers.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.dag import StageGraph, load_stage_graph  # noqa: E402
from pipeline.local import run_local  # noqa: E402
from vgs.utils.threads import machine_cores  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="+", help="stages, foreach groups or globs (exactly these are timed)")
    ap.add_argument("--jobs", type=int, default=machine_cores(), help="stages at once in the concurrent arm")
    ap.add_argument("--repo", default=".", help="project root")
    args = ap.parse_args()
    root = Path(args.repo).resolve()
    full = load_stage_graph(root)
    names = {n for t in args.targets for n in full.resolve(t)}
    graph = StageGraph({n: s for n, s in full.stages.items() if n in names})
    print(f"{len(graph)} stages: {', '.join(graph.order)}", flush=True)

    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "dvc", "repro", "--force", "--single-item", *graph.order],
                         cwd=root, capture_output=True, text=True)
    sequential = time.monotonic() - start
    if out.returncode != 0:
        print(out.stdout[-3000:] + out.stderr[-3000:])
        return 1
    print(f"sequential (dvc repro --force --single-item, 1 process): {sequential:.1f} s", flush=True)

    start = time.monotonic()
    run_local(root, jobs=args.jobs, force=True, graph=graph, log=lambda line: None)
    concurrent = time.monotonic() - start
    print(f"concurrent (vgs repro --force -j {args.jobs}): {concurrent:.1f} s")
    print(f"concurrent / sequential = {concurrent / sequential:.2f}  (target for the whole pipeline: <= 0.70)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
