"""SMART on `vgs.train.device.current()`: the same numbers under the CPU and under whatever
`train: {device: auto}` resolves to, models/batches/losses on CUDA when there is one, a checkpoint
resumed under another map location, and input sizes checked against the stores."""
import numpy as np
import pytest
import torch
from tiny_runs import smart_pairs_and_params
from tiny_stores import write_tiny_store

from vgs.errors import ParamError
from vgs.methods.smart import MODALITIES
from vgs.methods.smart.config import MODEL_FILE, judge_config, model_config, train_config
from vgs.methods.smart.data import load_data
from vgs.methods.smart.evaluate import evaluate
from vgs.methods.smart.export import convert, load_trained
from vgs.methods.smart.judges import build_judge
from vgs.methods.smart.train import SmartTask, build_net, build_schedule, train_style
from vgs.params import Params
from vgs.train.device import Compute, compute_from_params, place_modules, using
from vgs.train.trainer import load_checkpoint
from vgs.utils.seed import seed_everything

CLASSES = 3
CPU = Compute(torch.device("cpu"), "fp32")


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """8x8 images and 8-band log-mels of 3 classes, their pair stores, and tiny SMART params."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    images, audio = [], []
    for k in range(CLASSES):
        for j, split in enumerate(["train"] * 4 + ["val", "test"]):
            img = np.zeros((8, 8), np.float32)
            img[2 * k:2 * k + 2] = 1.0
            images.append((f"i{k}_{j}", img + 0.1 * rng.random((8, 8), dtype=np.float32), k, split, None))
            frames = rng.normal(5.0, 1.0, size=(6 + j, 8)).astype(np.float32)
            frames[:, 2 * k:2 * k + 2] += 10.0
            audio.append((f"a{k}_{j}", frames, k, split, "s1"))
    write_tiny_store("img.zarr", images, "tinyimage", "image", item_shape=(8, 8))
    write_tiny_store("aud.zarr", audio, "tinyaudio", "audio")
    return smart_pairs_and_params(seed=5, judge_batch_size=4, judge_epochs=1, transcoder_layers=2, phases=2,
                                  val_items=3)


def _auto() -> Compute:
    return compute_from_params(Params({"train": {"device": "auto"}}))


def _task(params: Params, compute: Compute):
    """A classroom SmartTask with fixed initial weights, its modules on `compute`."""
    data = load_data(params, pairs=True)
    cfg = train_config(params, "classroom")
    seed_everything(params.int("seed"))
    net = build_net(model_config(params), {m: data[m].input_hw for m in MODALITIES})
    schedule = build_schedule(cfg["pretrain_steps"], cfg["phases"], cfg["steps_per_phase"], cfg["first"])
    with using(compute):
        task = SmartTask(net, data, schedule, cfg, params.int("seed"))
        place_modules(task, compute)
    return task, data


def _one_reciprocating_phase(params: Params, compute: Compute) -> tuple[list[float], dict, dict]:
    task, _ = _task(params, compute)
    with using(compute):
        task.start_epoch(0)
        losses = [task.train_step(0, i)["loss"] for i in range(task.num_batches(0))]
        summary = task.end_epoch(0)
    weights = {k: v.detach().cpu() for k, v in task.net.state_dict().items()}
    return losses, summary, weights


def _same(a, b, exact: bool):
    if exact:
        assert a == b if not isinstance(a, torch.Tensor) else torch.equal(a, b)
    else:
        torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-3, atol=1e-4)


def test_training_export_and_evaluation_agree_on_the_cpu_and_on_auto(tiny):
    auto = _auto()
    exact = auto.device.type == "cpu" and auto.precision == "fp32"     # a GPU differs in the last bits
    cpu_losses, cpu_summary, cpu_weights = _one_reciprocating_phase(tiny, CPU)
    auto_losses, auto_summary, auto_weights = _one_reciprocating_phase(tiny, auto)
    _same(cpu_losses, auto_losses, exact)
    assert cpu_summary.keys() == auto_summary.keys()
    for key in ("train_rec", "train_guide", "val_rec"):
        _same(cpu_summary[key], auto_summary[key], exact)
    for key, value in cpu_weights.items():
        _same(value, auto_weights[key], exact)

    train_style(tiny, "classroom", out_dir="run", progress=False)
    data = load_data(tiny)
    judges = {}
    for name in ("mlc", "glc"):
        cfg = judge_config(tiny, name)
        cfg["input_hw"] = list(data[cfg["modality"]].input_hw)
        seed_everything(0)
        judges[name] = build_judge(cfg).eval()
    results = {}
    for compute in (CPU, auto):
        with using(compute):
            net, ck = load_trained(f"run/{MODEL_FILE}", data)
            assert next(net.parameters()).device.type == compute.device.type
            placed = {name: judge.to(compute.device) for name, judge in judges.items()}
            converted = convert(net, data.image.x, "image")
            assert converted.device.type == "cpu" and converted.dtype == torch.float32
            results[compute] = converted, evaluate(net, placed, data, 1, guides=ck["guides"])
    (cpu_out, cpu_eval), (auto_out, auto_eval) = results[CPU], results[auto]
    _same(cpu_out, auto_out, exact)
    for key, value in cpu_eval["metrics"].items():
        if "seconds" not in key and exact:
            assert value == auto_eval["metrics"][key], key
    for direction, samples in cpu_eval["samples"].items():
        _same(torch.from_numpy(samples["outputs"]), torch.from_numpy(auto_eval["samples"][direction]["outputs"]),
              exact)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch sees none here")
def test_model_batch_and_loss_sit_on_cuda(tiny):
    cuda = Compute(torch.device("cuda"), "fp32")
    task, data = _task(tiny, cuda)
    seen = {}
    original = task.net.autoencoders["image"].forward

    def spy(x):
        seen["batch"] = x.device
        return original(x)

    task.net.autoencoders["image"].forward = spy
    with using(cuda):
        task.start_epoch(0)
        logs = task.train_step(0, 0)
        assert all(p.device.type == "cuda" for p in task.net.parameters())
        assert seen["batch"].type == "cuda"
        x = cuda.to(data.image.x[:4])
        with cuda.autocast():
            z, y = original(x)
            loss = torch.nn.functional.mse_loss(y, x)
        assert loss.device.type == "cuda" and np.isfinite(logs["loss"])


def test_a_killed_run_resumes_from_a_checkpoint_loaded_onto_the_cpu(tiny):
    reference = train_style(tiny, "hybrid", out_dir="ref", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_style(tiny, "hybrid", out_dir="killed", progress=False, stop_after_steps=3)
    with using(CPU):
        resumed = train_style(tiny, "hybrid", out_dir="killed", progress=False)
    assert resumed["resumed"] and not reference["resumed"]
    a, b = load_checkpoint(f"ref/{MODEL_FILE}"), load_checkpoint(f"killed/{MODEL_FILE}")
    assert all(v.device.type == "cpu" for v in b["net"].values())
    for key, value in a["net"].items():
        assert torch.equal(value, b["net"][key]), key


def test_input_sizes_come_from_the_stores_and_a_mismatch_names_both(tiny):
    data = load_data(tiny)
    assert data.image.input_hw == (8, 8)                 # the image store's item_shape
    assert data.audio.input_hw == (8, 8)                 # 8 mel bands (store dim) x smart.data.audio_frames
    train_style(tiny, "classroom", out_dir="run", progress=False)
    longer = Params({**tiny.to_dict(), "smart": {**tiny.to_dict()["smart"],
                                                  "data": {**tiny.to_dict()["smart"]["data"], "audio_frames": 16}}})
    with pytest.raises(ParamError) as err:
        load_trained(f"run/{MODEL_FILE}", load_data(longer))
    message = str(err.value)
    assert "8x8" in message and "8x16" in message
    assert "smart.data.audio_frames = 16" in message and "aud.zarr" in message and "run/model.pt" in message
