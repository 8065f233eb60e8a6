"""The shared trainer: a killed run resumes to bit-identical weights; stale checkpoints are not resumed."""
import numpy as np
import pytest
import torch
from torch import nn

from vgs.errors import CheckpointError
from vgs.train import Trainer, load_checkpoint


class TinyTask:
    """Noisy regression with dropout, so the result depends on the data order and the global RNG."""

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(64, 5, generator=g)
        self.y = self.x @ torch.arange(5.0) + 0.1 * torch.randn(64, generator=g)
        self.model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.seed = seed
        self.order = None

    def state_dict(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, s):
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])

    def start_epoch(self, epoch):
        self.order = np.random.default_rng([self.seed, epoch]).permutation(64)

    def num_batches(self, epoch):
        return 8

    def train_step(self, epoch, index):
        idx = torch.as_tensor(self.order[index * 8:(index + 1) * 8])
        loss = (self.model(self.x[idx]).squeeze(-1) - self.y[idx]).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def end_epoch(self, epoch):
        return {}


def _fit(run_dir, stop_after=None, epochs=3):
    torch.manual_seed(0)
    task = TinyTask()
    trainer = Trainer(run_dir, max_epochs=epochs, seed=7, config={"lr": 1e-2}, progress=False,
                      stop_after_steps=stop_after)
    trainer.fit(task)
    return task


def test_resume_after_kill_is_bit_identical(tmp_path):
    reference = _fit(tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "killed", stop_after=11)  # dies mid-epoch 2
    ck = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert (ck["epoch"], ck["index"], ck["finished"]) == (1, 3, False)
    resumed = _fit(tmp_path / "killed")
    for a, b in zip(reference.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_finished_run_is_a_noop(tmp_path):
    _fit(tmp_path / "r")
    before = (tmp_path / "r" / "checkpoint.pt").stat().st_mtime_ns
    _fit(tmp_path / "r")
    assert (tmp_path / "r" / "checkpoint.pt").stat().st_mtime_ns == before


def test_checkpoint_from_other_config_is_set_aside(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "r", stop_after=3)
    task = TinyTask()
    Trainer(tmp_path / "r", max_epochs=1, seed=7, config={"lr": 0.5}, progress=False).fit(task)
    assert list((tmp_path / "r").glob("stale-*.pt"))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_is_finished_only_for_a_complete_run_of_the_same_config(tmp_path):
    trainer = Trainer(tmp_path / "r", max_epochs=3, seed=7, config={"lr": 1e-2}, progress=False)
    assert not trainer.is_finished()
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "r", stop_after=3)
    assert not trainer.is_finished()
    _fit(tmp_path / "r")
    assert trainer.is_finished()
    assert not Trainer(tmp_path / "r", max_epochs=3, seed=7, config={"lr": 0.5}, progress=False).is_finished()
