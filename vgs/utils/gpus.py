"""The GPU rule for stages that vgs runs side by side: one GPU per stage, least-busy first.

Like the CPU budget (vgs/utils/threads.py), the GPUs reach a stage through its environment:
each stage that `vgs repro -j N`, `vgs flow` or a Prefect worker's flow starts gets
`CUDA_VISIBLE_DEVICES=<one GPU>`, so `train.device: auto` (vgs/train/device.py) finds exactly
that GPU as `cuda:0`. GPUs are handed out least-busy first; with more stages at once than GPUs,
some share one (their memory must then fit together).

Which GPUs: those in the caller's CUDA_VISIBLE_DEVICES when set (so `CUDA_VISIBLE_DEVICES=2,3
vgs worker ...` gives that worker's stages GPUs 2 and 3 only: one worker per GPU group), else
every GPU that `nvidia-smi -L` lists. Without GPUs nothing is set, and stages run on the CPU.
`VGS_GPUS_PER_STAGE=all` gives every stage all of them instead (one torchrun job on a whole
machine; run such stages one at a time).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from typing import Iterator, Mapping

from vgs.errors import VgsError

GPUS_ENV = "VGS_GPUS_PER_STAGE"


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids a stage may be given (strings, as CUDA_VISIBLE_DEVICES takes them)."""
    env = os.environ if env is None else env
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(line for line in out.splitlines() if line.startswith("GPU "))]


class GpuPool:
    """Thread-safe least-busy assignment of GPUs to the stages of one vgs process."""

    def __init__(self, gpus: list[str], per_stage: str = "1"):
        if per_stage not in ("1", "all"):
            raise VgsError(f"{GPUS_ENV} must be 1 or all, got {per_stage!r}")
        self.gpus = list(gpus)
        self.per_stage = per_stage
        self.busy = {g: 0 for g in self.gpus}
        self._lock = threading.Lock()

    @contextmanager
    def claim(self) -> Iterator[dict[str, str]]:
        """The environment entries of one stage's GPUs ({} without GPUs), held while it runs."""
        if not self.gpus:
            yield {}
            return
        if self.per_stage == "all":
            yield {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus)}
            return
        with self._lock:
            gpu = min(self.gpus, key=lambda g: (self.busy[g], self.gpus.index(g)))
            self.busy[gpu] += 1
        try:
            yield {"CUDA_VISIBLE_DEVICES": gpu}
        finally:
            with self._lock:
                self.busy[gpu] -= 1


_pool: GpuPool | None = None
_pool_lock = threading.Lock()


def gpu_pool() -> GpuPool:
    """This process's pool, read from the environment once."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = GpuPool(visible_gpus(), os.environ.get(GPUS_ENV, "1"))
        return _pool
