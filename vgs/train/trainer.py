"""The one training loop: seeding, device choice, progress, logging, checkpoint and resume.

A method supplies a TrainTask: it owns its models, optimisers and data order and performs its own
optimisation steps (so alternating or multi-optimiser schemes such as SMART's fit). The trainer
owns the loop position, random-number state and checkpoints.

Resume contract: a run killed at any point restarts from its last checkpoint and, on the same
machine and thread count, finishes with bit-identical weights. That holds because
  * the batch order of epoch e depends only on (seed, e), never on the global RNG;
  * the global RNG states (torch, numpy, random) are saved with every checkpoint;
  * checkpoints are written atomically (temporary file, then rename).

Reuse rule (vgs/train/provenance.py): only an interrupted run is resumed, and only when its
configuration and everything the stage depends on (code, params, input stores) are unchanged. A
finished checkpoint is never reused, because DVC re-runs a training stage only when something it
depends on changed or when forced. Anything not resumed is set aside, with one line saying why.

Several processes (torchrun, vgs/train/distributed.py): every rank runs the same loop and resumes
from the same checkpoint; rank 0 alone writes checkpoints and the log and shows progress, at steps
all ranks agreed on. With one process none of this changes anything.

Checkpoints hold only tensors, numbers, strings and containers of them, and are loaded with
`torch.load(weights_only=True)`: a checkpoint pulled from a shared remote cannot run code.
"""
from __future__ import annotations

import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from vgs.errors import CheckpointError
from vgs.train.device import current, place_modules
from vgs.train.distributed import any_rank, barrier, is_main
from vgs.train.provenance import describe_changes
from vgs.utils.atomic import atomic_path, own_copies
from vgs.utils.seed import seed_everything

CHECKPOINT = "checkpoint.pt"
LOG = "train_log.jsonl"


class TrainTask(Protocol):
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def start_epoch(self, epoch: int) -> None:
        """Prepare epoch `epoch` (e.g. its batch order). Must depend only on (seed, epoch)."""
    def num_batches(self, epoch: int) -> int: ...
    def train_step(self, epoch: int, index: int) -> dict[str, float]:
        """Run batch `index` of `epoch`, including backward and optimiser steps; return logs."""
    def end_epoch(self, epoch: int) -> dict[str, float] | None: ...


def fingerprint(config: Any) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def checkpoint_safe(obj: Any) -> Any:
    """`obj` in the types that `torch.load(weights_only=True)` accepts: numpy arrays become tensors,
    numpy scalars Python numbers; tensors, numbers, strings and containers pass through."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k.item() if isinstance(k, np.generic) else k, checkpoint_safe(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(checkpoint_safe(v) for v in obj)
    return obj


def save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(checkpoint_safe(payload), tmp)


def load_checkpoint(path: Path) -> dict:
    """Load with weights_only=True: a file that needs any other object to unpickle is refused."""
    import pickle
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist",
                              hint="train the model first (dvc repro the method's train stage)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names the offending global ("... unsupported GLOBAL posix.system ..."); anything
        # else it raises this type for is a damaged file.
        unsafe = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), None)
        if unsafe is None:
            raise CheckpointError(f"checkpoint {path} is unreadable: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                                  hint="delete it and re-run training; it will start from scratch") from None
        raise CheckpointError(f"checkpoint {path} holds objects that a safe load refuses ({unsafe})",
                              hint="only load checkpoints this project wrote; delete it and re-run training, "
                                   "which starts from scratch") from None
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}",
                              hint="delete it and re-run training; it will start from scratch") from None


def load_finished_checkpoint(run_dir: Path, config: Any, train_stage: str) -> dict:
    """The checkpoint of a finished run made with `config`; CheckpointError naming the stage to
    run when it is missing, unfinished or from another configuration (exports read only these)."""
    run_dir = Path(run_dir)
    ck = load_checkpoint(run_dir / CHECKPOINT)
    if not ck.get("finished"):
        raise CheckpointError(f"{run_dir}/{CHECKPOINT} is from an unfinished run (epoch {ck.get('epoch')})",
                              hint=f"finish training first: dvc repro {train_stage}")
    if ck.get("fingerprint") != fingerprint(config):
        raise CheckpointError(f"{run_dir}/{CHECKPOINT} was trained with another configuration than "
                              "params.yaml now gives", hint=f"re-train: dvc repro {train_stage}")
    return ck


def _rng_state() -> dict:
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    # Dropout on a GPU draws from the CUDA generators: a resume there restores them too.
    cuda = {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() and torch.cuda.is_initialized() else {}
    return {"torch": torch.get_rng_state(), **cuda,
            "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def set_aside_path(run_dir: Path) -> Path:
    """Where a checkpoint that is not resumed goes: beside the run directory, not inside it, so
    it is no part of the stage's DVC output; one per run, the latest replacing the one before."""
    run_dir = Path(run_dir)
    return run_dir.parent / f"{run_dir.name}.set-aside.pt"


@dataclass
class Trainer:
    run_dir: Path
    max_epochs: int
    seed: int
    config: Any = None                       # anything JSON-able that defines the run
    # {dependency: hash} of everything the run is made from (vgs.train.provenance.stage_provenance):
    # an interrupted run is resumed only when this is unchanged.
    provenance: dict | None = None
    set_aside_to: Path | None = None         # default: set_aside_path(run_dir)
    checkpoint_every_seconds: float = 120.0  # plus one at every epoch end
    log_every_steps: int = 25
    num_threads: int | None = None
    progress: bool = True
    stop_after_steps: int | None = None      # for tests: simulate a kill after N steps
    history: list = field(default_factory=list)

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self.fingerprint = fingerprint(self.config)
        self._stop_requested = False

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    # ------------------------------------------------------------------------------------------
    def _payload(self, task: TrainTask, epoch: int, index: int, finished: bool, elapsed: float) -> dict:
        return {"fingerprint": self.fingerprint, "config": self.config, "provenance": self.provenance or {},
                "epoch": epoch, "index": index, "finished": finished, "elapsed_seconds": elapsed,
                "task": task.state_dict(), "rng": _rng_state()}

    def _why_not_resume(self) -> str | None:
        """None if the checkpoint may be resumed, else the reason it may not."""
        try:
            ck = load_checkpoint(self.checkpoint_path)
        except CheckpointError as exc:
            return exc.message
        if ck.get("finished"):
            return ("it is from a finished run, and a training stage runs again only when something it "
                    "depends on changed or when forced")
        if ck.get("fingerprint") != self.fingerprint:
            return "it was made with another configuration"
        if (ck.get("provenance") or {}) != (self.provenance or {}):
            return "its inputs differ (" + describe_changes(ck.get("provenance"), self.provenance or {}) + ")"
        self._resumable = ck
        return None

    def _set_aside(self, reason: str) -> None:
        target = Path(self.set_aside_to) if self.set_aside_to else set_aside_path(self.run_dir)
        os.replace(self.checkpoint_path, target)
        # A fresh run gets a fresh log; earlier layouts kept set-aside checkpoints in the run itself.
        for old in [self.run_dir / LOG, *self.run_dir.glob("stale-*.pt")]:
            old.unlink(missing_ok=True)
        print(f"{self.run_dir}: not resuming the checkpoint there: {reason}; moved it to {target.name}, "
              "training from scratch")

    def _resume_point(self, task: TrainTask) -> tuple[int, int, float]:
        self._resumable = None
        exists = self.checkpoint_path.exists()
        reason = self._why_not_resume() if exists else None
        # Every rank has read the checkpoint before rank 0 may move it aside.
        barrier()
        if not exists:
            if is_main():
                (self.run_dir / LOG).unlink(missing_ok=True)
            return 0, 0, 0.0
        if reason is not None:
            if is_main():
                self._set_aside(reason)
            return 0, 0, 0.0
        ck = self._resumable
        task.load_state_dict(ck["task"])
        _set_rng_state(ck["rng"])
        if is_main():
            print(f"resuming {self.run_dir} at epoch {ck['epoch']}, batch {ck['index']}")
        return ck["epoch"], ck["index"], ck["elapsed_seconds"]

    def _log(self, row: dict) -> None:
        self.history.append(row)
        if not is_main():
            return
        with open(self.run_dir / LOG, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _on_signal(self, signum, frame):
        self._stop_requested = True

    # ------------------------------------------------------------------------------------------
    def fit(self, task: TrainTask) -> dict:
        """Train to max_epochs, resuming an interrupted run of the same provenance. Returns
        {"elapsed_seconds", "resumed"}."""
        if is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # The log is appended in place: never through a hard link into the DVC cache.
            own_copies(self.run_dir)
        barrier()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        seed_everything(self.seed)
        # Modules move before a resume: load_state_dict then copies the CPU-loaded checkpoint
        # (any device wrote it) onto the device each module lives on, optimiser state included.
        compute = current()
        place_modules(task, compute)
        epoch, index, elapsed = self._resume_point(task)
        resumed = epoch > 0 or index > 0
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM,)}
        steps_this_process = 0
        last_ck = time.monotonic()
        started = time.monotonic() - elapsed
        try:
            while epoch < self.max_epochs:
                task.start_epoch(epoch)
                n = task.num_batches(epoch)
                bar = tqdm(range(index, n), initial=index, total=n, desc=f"epoch {epoch + 1}/{self.max_epochs}",
                           disable=not (self.progress and is_main()), leave=False, unit="batch")
                for index in bar:
                    logs = task.train_step(epoch, index)
                    steps_this_process += 1
                    if index % self.log_every_steps == 0:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:3]})
                        self._log({"epoch": epoch, "batch": index, **logs})
                    kill_now = self.stop_after_steps is not None and steps_this_process >= self.stop_after_steps
                    # The clock and SIGTERM reach ranks at different steps; the vote (an all-reduce)
                    # also waits for every rank to finish this step before rank 0 writes.
                    checkpoint_now, stop_now = any_rank(
                        self._stop_requested or kill_now or time.monotonic() - last_ck > self.checkpoint_every_seconds,
                        self._stop_requested)
                    if checkpoint_now:
                        if is_main():
                            save_checkpoint(self.checkpoint_path, self._payload(
                                task, epoch, index + 1, False, time.monotonic() - started))
                        last_ck = time.monotonic()
                    if kill_now:
                        raise KeyboardInterrupt(f"stop_after_steps={self.stop_after_steps}")
                    if stop_now:
                        raise SystemExit(143)
                bar.close()
                logs = task.end_epoch(epoch) or {}
                self._log({"epoch": epoch, "end": True, "elapsed_seconds": round(time.monotonic() - started, 2),
                           **logs})
                epoch, index = epoch + 1, 0
                barrier()
                if is_main():
                    save_checkpoint(self.checkpoint_path, self._payload(
                        task, epoch, 0, epoch >= self.max_epochs, time.monotonic() - started))
                last_ck = time.monotonic()
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
        # No rank returns (and a stage reads the run) before rank 0 has written the last checkpoint.
        barrier()
        return {"elapsed_seconds": time.monotonic() - started, "resumed": resumed}
