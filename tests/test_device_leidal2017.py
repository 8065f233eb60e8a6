"""Leidal et al. 2017 under the one device rule (vgs/train/device.py): training, export and
evaluation give the CPU's numbers under the compute that `train.device: auto` resolves to on a
machine without a GPU, run on CUDA where one exists, and a checkpoint resumes under another compute."""
import numpy as np
import pytest
import torch

from vgs.methods.leidal2017.data import LeidalData
from vgs.methods.leidal2017.evaluate import evaluate_run
from vgs.methods.leidal2017.export import export_run, load_trained
from vgs.methods.leidal2017.model import leidal_loss
from vgs.methods.leidal2017.train import LeidalTask, train_run
from vgs.params import Params
from vgs.store.embeddings import read_embeddings
from vgs.train.device import Compute, compute_from_params, place_modules, using
from tiny_runs import tiny_leidal_run

CPU_FP32 = Compute(torch.device("cpu"), "fp32")


def auto_compute() -> Compute:
    return compute_from_params(Params({"train": {"device": "auto"}}))


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    """10 classes of 8x8 'images' and 6-bin 'utterances', paired; a 3-epoch, 9-step run."""
    monkeypatch.chdir(tmp_path)
    return tiny_leidal_run(tmp_path)


def _weights(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["task"]["model"]


def _train_export_evaluate(cfg, compute: Compute, out) -> dict:
    with using(compute):
        summary = train_run(cfg, progress=False, run_dir=out / "run")
        export_run(cfg, run_dir=out / "run", out_path=out / "emb.h5", progress=False)
        metrics = evaluate_run(cfg, in_path=out / "emb.h5", out_path=out / "eval.json")
    val_logs = [{k: v for k, v in r.items() if k.startswith("val_")} for r in summary["trainer"].history
                if r.get("end")]
    return {"weights": _weights(out / "run"), "embeddings": read_embeddings(out / "emb.h5"),
            "metrics": {k: metrics[k] for k in ("purity", "svm_acc")}, "val_logs": val_logs}


def test_train_export_evaluate_give_the_cpu_numbers_under_the_auto_compute(tiny, tmp_path):
    cpu = _train_export_evaluate(tiny, CPU_FP32, tmp_path / "cpu")
    compute = auto_compute()
    auto = _train_export_evaluate(tiny, compute, tmp_path / "auto")
    assert cpu["weights"].keys() == auto["weights"].keys()
    assert all(w.device.type == "cpu" for w in auto["weights"].values())  # checkpoints are device-free
    if compute.device.type != "cpu":
        # Another device sums in another order and draws its noise from its own generator: the
        # same run, not the same bits.
        assert all(np.isfinite(v) for v in auto["metrics"].values())
        return
    assert all(torch.equal(cpu["weights"][k], auto["weights"][k]) for k in cpu["weights"])
    assert cpu["val_logs"] == auto["val_logs"] and len(cpu["val_logs"]) == 3
    for view in ("image", "audio"):
        for key in ("mean", "logvar", "samples"):
            np.testing.assert_array_equal(cpu["embeddings"][view][key], auto["embeddings"][view][key])
    assert cpu["metrics"] == auto["metrics"]


def test_a_checkpoint_resumes_under_another_compute(tiny, tmp_path):
    """Checkpoints load onto the CPU and the modules' load_state_dict copies them to where the task
    lives; on a machine without a GPU the resumed run ends on the uninterrupted run's weights."""
    with using(CPU_FP32):
        train_run(tiny, progress=False, run_dir=tmp_path / "ref")
        with pytest.raises(KeyboardInterrupt):
            train_run(tiny, progress=False, stop_after_steps=4, run_dir=tmp_path / "killed")
    compute = auto_compute()
    with using(compute):
        resumed = train_run(tiny, progress=False, run_dir=tmp_path / "killed")
    assert resumed["resumed"] and resumed["steps"] == 9
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "killed")
    if compute.device.type == "cpu":
        assert all(torch.equal(a[k], b[k]) for k in a)
    else:
        assert all(torch.isfinite(b[k]).all() for k in b if b[k].is_floating_point())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch sees none here")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_and_export_compute_on_cuda(tiny, tmp_path, precision):
    compute = Compute(torch.device("cuda"), precision)
    with using(compute):
        data = LeidalData(tiny.data, tiny.model.num_frames)
        task = LeidalTask(tiny, data)
        place_modules(task, compute)
        assert all(p.is_cuda for p in task.model.parameters())
        task.start_epoch(0)
        images = compute.to(data.images(task._image_idx[:8]))
        audio = compute.to(data.audio(task._audio_idx[:8]))
        assert images.is_cuda and audio.is_cuda
        with task.autocast():
            terms = leidal_loss(task.model, images, audio, tiny.lambda_ig, tiny.train.lambda_wd,
                                num_samples=tiny.train.num_samples, margin=tiny.train.margin)
        assert terms["loss"].is_cuda and terms["loss"].dtype == torch.float32
        logs = task.train_step(0, 0)
        assert np.isfinite(logs["loss"])
        assert all(s["exp_avg"].is_cuda for s in task.optimizer.state.values())

        train_run(tiny, progress=False, run_dir=tmp_path / "run")
        model, _ = load_trained(tiny, data, tmp_path / "run")
        assert all(p.is_cuda for p in model.parameters())
        export_run(tiny, run_dir=tmp_path / "run", out_path=tmp_path / "emb.h5", progress=False)
        metrics = evaluate_run(tiny, in_path=tmp_path / "emb.h5", out_path=tmp_path / "eval.json")
    assert 0 <= metrics["purity"] <= 1
