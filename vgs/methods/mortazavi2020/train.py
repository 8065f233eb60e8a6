"""Training of one Mortazavi 2020 run: the TrainTask the shared Trainer drives.

An epoch is one pass over the training datapoints (image + its caption in `caption_view`) in a
seeded order, in batches of `batch_size` (the paper: 64), with in-batch negatives for the
all-pairs hinge loss of Eq. 3 (vgs/nn/retrieval_losses.py). Adam; the learning rate follows
torch's CosineAnnealingLR (calr), CosineAnnealingWarmRestarts (calwr) or CyclicLR (cylr), stepped
per batch. After every epoch, recall@k on the validation pairs (both directions) picks the best
epoch; the test split is never looked at here. With `restart`, the run continues after its last
epoch from the best epoch's weights with a fresh Adam at lr * lr_factor and a new cosine schedule
(the paper's warm restart, section 5.2).

Everything that runs the model computes on `vgs.train.device.current()`: batches are read on the
CPU through vgs/pairing/batch_loader.py (params.yaml data.in_memory, data.num_workers), cropped
here with the CPU generator (so the CPU draws never change, whoever read the batch) and then moved.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from torch import nn

from vgs.eval.retrieval import recall_at_k
from vgs.methods.mortazavi2020.config import METHOD, RunConfig, model_dir
from vgs.methods.mortazavi2020.model import RetrievalPair, build_pair, input_sizes
from vgs.nn.retrieval_losses import hinge_all_pairs
from vgs.params import Params
from vgs.pairing.batch_loader import LoaderSettings, RowBatchLoader, ViewBatch, row_batches
from vgs.pairing.instance_views import InstanceViews
from vgs.train.device import current
from vgs.train.trainer import Trainer
from vgs.utils.seed import seed_everything

VAL_KS = (1, 5, 10)
VAL_BATCH = 256   # validation encoding batch (the export's is export.batch_size)


def load_views(cfg: RunConfig, loading: LoaderSettings = LoaderSettings()) -> InstanceViews:
    return InstanceViews(cfg.data.pairs, [cfg.data.image_view, cfg.data.caption_view], cfg.data.max_frames,
                         in_memory=loading.in_memory,
                         features_dir=(cfg.data.features_dir, "mortazavi2020.data.features_dir"))


def make_scheduler(optimizer, cfg: RunConfig, steps_per_epoch: int, epochs: int, schedule: str | None = None):
    """torch's scheduler for `schedule`, stepped once per batch over `epochs` epochs."""
    t = cfg.train
    schedule = schedule or t.schedule
    total = max(1, steps_per_epoch * epochs)
    if schedule == "calr":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if schedule == "calwr":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(1, steps_per_epoch * t.calwr_t0_epochs), T_mult=t.calwr_t_mult)
    if schedule == "cylr":
        # cycle_momentum needs a momentum term; Adam has betas, which CyclicLR does not cycle.
        return torch.optim.lr_scheduler.CyclicLR(
            optimizer, base_lr=t.lr * t.cylr_base_lr_factor, max_lr=t.lr,
            step_size_up=max(1, round(steps_per_epoch * t.cylr_step_epochs)), cycle_momentum=False)
    raise ValueError(schedule)


def random_crops(images: torch.Tensor, pad: int, generator: torch.Generator, hflip: bool) -> torch.Tensor:
    """Zero-pad by `pad` pixels and crop back to the original size at a random offset per image."""
    if pad == 0 and not hflip:
        return images
    b, c, h, w = images.shape
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
    out = torch.stack([padded[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(offsets.tolist())])
    if hflip:
        flip = torch.rand(b, generator=generator) < 0.5
        out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def encode_tuples(pair: RetrievalPair, views: InstanceViews, caption_view: str, tuples: np.ndarray,
                  batch_size: int, loader: RowBatchLoader | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings, caption embeddings) of the given tuples, in eval mode, L2-normalised, as
    float32 numpy arrays; computed on the current device, read through `loader` (default: in this
    process)."""
    compute = current()
    loader = loader or RowBatchLoader(views)
    was_training = pair.training
    pair.eval()
    im, au = [], []
    for batch in loader.batches(row_batches(tuples, batch_size)):
        images = compute.to(batch.images)
        frames, lengths = compute.to(batch.captions[caption_view])
        with compute.autocast():
            im.append(pair.embed_images(images).float().cpu())
            au.append(pair.embed_captions(frames, lengths).float().cpu())
    pair.train(was_training)
    return torch.cat(im).numpy(), torch.cat(au).numpy()


class MortazaviTask:
    def __init__(self, cfg: RunConfig, views: InstanceViews, num_workers: int = 0):
        self.cfg = cfg
        self.views = views
        self.loader = RowBatchLoader(views, num_workers)
        seed_everything(cfg.seed)   # initial weights depend on the seed only
        self.pair = build_pair(cfg.model, input_sizes(cfg, views))
        self.scaler = current().grad_scaler()   # one per task: it carries the fp16 loss scale across steps
        self.train_tuples = views.tuples("train")
        self.val_tuples = views.tuples("val")
        self.steps_per_epoch = math.ceil(len(self.train_tuples) / cfg.train.batch_size)
        self._new_optimiser(cfg.train.lr, cfg.train.schedule, cfg.train.epochs)
        self.phase = "base"
        self.best = {"epoch": -1, "val_r10": -1.0, "state": None, "phase": "base"}
        self.best_base = dict(self.best)
        self.cpu_seconds = 0.0
        self.steps = 0
        self._order = None
        self._batches = None            # the epoch's batches being read, and the index of the next one
        self._next_batch_at: tuple[int, int] | None = None
        self._last_val_r10 = float("nan")   # shown in the progress bar

    def _new_optimiser(self, lr: float, schedule: str, epochs: int) -> None:
        self.optimizer = torch.optim.Adam(self.pair.parameters(), lr=lr)
        self.scheduler = make_scheduler(self.optimizer, self.cfg, self.steps_per_epoch, epochs, schedule)

    # -- TrainTask protocol ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"pair": self.pair.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "phase": self.phase, "best": self.best,
                 "best_base": self.best_base, "cpu_seconds": self.cpu_seconds, "steps": self.steps}
        if self.scaler.is_enabled():   # fp16 only: fp32 checkpoints stay as they were
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.pair.load_state_dict(state["pair"])
        if state["phase"] == "restart":
            r = self.cfg.train.restart
            self._new_optimiser(self.cfg.train.lr * r.lr_factor, "calr", r.epochs)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.phase, self.best, self.best_base = state["phase"], state["best"], state["best_base"]
        self.cpu_seconds, self.steps = float(state["cpu_seconds"]), int(state["steps"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])

    def start_epoch(self, epoch: int) -> None:
        restart = self.cfg.train.restart
        if restart is not None and epoch >= self.cfg.train.epochs and self.phase == "base":
            # Warm restart from the best epoch so far, at a fraction of the initial learning rate.
            self.pair.load_state_dict(self.best["state"])
            self._new_optimiser(self.cfg.train.lr * restart.lr_factor, "calr", restart.epochs)
            self.phase = "restart"
        self._order = np.random.default_rng([self.cfg.seed, 1, epoch]).permutation(len(self.train_tuples))
        self._batches = self._next_batch_at = None
        self.pair.train()

    def num_batches(self, epoch: int) -> int:
        return self.steps_per_epoch

    def _batch(self, epoch: int, index: int) -> ViewBatch:
        """Batch `index` of the epoch's order; reading starts at the first batch asked for (the
        resume index after a resume) and runs ahead from there."""
        if self._next_batch_at != (epoch, index):
            epoch_batches = row_batches(self.train_tuples[self._order], self.cfg.train.batch_size)
            self._batches = self.loader.batches(epoch_batches, start=index)
        self._next_batch_at = (epoch, index + 1)
        return next(self._batches)

    def train_step(self, epoch: int, index: int) -> dict[str, float]:
        started = time.process_time()
        t = self.cfg.train
        batch = self._batch(epoch, index)
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.cfg.seed, 2, epoch, index]).integers(2**62)))
        images = random_crops(batch.images, t.crop_pad, gen, t.hflip)
        cap = batch.captions[self.cfg.data.caption_view]
        compute = current()
        images, frames, lengths = compute.to((images, cap.frames, cap.lengths))
        with compute.autocast():
            loss = hinge_all_pairs(self.pair.embed_images(images), self.pair.embed_captions(frames, lengths),
                                   margin=t.margin)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.steps += 1
        self.cpu_seconds += time.process_time() - started
        return {"loss": float(loss.detach()), "val_R10": self._last_val_r10, "lr": self.optimizer.param_groups[0]["lr"]}

    def end_epoch(self, epoch: int) -> dict:
        started = time.process_time()
        image_emb, caption_emb = encode_tuples(self.pair, self.views, self.cfg.data.caption_view, self.val_tuples,
                                               VAL_BATCH, self.loader)
        r = recall_at_k(image_emb, caption_emb, ks=VAL_KS, names=("image", "speech"))
        row = r.as_row()
        val_r10 = self._last_val_r10 = row["avgR10"]
        if val_r10 > self.best["val_r10"]:
            self.best = {"epoch": epoch, "val_r10": val_r10, "state": copy.deepcopy(self.pair.state_dict()),
                         "phase": self.phase}
            if self.phase == "base":
                self.best_base = self.best
        self.cpu_seconds += time.process_time() - started
        return {"phase": self.phase, "val_i2s_R10": row["a2b_R10"], "val_s2i_R10": row["b2a_R10"],
                "val_avgR10": val_r10, "val_avgR1": row["avgR1"], "val_avgR5": row["avgR5"],
                "best_epoch": self.best["epoch"], "cpu_seconds": round(self.cpu_seconds, 2), "steps": self.steps}


def train_run(cfg: RunConfig, views: InstanceViews | None = None, progress: bool = True,
              stop_after_steps: int | None = None, run_dir=None, provenance: dict | None = None,
              loading: LoaderSettings = LoaderSettings()) -> dict:
    """Train one run (resuming an interrupted one of the same provenance); `views`, when given,
    keep their own `in_memory`."""
    views = views or load_views(cfg, loading)
    task = MortazaviTask(cfg, views, loading.num_workers)
    trainer = Trainer(run_dir or model_dir(cfg.run), max_epochs=cfg.total_epochs, seed=cfg.seed,
                      config=cfg.fingerprint_config(), provenance=provenance,
                      checkpoint_every_seconds=cfg.train.checkpoint_every_seconds,
                      num_threads=cfg.train.num_threads, progress=progress, stop_after_steps=stop_after_steps)
    summary = trainer.fit(task)
    return {**summary, "cpu_seconds": task.cpu_seconds, "steps": task.steps, "task": task, "trainer": trainer}


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage mortazavi2020-train@<run>: train one encoder pair from scratch, or resume it after a
    kill (vgs/train/provenance.py says when)."""
    from vgs.methods.mortazavi2020.config import load_run_config, model_dir
    from vgs.pairing.batch_loader import loader_settings
    from vgs.train.provenance import stage_provenance
    cfg = load_run_config(params, run)
    s = train_run(cfg, progress=progress, provenance=stage_provenance(f"mortazavi2020-train@{run}"),
                  loading=loader_settings(params.profiled(METHOD).section("data")))
    best = s["task"].best
    return (f"{model_dir(cfg.run)}: G{cfg.model.gru_layers} d={cfg.model.dim}, {s['steps']} steps, best epoch "
            f"{best['epoch'] + 1} (val avg R@10 {best['val_r10']:.3f}), {s['elapsed_seconds']:.0f} s wall, "
            f"{s['cpu_seconds']:.0f} s CPU (profile {cfg.profile})")
