"""Training: the TrainTask for every pvae2018 model, run by the shared Trainer.

Each epoch uses that epoch's pairs from the pair store (each spoken digit with a fresh random
written digit of its class), in an order drawn from (seed, epoch). Contrastive negatives come
from a generator seeded by (seed, epoch, batch), so a resumed run draws the same negatives.
VAE-sp and VAE-im see the same stream: the audio or the image column of the pairs.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from vgs.eval.clustering import kmeans_purity
from vgs.eval.tsne import balanced_sample
from vgs.methods.pvae2018.config import RunConfig, load_run_config, model_dir
from vgs.methods.pvae2018.data import DigitData
from vgs.methods.pvae2018.inference import encode
from vgs.methods.pvae2018.model import AUDIO, IMAGE, MultimodalVAE, build_model
from vgs.methods.pvae2018.objective import objective
from vgs.params import Params
from vgs.train.device import current
from vgs.train.trainer import Trainer
from vgs.utils.atomic import atomic_write_json

SUMMARY = "summary.json"


class PVAETask:
    def __init__(self, cfg: RunConfig, data: DigitData):
        data.require_input_sizes(cfg.net, f"the {cfg.model.name} run configuration")
        self.cfg = cfg
        self.data = data
        torch.manual_seed(cfg.seed)  # initial weights depend on the seed only
        self.model = build_model(cfg.model.kind, cfg.net, cfg.model.modality)
        self.model.set_normalisation(data.stats)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr)
        self.compute = current()
        self.scaler = self.compute.grad_scaler()
        self.cpu_seconds = 0.0
        self.order: np.ndarray | None = None
        self.tuples: np.ndarray | None = None
        modalities = self.model.spec.modalities
        self.val_sets = {}
        if cfg.train.val_every:
            for m in modalities:
                idx = data.split(m, "val")
                if m == IMAGE and len(idx) > cfg.train.val_images:
                    idx = idx[balanced_sample(data.labels(m, idx), cfg.train.val_images, seed=cfg.seed)]
                self.val_sets[m] = idx

    # -- TrainTask protocol ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "cpu_seconds": self.cpu_seconds}
        if self.scaler.is_enabled():  # fp16 only: fp32 and bf16 checkpoints keep their layout
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        if self.scaler.is_enabled() and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))

    def start_epoch(self, epoch: int) -> None:
        self.tuples = self.data.pairs.tuples("train", epoch)
        rng = np.random.default_rng([self.cfg.seed, epoch])
        b = self.cfg.train.batch_size
        order = rng.permutation(len(self.tuples))[:self.num_batches(epoch) * b]
        group = self.cfg.train.length_sort_batches * b
        if group > b and AUDIO in self.model.spec.modalities:
            # Sort each run of `group` shuffled samples by utterance length before cutting batches,
            # then shuffle the batches: padding (wasted LSTM steps) drops to a few percent while
            # every batch stays a random mix of digits.
            lengths = np.array([len(self.data.audio[i]) for i in self.tuples[:, 0]])
            order = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")]
                                    for chunk in np.split(order, np.arange(group, len(order), group))])
            batches = order.reshape(-1, b)
            order = batches[rng.permutation(len(batches))].reshape(-1)
        self.order = order

    def num_batches(self, epoch: int) -> int:
        # Full batches only: negatives are drawn within the batch and need company.
        return len(self.tuples) // self.cfg.train.batch_size

    def train_step(self, epoch: int, index: int) -> dict[str, float]:
        t0 = time.process_time()
        b = self.cfg.train.batch_size
        rows = self.tuples[self.order[index * b:(index + 1) * b]]
        modalities = self.model.spec.modalities
        batch = self.compute.to(self.data.batch(rows[:, 0] if AUDIO in modalities else None,
                                                rows[:, 1] if IMAGE in modalities else None))
        # A CPU generator on every device: the contrastive negatives do not depend on the device.
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.cfg.seed, epoch, index]).integers(2**62)))
        self.model.train()
        with self.compute.autocast():
            loss, logs = objective(self.model, batch, self.cfg.model.weights, gen)
        self.opt.zero_grad()
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip:
            self.scaler.unscale_(self.opt)  # clip the true gradients, not the fp16-scaled ones
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip))
        self.scaler.step(self.opt)
        self.scaler.update()
        self.cpu_seconds += time.process_time() - t0
        return logs

    def end_epoch(self, epoch: int) -> dict[str, float]:
        out = {"cpu_seconds": round(self.cpu_seconds, 2)}
        every = self.cfg.train.val_every
        if every and ((epoch + 1) % every == 0 or epoch + 1 == self.cfg.train.epochs):
            out.update(validation_purity(self.model, self.data, self.val_sets, seed=self.cfg.seed))
        return out


def validation_purity(model: MultimodalVAE, data: DigitData, val_sets: dict, seed: int) -> dict[str, float]:
    out = {}
    for m, idx in val_sets.items():
        labels = data.labels(m, idx)
        for name, (mean, _) in encode(model, data, m, idx).items():
            out[f"val_purity_{m}_{name}"] = round(kmeans_purity(mean, labels, k=10, seed=seed, n_init=4), 4)
    return out


def train_run(cfg: RunConfig, run_dir: str | Path, data: DigitData | None = None, progress: bool = True,
              stop_after_steps: int | None = None, num_threads: int | None = None,
              provenance: dict | None = None) -> dict:
    """Train (resuming an interrupted run of the same provenance) and write run_dir/summary.json."""
    run_dir = Path(run_dir)
    data = data or DigitData(cfg.data)
    task = PVAETask(cfg, data)
    trainer = Trainer(run_dir, max_epochs=cfg.train.epochs, seed=cfg.seed, config=cfg.fingerprint_dict(), provenance=provenance,
                      checkpoint_every_seconds=cfg.train.checkpoint_every_seconds, progress=progress,
                      stop_after_steps=stop_after_steps, num_threads=num_threads)
    load_start = os.getloadavg()
    result = trainer.fit(task)
    summary = {
        "model": cfg.model.name, "kind": cfg.model.kind, "profile": cfg.profile, "epochs": cfg.train.epochs,
        "steps": cfg.train.epochs * (len(data.pairs.tuples("train", 0)) // cfg.train.batch_size),
        "wall_seconds": round(result["elapsed_seconds"], 1), "cpu_seconds": round(task.cpu_seconds, 1),
        "torch_threads": torch.get_num_threads(), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "parameters": sum(p.numel() for p in task.model.parameters()),
        "vad_frames_kept": round(data.frames_kept, 4), "fingerprint": trainer.fingerprint,
        "resumed": result["resumed"], "complete": True,
    }
    log = run_dir / "train_log.jsonl"
    if log.exists():
        ends = [r for r in map(json.loads, log.read_text().splitlines()) if r.get("end")]
        if ends:
            summary["last_epoch_log"] = ends[-1]
    atomic_write_json(run_dir / SUMMARY, summary)
    return summary


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage pvae2018-train@<model>: train one model of Table 1 from scratch, or resume it after
    a kill (vgs/train/provenance.py says when). Threads: OMP_NUM_THREADS, as torch reads it."""
    from vgs.train.provenance import stage_provenance
    cfg = load_run_config(params, run)
    s = train_run(cfg, model_dir(run), progress=progress, provenance=stage_provenance(f"pvae2018-train@{run}"))
    return (f"{model_dir(run)}: {s['epochs']} epochs ({cfg.profile} profile), {s['cpu_seconds']} CPU s, "
            f"{s['wall_seconds']} wall s, {s['torch_threads']} threads")
