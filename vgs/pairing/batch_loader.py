"""Batches of an instance pair store read ahead by a torch DataLoader, in the order the caller chose.

A method decides which rows (store indices, image first) make each batch, exactly as before: the
seeded order of an epoch, cut into batches. `RowBatchLoader.batches(row_batches, start)` then
yields, for batch start, start + 1, ..., the images and captions of those rows, read by
`num_workers` worker processes ahead of the training step (0: read in the calling process, when it
asks). Every random draw (crops, imposters) stays with the caller, on the batch it receives, so
the numbers do not depend on the number of workers; resuming at batch k is `start=k`.

Workers receive the InstanceViews pickled without open stores and open their own on first use
(zarr handles are not fork-safe to share). With a CUDA device current, batches come in pinned
memory, so `Compute.to` copies them asynchronously. Workers persist from one `batches` call to the
next (epochs, validation), saving their start-up and store opening.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vgs.pairing.instance_views import CaptionBatch, InstanceViews
from vgs.params import Params
from vgs.train.device import current


@dataclass(frozen=True)
class LoaderSettings:
    in_memory: bool = True    # read every store whole (today's way); False: read the items a batch asks for
    num_workers: int = 0      # reading processes; 0 reads in the training process


def loader_settings(data: Params) -> LoaderSettings:
    """`in_memory` and `num_workers` of a method's `data` section (params.yaml, profile applied)."""
    return LoaderSettings(in_memory=data.bool("in_memory"), num_workers=data.int("num_workers", min=0))


class ViewBatch(NamedTuple):
    rows: np.ndarray                       # (B, len(views)) store indices, image first
    images: torch.Tensor                   # (B, C, H, W)
    captions: dict[str, CaptionBatch]      # per caption view


def read_batch(views: InstanceViews, rows: np.ndarray) -> ViewBatch:
    return ViewBatch(rows, views.images(rows[:, 0]),
                     {view: views.captions(view, rows[:, k]) for k, view in enumerate(views.views[1:], start=1)})


class _RowBatches(Dataset):
    def __init__(self, views: InstanceViews):
        self.views = views

    def __getitem__(self, rows: np.ndarray) -> ViewBatch:
        return read_batch(self.views, rows)


class _BatchesFrom(Sampler):
    """The batches given by the last `batches` call, from its start index (the DataLoader draws
    each new iteration's indices from here, also with persistent workers)."""

    def __init__(self):
        self.row_batches: list[np.ndarray] = []
        self.start = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.row_batches[self.start:])

    def __len__(self) -> int:
        return max(0, len(self.row_batches) - self.start)


def _as_read(batch: ViewBatch) -> ViewBatch:
    return batch


def _give_freed_batches_back() -> None:
    """glibc raises its mmap threshold to the size of the largest block freed so far, after which a
    batch's arrays come from the heap, which it keeps: a reading process's RSS then creeps up with
    the batches it has read (docs/benchmarks.md, "Stores that stream"). A fixed threshold returns
    every freed batch to the system. Only in reading processes: training allocates no less often."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:   # not glibc: nothing to set
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 128 * 1024)


def _start_reading_process(worker_id: int) -> None:
    _give_freed_batches_back()
    torch.utils.data.get_worker_info().dataset.views.drop_open_stores()


class RowBatchLoader:
    def __init__(self, views: InstanceViews, num_workers: int = 0, prefetch_factor: int = 2):
        self.views = views
        self.num_workers = int(num_workers)
        self._order = _BatchesFrom()
        self._loader: DataLoader | None = None
        if self.num_workers > 0:
            self._loader = DataLoader(
                _RowBatches(views), batch_size=None, sampler=self._order, collate_fn=_as_read,
                num_workers=self.num_workers, prefetch_factor=prefetch_factor, persistent_workers=True,
                worker_init_fn=_start_reading_process, pin_memory=current().is_cuda,
                # The workers' base seed is drawn when an iteration starts; from the global torch RNG
                # that draw would shift the caller's dropout. Nothing in a worker draws at random.
                generator=torch.Generator().manual_seed(0))

    def batches(self, row_batches: list[np.ndarray], start: int = 0) -> Iterator[ViewBatch]:
        """The batches of `row_batches[start:]`, in order. A new call ends the previous iteration."""
        if self._loader is None:
            # In-process reading stays lazy: nothing is read for a batch until it is asked for.
            return (read_batch(self.views, rows) for rows in row_batches[start:])
        self._order.row_batches, self._order.start = list(row_batches), int(start)
        return iter(self._loader)


def row_batches(tuples: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`tuples` cut into consecutive batches of `batch_size` (the last one may be shorter)."""
    return [tuples[start:start + batch_size] for start in range(0, len(tuples), batch_size)]
