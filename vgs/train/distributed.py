"""One training on several processes (GPUs) with torch.distributed: `torchrun --nproc_per_node N`.

    torchrun --nproc_per_node 4 stages/run.py crabtree2021 train <run>

torchrun starts N copies of the stage driver with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT in their environment; the driver enters `process_group()`, which joins them (nccl on
CUDA, each rank on cuda:LOCAL_RANK; gloo on the CPU). Without torchrun (every run so far) nothing
here does anything: `world_size()` is 1, `shard` returns the whole batch, `gather_with_grad` returns
its input and `data_parallel` calls the step function directly, so the numbers are unchanged.

How a task trains distributed, and why N ranks x B/N trains the objective of 1 rank x B:
  * Data: every task already draws a global batch order that depends only on (seed, epoch). Each
    rank takes the same global batch and keeps its contiguous slice (`shard`). That is a
    distributed sampler with the seed: the ranks together see exactly the batches one process
    would, and a resume on any number of ranks continues the same order.
  * Loss: the retrieval losses (vgs/nn/retrieval_losses.py) all-gather the embeddings of the
    ranks (`gather_with_grad`) before the similarity matrix, so every rank computes the same
    loss L over the whole global batch, negatives included, as CLIP-style training does.
  * Gradients: see `gather_with_grad` for the factor; with DistributedDataParallel (DDP) averaging
    the parameter gradients, no correction is needed.
Rank 0 alone writes checkpoints and logs and shows progress (vgs/train/trainer.py).
"""
from __future__ import annotations

import contextlib
import datetime
import os
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import distributed as dist
from torch import nn

from vgs.train.device import Compute, current, using


def launched_world_size() -> int:
    """How many processes torchrun started for this training (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the one process that writes checkpoints, logs and progress (rank 0)."""
    return rank() == 0


@contextlib.contextmanager
def process_group(timeout: datetime.timedelta | None = None) -> Iterator[Compute]:
    """Join the process group torchrun launched this process in, for the duration of a stage.

    Enter it inside `using(compute_from_params(params))`: on CUDA it installs cuda:LOCAL_RANK in
    the precision params asked for (each rank its own GPU) and uses nccl; on the CPU it uses gloo
    and keeps the compute. Without torchrun (WORLD_SIZE unset or 1) it does nothing."""
    if launched_world_size() == 1:
        yield current()
        return
    compute = current()
    if compute.is_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        compute = Compute(torch.device("cuda", local_rank), compute.precision)
    extra = {"timeout": timeout} if timeout is not None else {}
    dist.init_process_group("nccl" if compute.is_cuda else "gloo",
                            **({"device_id": compute.device} if compute.is_cuda else {}), **extra)
    try:
        with using(compute):
            yield compute
    finally:
        dist.destroy_process_group()


def shard(rows: Sequence) -> Sequence:
    """This rank's contiguous slice of a global batch `rows` (all of it with one process).

    The slices of ranks 0..N-1, concatenated, are `rows` in order, so the embeddings gathered by
    `gather_with_grad` line up with the global batch. Sizes differ by at most one row when N does
    not divide the batch (a last partial batch)."""
    n, r = world_size(), rank()
    if n == 1:
        return rows
    return rows[r * len(rows) // n:(r + 1) * len(rows) // n]


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.sizes = sizes
        longest = max(sizes)
        padded = local.contiguous()
        if len(local) < longest:   # all_gather needs equal shapes
            padded = torch.cat([padded, padded.new_zeros((longest - len(local), *local.shape[1:]))])
        pieces = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(pieces, padded)
        return torch.cat([piece[:size] for piece, size in zip(pieces, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[:rank()])
        return total[start:start + ctx.sizes[rank()]], None


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """The rows of every rank, in rank order (the global batch), with the gradient of this rank's rows.

    Gradient scaling. Let z_r be rank r's embeddings and L(z_0, ..., z_{N-1}) the loss on the
    gathered batch, which every rank computes identically. The backward sums, over the ranks, each
    rank's gradient for the rows of z_r (an all-reduce), so rank r receives
        sum_{r'} dL/dz_r = N * dL/dz_r
    and its parameter gradient is N * dL/dz_r * dz_r/dtheta. DDP averages the parameter gradients:
        (1/N) sum_r N * dL/dz_r * dz_r/dtheta = sum_r dL/dz_r * dz_r/dtheta = dL/dtheta,
    the gradient of one process on the whole batch. The factor N of the sum and the 1/N of DDP's
    mean cancel, so nothing is rescaled. (A gather that kept only the local gradient, without the
    sum, would leave dL/dtheta / N and need the loss multiplied by N.) The loss value each rank
    reports is the global loss itself. Sizes may differ between ranks by a row (see `shard`)."""
    if not is_distributed():
        return local
    size = torch.tensor([len(local)], device=local.device)
    sizes = [torch.empty_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    return _GatherWithGrad.apply(local, [int(s) for s in sizes])


def any_rank(*flags: bool) -> tuple[bool, ...]:
    """Each flag, true when it is true on any rank: how ranks agree to checkpoint or stop at the
    same step (a SIGTERM or a clock reaches them at different steps). The flags themselves with
    one process."""
    if not is_distributed():
        return flags
    votes = torch.tensor([int(f) for f in flags], device=current().device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in votes.tolist())


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class _CallsStep(nn.Module):
    """Routes DDP's forward to a step function, so that a method's own encoder calls
    (model.embed_images, ...) run inside one DDP forward, as DDP's gradient hooks expect."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return step(self.module, *args, **kwargs)


class DataParallel:
    """`run(step, *args)` = `step(module, *args)`, with the parameter gradients averaged over the
    ranks by DistributedDataParallel when there are several (see `data_parallel`)."""

    def __init__(self, module: nn.Module, find_unused_parameters: bool = False):
        self.module = module
        self.find_unused_parameters = find_unused_parameters
        self._ddp: nn.parallel.DistributedDataParallel | None = None

    def __call__(self, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not is_distributed():
            return step(self.module, *args, **kwargs)
        if self._ddp is None:
            # Built at the first step, not with the task: by then the Trainer has placed the
            # module on this rank's device and loaded the checkpoint every rank resumes from.
            compute = current()
            self._ddp = nn.parallel.DistributedDataParallel(
                _CallsStep(self.module), device_ids=[compute.device.index] if compute.is_cuda else None,
                find_unused_parameters=self.find_unused_parameters)
        return self._ddp(step, *args, **kwargs)


def data_parallel(module: nn.Module, find_unused_parameters: bool = False) -> DataParallel:
    """Wrap a task's model for DDP: in train_step call `self.run(step, ...)` instead of
    `step(self.model, ...)`, where `step` does the forward passes and returns the loss; then
    `loss.backward()` averages the gradients over the ranks. Checkpoints keep saving
    `self.model.state_dict()` (no "module." prefix). With one process it is a plain call.
    `find_unused_parameters`: set when some trainable parameters get no gradient in a step."""
    return DataParallel(module, find_unused_parameters)
