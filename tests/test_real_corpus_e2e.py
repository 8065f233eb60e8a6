"""End to end on a real corpus layout (issue 30): Mortazavi 2020 and Crabtree 2021 with their
`profile: paper` structures, RGB photos and 16 kHz captions, on a tiny Flickr8k, through `dvc repro`.

The fixture (tests/caption_fixtures.py) is Flickr8k in its released layout, `Flicker8k_Dataset/`
spelling included: 36 JPEGs of several sizes (16 train, 10 dev, 10 test: recall@10 needs 10
candidates) with one grey, one CMYK and one truncated JPEG; two 16 kHz WAVs of speech-like noise
per image, one at 8 kHz (mixed rate) and one listed in wav2capt.txt but missing. It sits at
data/raw/flickr8k of a DVC project in tmp_path: the captions@flickr8k stage depends on
data/raw/<name> whatever caption_corpora.<name>.root says, so a root elsewhere would not be tracked.

The project holds copies of the repo's vgs/, stages/, pipeline/, pyproject.toml, dvc.yaml and
params.yaml; every option is set in its params.yaml, nothing on a command line:
  profile: paper; features.on_error: skip; features.photo64 = photo224 at size 64 (3 channels);
  caption_corpora.flickr8k (adapter flickr8k, on_error skip); feature_sets for the images
  (photo64) and the English captions (mfcc40_16k, logmel40_16k); two 2-view instance_pairing
  entries (image + en, features_dir data/features/flickr8k), one per caption config;
  mortazavi2020 / crabtree2021: one run each, data.pairs at the new pair store, corpus_root
  data/raw/flickr8k (no scenes.json there: no oracle), features_dir data/features/flickr8k,
  caption views [en], in_channels 3, 1 epoch of 2 steps.

Structures (measured on this 2-core machine, 64x64 RGB, batch 8, one forward+backward+Adam step):
DenseNet-264 5-10 s, DenseNet-121 5-9 s, ResNet-50 5-7 s; so the paper's own image nets fit the
4-minute budget at 2 steps per epoch and are used unchanged. Mortazavi's run is `dg2a1024`, the
smallest encoder pair of its Table 1 (DenseNet-264 + conv / 2-layer Bi-GRU, d = 1024); Crabtree's is
`baseline` (ResNet-50 + the paper ResDAVEnet, 1024-d, avg pooling, InfoNCE).

The stages are the real ones: captions@flickr8k, features@flickr8k-*, instance-pairs@flickr8k-*,
then <paper>-train/-export/-evaluate@<run> and <paper>-report, run by one
`dvc repro --keep-going mortazavi2020-report crabtree2021-report` (module fixture `built`, about
2.5 min here; the tests below read its project), with the repository's dvc.yaml unchanged.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from caption_fixtures import write_flickr8k
from conftest import REPO

pytestmark = pytest.mark.slow

CORPUS = "flickr8k"
IMAGE_CONFIG = "photo64"
MORTAZAVI_RUN = "dg2a1024"      # Table 1's smallest encoder pair: G2, d = 1024
CRABTREE_RUN = "baseline"
PAIRS = {"mortazavi2020": f"{CORPUS}-mfcc40_16k", "crabtree2021": f"{CORPUS}-logmel40_16k"}
IMAGE_STORE = f"data/features/{CORPUS}/image/{IMAGE_CONFIG}.zarr"
CAPTION_STORES = {"mfcc40_16k": f"data/features/{CORPUS}/en/mfcc40_16k.zarr",
                  "logmel40_16k": f"data/features/{CORPUS}/en/logmel40_16k.zarr"}
DATA_NAME = "Flickr8k e2e fixture (36 JPEGs 64x64 RGB, English 16 kHz speech-like noise)"
TARGETS = ("mortazavi2020-report", "crabtree2021-report")
FOUNDATION = {f"captions@{CORPUS}", f"features@{CORPUS}-image-{IMAGE_CONFIG}", f"features@{CORPUS}-en-mfcc40_16k",
              f"features@{CORPUS}-en-logmel40_16k", *(f"instance-pairs@{p}" for p in PAIRS.values())}
MORTAZAVI = {*(f"mortazavi2020-{s}@{MORTAZAVI_RUN}" for s in ("train", "export", "evaluate")), "mortazavi2020-report"}
CRABTREE = {f"crabtree2021-{s}@{CRABTREE_RUN}" for s in ("train", "export", "evaluate")}

# -- the project -----------------------------------------------------------------------------------
def set_params(params: dict) -> dict:
    """params.yaml of the e2e project: the repo's, with the keys the module docstring lists."""
    p = copy.deepcopy(params)
    p["profile"] = "paper"
    p["features"]["on_error"] = "skip"
    p["features"][IMAGE_CONFIG] = {**p["features"]["photo224"], "size": 64}
    assert p["features"][IMAGE_CONFIG]["channels"] == 3
    p["caption_corpora"] = {CORPUS: {"adapter": "flickr8k", "root": f"data/raw/{CORPUS}", "on_error": "skip"}}
    p["feature_sets"] = {
        f"{CORPUS}-image-{IMAGE_CONFIG}": {"corpus": f"{CORPUS}/image", "config": IMAGE_CONFIG},
        f"{CORPUS}-en-mfcc40_16k": {"corpus": f"{CORPUS}/en", "config": "mfcc40_16k"},
        f"{CORPUS}-en-logmel40_16k": {"corpus": f"{CORPUS}/en", "config": "logmel40_16k"},
    }
    p["instance_pairing"] = {
        name: {"mode": "instance", "features_dir": f"data/features/{CORPUS}",
               "views": [{"name": "image", "store": IMAGE_STORE},
                         {"name": "en", "store": CAPTION_STORES[name.split("-", 1)[1]]}],
               "epochs": {"train": 1, "val": 1, "test": 1}}
        for name in PAIRS.values()}

    m = p["mortazavi2020"]
    m["data"].update(pairs=f"data/pairs/{PAIRS['mortazavi2020']}.zarr", image_view="image", caption_view="en",
                     corpus_root=f"data/raw/{CORPUS}", features_dir=f"data/features/{CORPUS}", data_name=DATA_NAME)
    m["model"]["in_channels"] = 3
    m["train"].update(epochs=1, batch_size=8)            # 15 usable training images: 2 steps
    m["runs"] = {MORTAZAVI_RUN: m["runs"][MORTAZAVI_RUN]}
    assert m["profiles"]["paper"] == {} and m["model"]["image_net"] == "densenet264"

    c = p["crabtree2021"]
    c["data"].update(pairs=f"data/pairs/{PAIRS['crabtree2021']}.zarr", image_view="image", caption_views=["en"],
                     corpus_root=f"data/raw/{CORPUS}", features_dir=f"data/features/{CORPUS}", train_scenes=12,
                     data_name=DATA_NAME)
    c["model"]["in_channels"] = 3
    c["train"].update(epochs=1, batch_size=6)            # a subset of 12 training images: 2 steps
    c["runs"] = {CRABTREE_RUN: c["runs"][CRABTREE_RUN]}
    c["report"].update(noise_runs=[CRABTREE_RUN], tsne_run=CRABTREE_RUN, tsne_scenes=10)
    # A user with their own corpus and no MNIST: the paper profile starts the image trunk from scratch,
    # so the pretraining stage reads no images and only needs its dependency to be a store the DAG builds.
    assert c["model"]["image_init"] == "scratch"
    c["pretrain"]["images"] = IMAGE_STORE
    assert c["profiles"]["paper"] == {} and (c["model"]["image_net"], c["model"]["speech_net"]) == ("resnet50", "paper")
    return p


def make_project(proj: Path) -> dict:
    proj.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("vgs", "stages", "pipeline"):
        shutil.copytree(REPO / name, proj / name, ignore=ignore)
    for name in ("pyproject.toml", "dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, proj / name)
    init = dvc(proj, "init", "--no-scm", "-q")
    assert init.returncode == 0, init.stdout + init.stderr
    shutil.copy(REPO / ".dvc" / "config", proj / ".dvc" / "config")   # the repo's cache link types
    assert dvc(proj, "config", "core.no_scm", "true").returncode == 0
    if (REPO / ".dvc" / "plots").is_dir():
        shutil.copytree(REPO / ".dvc" / "plots", proj / ".dvc" / "plots", dirs_exist_ok=True)
    params = set_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    fixture = write_flickr8k(proj / "data" / "raw" / CORPUS)
    return {"params": params, "fixture": fixture}


def dvc(proj: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`python -m dvc <args>` in the project, its stages' `python` the venv's, PYTHONPATH the project."""
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ, DVC_NO_ANALYTICS="1", TQDM_DISABLE="1", PYTHONPATH=str(proj),
               PATH=str(venv_bin) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=proj, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def first_weight(state: dict, prefix: str, ndim: int) -> tuple[str, tuple]:
    """The first weight of rank `ndim` under `prefix` in a state dict (module order): the input layer."""
    for key, value in state.items():
        if key.startswith(prefix) and key.endswith("weight") and getattr(value, "ndim", 0) == ndim:
            return key, tuple(value.shape)
    raise AssertionError(f"no {ndim}-d weight under {prefix!r} in {list(state)[:20]}")


def trained_state(model_dir: Path) -> dict:
    """The model weights of the run's newest checkpoint (whatever the Trainer names it)."""
    import torch

    files = sorted((p for p in model_dir.rglob("*") if p.suffix in (".pt", ".pth", ".ckpt")),
                   key=lambda p: p.stat().st_mtime)
    assert files, f"no checkpoint in {model_dir}: {sorted(p.name for p in model_dir.rglob('*'))}"
    ckpt = torch.load(files[-1], map_location="cpu", weights_only=False)
    stack = [ckpt]
    while stack:   # the task's state is nested in the trainer's checkpoint: find the weights
        d = stack.pop()
        if isinstance(d, dict):
            for key in ("pair", "model"):
                if isinstance(d.get(key), dict) and any(hasattr(v, "shape") for v in d[key].values()):
                    return d[key]
            stack.extend(v for v in d.values() if isinstance(v, dict))
    raise AssertionError(f"no model weights in {files[-1]}")


# -- the checks --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One project (the repository's dvc.yaml as it is) and one `dvc repro --keep-going` of both
    reports: a failing branch does not stop the other, so each test below checks its part."""
    proj = tmp_path_factory.mktemp("e2e") / "proj"
    made = make_project(proj)
    started = time.perf_counter()
    out = dvc(proj, "repro", "--keep-going", *TARGETS)
    seconds = time.perf_counter() - started
    print(f"\ndvc repro --keep-going {' '.join(TARGETS)}: {seconds:.0f} s, exit {out.returncode}")
    yield {"proj": proj, "fixture": made["fixture"], "out": out.stdout + out.stderr, "rc": out.returncode,
           "seconds": seconds}
    # The paper-size checkpoints (1.1 GB Crabtree, 0.6 GB Mortazavi, hard-linked into the DVC cache)
    # would stay in pytest's kept temporary directories.
    for heavy in (proj / "data" / "models", proj / ".dvc" / "cache"):
        shutil.rmtree(heavy, ignore_errors=True)


def stage_failed(out: str, stage: str) -> bool:
    return f"failed to reproduce '{stage}'" in out


def check_stages_ran(b: dict, stages: set[str]) -> None:
    failed = sorted(s for s in stages if stage_failed(b["out"], s))
    assert not failed, f"failed: {failed}\n{b['out'][-8000:]}"
    missing = stages - ran(b["out"])
    assert not missing, f"not run: {sorted(missing)}\n{b['out'][-8000:]}"


def check_report(proj: Path, paper: str, run: str) -> None:
    """report.md names the data and the profile; metrics.json (headline numbers only, by design:
    vgs/report/metrics.py) holds the run's; details.json names the data too."""
    results = proj / "results" / paper
    report = (results / "report.md").read_text()
    metrics = json.loads((results / "metrics.json").read_text())
    assert run in metrics, f"{paper}: metrics.json has no numbers of run {run}: {metrics}"
    details = (results / "details.json").read_text()
    assert DATA_NAME in report, f"{paper} report does not name its data:\n{report[:3000]}"
    assert DATA_NAME in details, f"{paper}: details.json does not name the data"
    assert "Profile `paper`" in report, report[:3000]


def test_foundation_stages_on_the_flickr8k_layout(built):
    """captions, features and instance pairs: every bad input handled as params.yaml says (skip)."""
    proj, fixture, out = built["proj"], built["fixture"], built["out"]
    check_stages_ran(built, FOUNDATION)

    # captions@flickr8k: the missing WAV is rejected (on_error: skip), the truncated JPEG passes its header check
    manifests = proj / "data" / "manifests" / CORPUS
    rejected = read_jsonl(manifests / "rejected.jsonl")
    assert [r["id"] for r in rejected] == [fixture.caption_id(fixture.missing_wav)], rejected
    assert "missing" in rejected[0]["reason"]
    from vgs.corpora.manifest import read_manifest

    images = read_manifest(manifests / "image.jsonl")
    assert {r.id for r in images} == {fixture.image_id(n) for n in fixture.images} and len(images) == 36
    en = read_manifest(manifests / "en.jsonl")
    assert len(en) == 71 and {r.sample_rate for r in en} == {8000, 16000}
    assert fixture.caption_id(fixture.missing_wav) not in {r.id for r in en}

    # features: the truncated JPEG is left out of the image store; grey and CMYK became RGB
    from vgs.store.feature_store import FeatureStore

    image_rejected = read_jsonl(proj / IMAGE_STORE / "rejected.jsonl")
    assert [r["id"] for r in image_rejected] == [fixture.image_id(fixture.truncated)], image_rejected
    assert "truncated" in image_rejected[0]["reason"]
    store = FeatureStore(proj / IMAGE_STORE)
    assert len(store) == 35 and tuple(store.item_shape) == (64, 64, 3)
    ids = list(store.ids)
    for name in (fixture.grey, fixture.cmyk):
        item = store.item(ids.index(fixture.image_id(name)))
        assert item.shape == (64, 64, 3) and np.isfinite(item).all() and item.max() <= 1.0
    grey = store.item(ids.index(fixture.image_id(fixture.grey)))
    assert np.allclose(grey[..., 0], grey[..., 1]) and np.allclose(grey[..., 1], grey[..., 2])
    # ... and the 8 kHz WAV resampled to 16 kHz by both caption configs
    for config, path in CAPTION_STORES.items():
        line = rf"resampled 1 of 71 file\(s\) to 16000 Hz \(features\.{config}\.sample_rate\): 1 from 8000 Hz"
        assert re.search(line, out), out[-6000:]
        s = FeatureStore(proj / path)
        assert len(s) == 71 and s.dim == 40 and s.attrs["sample_rate"] == 16000
        assert s.attrs["resampled_from"] == {"8000": 1}

    # the instance pairs: the 35 usable images, train / val / test 15 / 10 / 10, image + en
    import zarr

    for name in PAIRS.values():
        root = zarr.open_group(str(proj / "data" / "pairs" / f"{name}.zarr"), mode="r")
        shapes = {split: root[f"{split}/tuples"].shape for split in ("train", "val", "test")}
        assert shapes == {"train": (1, 15, 2), "val": (1, 10, 2), "test": (1, 10, 2)}, (name, shapes)


def test_mortazavi2020_paper_structures_to_its_report(built):
    """DenseNet-264 on 3 channels + the G2 d=1024 speech embedder on 40 MFCCs, trained, exported,
    evaluated and reported."""
    proj = built["proj"]
    check_stages_ran(built, FOUNDATION | MORTAZAVI)
    assert re.search(rf"mortazavi2020/{MORTAZAVI_RUN}: G2 d=1024, 2 steps, .*\(profile paper\)", built["out"])
    state = trained_state(proj / "data" / "models" / "mortazavi2020" / MORTAZAVI_RUN)
    key, conv = first_weight(state, "image.", 4)
    assert conv[1] == 3, (key, conv)
    key, speech = first_weight(state, "speech.", 3)   # the speech conv over the 40 MFCC coefficients
    assert speech[1] == 40, (key, speech)
    assert 30_000_000 < sum(v.numel() for k, v in state.items() if k.startswith("image.")) < 40_000_000  # DenseNet-264
    check_report(proj, "mortazavi2020", MORTAZAVI_RUN)


def test_crabtree2021_paper_structures_trained_exported_evaluated(built):
    """ResNet-50 on 3 channels + the paper ResDAVEnet on 40 log-mels, up to the evaluation."""
    proj = built["proj"]
    check_stages_ran(built, FOUNDATION | CRABTREE | {"crabtree2021-pretrain"})
    note = json.loads((proj / "data" / "models" / "crabtree2021-pretrain" / "pretrain.json").read_text())
    assert note["used"] is False and "scratch" in note["why"]       # the paper profile: ImageNet's place, empty
    state = trained_state(proj / "data" / "models" / "crabtree2021" / CRABTREE_RUN)
    key, conv = first_weight(state, "image.", 4)
    assert conv[1] == 3, (key, conv)
    key, speech = first_weight(state, "speech.", 3)   # ResDAVEnet's 1x1 stem conv over the 40 mel bins
    assert speech[1] == 40, (key, speech)
    assert 25_000_000 < sum(v.numel() for k, v in state.items() if k.startswith("image.")) < 27_000_000  # ResNet-50
    assert json.loads((proj / "data" / "eval" / "crabtree2021" / f"{CRABTREE_RUN}.json").read_text())


def test_crabtree2021_report_with_one_caption_language(built):
    """The report runs with one caption language (no cross-lingual pair: those cells are n/a). With
    one run of the 24, the thesis tables that rest on the others (table3_1.csv, ...) are not
    written, and DVC then refuses the stage for those declared outputs: that, and only that, may
    fail it here."""
    out = built["out"]
    assert "crabtree2021-report" in ran(out), out[-8000:]
    results = built["proj"] / "results" / "crabtree2021"
    if stage_failed(out, "crabtree2021-report"):        # DVC under --keep-going prints no reason
        assert (results / "report.md").exists() and not (results / "table3_1.csv").exists(), out[-8000:]
    assert "cross-lingual n/a" in out
    check_report(built["proj"], "crabtree2021", CRABTREE_RUN)
