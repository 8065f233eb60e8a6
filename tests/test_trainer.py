"""The shared trainer: a killed run resumes to bit-identical weights; stale checkpoints are not resumed."""
import os

import pytest
import torch
from torch import nn

from tiny_runs import ShuffledRegression
from vgs.errors import CheckpointError
from vgs.train import trainer as trainer_module
from vgs.train.trainer import Trainer, load_checkpoint


class TinyTask(ShuffledRegression):
    """Noisy regression with dropout, so the result depends on the data order and the global RNG."""

    def __init__(self, seed=0):
        super().__init__(order_seed=seed)
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(64, 5, generator=g)
        self.y = self.x @ torch.arange(5.0) + 0.1 * torch.randn(64, generator=g)
        self.model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-2)

    def train_step(self, epoch, index):
        idx = self.batch_rows(index)
        loss = (self.model(self.x[idx]).squeeze(-1) - self.y[idx]).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}


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


def test_resume_never_writes_through_a_hard_link_into_the_cache(tmp_path):
    """.dvc/config shares outputs with the cache by hard link; resuming appends to the log."""
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "run", stop_after=11)
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = {}
    for path in sorted((tmp_path / "run").iterdir()):
        os.link(path, cache / path.name)
        os.chmod(path, 0o444)  # as DVC leaves a linked output
        cached[path.name] = path.read_bytes()
    _fit(tmp_path / "run")
    assert {p.name: p.read_bytes() for p in sorted(cache.iterdir())} == cached
    assert all(p.stat().st_nlink == 1 for p in (tmp_path / "run").iterdir())
    assert (tmp_path / "run" / "train_log.jsonl").read_bytes() != cached["train_log.jsonl"]


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["task"]["model"]


def test_finished_run_is_never_reused_and_retrains_to_the_same_weights(tmp_path, capsys):
    _fit(tmp_path / "r")
    first = _weights(tmp_path / "r")
    log_rows = len((tmp_path / "r" / "train_log.jsonl").read_text().splitlines())
    # DVC runs a train stage again only when a dependency changed or when forced: train again.
    _fit(tmp_path / "r")
    assert "finished run" in capsys.readouterr().out
    assert (tmp_path / "r.set-aside.pt").exists()
    second = _weights(tmp_path / "r")
    assert all(torch.equal(first[k], second[k]) for k in first)
    # A fresh run starts a fresh log.
    assert len((tmp_path / "r" / "train_log.jsonl").read_text().splitlines()) == log_rows


def test_checkpoint_from_other_config_is_set_aside(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "r", stop_after=3)
    (tmp_path / "r" / "stale-0123.pt").write_bytes(b"left by an older layout")
    task = TinyTask()
    Trainer(tmp_path / "r", max_epochs=1, seed=7, config={"lr": 0.5}, progress=False).fit(task)
    assert "another configuration" in capsys.readouterr().out
    assert (tmp_path / "r.set-aside.pt").exists()
    assert not list((tmp_path / "r").glob("stale-*.pt"))


def _fit_with(run_dir, provenance, stop_after=None):
    torch.manual_seed(0)
    task = TinyTask()
    Trainer(run_dir, max_epochs=3, seed=7, config={"lr": 1e-2}, provenance=provenance, progress=False,
            stop_after_steps=stop_after).fit(task)
    return task


def test_interrupted_run_resumes_only_with_the_same_provenance(tmp_path, capsys):
    deps = {"vgs/model.py": "aaa", "data/pairs.zarr": "111"}
    reference = _fit_with(tmp_path / "ref", deps)
    with pytest.raises(KeyboardInterrupt):
        _fit_with(tmp_path / "r", deps, stop_after=11)
    capsys.readouterr()
    # Same provenance: resumed, identical weights.
    resumed = _fit_with(tmp_path / "r", deps)
    assert "resuming" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(reference.model.state_dict().values(),
                                                resumed.model.state_dict().values()))
    # A changed code file or input store: not resumed, and the line names what changed.
    for changed in ({**deps, "vgs/model.py": "bbb"}, {**deps, "data/pairs.zarr": "222"}):
        with pytest.raises(KeyboardInterrupt):
            _fit_with(tmp_path / "k", deps, stop_after=11)
        capsys.readouterr()
        _fit_with(tmp_path / "k", changed)
        out = capsys.readouterr().out
        name = next(k for k in deps if deps[k] != changed[k])
        assert "not resuming" in out and f"changed: {name}" in out, out
        assert "resuming k" not in out
        assert len(list(tmp_path.glob("k*.set-aside.pt"))) == 1   # at most one per run


class RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_unsafe_checkpoint_is_refused_and_named(tmp_path):
    path, marker = tmp_path / "checkpoint.pt", tmp_path / "code-ran"
    torch.save({"epoch": 1, "extra": RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match=r"posix\.system|os\.system"):
        load_checkpoint(path)
    assert not marker.exists()
    # What the trainer writes loads under weights_only=True, numpy RNG state included.
    _fit(tmp_path / "ok")
    ck = torch.load(tmp_path / "ok" / "checkpoint.pt", weights_only=True)
    assert ck["finished"] and ck["rng"]["numpy"]["keys"].shape == (624,)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_rank_other_than_0_trains_the_same_but_writes_nothing(tmp_path, monkeypatch, capsys):
    """Under torchrun every rank runs the loop; only rank 0 writes the checkpoint and the log."""
    reference = _fit(tmp_path / "rank0")
    monkeypatch.setattr(trainer_module, "is_main", lambda: False)
    other = _fit(tmp_path / "rank1")
    assert not (tmp_path / "rank1").exists()
    assert len(other.model.state_dict()) and all(
        torch.equal(a, b) for a, b in zip(reference.model.state_dict().values(), other.model.state_dict().values()))
    # It resumes from the checkpoint rank 0 wrote, and leaves it for rank 0 to replace.
    monkeypatch.undo()
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "shared", stop_after=11)
    written = (tmp_path / "shared" / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(trainer_module, "is_main", lambda: False)
    capsys.readouterr()
    resumed = _fit(tmp_path / "shared")
    assert "resuming" not in capsys.readouterr().out
    assert (tmp_path / "shared" / "checkpoint.pt").read_bytes() == written
    assert all(torch.equal(a, b) for a, b in zip(reference.model.state_dict().values(), resumed.model.state_dict().values()))
