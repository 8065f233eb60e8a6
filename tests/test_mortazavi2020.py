"""Mortazavi 2020: schedules from params, a tiny end-to-end run (train, export, evaluate, report),
resume after a kill to identical weights. Table 1's counts, the speech embedder's padding invariance
and the hinge loss against a brute-force loop are tested with the shared blocks
(tests/test_retrieval_encoders.py, tests/test_retrieval_losses.py)."""
import dataclasses
import json

import pytest
import torch

from tiny_runs import mortazavi_params, write_mortazavi_pairs
from vgs.errors import CheckpointError, ParamError
from vgs.methods.mortazavi2020.config import load_run_config
from vgs.methods.mortazavi2020.evaluate import evaluate_run
from vgs.methods.mortazavi2020.export import export_run
from vgs.methods.mortazavi2020.model import build_pair, input_sizes
from vgs.methods.mortazavi2020.report import build_report, check_claims
from vgs.methods.mortazavi2020.train import load_views, make_scheduler, train_run
from vgs.pairing.batch_loader import LoaderSettings
from vgs.params import Params
from vgs.report.metrics import flatten_headline
from vgs.report.render import render


def _params(overrides: dict | None = None) -> Params:
    return mortazavi_params(epochs=2, run_overrides={"dg3a1024": overrides or {}})


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_mortazavi_pairs(tmp_path)
    return tmp_path


def test_schedules_come_from_params():
    cfg = load_run_config(_params(), "dg3a1024")
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    kinds = {"calr": torch.optim.lr_scheduler.CosineAnnealingLR,
             "calwr": torch.optim.lr_scheduler.CosineAnnealingWarmRestarts,
             "cylr": torch.optim.lr_scheduler.CyclicLR}
    for name, kind in kinds.items():
        c = load_run_config(_params({"train": {"schedule": name}}), "dg3a1024")
        assert c.train.schedule == name
        assert isinstance(make_scheduler(opt, c, steps_per_epoch=10, epochs=3), kind)
    # CALWR with T_0 = 1 epoch and T_mult 2 restarts after 1, 3, 7 epochs, as the paper describes.
    c = load_run_config(_params({"train": {"schedule": "calwr"}}), "dg3a1024")
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, c, steps_per_epoch=4, epochs=8)
    lrs = []
    for _ in range(4 * 7 + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [i for i in range(1, len(lrs)) if lrs[i] > lrs[i - 1]] == [4, 12, 28]
    with pytest.raises(ParamError, match="schedule"):
        load_run_config(_params({"train": {"schedule": "step"}}), "dg3a1024")
    with pytest.raises(ParamError, match="dim_divisor"):
        load_run_config(_params({"dim": 1000}), "dg3a1024")


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["task"]["pair"]


def test_tiny_run_end_to_end_and_resume_after_kill(tiny):
    cfg = load_run_config(_params({"restart": {"epochs": 1, "lr_factor": 0.5}}), "dg3a1024")
    assert cfg.model.dim == 32 and cfg.total_epochs == 3
    views = load_views(cfg)
    ref = train_run(cfg, views, progress=False, run_dir=tiny / "ref")
    assert ref["steps"] == 3 * 2   # 8 train datapoints, batch 4, 3 epochs
    # The killed run streams its batches through two reading processes: the weights must not notice.
    streaming = LoaderSettings(in_memory=False, num_workers=2)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, progress=False, stop_after_steps=3, run_dir=tiny / "killed", loading=streaming)   # mid epoch 2
    with pytest.raises(CheckpointError, match="unfinished"):
        export_run(cfg, out_dir=tiny / "x", run_dir=tiny / "killed", views=views)
    resumed = train_run(cfg, progress=False, run_dir=tiny / "killed", loading=streaming)
    assert resumed["resumed"]
    a, b = _weights(tiny / "ref"), _weights(tiny / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    task = resumed["task"]
    assert task.phase == "restart" and task.best["epoch"] in (0, 1, 2)

    export_run(cfg, out_dir=tiny / "emb", run_dir=tiny / "ref", views=views)
    result = evaluate_run(cfg, in_dir=tiny / "emb", out_path=tiny / "eval" / "dg3a1024.json")
    assert result["test_pairs"] == 10 and result["oracle"] is None
    assert 0 <= result["recall"]["avgR1"] <= 1 and result["recall"]["a2b_R10"] == 1.0   # 10 candidates, k=10
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    assert result["history"][-1]["phase"] == "restart"

    report = build_report([cfg], out_dir=tiny / "results", eval_dir=tiny / "eval")
    render(report, tiny / "results")
    table1 = (tiny / "results" / "table1.csv").read_text().splitlines()
    assert table1[1].startswith("DG4A2048,\"paper") and table1[1].endswith(",True")
    assert sum(",True" in line for line in table1) == 5
    table2 = (tiny / "results" / "table2.csv").read_text()
    assert "DG3A1024" in table2 and "oracle" in table2 and "tiny test corpus" in table2
    metrics = json.loads((tiny / "results" / "metrics.json").read_text())
    assert metrics["dg3a1024"]["i2s_R10"] == 1.0 and metrics["dg3a1024-restart"]["i2s_R10"] == 1.0
    flatten_headline(metrics)   # the shared headline check: flat numbers, within the bound
    assert "runs" in json.loads((tiny / "results" / "details.json").read_text())
    assert result["base"]["best_epoch"] in (1, 2) and result["base"]["train_wall_seconds"] > 0
    schedules = (tiny / "results" / "schedules.csv").read_text()
    assert "dg3a1024,CALR," in schedules and "dg3a1024-restart,CALR + one warm restart" in schedules
    assert (tiny / "results" / "figure2.png").stat().st_size > 0
    assert (tiny / "results" / "figure2.csv").read_text().startswith("run,epoch,val_i2s_R10")
    text = (tiny / "results" / "report.md").read_text()
    assert "n/a" in text and "![validation R@10 per epoch](figure2.png)" in text and "| all runs |" in text
    # One run of the seven: claims 2 and 3 need runs that were not evaluated, and stay in their place.
    assert [c.verdict for c in report.claims][1:3] == ["untested", "untested"]
    assert metrics["claims"]["4_a_warm_restart_improves"] in (0, 1) and len(metrics["claims"]) == 4


def test_claims_read_the_numbers():
    def ev(r10, phase="base", base=None):
        return {"recall": {"avgR10": r10}, "test_pairs": 1000, "dim": 128, "best_phase": phase, "best_epoch": 4,
                "val_avgR10": r10, "timing": {"train_wall_seconds": 60.0},
                "base": None if base is None else {"recall": {"avgR10": base}, "best_epoch": 4, "val_avgR10": base,
                                                   "train_wall_seconds": 50.0}}
    # dg3a1024 carries the restart: its first phase (0.6) is the Table 2 value, the whole run 0.65.
    good = {"dg4a2048": ev(0.5), "dg4a1024": ev(0.4), "dg3a1024": ev(0.65, "restart", base=0.6), "dg2a2048": ev(0.45),
            "dg2a1024": ev(0.47)}
    assert [c.verdict for c in check_claims(good)] == ["holds"] * 4
    assert "0.600 (CALR) -> 0.650" in check_claims(good)[3].ours
    assert check_claims(good)[3].paper == "+1.5 to +10 points of R@10 (section 5.2)"
    assert [c.rule for c in check_claims(good)] == ["at least 5x chance R@10", "G3 strictly above both",
                                                    "loss at most 0.05", "higher test R@10 after the restart"]
    bad = {**good, "dg3a1024": ev(0.2, "base", base=0.3), "dg2a1024": ev(0.04)}
    assert [c.verdict for c in check_claims(bad)] == ["does not hold"] * 4
    assert [c.verdict for c in check_claims({"dg4a2048": ev(0.5)})] == ["holds", "untested", "untested", "untested"]


def test_input_sizes_come_from_the_stores(tiny):
    cfg = load_run_config(_params(), "dg3a1024")
    views = load_views(cfg)
    sizes = input_sizes(cfg, views)
    # The caption store records its feature width (40 MFCC coefficients here); the image store is grey.
    assert sizes.caption_features == views.stores["en"].dim == 40 and sizes.image_channels == 1
    pair = build_pair(cfg.model, sizes)
    assert pair.speech.in_features == 40
    rgb = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, in_channels=3))
    with pytest.raises(ParamError, match=r"mortazavi2020\.model\.in_channels = 3 .*image store .*has 1 channel"):
        input_sizes(rgb, views)


def test_params_yaml_keys_are_required():
    """params.yaml gives every key but conv_channels; the reader keeps no second default."""
    raw = _params().to_dict()
    del raw["mortazavi2020"]["train"]["margin"]
    with pytest.raises(ParamError, match=r"mortazavi2020\.train\.margin is missing"):
        load_run_config(Params(raw, "", "test params"), "dg3a1024")
