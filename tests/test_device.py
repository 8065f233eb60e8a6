"""The one device rule (vgs/train/device.py): params -> Compute, clear errors, placement, resume.

Each paper's own training step, export and evaluation on a given device are tested in
tests/test_device_<paper>.py; tests that need CUDA are marked `gpu` (skipped here with a reason).
"""
import subprocess
import sys
from collections import namedtuple

import pytest
import torch
import yaml
from torch import nn

from tiny_runs import ShuffledRegression
from vgs.errors import ParamError
from vgs.params import Params
from vgs.train.device import CPU, Compute, compute_from_params, current, place_modules, using
from vgs.train.trainer import Trainer, load_checkpoint


def _params(train: dict | None, profile: str = "cpu") -> Params:
    data = {"profile": profile}
    if train is not None:
        data["train"] = train
    return Params(data)


def test_defaults_are_the_cpu_in_fp32_when_no_gpu_is_seen():
    assert compute_from_params(_params(None)) == CPU
    if not torch.cuda.is_available():
        auto = compute_from_params(_params({"device": "auto", "precision": {"cpu": "fp32", "paper": "auto"}},
                                           profile="paper"))
        assert auto == CPU        # paper's `auto` precision is fp32 on the CPU


def test_the_committed_params_give_the_cpu_in_fp32_here(repo):
    compute = compute_from_params(Params.load(repo / "params.yaml"))
    if not torch.cuda.is_available():
        assert compute == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU that this machine lacks")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_gpu_that_is_absent_is_a_param_error_naming_the_key_and_the_fix(device):
    with pytest.raises(ParamError) as err:
        compute_from_params(_params({"device": device}))
    assert "train.device" in err.value.message and device in err.value.message
    assert "auto or cpu" in err.value.hint


@pytest.mark.parametrize("train, key", [
    ({"device": "gpu"}, "train.device"),
    ({"device": 0}, "train.device"),
    ({"device": "cpu", "precision": "fp8"}, "train.precision"),
    ({"device": "cpu", "precision": {"cpu": "fp16"}}, "train.precision.cpu"),
    ({"device": "cpu", "precision": "bf16"}, "train.precision"),
    ({"device": "cpu", "nproc": 2}, "train"),
])
def test_invalid_values_name_their_key(train, key):
    with pytest.raises(ParamError) as err:
        compute_from_params(_params(train))
    assert key in err.value.message


def test_the_driver_refuses_an_absent_gpu_with_one_clear_line(repo, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = yaml.safe_load((repo / "params.yaml").read_text())
    data["train"]["device"] = "cuda"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "stages/run.py", "leidal2017", "report", "--params", str(params)],
                          cwd=repo, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "train.device = cuda" in proc.stderr + proc.stdout


def test_moving_to_the_cpu_is_the_identity():
    batch = {"x": torch.ones(2), "rest": [torch.zeros(1), 3]}
    assert CPU.to(batch) is batch
    assert CPU.autocast().__class__.__name__ == "nullcontext"
    assert not CPU.grad_scaler().is_enabled()


def test_batches_move_whole_on_another_device():
    # The meta device stands in for a GPU: every tensor moves, containers keep their types.
    Padded = namedtuple("Padded", "frames lengths")
    meta = Compute(torch.device("meta"))
    moved = meta.to({"img": torch.ones(2, 3), "cap": Padded(torch.ones(2, 5), torch.tensor([5, 3])),
                     "ids": [torch.arange(2), "name"]})
    assert moved["img"].device.type == "meta"
    assert isinstance(moved["cap"], Padded) and moved["cap"].lengths.device.type == "meta"
    assert moved["ids"][0].device.type == "meta" and moved["ids"][1] == "name"


class _TwoModules:
    def __init__(self):
        self.model = nn.Linear(3, 2)
        self.heads = {"en": nn.Linear(2, 2)}
        self.judges = [nn.Linear(2, 1)]
        self.not_a_module = torch.ones(1)


def test_place_modules_moves_every_module_of_a_task():
    task = _TwoModules()
    assert place_modules(task, CPU) == []
    moved = place_modules(task, Compute(torch.device("meta")))
    assert sorted(moved) == ["heads[en]", "judges[0]", "model"]
    assert all(p.device.type == "meta" for m in (task.model, task.heads["en"], task.judges[0]) for p in m.parameters())
    assert task.not_a_module.device.type == "cpu"


class _Regression(ShuffledRegression):
    """A tiny task that moves its batches with the compute it runs under (as every method does)."""

    def __init__(self):
        super().__init__(order_seed=1)
        g = torch.Generator().manual_seed(5)
        self.x, self.y = torch.randn(32, 4, generator=g), torch.randn(32, generator=g)
        self.model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.compute = current()
        self.scaler = self.compute.grad_scaler()
        self.devices_seen = set()

    def train_step(self, epoch, index):
        rows = self.batch_rows(index)
        x, y = self.compute.to((self.x[rows], self.y[rows]))
        with self.compute.autocast():
            loss = (self.model(x).squeeze(-1).float() - y).pow(2).mean()
        self.devices_seen |= {x.device.type, loss.device.type, next(self.model.parameters()).device.type}
        self.opt.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return {"loss": loss.item()}


def _fit(run_dir, compute, stop_after=None):
    torch.manual_seed(0)                 # the initial weights
    with using(compute):
        task = _Regression()
        Trainer(run_dir, max_epochs=2, seed=3, config={"t": 1}, progress=False, stop_after_steps=stop_after).fit(task)
    return task


def _weights(task):
    return [t.detach().cpu() for t in task.model.state_dict().values()]


def test_a_run_killed_under_one_compute_resumes_under_another_to_the_same_weights(tmp_path):
    # CPU -> CPU is what CI can check: the checkpoint is read with map_location=cpu and copied onto
    # whatever device the task's modules were placed on.
    reference = _fit(tmp_path / "ref", CPU)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "run", Compute(torch.device("cpu"), "fp32"), stop_after=5)
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (ck["epoch"], ck["index"]) == (1, 1)   # killed inside the second epoch
    resumed = _fit(tmp_path / "run", CPU)
    assert resumed.devices_seen == {"cpu"}
    assert all(torch.equal(a, b) for a, b in zip(_weights(reference), _weights(resumed)))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_run_started_on_a_gpu_finishes_on_the_cpu(tmp_path, precision):
    gpu = Compute(torch.device("cuda"), precision)
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU lacks bfloat16")
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "run", gpu, stop_after=5)
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (ck["epoch"], ck["index"]) == (1, 1)   # killed inside the second epoch
    resumed = _fit(tmp_path / "run", CPU)
    assert resumed.devices_seen == {"cpu"}
    assert all(torch.isfinite(w).all() for w in _weights(resumed))
    task = _fit(tmp_path / "gpu-only", gpu)
    assert task.devices_seen == {"cuda"}
