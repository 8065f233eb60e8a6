"""Training on several processes (vgs.train.distributed): two gloo ranks on the CPU, each with half of
every batch, train a tiny retrieval model to the loss and gradients of one process with the whole
batch; only rank 0 writes; a SIGKILL of one rank followed by a restart resumes."""
import datetime
import os
import signal
import socket

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

from vgs.nn.retrieval_losses import LOSS_NAMES, hinge_all_pairs, make_pair_loss
from vgs.train import distributed
from vgs.train.trainer import Trainer, load_checkpoint

BATCH = 8
ROWS = 32
TOL = dict(rtol=1e-5, atol=1e-6)
# Crabtree's InfoNCE through its params.yaml factory, and Mortazavi's all-pairs hinge as its train.py calls it.
LOSSES = {"infonce": make_pair_loss("infonce"),
          "hinge": lambda a, b: hinge_all_pairs(a, b, margin=0.2)}
LOSS_PARAMS = {"hinge": {"margin": 0.2}}


def embed_and_score(model, images, captions, loss):
    return loss(F.normalize(model["image"](images), dim=1), F.normalize(model["caption"](captions), dim=1))


class TinyRetrievalTask:
    """Two linear towers embedding two views; each rank trains on its shard of the seeded batch order."""

    def __init__(self, loss_name, kill_at_step=None):
        g = torch.Generator().manual_seed(0)
        self.images, self.captions = torch.randn(ROWS, 6, generator=g), torch.randn(ROWS, 5, generator=g)
        torch.manual_seed(1)
        self.model = nn.ModuleDict({"image": nn.Linear(6, 4), "caption": nn.Linear(5, 4)})
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.run = distributed.data_parallel(self.model)
        self.loss = LOSSES[loss_name]
        self.kill_at_step = kill_at_step
        self.steps = 0
        self.losses, self.grads = [], []

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "steps": self.steps}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = state["steps"]

    def start_epoch(self, epoch):
        self.order = np.random.default_rng([3, epoch]).permutation(ROWS)

    def num_batches(self, epoch):
        return ROWS // BATCH

    def train_step(self, epoch, index):
        if self.steps == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        rows = distributed.shard(self.order[index * BATCH:(index + 1) * BATCH])
        loss = self.run(embed_and_score, self.images[rows], self.captions[rows], self.loss)
        self.optimizer.zero_grad()
        loss.backward()
        self.losses.append(loss.detach().clone())
        self.grads.append([p.grad.clone() for p in self.model.parameters()])
        self.optimizer.step()
        self.steps += 1
        return {"loss": loss.item()}

    def end_epoch(self, epoch):
        return {}


def fit(run_dir, loss_name, epochs=2, kill_at_step=None):
    task = TinyRetrievalTask(loss_name, kill_at_step)
    result = Trainer(run_dir, max_epochs=epochs, seed=5, config={"loss": loss_name}, progress=False,
                     checkpoint_every_seconds=0.0, log_every_steps=1).fit(task)
    return {"losses": task.losses, "grads": task.grads, "resumed": result["resumed"],
            "weights": {k: v.clone() for k, v in task.model.state_dict().items()}}


def every_loss_on_a_shard():
    """Each loss of the factory and its input gradients, on this rank's shard of an odd batch of 7."""
    g = torch.Generator().manual_seed(9)
    a, b = F.normalize(torch.randn(7, 4, generator=g), dim=1), F.normalize(torch.randn(7, 4, generator=g), dim=1)
    out = {}
    for name in LOSS_NAMES:
        loss_fn = make_pair_loss(name, **LOSS_PARAMS.get(name, {}))
        a_mine, b_mine = (distributed.shard(x).clone().requires_grad_() for x in (a, b))
        loss = loss_fn(a_mine, b_mine, step=3000, generator=torch.Generator().manual_seed(4))
        loss.backward()
        out[name] = (loss.detach(), a_mine.grad, b_mine.grad)
    return out


def rank_main(rank, world, port, out_dir, job, kill_rank=None):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with distributed.process_group(timeout=datetime.timedelta(seconds=60)):
        if job == "equivalence":
            result = {"losses": every_loss_on_a_shard()}
            for name in LOSSES:   # one run directory per rank: whatever rank 1 wrote would show there
                result[name] = fit(os.path.join(out_dir, f"{name}-rank{rank}"), name)
        else:
            kill_at = 5 if rank == kill_rank else None
            result = fit(os.path.join(out_dir, "shared"), "hinge", kill_at_step=kill_at)
    torch.save(result, os.path.join(out_dir, f"{job}-rank{rank}.pt"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(out_dir, job, kill_rank=None, world=2):
    context = mp.get_context("spawn")
    port = free_port()
    procs = [context.Process(target=rank_main, args=(r, world, port, str(out_dir), job, kill_rank)) for r in range(world)]
    for p in procs:
        p.start()
    return procs


def join(procs, timeout=60):
    for p in procs:
        p.join(timeout)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.exitcode is None:
            p.kill()
            p.join()
    return codes


def assert_close_lists(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        torch.testing.assert_close(x, y, **TOL)


def test_two_ranks_with_half_batches_train_like_one_process_and_only_rank0_writes(tmp_path):
    assert join(start_ranks(tmp_path, "equivalence")) == [0, 0]
    ranks = [torch.load(tmp_path / f"equivalence-rank{r}.pt") for r in range(2)]

    whole = every_loss_on_a_shard()   # no process group here: one process, the whole batch of 7
    for name, (loss, grad_a, grad_b) in whole.items():
        for r, rows in ((0, slice(0, 3)), (1, slice(3, 7))):
            mine_loss, mine_a, mine_b = ranks[r]["losses"][name]
            torch.testing.assert_close(mine_loss, loss, **TOL, msg=f"{name} loss on rank {r}")
            # The loss is a global one, so each rank's input gradient is N x its rows' share: DDP's mean undoes it.
            torch.testing.assert_close(mine_a, 2 * grad_a[rows], **TOL, msg=f"{name} gradient on rank {r}")
            torch.testing.assert_close(mine_b, 2 * grad_b[rows], **TOL, msg=f"{name} gradient on rank {r}")

    for name in LOSSES:
        single = fit(tmp_path / f"{name}-single", name)
        for r in range(2):
            ran = ranks[r][name]
            assert len(ran["losses"]) == 2 * ROWS // BATCH
            assert_close_lists(ran["losses"], single["losses"])
            for step_grads, single_grads in zip(ran["grads"], single["grads"]):
                assert_close_lists(step_grads, single_grads)
            assert_close_lists(list(ran["weights"].values()), list(single["weights"].values()))
        assert load_checkpoint(tmp_path / f"{name}-rank0" / "checkpoint.pt")["finished"]
        assert (tmp_path / f"{name}-rank0" / "train_log.jsonl").exists()
        assert not (tmp_path / f"{name}-rank1").exists() or not any((tmp_path / f"{name}-rank1").iterdir())


def test_sigkill_of_one_rank_then_restart_resumes(tmp_path):
    procs = start_ranks(tmp_path, "kill", kill_rank=1)
    procs[1].join(60)
    assert procs[1].exitcode == -signal.SIGKILL
    procs[0].join(10)   # its next collective fails or hangs; it has written the last step's checkpoint
    procs[0].kill()     # as torchrun tears down the rest of a failed group
    join(procs)
    ck = load_checkpoint(tmp_path / "shared" / "checkpoint.pt")
    assert not ck["finished"] and ck["task"]["steps"] == 5   # every completed step was checkpointed

    assert join(start_ranks(tmp_path, "restart")) == [0, 0]
    resumed = [torch.load(tmp_path / f"restart-rank{r}.pt") for r in range(2)]
    single = fit(tmp_path / "single", "hinge")
    for result in resumed:
        assert result["resumed"]
        assert_close_lists(result["losses"], single["losses"][5:])
        assert_close_lists(list(result["weights"].values()), list(single["weights"].values()))
    assert load_checkpoint(tmp_path / "shared" / "checkpoint.pt")["finished"]
