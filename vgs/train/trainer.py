"""The one training loop: seeding, device choice, progress, logging, checkpoint and resume.

A method supplies a TrainTask: it owns its models, optimisers and data order and performs its own
optimisation steps (so alternating or multi-optimiser schemes such as SMART's fit). The trainer
owns the loop position, random-number state and checkpoints.

Resume contract: a run killed at any point restarts from its last checkpoint and, on the same
machine and thread count, finishes with bit-identical weights. That holds because
  * the batch order of epoch e depends only on (seed, e), never on the global RNG;
  * the global RNG states (torch, numpy, random) are saved with every checkpoint;
  * checkpoints are written atomically (temporary file, then rename).
A checkpoint records a fingerprint of the run's configuration; a checkpoint from a different
configuration is set aside, not resumed.
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
from vgs.utils.atomic import atomic_path
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


def pick_device(choice: str = "auto") -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def fingerprint(config: Any) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist",
                              hint="train the model first (dvc repro the method's train stage)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}",
                              hint="delete it and re-run training; it will start from scratch") from None


@dataclass
class Trainer:
    run_dir: Path
    max_epochs: int
    seed: int
    config: Any = None                       # anything JSON-able that defines the run
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

    def is_finished(self) -> bool:
        """True if this run's checkpoint is complete and was made with this configuration, so
        fit() would do nothing (callers can then skip rewriting their own outputs)."""
        if not self.checkpoint_path.exists():
            return False
        ck = load_checkpoint(self.checkpoint_path)
        return bool(ck.get("finished")) and ck.get("fingerprint") == self.fingerprint

    # ------------------------------------------------------------------------------------------
    def _payload(self, task: TrainTask, epoch: int, index: int, finished: bool, elapsed: float) -> dict:
        return {"fingerprint": self.fingerprint, "config": self.config, "epoch": epoch, "index": index,
                "finished": finished, "elapsed_seconds": elapsed, "task": task.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                        "python": random.getstate()}}

    def _resume_point(self, task: TrainTask) -> tuple[int, int, float, bool]:
        if not self.checkpoint_path.exists():
            return 0, 0, 0.0, False
        ck = load_checkpoint(self.checkpoint_path)
        if ck.get("fingerprint") != self.fingerprint:
            stale = self.checkpoint_path.with_name(f"stale-{ck.get('fingerprint', 'unknown')}.pt")
            os.replace(self.checkpoint_path, stale)
            print(f"checkpoint in {self.run_dir} was made with another configuration; moved to {stale.name}"
                  " and starting from scratch")
            return 0, 0, 0.0, False
        task.load_state_dict(ck["task"])
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])
        if not ck["finished"]:
            print(f"resuming {self.run_dir} at epoch {ck['epoch']}, batch {ck['index']}")
        return ck["epoch"], ck["index"], ck["elapsed_seconds"], ck["finished"]

    def _log(self, row: dict) -> None:
        self.history.append(row)
        with open(self.run_dir / LOG, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _on_signal(self, signum, frame):
        self._stop_requested = True

    # ------------------------------------------------------------------------------------------
    def fit(self, task: TrainTask) -> dict:
        """Train to max_epochs (resuming if possible). Returns {"elapsed_seconds", "resumed"}."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        seed_everything(self.seed)
        epoch, index, elapsed, finished = self._resume_point(task)
        resumed = epoch > 0 or index > 0
        if finished:
            print(f"{self.run_dir}: training already finished ({elapsed:.0f} s); nothing to do")
            return {"elapsed_seconds": elapsed, "resumed": resumed}
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM,)}
        steps_this_process = 0
        last_ck = time.monotonic()
        started = time.monotonic() - elapsed
        try:
            while epoch < self.max_epochs:
                task.start_epoch(epoch)
                n = task.num_batches(epoch)
                bar = tqdm(range(index, n), initial=index, total=n, desc=f"epoch {epoch + 1}/{self.max_epochs}",
                           disable=not self.progress, leave=False, unit="batch")
                for index in bar:
                    logs = task.train_step(epoch, index)
                    steps_this_process += 1
                    if index % self.log_every_steps == 0:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:3]})
                        self._log({"epoch": epoch, "batch": index, **logs})
                    kill_now = self.stop_after_steps is not None and steps_this_process >= self.stop_after_steps
                    if self._stop_requested or kill_now or time.monotonic() - last_ck > self.checkpoint_every_seconds:
                        save_checkpoint(self.checkpoint_path, self._payload(
                            task, epoch, index + 1, False, time.monotonic() - started))
                        last_ck = time.monotonic()
                    if kill_now:
                        raise KeyboardInterrupt(f"stop_after_steps={self.stop_after_steps}")
                    if self._stop_requested:
                        raise SystemExit(143)
                bar.close()
                logs = task.end_epoch(epoch) or {}
                self._log({"epoch": epoch, "end": True, "elapsed_seconds": round(time.monotonic() - started, 2),
                           **logs})
                epoch, index = epoch + 1, 0
                save_checkpoint(self.checkpoint_path, self._payload(
                    task, epoch, 0, epoch >= self.max_epochs, time.monotonic() - started))
                last_ck = time.monotonic()
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
        return {"elapsed_seconds": time.monotonic() - started, "resumed": resumed}
