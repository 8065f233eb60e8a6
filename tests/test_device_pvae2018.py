"""pvae2018 under the one device rule (vgs/train/device.py).

The training step, the export and the evaluation give the same numbers on the CPU in fp32 and on
the compute that `train.device: auto` picks (the CPU here, bit for bit; a GPU within float
tolerance); on a GPU the model, the batches and the loss sit on CUDA; a checkpoint written by a
run resumes under another map location.
"""
import numpy as np
import pytest
import torch

from tiny_runs import tiny_pvae
from vgs.methods.pvae2018 import train as pvae_train
from vgs.methods.pvae2018.config import load_run_config
from vgs.methods.pvae2018.data import DigitData, stats_from_model
from vgs.methods.pvae2018.evaluate import evaluate_model, load_eval_config
from vgs.methods.pvae2018.export import export_split
from vgs.methods.pvae2018.inference import load_trained
from vgs.params import Params
from vgs.store.embeddings import read_embeddings
from vgs.train.device import Compute, compute_from_params, place_modules, using
from vgs.train.trainer import load_checkpoint

CPU_FP32 = Compute(torch.device("cpu"), "fp32")
LR = 1e-2
MODEL = "pvae"      # the full objective: ELBO, coherence and the contrastive negatives


def auto_compute() -> Compute:
    return compute_from_params(Params({"profile": "cpu", "train": {"device": "auto"}}))


def assert_same(a, b, compute: Compute, atol: float) -> None:
    """Bit-identical on the CPU; within `atol` where the other compute is a GPU (TF32, cuDNN)."""
    a, b = np.asarray(a), np.asarray(b)
    if compute.device.type == "cpu":
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=atol)


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    """Digit-coded 8x8 images and 6-bin log-mel 'utterances' with silent edges; 10 classes."""
    monkeypatch.chdir(tmp_path)
    return tiny_pvae(tmp_path, epochs=2, lr=LR, val_every=0, inertia_max_k=4, cpu_profile={},
                     models={MODEL: {"kind": "pvae", "contrastive_weight": 5.0, "kernel_gamma": 0.5, "margin": 0.5}})


def one_training_step(params: Params, compute: Compute) -> tuple[dict, dict]:
    """Logs and weights (on the CPU) after the first step of epoch 0 under `compute`."""
    cfg = load_run_config(params, MODEL)
    with using(compute):
        task = pvae_train.PVAETask(cfg, DigitData(cfg.data))
        place_modules(task, compute)          # what the Trainer does before its first step
        task.start_epoch(0)
        logs = task.train_step(0, 0)
    return logs, {k: v.detach().cpu() for k, v in task.model.state_dict().items()}


def export_and_evaluate(params: Params, run_dir, out_dir, compute: Compute) -> dict:
    """What the export and evaluate stages do with a trained run, under `compute`."""
    with using(compute):
        model, ck = load_trained(run_dir)
        data = DigitData(load_run_config(params, MODEL).data)
        data.stats = stats_from_model(model)
        out_dir.mkdir(parents=True)
        with torch.no_grad():
            for split in ("val", "test"):
                export_split(model, data, split, out_dir / f"{split}.h5", {"run": MODEL})
        return evaluate_model(out_dir, load_eval_config(params), seed=params.int("seed"))


def test_training_export_and_evaluation_match_on_the_cpu_and_on_the_auto_device(tiny, tmp_path):
    auto = auto_compute()
    cpu_logs, cpu_weights = one_training_step(tiny, CPU_FP32)
    auto_logs, auto_weights = one_training_step(tiny, auto)
    assert cpu_logs.keys() == auto_logs.keys() and "contrastive" in cpu_logs
    for key in cpu_logs:
        assert_same(cpu_logs[key], auto_logs[key], auto, atol=1e-3)
    for name in cpu_weights:
        # Adam's first step moves each weight by at most about lr, whatever the device's rounding.
        assert_same(cpu_weights[name], auto_weights[name], auto, atol=2.1 * LR)

    with using(CPU_FP32):
        pvae_train.train_run(load_run_config(tiny, MODEL), tmp_path / "run", progress=False)
    on_cpu = export_and_evaluate(tiny, tmp_path / "run", tmp_path / "emb-cpu", CPU_FP32)
    on_auto = export_and_evaluate(tiny, tmp_path / "run", tmp_path / "emb-auto", auto)
    for split in ("val", "test"):
        a, b = read_embeddings(tmp_path / "emb-cpu" / f"{split}.h5"), read_embeddings(tmp_path / "emb-auto" / f"{split}.h5")
        for view in ("audio", "image"):
            for key in ("z_s_mean", "z_s_logvar", "z_a_mean" if view == "audio" else "z_i_mean"):
                assert_same(a[view][key], b[view][key], auto, atol=1e-3)
    for split, table in on_cpu["purity"].items():
        for view, latents in table.items():
            for latent, purity in latents.items():
                if auto.device.type == "cpu":
                    assert on_auto["purity"][split][view][latent] == purity
                else:
                    assert on_auto["purity"][split][view][latent] == pytest.approx(purity, abs=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch sees none here")
def test_on_a_gpu_the_model_the_batches_and_the_loss_sit_on_cuda(tiny, tmp_path, monkeypatch):
    compute = Compute(torch.device("cuda"), "bf16" if torch.cuda.is_bf16_supported() else "fp32")
    objective = pvae_train.objective
    seen = []

    def recording_objective(model, batch, weights, generator=None):
        loss, logs = objective(model, batch, weights, generator)
        seen.append((next(model.parameters()).device, batch["audio"].device, batch["audio_lengths"].device,
                     batch["image"].device, loss.device))
        return loss, logs

    monkeypatch.setattr(pvae_train, "objective", recording_objective)
    with using(compute):
        summary = pvae_train.train_run(load_run_config(tiny, MODEL), tmp_path / "run", progress=False)
        model, _ = load_trained(tmp_path / "run")
        assert all(p.device.type == "cuda" for p in model.parameters())
    assert summary["complete"] and seen
    assert all(device.type == "cuda" for step in seen for device in step)
    result = export_and_evaluate(tiny, tmp_path / "run", tmp_path / "emb", compute)
    assert 0 < result["purity"]["test"]["audio"]["z_s"] <= 1


def test_a_killed_run_resumes_under_another_map_location(tiny, tmp_path):
    """The checkpoint loads onto the CPU (map_location) whatever wrote it; resuming it under the
    auto device ends at the weights of an uninterrupted run (CPU -> CPU is all CI can check)."""
    cfg = load_run_config(tiny, MODEL)
    data = DigitData(cfg.data)
    with using(CPU_FP32):
        pvae_train.train_run(cfg, tmp_path / "reference", data=data, progress=False)
        with pytest.raises(KeyboardInterrupt):
            pvae_train.train_run(cfg, tmp_path / "killed", data=data, progress=False, stop_after_steps=7)  # mid epoch 2
    ck = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert not ck["finished"] and all(t.device.type == "cpu" for t in ck["task"]["model"].values())
    auto = auto_compute()
    with using(auto):
        resumed = pvae_train.train_run(cfg, tmp_path / "killed", data=data, progress=False)
    assert resumed["resumed"]
    reference, _ = load_trained(tmp_path / "reference")
    again, _ = load_trained(tmp_path / "killed")
    for (name, x), y in zip(reference.state_dict().items(), again.state_dict().values()):
        assert_same(x, y.cpu(), auto, atol=0.1)
