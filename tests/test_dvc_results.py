"""Results read with DVC's own commands (docs/results-with-dvc.md): metrics.json holds a
paper's headline numbers only and details.json the rest (vgs/report/metrics.py), every figure and
result curve is a declared plot, `dvc metrics diff` after a one-key params change names the
changed headline numbers and nothing else, and `.venv/bin/dvc repro` runs the stages with the
venv's python without the venv being activated.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dag_project import copy_sources
from dvc_support import VENV_BIN, dvc_env, dvc_json, repo_copy, run
from tiny_runs import write_leidal_stores
from vgs.errors import CheckpointError
from vgs.methods.leidal2017.config import DataConfig
from vgs.report.metrics import (DETAILS_FILE, METRICS_FILE, HeadlineError, flatten_headline, headline_cells,
                                read_details, table_number, write_results)
from vgs.train.trainer import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
# The papers whose headline is their Table 1's `_ours` cells.
PAPERS = ("leidal2017", "pvae2018", "smart")
# Every paper's report follows the convention (write_results, declared plots); the retrieval
# papers' headlines are checked against their own tables in their tests.
ALL_PAPERS = PAPERS + ("mortazavi2020", "crabtree2021")
# The bound for one `dvc metrics show` row of these papers.
MAX_COLUMNS = 60


def dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def entries(items) -> dict:
    """{path: flags} of a stage's outs/metrics/plots list."""
    out = {}
    for item in items or []:
        out.update({item: {}} if isinstance(item, str) else item)
    return out


def top_level_plots() -> dict:
    return entries(dvc_yaml().get("plots"))


# -- the shared helper -----------------------------------------------------------------------------
def test_headline_is_flat_or_one_level_of_runs_of_numbers():
    assert flatten_headline({"mlc_acc": 98.81, "hybrid": {"image_to_audio_acc": 97.15}}) == {
        "mlc_acc": 98.81, "hybrid.image_to_audio_acc": 97.15}
    for bad, message in (({"run": {"split": {"purity": 0.5}}}, "one level of run names"),
                         ({"data": "MNIST + FSDD"}, "numbers"), ({"met": True}, "numbers"),
                         ({"nan": float("nan")}, "numbers"), ({"ig0.purity": 0.5}, "without dots"),
                         ({}, "empty")):
        with pytest.raises(HeadlineError, match=message):
            flatten_headline(bad)
    with pytest.raises(HeadlineError, match="41 headline numbers, more than 40"):
        flatten_headline({f"run{i}": 0.5 for i in range(41)})


def test_headline_values_are_the_table_cells(tmp_path):
    assert table_number(0.95555, 3) == 0.956 and table_number(97.1499, 2) == 97.15
    assert table_number(None) is None and table_number(300) == 300 and isinstance(table_number(300), int)
    row = {"purity_ours": 0.95555, "purity_paper": 0.984, "svm_acc_ours": None}
    assert headline_cells(row, ["purity_ours", "svm_acc_ours"]) == {"purity": 0.956}
    write_results(tmp_path, {"ig0": {"purity": 0.956}}, {"timing": {"train_wall_seconds": 80.2}})
    assert json.loads((tmp_path / METRICS_FILE).read_text()) == {"ig0": {"purity": 0.956}}
    assert read_details(tmp_path) == {"timing": {"train_wall_seconds": 80.2}}
    with pytest.raises(HeadlineError):
        write_results(tmp_path / "bad", {"timing": {"train": {"wall": 1.0}}}, {})
    assert not (tmp_path / "bad").exists()


# -- the committed results and their dvc.yaml declarations -----------------------------------------
@pytest.mark.parametrize("paper", PAPERS)
def test_committed_metrics_are_the_table_numbers(paper):
    out = REPO / "results" / paper
    headline = {key: value for key, value in flatten_headline(json.loads((out / METRICS_FILE).read_text())).items()
                if not key.startswith("claims.")}       # each claim's verdict, 1 or 0 (vgs/report/render.py)
    # Every `_ours` cell of Table 1 is one headline number, and nothing else is.
    with open(out / "table1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cells = [float(r[c]) for r in rows for c in r if c.endswith("_ours") and r[c] not in ("", "not in paper")]
    assert sorted(headline.values()) == sorted(cells)
    assert read_details(out), f"{out / DETAILS_FILE} is empty"


@pytest.mark.parametrize("paper", ALL_PAPERS)
def test_report_stage_declares_headline_details_and_every_figure(paper):
    from dvc_render.vega_templates import TEMPLATES

    stages = dvc_yaml()["stages"]
    stage = stages[f"{paper}-report"]
    folder = f"results/{paper}"
    metrics, outs, plots = (entries(stage.get(k)) for k in ("metrics", "outs", "plots"))
    assert list(metrics) == [f"{folder}/{METRICS_FILE}"] and metrics[f"{folder}/{METRICS_FILE}"] == {"cache": False}
    assert outs[f"{folder}/{DETAILS_FILE}"] == {"cache": False}
    # Any stage may write into results/<paper>/ (PVAE's generate stage writes Figures 4-5).
    declared = {}
    for s in stages.values():
        body = s.get("do", s)
        for key in ("outs", "metrics", "plots"):
            declared.update({p: key for p in entries(body.get(key)) if p.startswith(folder + "/")})
    top = top_level_plots()
    curves = [(file, plot_id, props) for plot_id, props in top.items() if props
              for file in (props.get("y") or {}) if file.startswith(folder + "/")]
    on_disk = sorted(p.relative_to(REPO).as_posix() for p in (REPO / folder).iterdir()
                     if p.is_file() and not p.name.startswith("."))
    for path in on_disk:
        assert path in declared, f"{path} is written into results/ but no stage declares it"
        if path.endswith((".png", ".svg", ".jpg")):
            assert declared[path] == "plots" or path in top, f"figure {path} is not a plot"
    assert curves, f"no curve of {folder} is a plot"
    for file, plot_id, props in curves:
        header = (REPO / file).read_text().splitlines()[0].split(",")
        for key in ("x", "y", "x_label", "y_label", "title", "template"):
            assert props.get(key), f"plot {plot_id!r} has no {key}"
        assert props["x"] in header and set(props["y"][file]) <= set(header), plot_id
        template = props["template"]
        assert (template in {t.DEFAULT_NAME for t in TEMPLATES}
                or (REPO / ".dvc" / "plots" / f"{template}.json").is_file()), f"no template {template!r}"


def test_dvc_metrics_show_prints_the_headline_and_plots_load(tmp_path):
    proj = repo_copy(tmp_path / "copy")
    files = dvc_json(["metrics", "show"], proj)[""]["data"]
    columns = 0
    for paper in PAPERS:
        path = f"results/{paper}/{METRICS_FILE}"
        printed = flatten_headline(files[path]["data"])
        assert printed == flatten_headline(json.loads((REPO / path).read_text()))
        columns += len(printed)
    assert columns <= MAX_COLUMNS

    plots = dvc_json(["plots", "show"], proj)
    ours = {name: data for name, data in plots["data"].items() if any(p in name for p in ALL_PAPERS)}
    assert len([n for n in ours if n in top_level_plots()]) == len(top_level_plots())
    errors = [e for e in plots.get("errors", []) if any(p in str(e) for p in ALL_PAPERS)]
    assert not errors, errors
    assert all(ours.values()), [n for n, d in ours.items() if not d]


# -- `dvc metrics diff` after a one-key change, on a tiny real Leidal pipeline ---------------------
LEIDAL_STAGES = ("leidal2017-train", "leidal2017-export", "leidal2017-evaluate", "leidal2017-report")


def tiny_leidal_project(proj: Path) -> None:
    proj.mkdir()
    copy_sources(proj, ("run",))
    real = dvc_yaml()
    # The report stage exactly as the project declares it: its metrics, details and plots.
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {k: real["stages"][k] for k in ("code", *LEIDAL_STAGES)}},
                                                  sort_keys=False))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    leidal = params["leidal2017"]
    leidal["data"] = {"pairs": "stores/pairs.zarr", "image_store": "stores/img.zarr", "audio_store": "stores/aud.zarr"}
    leidal["model"] = {"z_dim": 8, "num_frames": 10}
    leidal["train"].update(num_samples=3, batch_pairs=8, lr=1e-3, epochs=3, pairs_per_epoch=24, val_pairs=8,
                           num_threads=1, precision="fp32")
    leidal["export"] = {"split": "test", "num_samples": 4, "batch_size": 7}
    leidal["eval"].update(svm_per_modality=30, svm_train=40, tsne_per_modality=10)
    leidal["profiles"] = {"paper": {}, "cpu": {}}
    leidal["runs"] = {"ig0": {"lambda_ig": 0.0}, "ig1": {"lambda_ig": 1.0}}
    (proj / "params.yaml").write_text(yaml.safe_dump({"profile": params["profile"], "seed": params["seed"],
                                                      "stage_threads": params["stage_threads"],
                                                      "train": params["train"],
                                                      "leidal2017": leidal}, sort_keys=False))
    # tests/test_leidal2017.py's tiny data, where this project's params look for it.
    write_leidal_stores(proj, DataConfig(**leidal["data"]))
    (proj / ".gitignore").write_text("/stores/\n__pycache__/\n")


@pytest.mark.slow
def test_metrics_diff_after_one_params_change_names_only_the_changed_headline(tmp_path):
    proj = tmp_path / "proj"
    tiny_leidal_project(proj)
    env = dvc_env(PYTHONPATH=str(proj), PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    dvc = VENV_BIN / "dvc"
    for argv in (["git", "init", "-q"], ["git", "config", "user.email", "tests@vgs.invalid"],
                 ["git", "config", "user.name", "vgs tests"], [dvc, "init", "-q"], [dvc, "repro"],
                 ["git", "add", "-A"], ["git", "commit", "-qm", "tiny leidal2017"]):
        run(argv, proj, env=env)
    before = json.loads((proj / "results/leidal2017" / METRICS_FILE).read_text())
    runs = {key for key in flatten_headline(before) if not key.startswith("claims.")}
    assert runs == {"ig0.purity", "ig0.svm_acc", "ig1.purity", "ig1.svm_acc"}

    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["leidal2017"]["runs"]["ig1"]["lambda_ig"] = 0.01
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    again = run([dvc, "repro"], proj, env=env)
    assert "Running stage 'leidal2017-train@ig1'" in again and "leidal2017-train@ig0'" not in again.replace(
        "Stage 'leidal2017-train@ig0' didn't change", "")

    diff = dvc_json(["metrics", "diff"], proj, env)
    changed = set(diff.get("results/leidal2017/metrics.json", {}))
    # The re-run's timings, sample counts and SVM settings are in details.json, which changed too,
    # but DVC does not read it as a metric; the untouched run does not appear.
    # A claim's verdict (claims.<n>_...: 1 holds, 0 not) may flip with ig1's numbers; no other key.
    assert changed and {key for key in changed if not key.startswith("claims.")} <= {"ig1.purity", "ig1.svm_acc"}, diff
    assert set(diff) == {"results/leidal2017/metrics.json"}, diff
    details = json.loads((proj / "results/leidal2017" / DETAILS_FILE).read_text())
    assert details["runs"]["ig1"]["lambda_ig"] == 0.01
    params_diff = dvc_json(["params", "diff"], proj, env)
    assert set(params_diff["params.yaml"]) == {"leidal2017.runs.ig1.lambda_ig"}


# -- the cache shares files with the workspace (issue 21, part 7) ----------------------------------
def cache_files(proj: Path) -> list[Path]:
    return [p for p in (proj / ".dvc" / "cache" / "files" / "md5").rglob("*") if p.is_file()]


def corrupt_cache_files(proj: Path) -> list[str]:
    """Cache entries whose content no longer has the md5 their name says (a write through a link)."""
    bad = []
    for path in cache_files(proj):
        if path.suffix == ".dir":
            continue
        if hashlib.md5(path.read_bytes()).hexdigest() != path.parent.name + path.name:
            bad.append(str(path.relative_to(proj)))
    return bad


def unfinished_checkpoint(run_dir: Path) -> bool:
    try:
        return not load_checkpoint(run_dir / "checkpoint.pt").get("finished", True)
    except (CheckpointError, OSError, RuntimeError, EOFError):
        return False     # not written yet, or caught mid-rename


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_hard_linked_cache_survives_run_kill_resume_and_rerun(tmp_path):
    """With the project's cache link types (.dvc/config), outputs are hard links into the cache,
    and a training run that is killed, resumed and finished never changes a cached file."""
    proj = tmp_path / "proj"
    tiny_leidal_project(proj)
    env = dvc_env(PYTHONPATH=str(proj), PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    dvc = VENV_BIN / "dvc"
    for argv in (["git", "init", "-q"], [dvc, "init", "-q"]):
        run(argv, proj, env=env)
    shutil.copy(REPO / ".dvc" / "config", proj / ".dvc" / "config")
    run([dvc, "repro"], proj, env=env)
    # Outputs that are not `persist` are linked at once; DVC leaves a persist output (a training
    # run's directory) as a copy after running it, and `dvc checkout --relink` links it too.
    assert (proj / "data/embeddings/leidal2017/ig0.h5").stat().st_nlink == 2
    run([dvc, "checkout", "--relink"], proj, env=env)
    run_dir = proj / "data/models/leidal2017/ig1"
    assert (run_dir / "checkpoint.pt").stat().st_nlink == 2
    assert cache_files(proj) and not corrupt_cache_files(proj)

    # A longer ig1 run with another lambda, killed mid-way: it starts from the linked directory.
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["leidal2017"]["runs"]["ig1"]["lambda_ig"] = 0.5
    params["leidal2017"]["train"].update(epochs=1000, checkpoint_every_seconds=1)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.Popen([str(dvc), "repro", "leidal2017-train@ig1"], cwd=proj, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: unfinished_checkpoint(run_dir), 600, "a checkpoint of the unfinished run")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert unfinished_checkpoint(run_dir)
    assert not corrupt_cache_files(proj)

    out = run([dvc, "repro"], proj, env=env)
    assert "resuming" in out
    assert not corrupt_cache_files(proj)
    again = run([dvc, "repro"], proj, env=env)
    assert "Running stage" not in again
    assert dvc_json(["status"], proj, env) == {}


# -- `.venv/bin/dvc repro` without an activated venv -----------------------------------------------
PROBE = """import json, sys
import vgs
json.dump({"executable": sys.executable, "prefix": sys.prefix, "vgs": vgs.__file__}, open("probe.json", "w"))
"""


def test_venv_dvc_runs_stage_commands_with_the_venv_python(tmp_path):
    """Stage commands say `python`; started as .venv/bin/dvc with a PATH that lacks .venv/bin (the
    venv not activated), they still get the venv's interpreter, which imports vgs. The venv's
    vgs-venv-path.pth (Makefile, install) does it."""
    pth = [Path(p) / "vgs-venv-path.pth" for p in sys.path if p.endswith("site-packages")]
    assert any(p.is_file() for p in pth), "the venv has no vgs-venv-path.pth: run `make install`"
    proj = tmp_path / "probe"
    proj.mkdir()
    (proj / "probe.py").write_text(PROBE)
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"probe": {
        "cmd": "python probe.py", "deps": ["probe.py"], "outs": [{"probe.json": {"cache": False}}]}}}))
    bare = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    bare.update(PATH=os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if Path(p).is_dir()),
                DVC_NO_ANALYTICS="1")
    assert str(VENV_BIN) not in bare["PATH"]
    run([VENV_BIN / "dvc", "init", "--no-scm", "-q"], proj, env=bare)
    run([VENV_BIN / "dvc", "repro"], proj, env=bare)
    probe = json.loads((proj / "probe.json").read_text())
    assert probe["prefix"] == sys.prefix, probe
    assert Path(probe["executable"]).parent == VENV_BIN
    assert Path(probe["vgs"]).resolve().is_relative_to(REPO)


# -- figures in the Prefect report artifacts --------------------------------------------------------
def test_report_images_travel_as_data_uris(tmp_path):
    from PIL import Image

    from pipeline.artifacts import embed_images

    paper = tmp_path / "results" / "paper"
    paper.mkdir(parents=True)
    Image.new("RGB", (3, 2), "red").save(paper / "fig 1.png")
    (tmp_path / "results" / "secret.png").write_bytes((paper / "fig 1.png").read_bytes())
    markdown = ("![one](fig%201.png)\n\nText ![titled](fig%201.png \"a title\")\n\n![web](https://example.org/x.png) "
                "![gone](missing.png) ![outside](../secret.png)\n\n```\n![code](fig%201.png)\n```\n")
    out = embed_images(markdown, paper)
    assert out.count("data:image/png;base64,") == 2
    assert out.startswith("![one](data:image/png;base64,iVBOR") and '.png "a title")' not in out
    for kept in ("https://example.org/x.png", "missing.png", "../secret.png", "```\n![code](fig%201.png)\n```"):
        assert kept in out


TIMING_ATTRS = ("train_cpu_seconds", "train_wall_seconds")


@pytest.mark.slow
def test_stages_run_at_once_write_the_same_numbers_as_dvc_repro(tmp_path):
    """The same tiny Leidal stages through `vgs repro -j 2` (make run) and `dvc repro` (one at a
    time) write identical embeddings and evaluations: the stages' thread count comes from
    stage_threads in params.yaml, not from how many stages share the machine. (The files differ
    only in the training times that their attributes carry.)"""
    import h5py

    def content(path: Path) -> dict:
        out = {}
        with h5py.File(path, "r") as f:
            def read(name, obj):
                if isinstance(obj, h5py.Dataset):
                    value = obj[()]
                    out[name] = value.tobytes() if value.dtype.kind in "fiub" else [str(v) for v in value.ravel()]
            f.visititems(read)
            out["attrs"] = {k: str(v) for k, v in f.attrs.items() if k not in TIMING_ATTRS}
        return out

    outputs = {}
    for how in ("dvc", "vgs"):
        proj = tmp_path / how
        tiny_leidal_project(proj)
        params = yaml.safe_load((proj / "params.yaml").read_text())
        params["leidal2017"]["train"]["num_threads"] = None     # the stage_threads rule alone decides
        (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = dvc_env(PYTHONPATH=str(proj), PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        run(["git", "init", "-q"], proj, env=env)
        run([VENV_BIN / "dvc", "init", "-q"], proj, env=env)
        stages = ["leidal2017-evaluate@ig0", "leidal2017-evaluate@ig1"]
        if how == "dvc":
            run([VENV_BIN / "dvc", "repro", *stages], proj, env=env)
        else:
            run([VENV_BIN / "vgs", "repro", "-j", "2", "--repo", str(proj), *stages], proj, env=env)
        outputs[how] = {p.relative_to(proj).as_posix(): content(p)
                        for p in sorted((proj / "data" / "embeddings").rglob("*.h5"))}
        outputs[how].update({p.relative_to(proj).as_posix(): json.loads(p.read_text())["purity"]
                             for p in sorted((proj / "data" / "eval").rglob("*.json"))})
    assert len(outputs["dvc"]) == 4 and outputs["dvc"] == outputs["vgs"]
