"""Every paper folder follows the recipe contract (vgs/recipe.py), and stages/run.py drives them."""
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vgs.errors import ParamError
from vgs.recipe import METHODS, papers, recipe_steps, step_function, takes_run

REPO = Path(__file__).resolve().parent.parent
PAPERS = ("crabtree2021", "leidal2017", "mortazavi2020", "pvae2018", "smart")


def test_every_paper_folder_has_a_recipe():
    assert tuple(papers()) == PAPERS
    assert {p.name for p in METHODS.iterdir() if p.is_dir() and not p.name.startswith("_")} == set(PAPERS)


@pytest.mark.parametrize("paper", PAPERS)
def test_each_step_is_a_stage_function_of_the_contract(paper):
    steps = recipe_steps(METHODS / paper / "recipe.py")
    assert {"train", "report"} <= set(steps)
    for step, module in steps.items():
        assert module.startswith(f"vgs.methods.{paper}."), (step, module)
        stage = importlib.import_module(module).stage
        names = list(inspect.signature(stage).parameters)
        assert names in (["params", "run", "progress"], ["params", "progress"]), (step, names)
        assert inspect.signature(stage).parameters["progress"].default is True


def test_the_recipe_module_runs_nothing():
    # The code deps read STEPS as a literal; a recipe that imports would hide what a step runs.
    for paper in PAPERS:
        text = (METHODS / paper / "recipe.py").read_text()
        assert "import" not in text.replace("`", "").split('"""', 2)[-1], paper


def test_every_paper_stage_in_dvc_yaml_goes_through_the_driver_with_a_matching_run_argument():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    seen = set()
    for name, stage in stages.items():
        body = stage.get("do", stage)
        words = body["cmd"].split()
        if words[1] != "stages/run.py":
            continue
        paper, step = words[2], words[3]
        assert name == f"{paper}-{step}", name
        per_run = "foreach" in stage
        assert takes_run(step_function(paper, step)) == per_run, name
        assert (len(words) > 4 and words[4].startswith("${")) == per_run, name
        seen.add((paper, step))
    assert seen == {(p, s) for p in PAPERS for s in recipe_steps(METHODS / p / "recipe.py")}


def test_unknown_paper_or_step_is_a_clear_error():
    with pytest.raises(ParamError, match="unknown paper 'nope'"):
        step_function("nope", "train")
    with pytest.raises(ParamError, match="has no step 'trian'.*\n.*train, export"):
        step_function("leidal2017", "trian")


def test_the_driver_lists_steps_and_refuses_a_missing_run_name():
    def drive(*args):
        return subprocess.run([sys.executable, "stages/run.py", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
    listed = drive("--list")
    assert listed.returncode == 0 and "pvae2018: train, export, evaluate, generate, report" in listed.stdout
    missing = drive("crabtree2021", "train")
    assert missing.returncode == 2 and "needs a run name" in missing.stderr
    unknown = drive("crabtree2021", "train", "no-such-run")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr and "no-such-run" in unknown.stderr
