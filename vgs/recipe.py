"""The recipe contract: what every paper folder exposes to the one stage driver (stages/run.py).

Each `vgs/methods/<paper>/recipe.py` holds a literal `STEPS = {step: module}` and nothing else
that runs: every module it names defines

    def stage(params: Params, run: str, progress: bool = True) -> str      # a step with one stage per run
    def stage(params: Params, progress: bool = True) -> str                # a step with one stage in all

which does the step's work (train, export, evaluate, report, ...) and returns the lines to print.
The driver imports the recipe and that one module only, so a stage's code deps (derived from the
imports, vgs/utils/code_deps.py, which reads STEPS as a literal) are exactly what its step runs.
"""
from __future__ import annotations

import ast
import importlib
import inspect
from contextlib import contextmanager
from pathlib import Path

from vgs.errors import ParamError, VgsError
from vgs.params import Params

METHODS = Path(__file__).resolve().parent / "methods"


def papers() -> list[str]:
    return sorted(p.parent.name for p in METHODS.glob("*/recipe.py"))


def recipe_steps(recipe_file: Path) -> dict[str, str]:
    """STEPS of a recipe file, read as a literal (so reading it runs nothing)."""
    tree = ast.parse(recipe_file.read_text(), filename=str(recipe_file))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "STEPS" for t in node.targets):
            steps = ast.literal_eval(node.value)
            if isinstance(steps, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in steps.items()):
                return steps
    raise VgsError(f"{recipe_file} has no literal STEPS = {{step: module}}",
                   hint="write STEPS as a dict of strings (vgs/recipe.py)")


def step_function(paper: str, step: str):
    """The `stage` function of one step of one paper, with clear errors for unknown names."""
    known = papers()
    if paper not in known:
        raise ParamError(f"unknown paper {paper!r}", hint="known papers: " + ", ".join(known))
    steps = recipe_steps(METHODS / paper / "recipe.py")
    if step not in steps:
        raise ParamError(f"{paper} has no step {step!r}", hint=f"its steps: {', '.join(steps)}")
    return importlib.import_module(steps[step]).stage


def takes_run(function) -> bool:
    return "run" in inspect.signature(function).parameters


def stage_threads(params: Params) -> int | None:
    """`stage_threads.<profile>`: the fixed torch/BLAS thread count of every paper stage, or None."""
    key = f"stage_threads.{params.profile()}"
    if params.raw(key, None) is None:
        return None
    return params.int(key, min=1)


@contextmanager
def fixed_threads(threads: int | None):
    """torch's intra-op threads and every BLAS/OpenMP pool at `threads` while a stage runs.

    Float sums are split across threads, so another thread count can change the last bits of a
    result; a count fixed by params (not by how many stages share the machine) keeps the numbers
    of `make run` (stages at once) and `dvc repro` (one at a time) the same."""
    if threads is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)
