"""docs/adding-a-paper.md, followed to the letter: its files go into a copy of the project, its
stages run through `dvc repro`, and an edit of the toy's training code marks exactly its stages."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vgs.utils.code_deps import affected_stages, disagreements, read_stages, write_dvc_yaml

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "adding-a-paper.md"
pytestmark = pytest.mark.slow


def doc_files() -> dict[str, str]:
    """{label: text} of every fenced block that the page introduces with <!-- file: label -->."""
    return dict(re.findall(r"<!-- file: (.+?) -->\n```\w*\n(.*?)```", DOC.read_text(), flags=re.S))


def test_the_page_walks_a_toy_paper_through_dvc_repro(tmp_path):
    files = doc_files()
    assert {"vgs/methods/toy/recipe.py", "vgs/methods/toy/train.py", "vgs/methods/toy/report.py",
            "params.yaml (the toy section)", "dvc.yaml (the toy stages)"} <= set(files)
    proj = tmp_path / "proj"
    for package in ("vgs", "pipeline"):
        shutil.copytree(REPO / package, proj / package, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (proj / "stages").mkdir()
    shutil.copy(REPO / "stages" / "run.py", proj / "stages")
    shutil.copy(REPO / "stages" / "code.py", proj / "stages")
    shutil.copy(REPO / "pyproject.toml", proj)
    for label, text in files.items():
        if label.startswith("vgs/"):
            (proj / label).parent.mkdir(parents=True, exist_ok=True)
            (proj / label).write_text(text)
    repo_params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = {"profile": "cpu", "seed": 1234, "stage_threads": repo_params["stage_threads"],
              "train": repo_params["train"],
              **yaml.safe_load(files["params.yaml (the toy section)"])}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    code_stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["code"]
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"code": code_stage}}, sort_keys=False)
                                   + files["dvc.yaml (the toy stages)"])

    write_dvc_yaml(proj)                                    # `vgs deps --write`
    stages = {s.stage: s for s in read_stages(proj)}
    assert disagreements(list(stages.values())) == []
    assert {"stages/run.py", "vgs/methods/toy/recipe.py", "vgs/methods/toy/train.py", "vgs/params.py",
            "vgs/utils/atomic.py"} <= set(stages["toy-train"].closure)
    assert "vgs/methods/toy/report.py" not in stages["toy-train"].closure
    assert stages["toy-train"].expected == ("data/code/toy-train.json",)

    env = {**os.environ, "PYTHONPATH": str(proj)}

    def dvc(*args):
        out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=proj, env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    dvc("init", "-q")
    shutil.copy(REPO / ".dvcignore", proj)      # __pycache__ is no change of the code
    dvc("repro", "toy-report")
    assert (proj / "results/toy/table1.csv").read_text() == "run,value_paper,value_ours\na,2468,2468\nb,,3702\n"
    assert json.loads((proj / "results/toy/metrics.json").read_text())["claims"] == {"1_b_s_value_exceeds": 1}
    assert "| 1. b's value exceeds a's | n/a | 3702 vs 2468 | ours b > ours a | holds |" in \
        (proj / "results/toy/report.md").read_text()
    assert "up to date" in dvc("status")
    train = proj / "vgs/methods/toy/train.py"
    train.write_text(train.read_text().replace("value = scale *", "value = 1 + scale *"))
    assert "code:" in dvc("status")
    assert affected_stages(proj) == ["toy-train"]
    dvc("repro", "code")
    status = dvc("status")
    assert "toy-train@a" in status and "toy-train@b" in status and "toy-report:" not in status
