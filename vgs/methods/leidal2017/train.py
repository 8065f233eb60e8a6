"""Training of one Leidal et al. 2017 run: the TrainTask the shared Trainer drives.

An epoch covers the anchor view of the pair store (MNIST train, 55,000 images) once in a seeded
order, each anchor with the partner the pair store drew for that epoch; `pairs_per_epoch` cuts it
to the first N pairs of that order (the CPU profile). The learning rate is the paper's
lr * lr_decay ** (epoch // lr_decay_every_epochs), or with `lr_schedule: cosine` lr annealed to 0
over all steps of the run. With `lambda_ig_warmup_steps` the IG weight rises linearly from 0 to
lambda_IG over those first steps. Both are functions of the step count, which the checkpoint
holds, so a resumed run follows the same schedule.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from vgs.methods.leidal2017.config import RunConfig, model_dir
from vgs.methods.leidal2017.data import LeidalData
from vgs.methods.leidal2017.model import (LeidalModel, draw_negatives, information_gain_loss, leidal_loss,
                                          similarity_loss)
from vgs.params import Params
from vgs.train.device import Compute, current
from vgs.train.trainer import Trainer
from vgs.utils.seed import seed_everything


def build_model(cfg: RunConfig, data: LeidalData) -> LeidalModel:
    return LeidalModel(z_dim=cfg.model.z_dim, image_size=data.image_size, num_frames=cfg.model.num_frames,
                       num_bins=data.audio_bins)


def make_adam(parameters, lr: float, betas, eps: float) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one (5x faster steps on CPU for the 10M weights:
    about 10% of a training step); same update rule."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=lr, betas=betas, eps=eps)


class LeidalTask:
    def __init__(self, cfg: RunConfig, data: LeidalData):
        self.cfg = cfg
        self.data = data
        seed_everything(cfg.seed)  # the initial weights depend on the seed only
        # seed_everything's deterministic mode also NaN-fills every new tensor, a guard against
        # kernels that read memory they never wrote. None of this model's do (a test compares the
        # weights with and without it), and the fills cost 5% of a training step.
        torch.utils.deterministic.fill_uninitialized_memory = False
        self.model = build_model(cfg, data)
        t = cfg.train
        self.optimizer = make_adam(self.model.parameters(), t.lr, t.betas, t.eps)
        self.compute = current()
        self.scaler = self.compute.grad_scaler()
        self.cpu_seconds = 0.0
        self.steps = 0
        self._image_idx = self._audio_idx = None
        anchors = len(data.pair_indices("train", 0)[0])
        per_epoch = min(anchors, t.pairs_per_epoch or anchors)
        self.total_steps = t.epochs * math.ceil(per_epoch / t.batch_pairs)

    # -- TrainTask protocol ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "cpu_seconds": self.cpu_seconds, "steps": self.steps}
        if self.scaler.is_enabled():  # fp16 only: fp32 and bf16 checkpoints keep their layout
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
        self.steps = int(state.get("steps", 0))

    def learning_rate(self, epoch: int) -> float:
        t = self.cfg.train
        if t.lr_schedule == "cosine":
            return 0.5 * t.lr * (1.0 + math.cos(math.pi * min(self.steps, self.total_steps) / self.total_steps))
        return t.lr * t.lr_decay ** (epoch // t.lr_decay_every_epochs)

    def lambda_ig(self) -> float:
        """The IG weight of the next step: lambda_IG, ramped up from 0 over the warm-up steps.
        Why: at lambda_IG >= 0.15 the KL term pulls every posterior to the prior before L_sim has
        built any structure, and 500-1,000 CPU steps are not enough to leave that state (README)."""
        warmup = self.cfg.train.lambda_ig_warmup_steps
        if warmup <= 0:
            return self.cfg.lambda_ig
        return self.cfg.lambda_ig * min(1.0, (self.steps + 1) / warmup)

    def start_epoch(self, epoch: int) -> None:
        image_idx, audio_idx = self.data.pair_indices("train", epoch)
        order = np.random.default_rng([self.cfg.seed, 1, epoch]).permutation(len(image_idx))
        if self.cfg.train.pairs_per_epoch is not None:
            order = order[:self.cfg.train.pairs_per_epoch]
        self._image_idx, self._audio_idx = image_idx[order], audio_idx[order]
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(epoch)
        self.model.train()

    def num_batches(self, epoch: int) -> int:
        return math.ceil(len(self._image_idx) / self.cfg.train.batch_pairs)

    def train_step(self, epoch: int, index: int) -> dict[str, float]:
        started = time.process_time()
        t = self.cfg.train
        rows = slice(index * t.batch_pairs, (index + 1) * t.batch_pairs)
        images = self.compute.to(self.data.images(self._image_idx[rows]))
        audio = self.compute.to(self.data.audio(self._audio_idx[rows]))
        if t.lr_schedule == "cosine":
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(epoch)
        with self.autocast():
            terms = leidal_loss(self.model, images, audio, self.lambda_ig(), t.lambda_wd,
                                num_samples=t.num_samples, margin=t.margin)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.steps += 1
        self.cpu_seconds += time.process_time() - started
        return {k: float(v.detach()) for k, v in terms.items()}

    def autocast(self):
        """The training precision: on the CPU the run's own `precision` (bf16 autocast pays off on
        CPUs with AMX, README "Time", while the shared rule keeps the CPU in fp32); on a GPU the
        shared `train.precision` of params.yaml."""
        if self.compute.device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.train.precision == "bf16")
        return self.compute.autocast()

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> dict[str, float]:
        logs = {"lr": self.learning_rate(epoch), "cpu_seconds": round(self.cpu_seconds, 2), "steps": self.steps}
        n = self.cfg.train.val_pairs
        if n:
            started = time.process_time()
            logs.update(validation_terms(self.model, self.data, self.cfg, n, seed=[self.cfg.seed, 2, epoch],
                                         compute=self.compute))
            self.cpu_seconds += time.process_time() - started
            self.model.train()
        return logs


@torch.no_grad()
def validation_terms(model: LeidalModel, data: LeidalData, cfg: RunConfig, num_pairs: int, seed,
                     compute: Compute) -> dict:
    """L_sim and L_IG on the first `num_pairs` validation pairs, in eval mode, with a private CPU
    RNG (so validation does not move the training random streams, and draws the same noise on
    every device)."""
    model.eval()
    image_idx, audio_idx = data.pair_indices("val", 0)
    image_idx, audio_idx = image_idx[:num_pairs], audio_idx[:num_pairs]
    gen = torch.Generator().manual_seed(int(np.random.default_rng(seed).integers(2**62)))
    with compute.autocast():
        im_mean, im_logvar = (t.float() for t in model.image(compute.to(data.images(image_idx))))
        au_mean, au_logvar = (t.float() for t in model.audio(compute.to(data.audio(audio_idx))))
    s = cfg.train.num_samples
    z = im_mean.shape[-1]
    eps_i = compute.to(torch.randn((s, *im_mean.shape), generator=gen))
    eps_a = compute.to(torch.randn((s, *au_mean.shape), generator=gen))
    im = (im_mean + (0.5 * im_logvar).exp() * eps_i).reshape(-1, z)
    au = (au_mean + (0.5 * au_logvar).exp() * eps_a).reshape(-1, z)
    sim = similarity_loss(im, au, compute.to(draw_negatives(len(im), gen)), cfg.train.margin)
    ig = information_gain_loss(im_mean, im_logvar, au_mean, au_logvar)
    # Cross-modal retrieval of the paired item's class among the val pairs, from posterior means:
    # a label-free-training sanity check that the shared space carries digit identity.
    labels = data.image_store.labels[image_idx]
    nearest = (im_mean @ au_mean.T).argmax(1).cpu().numpy()
    class_match = float((data.audio_store.labels[audio_idx][nearest] == labels).mean())
    return {"val_sim": float(sim), "val_ig": float(ig), "val_class_match": class_match}


def make_trainer(cfg: RunConfig, progress: bool = True, stop_after_steps: int | None = None,
                 run_dir=None, provenance: dict | None = None) -> Trainer:
    return Trainer(run_dir or model_dir(cfg.run), max_epochs=cfg.train.epochs, seed=cfg.seed,
                   config=cfg.fingerprint_config(), provenance=provenance,
                   checkpoint_every_seconds=cfg.train.checkpoint_every_seconds,
                   num_threads=cfg.train.num_threads, progress=progress, stop_after_steps=stop_after_steps)


def train_run(cfg: RunConfig, data: LeidalData | None = None, progress: bool = True,
              stop_after_steps: int | None = None, run_dir=None, provenance: dict | None = None) -> dict:
    """Train one run (resuming an interrupted one of the same provenance); returns the trainer
    summary and the task."""
    data = data or LeidalData(cfg.data, cfg.model.num_frames)
    data.warm("train")
    if cfg.train.val_pairs:
        data.audio(data.pair_indices("val", 0)[1][:cfg.train.val_pairs])
    task = LeidalTask(cfg, data)
    trainer = make_trainer(cfg, progress, stop_after_steps, run_dir, provenance)
    summary = trainer.fit(task)
    return {**summary, "cpu_seconds": task.cpu_seconds, "steps": task.steps, "task": task, "trainer": trainer}


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage leidal2017-train@<run>: train one lambda_IG from scratch, or resume it after a kill
    (vgs/train/provenance.py says when)."""
    from vgs.methods.leidal2017.config import load_run_config, model_dir
    from vgs.train.provenance import stage_provenance
    cfg = load_run_config(params, run)
    s = train_run(cfg, progress=progress, provenance=stage_provenance(f"leidal2017-train@{run}"))
    return (f"{model_dir(cfg.run)}: lambda_IG={cfg.lambda_ig:g}, {s['steps']} steps, "
            f"{s['elapsed_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU (profile {cfg.profile})")
