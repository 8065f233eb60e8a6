"""Crabtree 2021 on `vgs.train.device.current()`: training, export and evaluation give the same
numbers under the explicit CPU and under `train: {device: auto}` (the CPU here, a GPU where there is
one, where the comparison is within float tolerance); on a GPU the model, a batch and the loss sit
on it; a checkpoint resumes under another map location."""
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_runs import CRABTREE_VIEWS as VIEWS, crabtree_params, write_crabtree_pairs
from vgs.methods.crabtree2021.config import load_run_config
from vgs.methods.crabtree2021.evaluate import evaluate_run
from vgs.methods.crabtree2021.export import export_run
from vgs.methods.crabtree2021.train import CrabtreeTask, batch_loss, load_views, train_run
from vgs.params import Params
from vgs.store.embeddings import read_embeddings
from vgs.train.device import Compute, compute_from_params, using


def _params(pairs: str, run: dict) -> Params:
    return crabtree_params(pairs, {"x": run})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_crabtree_pairs(tmp_path_factory.mktemp("crabtree_device"))


def _auto() -> Compute:
    return compute_from_params(Params({"train": {"device": "auto", "precision": "fp32"}}, "", "test params"))


def _train_export_evaluate(cfg, out: Path) -> tuple[dict, dict, dict]:
    views = load_views(cfg)
    train_run(cfg, views, progress=False, run_dir=out / "model")
    export_run(cfg, out_dir=out / "emb", run_dir=out / "model", views=views)
    result = evaluate_run(cfg, in_dir=out / "emb", out_path=out / "eval.json")
    weights = torch.load(out / "model" / "checkpoint.pt", weights_only=True)["task"]["model"]
    embeddings = {v: read_embeddings(out / "emb" / "test.h5", VIEWS)[v]["embedding"] for v in VIEWS}
    return weights, embeddings, result["recall"]


# Triplet with MHSA: random imposters and dropout both draw random numbers on the compute's device.
@pytest.mark.parametrize("run", [{}, {"loss": {"name": "triplet"}, "model": {"pooling": "mhsa"}}],
                         ids=["baseline", "triplet-mhsa"])
def test_cpu_and_auto_compute_give_the_same_run(tiny, tmp_path, run):
    cfg = load_run_config(_params(tiny, run), "x")
    with using(Compute(torch.device("cpu"), "fp32")):
        cpu = _train_export_evaluate(cfg, tmp_path / "cpu")
    auto = _auto()
    with using(auto):
        other = _train_export_evaluate(cfg, tmp_path / "auto")
    exact = auto.device.type == "cpu"
    for a, b in zip(cpu[0].values(), other[0].values()):
        assert torch.equal(a, b) if exact else torch.allclose(a.float(), b.float(), atol=1e-3)
    for view in VIEWS:
        assert np.array_equal(cpu[1][view], other[1][view]) if exact else np.allclose(cpu[1][view], other[1][view],
                                                                                       atol=1e-3)
    if exact:
        assert cpu[2] == other[2]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch sees none here")
def test_model_batch_and_loss_sit_on_cuda(tiny, tmp_path):
    cfg = load_run_config(_params(tiny, {"loss": {"name": "triplet"}}), "x")
    views = load_views(cfg)
    compute = Compute(torch.device("cuda"), "fp32")
    with using(compute):
        task = CrabtreeTask(cfg, views)
        task.model.to(compute.device)
        assert all(p.is_cuda for p in task.model.parameters())
        rows = task.train_tuples[:4]
        caption = compute.to(views.captions("en", rows[:, 1]))
        assert caption.frames.is_cuda and caption.lengths.is_cuda and compute.to(views.images(rows[:, 0])).is_cuda
        task.start_epoch(0)
        stats = task.train_step(0, 0)
        assert np.isfinite(stats["loss"])
        loss = batch_loss(task.model, cfg, views, rows, step=0,
                          generator=torch.Generator(device=compute.device).manual_seed(0))
        assert loss.is_cuda
        # A whole run on the GPU: the trainer places the task, export reads the embeddings back to numpy.
        train_run(cfg, views, progress=False, run_dir=tmp_path / "model")
        export_run(cfg, out_dir=tmp_path / "emb", run_dir=tmp_path / "model", views=views)


def test_a_checkpoint_resumes_under_another_map_location(tiny, tmp_path):
    cfg = load_run_config(_params(tiny, {}), "x")
    views = load_views(cfg)
    with using(Compute(torch.device("cpu"), "fp32")):
        ref = train_run(cfg, views, progress=False, run_dir=tmp_path / "ref")
        with pytest.raises(KeyboardInterrupt):
            train_run(cfg, views, progress=False, stop_after_steps=3, run_dir=tmp_path / "killed")
    # The checkpoint always loads onto the CPU; the resumed task then computes wherever auto says.
    with using(_auto()):
        resumed = train_run(cfg, views, progress=False, run_dir=tmp_path / "killed")
    assert resumed["resumed"] and resumed["steps"] == ref["steps"]
    a = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True, map_location="cpu")["task"]["model"]
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True, map_location="cpu")["task"]["model"]
    exact = _auto().device.type == "cpu"
    assert all(torch.equal(a[k], b[k]) if exact else torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)
