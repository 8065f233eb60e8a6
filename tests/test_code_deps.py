"""dvc.yaml's code deps are the import closure of each stage script (vgs/utils/code_deps.py)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from vgs.utils.code_deps import (CodeDepsError, affected_stages, DepsConfig, disagreements, import_closure, read_stages,
                                 rewrite_dvc_yaml, write_dvc_yaml)

REPO = Path(__file__).resolve().parent.parent


def stage(name: str):
    (found,) = [s for s in read_stages(REPO) if s.stage == name]
    return found


def test_the_repository_dvc_yaml_lists_exactly_what_each_stage_imports():
    problems = disagreements(read_stages(REPO))
    assert not problems, "dvc.yaml disagrees with the imports (fix: vgs deps --write):\n" + "\n".join(problems)


def test_the_length_mask_module_is_a_dep_of_every_crabtree_stage_that_runs_it():
    # The case that was silently stale: recurrent.py reaches Crabtree through vgs/nn/pooling.py.
    for name in ("crabtree2021-train", "crabtree2021-export", "crabtree2021-evaluate"):
        assert "vgs/nn/recurrent.py" in stage(name).closure, name
    for name in ("leidal2017-report", "smart-report", "pvae2018-report", "mortazavi2020-report", "crabtree2021-report"):
        assert {"vgs/params.py", "vgs/paths.py"} <= set(stage(name).closure), name


def test_a_change_to_one_adapter_reaches_only_the_stages_that_read_it():
    for name in ("leidal2017-train", "pvae2018-train", "smart-train", "mortazavi2020-train", "crabtree2021-train",
                 "features", "pairs"):
        deps = set(stage(name).closure)
        assert not deps & {"vgs/corpora/places.py", "vgs/corpora/spokencoco.py", "vgs/corpora/flickr8k.py",
                           "vgs/corpora/tidigits.py"}, name
    assert "vgs/corpora/places.py" in stage("captions").closure
    assert "vgs/corpora/tidigits.py" in stage("prepare").closure


def test_exempt_modules_and_resources_come_from_pyproject():
    config = DepsConfig.load(REPO)
    assert 0 < len(config.exempt) <= 5 and all(why.strip() for why in config.exempt.values())
    assert not any(set(config.exempt) & set(s.closure) for s in read_stages(REPO))
    assert "vgs/features/knf_bulk.cc" in stage("features").closure


def test_every_stage_lists_only_its_manifest_and_the_code_stage_watches_every_source_folder():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["code"]["deps"] == ["stages", "vgs", "pipeline", "pyproject.toml"]
    assert stages["code"]["outs"] == [{"data/code": {"cache": False}}]
    for s in read_stages(REPO):
        assert s.declared == (f"data/code/{s.stage}.json",), s.stage
    assert "__pycache__/" in (REPO / ".dvcignore").read_text().split()


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


TOY = {
    "pyproject.toml": """
        [tool.vgs.deps.exempt]
        "vgs/errors.py" = "messages only"
        [tool.vgs.deps.resources]
        "vgs/lib/reader.py" = ["vgs/lib/table.txt"]
        """,
    "vgs/__init__.py": "",
    "vgs/errors.py": "class E(Exception): pass\n",
    "vgs/lib/__init__.py": "",
    "vgs/lib/table.txt": "1 2 3\n",
    "vgs/lib/reader.py": """
        from typing import TYPE_CHECKING
        from vgs.errors import E
        if TYPE_CHECKING:
            from vgs.lib import never_runs
        def read():
            from . import scale            # relative and inside a function: it may run, so it counts
            return scale.FACTOR
        """,
    "vgs/lib/scale.py": "FACTOR = 2\n",
    "vgs/lib/never_runs.py": "",
    "vgs/lib/unused.py": "",
    "stages/make.py": """
        import sys
        from vgs.lib.reader import read
        open(sys.argv[1], "w").write(str(read()))
        """,
    ".dvcignore": "__pycache__/\n",
    "stages/code.py": (REPO / "stages/code.py").read_text(),
    "dvc.yaml": """
        stages:
          code:
            cmd: PYTHONPATH={repo} {python} stages/code.py
            deps: [stages, vgs, pyproject.toml]
            outs:
              - data/code:
                  cache: false
          make:
            cmd: PYTHONPATH=. python stages/make.py out.txt
            deps:
              # the script
              - stages/make.py
              - vgs/lib/unused.py
              # input data stays, with its comment
              - input.txt
            outs:
              - out.txt
        """,
    "input.txt": "x\n",
}
TOY["dvc.yaml"] = TOY["dvc.yaml"].replace("{repo}", str(REPO)).replace("{python}", sys.executable)


def test_closure_follows_function_level_and_relative_imports_and_skips_type_checking(tmp_path):
    write(tmp_path, TOY)
    found = {p.relative_to(tmp_path).as_posix() for p in import_closure(tmp_path, tmp_path / "stages/make.py")}
    assert found == {"stages/make.py", "vgs/__init__.py", "vgs/errors.py", "vgs/lib/__init__.py",
                     "vgs/lib/reader.py", "vgs/lib/scale.py"}


def test_disagreements_name_the_stage_and_the_files_and_write_fixes_them(tmp_path):
    write(tmp_path, TOY)
    (make,) = read_stages(tmp_path)
    assert set(make.closure) == {"stages/make.py", "vgs/__init__.py", "vgs/lib/__init__.py", "vgs/lib/reader.py",
                                 "vgs/lib/scale.py", "vgs/lib/table.txt"}     # errors.py exempt, table.txt a resource
    problems = disagreements(read_stages(tmp_path))
    assert any("make: runs but does not list data/code/make.json" in p for p in problems)
    assert any("make: lists but never imports" in p and "vgs/lib/unused.py" in p for p in problems)
    write_dvc_yaml(tmp_path)
    assert disagreements(read_stages(tmp_path)) == []
    text = (tmp_path / "dvc.yaml").read_text()
    assert "deps:\n      - data/code/make.json\n      # input data stays, with its comment\n      - input.txt" in text
    assert "unused.py" not in text and "outs:\n      - out.txt" in text


def test_rewrite_keeps_everything_outside_the_code_lines():
    text = "plots:\n  - a.png\nstages:\n  s:\n    cmd: python stages/s.py\n    deps:\n      - data/in\n" \
           "      - vgs/old.py\n    outs:\n      - data/out\n"
    assert rewrite_dvc_yaml(text, {"s": ["stages/s.py", "vgs/new.py"]}) == \
        "plots:\n  - a.png\nstages:\n  s:\n    cmd: python stages/s.py\n    deps:\n      - data/in\n" \
        "      - stages/s.py\n      - vgs/new.py\n    outs:\n      - data/out\n"


def test_too_many_or_unexplained_exemptions_are_refused(tmp_path):
    write(tmp_path, TOY)
    for i in range(6):
        write(tmp_path, {f"vgs/m{i}.py": ""})
    many = "\n".join(f'"vgs/m{i}.py" = "why"' for i in range(6))
    (tmp_path / "pyproject.toml").write_text(f"[tool.vgs.deps.exempt]\n{many}\n")
    with pytest.raises(CodeDepsError, match="at most 5"):
        DepsConfig.load(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.vgs.deps.exempt]\n"vgs/m0.py" = " "\n')
    with pytest.raises(CodeDepsError, match="no reason"):
        DepsConfig.load(tmp_path)


@pytest.mark.slow
def test_dvc_status_lists_the_stage_after_an_edit_deep_in_its_imports(tmp_path):
    write(tmp_path, TOY)
    write_dvc_yaml(tmp_path)

    def dvc(*args):
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, capture_output=True, text=True,
                              check=True, timeout=120).stdout

    dvc("init", "-q", "--no-scm")
    write(tmp_path, {".dvcignore": "__pycache__/\n"})
    dvc("repro", "-q")
    assert "up to date" in dvc("status")
    (tmp_path / "vgs/lib/scale.py").write_text("FACTOR = 3\n")     # imported inside a function, two hops away
    assert "code:" in dvc("status") and "modified:           vgs" in dvc("status")
    assert affected_stages(tmp_path) == ["make"]
    assert "Running stage 'make'" in dvc("repro")
    assert (tmp_path / "out.txt").read_text() == "3"
    for edit in ("vgs/errors.py", "vgs/lib/unused.py"):             # exempt; imported by nothing
        (tmp_path / edit).write_text("class E(Exception):\n    pass  # reworded\n")
        assert affected_stages(tmp_path) == []
        out = dvc("repro")
        assert "Running stage 'code'" in out and "Stage 'make' didn't change" in out, out
    assert "up to date" in dvc("status")
