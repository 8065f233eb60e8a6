"""Training stages never keep stale weights: real `dvc repro` runs of the cheapest real training
stage (leidal2017-train, tiny sizes) in a tiny DVC project built from the repo's own stages.

The rule under test (vgs/train/provenance.py): when DVC runs a training stage, a finished
checkpoint is never reused; an interrupted one is resumed only when the configuration, every code
dependency dvc.yaml lists for the stage and the input stores are unchanged.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from dag_project import FOUNDATION_STAGES, copy_sources, dvc, make_corpora, ran

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
STAGE = "leidal2017-train@ig0"
RUN_DIR = Path("data/models/leidal2017/ig0")
MODEL_PY = Path("vgs/methods/leidal2017/model.py")
LOSS_LINE = "    total = sim + lambda_ig * ig + lambda_wd * wd"


def make_project(proj: Path) -> None:
    proj.mkdir()
    copy_sources(proj, (*FOUNDATION_STAGES, "run"))
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    dvc_yaml["stages"] = {k: v for k, v in dvc_yaml["stages"].items()
                          if k in (*FOUNDATION_STAGES, "leidal2017-train")}
    (proj / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dag"]["fetch"] = []
    params["dag"]["prepare"] = ["mnist", "fsdd"]
    params["corpora"]["mnist"]["val_size"] = 10
    params["corpora"]["fsdd"]["val_fraction"] = 0.34
    params["feature_sets"] = {k: params["feature_sets"][k] for k in ("mnist-image28", "fsdd-fbank80")}
    pairing = params["pairing"]["mnist-fsdd"]
    pairing["epochs"] = {"train": 2, "val": 1, "test": 1}
    params["pairing"] = {"mnist-fsdd": pairing}
    leidal = params["leidal2017"]
    leidal["model"] = {"z_dim": 8, "num_frames": 20}
    # 40 epochs of 2 batches, a checkpoint at every epoch end: long enough to be killed mid-run.
    leidal["train"].update(num_samples=2, batch_pairs=8, lr=1e-3, epochs=40, pairs_per_epoch=16, val_pairs=0,
                           num_threads=1, precision="fp32")
    leidal["profiles"] = {"paper": {}, "cpu": {}}
    leidal["runs"] = {"ig0": {"lambda_ig": 0.01}}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    make_corpora(proj / "data")


def resumed(output: str) -> bool:
    return re.search(r"^resuming data/models/leidal2017/ig0 at epoch", output, flags=re.M) is not None


def weights(proj: Path) -> dict:
    return torch.load(proj / RUN_DIR / "checkpoint.pt", weights_only=True)["task"]["model"]


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def log_rows(proj: Path) -> list[dict]:
    """The training log without its timings."""
    rows = [json.loads(line) for line in (proj / RUN_DIR / "train_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]


def repro_killed_mid_training(proj: Path) -> None:
    """`dvc repro -f` of the train stage, SIGKILLed (dvc and the stage together) mid-run."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(proj), TQDM_DISABLE="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro", "-f", "-s", STAGE], cwd=proj,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = proj / RUN_DIR / "checkpoint.pt"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "training finished before it could be killed"
            if checkpoint.exists():
                try:
                    ck = torch.load(checkpoint, weights_only=True)
                except Exception:   # replaced while being read
                    continue
                if not ck["finished"] and ck["epoch"] >= 3:
                    break
            time.sleep(0.02)
        else:
            pytest.fail("no mid-run checkpoint within 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not torch.load(checkpoint, weights_only=True)["finished"]


def test_training_stage_retrains_unless_resuming_an_unchanged_interrupted_run(tmp_path):
    proj = tmp_path / "proj"
    make_project(proj)
    dvc(proj, "init", "--no-scm", "-q")
    first = dvc(proj, "repro")
    assert STAGE in ran(first), first
    reference, reference_log = weights(proj), log_rows(proj)
    assert ran(dvc(proj, "repro")) == set()   # nothing changed: DVC runs nothing

    # `dvc repro -f` retrains from scratch, to the same weights (determinism), with a fresh log.
    forced = dvc(proj, "repro", "-f", "-s", STAGE)
    assert "from a finished run" in forced and not resumed(forced), forced
    assert same(weights(proj), reference) and log_rows(proj) == reference_log

    # SIGKILL mid-training, then `dvc repro`: resumed, bit-identical weights.
    repro_killed_mid_training(proj)
    again = dvc(proj, "repro")
    assert STAGE in ran(again) and resumed(again), again
    assert same(weights(proj), reference)

    # SIGKILL, then a code change: no resume; one line names the changed file; new weights.
    repro_killed_mid_training(proj)
    model_py = proj / MODEL_PY
    original = model_py.read_text()
    assert LOSS_LINE in original
    model_py.write_text(original.replace(LOSS_LINE, "    total = 2.0 * sim + lambda_ig * ig + lambda_wd * wd"))
    changed = dvc(proj, "repro")
    assert STAGE in ran(changed), changed
    assert not resumed(changed) and f"changed: {MODEL_PY}" in changed, changed
    assert not same(weights(proj), reference)
    assert log_rows(proj)[0]["epoch"] == 0 and log_rows(proj)[0]["batch"] == 0
    assert len(log_rows(proj)) == len(reference_log)

    # A code change after a finished run (the first reproduction): retrained, not kept.
    # Reverting the change trains back to exactly the reference weights.
    model_py.write_text(original)
    reverted = dvc(proj, "repro")
    assert STAGE in ran(reverted) and "from a finished run" in reverted, reverted
    assert same(weights(proj), reference)

    # SIGKILL, then a rebuilt input store (another pairing): no resume.
    repro_killed_mid_training(proj)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["pairing"]["mnist-fsdd"]["epochs"]["train"] = 3
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rebuilt = dvc(proj, "repro")
    assert {"pairs@mnist-fsdd", STAGE} <= ran(rebuilt), rebuilt
    assert not resumed(rebuilt) and "changed: data/pairs/mnist-fsdd.zarr" in rebuilt, rebuilt
    # At most one set-aside checkpoint per run, outside the stage's output.
    assert [p.name for p in (proj / RUN_DIR).parent.glob("*.pt")] == ["ig0.set-aside.pt"]
    assert not list((proj / RUN_DIR).glob("*.pt"))[1:]
