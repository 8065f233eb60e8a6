"""Where the fixed cost of one DVC stage goes, before and around its real work.

  .venv/bin/python benchmarks/stage_overhead.py                                   # defaults below
  .venv/bin/python benchmarks/stage_overhead.py --stage crabtree2021-evaluate@baseline

Prints, each the best of --repeat runs on this machine:
  interpreter        `python -c pass`
  + torch            `python -c "import torch"`
  + stage imports    importing the module that runs the stage's step (vgs/methods/<paper>/<step>.py)
  driver, no work    `python stages/run.py --list`
  the stage command  its cmd from dvc.yaml, run directly (imports, store opening and the work)
  under DVC          `dvc repro --force --single-item <stage>`
  DVC bookkeeping    the difference of the last two (status checks, hashing deps and outs, the lock)
  dvc status         `dvc status <stage>` alone

Run it where the stage is up to date (after `make run`), on an otherwise idle machine, in a copy
you can spare: it re-runs the stage, and since an evaluation records its own wall time, the stages
downstream of it (the report) then show as changed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def best_of(argv: list[str], repeat: int, cwd: Path = ROOT) -> float:
    times = []
    for _ in range(repeat):
        start = time.monotonic()
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        times.append(time.monotonic() - start)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return min(times)


def stage_cmd(stage: str) -> str:
    base, _, item = stage.partition("@")
    entry = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][base]
    cmd = entry.get("do", entry)["cmd"]
    return cmd.replace("${key}", item).replace("${item}", item)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default="crabtree2021-evaluate@baseline", help="an up-to-date stage to time")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    cmd = stage_cmd(args.stage)
    words = cmd.split()
    paper, step = words[2], words[3]
    from vgs.recipe import METHODS, recipe_steps
    module = recipe_steps(METHODS / paper / "recipe.py")[step]

    rows = [
        ("interpreter", best_of([py, "-c", "pass"], args.repeat)),
        ("+ torch", best_of([py, "-c", "import torch"], args.repeat)),
        ("+ stage imports", best_of([py, "-c", f"import torch, {module}"], args.repeat)),
        ("driver, no work", best_of([py, "stages/run.py", "--list"], args.repeat)),
    ]
    direct = best_of(["bash", "-c", cmd.replace("python ", f"{py} ", 1)], args.repeat)
    under_dvc = best_of([py, "-m", "dvc", "repro", "--force", "--single-item", args.stage], args.repeat)
    rows += [("the stage command", direct), ("under DVC", under_dvc), ("DVC bookkeeping", under_dvc - direct),
             ("dvc status", best_of([py, "-m", "dvc", "status", args.stage], args.repeat))]
    print(f"stage {args.stage}: {cmd}  (module {module}; best of {args.repeat})")
    for name, seconds in rows:
        print(f"  {name:<18} {seconds:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
