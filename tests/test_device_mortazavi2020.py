"""Mortazavi 2020 on `vgs.train.device.current()`: training, export and evaluation give the same
results on the CPU in fp32 and on what `train.device: auto` picks (the CPU here; a GPU where there
is one, within float tolerance), the model, its batches and its loss sit on CUDA when asked, and a
checkpoint resumes under another compute."""
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tiny_runs import mortazavi_params, write_mortazavi_pairs
from vgs.methods.mortazavi2020 import train as train_module
from vgs.methods.mortazavi2020.config import load_run_config
from vgs.methods.mortazavi2020.evaluate import evaluate_run
from vgs.methods.mortazavi2020.export import export_run
from vgs.methods.mortazavi2020.train import MortazaviTask, encode_tuples, load_views, train_run
from vgs.params import Params
from vgs.train.device import Compute, compute_from_params, place_modules, using

CPU = Compute(torch.device("cpu"), "fp32")
AUTO = compute_from_params(Params({"train": {"device": "auto"}}, "", "test params"))
CUDA_MISSING = "torch sees no CUDA device"


def _cfg(epochs: int = 1):
    """dg2a1024 at test size: no warm restart, 2 steps an epoch."""
    return load_run_config(mortazavi_params(epochs), "dg2a1024")


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_mortazavi_pairs(tmp_path)
    return tmp_path


def _assert_same(a, b, compute: Compute):
    """Bit-identical on the CPU; on a GPU the kernels differ, so within float tolerance."""
    a, b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
    if compute.device.type == "cpu":
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a.float(), b.float(), atol=5e-2, rtol=5e-2)


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["task"]["pair"]


def _embeddings(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {view: f[view]["embedding"][:] for view in ("image", "en")}


def _train_export_evaluate(cfg, views, root: Path, compute: Compute) -> dict:
    with using(compute):
        train_run(cfg, views, progress=False, run_dir=root / "model")
        export_run(cfg, out_dir=root / "emb", run_dir=root / "model", views=views)
        result = evaluate_run(cfg, in_dir=root / "emb", out_path=root / "eval.json")
    return {"weights": _weights(root / "model"), "test": _embeddings(root / "emb" / "test.h5"),
            "val": _embeddings(root / "emb" / "val.h5"), "recall": result["recall"]}


def test_cpu_and_auto_device_give_the_same_run(tiny):
    cfg = _cfg()
    views = load_views(cfg)
    cpu = _train_export_evaluate(cfg, views, tiny / "cpu", CPU)
    auto = _train_export_evaluate(cfg, views, tiny / "auto", AUTO)
    assert cpu["weights"].keys() == auto["weights"].keys()
    for name in cpu["weights"]:
        _assert_same(cpu["weights"][name], auto["weights"][name], AUTO)
    for split in ("val", "test"):
        for view in ("image", "en"):
            assert auto[split][view].dtype == np.float32
            _assert_same(cpu[split][view], auto[split][view], AUTO)
    if AUTO.device.type == "cpu":
        assert cpu["recall"] == auto["recall"]
    else:   # recall ranks near-ties, which float differences may swap: only its shape must agree
        assert cpu["recall"].keys() == auto["recall"].keys() and cpu["recall"]["n"] == auto["recall"]["n"]


def test_a_checkpoint_resumes_under_another_compute(tiny):
    """Killed mid epoch 2 on the CPU, resumed on what `auto` picks (checkpoints load onto the CPU
    and are copied to the module's device): the same weights as an uninterrupted CPU run."""
    cfg = _cfg(epochs=2)
    views = load_views(cfg)
    with using(CPU):
        train_run(cfg, views, progress=False, run_dir=tiny / "ref")
        with pytest.raises(KeyboardInterrupt):
            train_run(cfg, views, progress=False, stop_after_steps=3, run_dir=tiny / "killed")
    with using(AUTO):
        resumed = train_run(cfg, views, progress=False, run_dir=tiny / "killed")
    assert resumed["resumed"]
    ref, killed = _weights(tiny / "ref"), _weights(tiny / "killed")
    for name in ref:
        _assert_same(ref[name], killed[name], AUTO)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_MISSING)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_model_batches_and_loss_sit_on_cuda(tiny, monkeypatch, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU does not support bfloat16")
    cfg = _cfg()
    views = load_views(cfg)
    compute = Compute(torch.device("cuda"), precision)
    seen = {}

    def hinge(image_emb, caption_emb, margin):
        loss = real_hinge(image_emb, caption_emb, margin=margin)
        seen.update(image_emb=image_emb.device, caption_emb=caption_emb.device, loss=loss.device)
        return loss

    real_hinge = train_module.hinge_all_pairs
    monkeypatch.setattr(train_module, "hinge_all_pairs", hinge)
    with using(compute):
        task = MortazaviTask(cfg, views)
        place_modules(task, compute)
        real_embed_images, real_embed_captions = task.pair.embed_images, task.pair.embed_captions

        def embed_images(images):
            seen["images"] = images.device
            return real_embed_images(images)

        def embed_captions(frames, lengths):
            seen["frames"] = frames.device
            return real_embed_captions(frames, lengths)

        monkeypatch.setattr(task.pair, "embed_images", embed_images)
        monkeypatch.setattr(task.pair, "embed_captions", embed_captions)
        task.start_epoch(0)
        row = task.train_step(0, 0)
        image_emb, caption_emb = encode_tuples(task.pair, views, cfg.data.caption_view, task.val_tuples, 4)
    assert all(p.device.type == "cuda" for p in task.pair.parameters())
    assert {name: device.type for name, device in seen.items()} == {
        "images": "cuda", "frames": "cuda", "image_emb": "cuda", "caption_emb": "cuda", "loss": "cuda"}
    assert np.isfinite(row["loss"])
    assert image_emb.dtype == caption_emb.dtype == np.float32 and np.isfinite(image_emb).all()
    assert all(s["exp_avg"].device.type == "cuda" for s in task.optimizer.state.values())
