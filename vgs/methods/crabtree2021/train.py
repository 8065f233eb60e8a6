"""Training of one Crabtree 2021 run: the TrainTask the shared Trainer drives (Sec. 3.1.2).

An epoch is one pass over the training datapoints (an image and its caption in every language) in a
seeded order, in batches of `batch_size` (the thesis: 128; the last partial batch is dropped so
every step has the same number of in-batch negatives). Every view is encoded, and the run's pair
loss (vgs/nn/retrieval_losses.py) is averaged over the view pairs of its multiview scheme
(`multiview_loss`: full graph, image anchor, average anchor or contrast-others). Adam; the learning
rate rises linearly over the first `warmup_fraction` of all steps, then is multiplied by `lr_decay`
every `lr_decay_every` steps (torch's LambdaLR, stepped per batch). After every epoch the validation
datapoints are encoded and recall@1/5/10 computed for every view pair; the epoch with the highest
mean avgR@10 over all view pairs is kept. The test split is never looked at here.

Batches are read through vgs/pairing/batch_loader.py (params.yaml data.in_memory, data.num_workers):
the batch order and every random draw stay here, so the numbers do not depend on how they are read.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from vgs.errors import ParamError
from vgs.eval.retrieval import recall_all_pairs, zero_vector_counts
from vgs.methods.crabtree2021.config import METHOD, RunConfig, model_dir, recall_summary
from vgs.methods.crabtree2021.model import CrabtreeModel, build_model, input_sizes, view_stores
from vgs.methods.crabtree2021.pretrain import load_pretrained_trunk
from vgs.nn.retrieval_losses import multiview_loss, view_pairs
from vgs.params import Params
from vgs.pairing.batch_loader import LoaderSettings, RowBatchLoader, ViewBatch, read_batch, row_batches
from vgs.pairing.instance_views import InstanceViews
from vgs.train.device import current
from vgs.train.trainer import Trainer
from vgs.utils.seed import seed_everything

VAL_KS = (1, 5, 10)
VAL_BATCH = 256      # validation encoding batch (eval mode: the batch does not change an embedding)
SUBSET_SEED = 20211   # the train_scenes subset is the same for every run and seed


def load_views(cfg: RunConfig, loading: LoaderSettings = LoaderSettings()) -> InstanceViews:
    """The run's views of the pair store; ParamError naming the key when the store lacks one."""
    view_stores(cfg)
    return InstanceViews(cfg.data.pairs, cfg.data.views, cfg.data.max_frames, in_memory=loading.in_memory,
                         features_dir=(cfg.data.features_dir, f"{METHOD}.data.features_dir"))


def train_subset(tuples: np.ndarray, n: int | None) -> np.ndarray:
    """The first n of a fixed permutation of the training datapoints, in store order (None: all)."""
    if n is None:
        return tuples
    if n > len(tuples):
        raise ParamError(f"{METHOD}.data.train_scenes = {n} exceeds the {len(tuples)} training datapoints",
                         hint="lower it, or set it to null to train on all of them")
    keep = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(tuples))[:n])
    return tuples[keep]


class WarmupStepDecay:
    """LambdaLR factor: (step + 1) / warmup during the warm-up, then decay ** ((step - warmup) // every).

    "a linear warmup schedule (from 0 to .001) through the first 10% of training steps, and then
    decreases by a factor of .99 after every 50 steps" (Sec. 3.1.2). The first step uses lr / warmup
    rather than 0 (a step at lr 0 would do nothing); the decay counts steps from the end of warm-up.
    """

    def __init__(self, warmup_steps: int, decay: float, every: int):
        self.warmup_steps, self.decay, self.every = int(warmup_steps), float(decay), int(every)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.decay ** ((step - self.warmup_steps) // self.every)


def make_scheduler(optimizer, cfg: RunConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    t = cfg.train
    warmup = math.ceil(t.warmup_fraction * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupStepDecay(warmup, t.lr_decay, t.lr_decay_every))


def pair_names(views: list[str], scheme: str) -> list[tuple[str, str]]:
    """The (x, y) view pairs the trainer's loss contrasts under `scheme`, in words, read back from
    `view_pairs` itself (one-hot stand-ins for the views): a centroid reads "mean(en,hi,ja)"."""
    eye = torch.eye(len(views))
    stand_ins = [eye[i:i + 1] for i in range(len(views))]

    def name(x: torch.Tensor) -> str:
        members = [views[i] for i in torch.nonzero(x[0] > 0).flatten().tolist()]
        return members[0] if len(members) == 1 else "mean(" + ",".join(members) + ")"

    return [(name(x), name(y)) for x, y in view_pairs(stand_ins, scheme)]


@torch.no_grad()
def encode_tuples(model: CrabtreeModel, views: InstanceViews, tuples: np.ndarray,
                  batch_size: int = 256, loader: RowBatchLoader | None = None) -> dict[str, np.ndarray]:
    """{view: (N, D) float32 embeddings} of the given datapoints in eval mode (as the losses see them),
    computed on the current device; read through `loader` (default: in this process)."""
    compute = current()
    loader = loader or RowBatchLoader(views)
    was_training = model.training
    model.eval()
    out: dict[str, list] = {v: [] for v in views.views}
    for batch in loader.batches(row_batches(tuples, batch_size)):
        with compute.autocast():
            out[views.views[0]].append(model.embed_images(compute.to(batch.images)).float().cpu())
            for lang in views.views[1:]:
                cap = compute.to(batch.captions[lang])
                out[lang].append(model.embed_captions(lang, cap.frames, cap.lengths).float().cpu())
    model.train(was_training)
    return {v: torch.cat(chunks).numpy() for v, chunks in out.items()}


def batch_loss(model: CrabtreeModel, cfg: RunConfig, views: InstanceViews, rows: np.ndarray, step: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The run's multiview loss on one batch of datapoints (rows of store indices, image first), on the
    current device and in its precision."""
    return view_batch_loss(model, cfg, read_batch(views, rows), step, generator)


def view_batch_loss(model: CrabtreeModel, cfg: RunConfig, batch: ViewBatch, step: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """batch_loss of a batch already read (vgs/pairing/batch_loader.py)."""
    compute = current()
    with compute.autocast():
        embeddings = [model.embed_images(compute.to(batch.images))]
        for lang, caption in batch.captions.items():
            cap = compute.to(caption)
            embeddings.append(model.embed_captions(lang, cap.frames, cap.lengths))
        return multiview_loss(embeddings, cfg.loss, cfg.train.scheme, step=step, generator=generator)


class CrabtreeTask:
    def __init__(self, cfg: RunConfig, views: InstanceViews, num_workers: int = 0):
        self.cfg = cfg
        self.views = views
        self.loader = RowBatchLoader(views, num_workers)
        seed_everything(cfg.seed)   # initial weights depend on the seed only
        self.model = build_model(cfg.model, cfg.data.caption_views, input_sizes(cfg))
        if cfg.model.image_init == "pretrained":
            load_pretrained_trunk(self.model.image, cfg.model.image_net, cfg.model.in_channels)
        self.train_tuples = train_subset(views.tuples("train"), cfg.data.train_scenes)
        self.val_tuples = views.tuples("val")
        self.steps_per_epoch = len(self.train_tuples) // cfg.train.batch_size
        if self.steps_per_epoch < 1:
            raise ParamError(f"{METHOD}.train.batch_size = {cfg.train.batch_size} exceeds the "
                             f"{len(self.train_tuples)} training datapoints", hint="lower the batch size")
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr)
        self.scaler = current().grad_scaler()
        self.scheduler = make_scheduler(self.optimizer, cfg, self.total_steps)
        self.best = {"epoch": -1, "val_avgR10": -1.0, "state": None}
        self.history: list[dict] = []
        self.cpu_seconds = 0.0
        self.steps = 0
        self.started_at = time.time()
        self._order = None
        self._batches = None            # the epoch's batches being read, and the index of the next one
        self._next_batch_at: tuple[int, int] | None = None
        self._last_val = float("nan")   # shown in the progress bar

    # -- TrainTask protocol ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "best": self.best, "history": self.history,
                "cpu_seconds": self.cpu_seconds, "steps": self.steps, "started_at": self.started_at,
                # fp16's loss scale must survive a resume; the disabled scaler has none to keep.
                **({"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {})}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best, self.history = state["best"], list(state["history"])
        self.cpu_seconds, self.steps = float(state["cpu_seconds"]), int(state["steps"])
        self.started_at = float(state["started_at"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])

    def start_epoch(self, epoch: int) -> None:
        self._order = np.random.default_rng([self.cfg.seed, 1, epoch]).permutation(len(self.train_tuples))
        self._batches = self._next_batch_at = None
        self.model.train()

    def num_batches(self, epoch: int) -> int:
        return self.steps_per_epoch

    def _batch(self, epoch: int, index: int) -> ViewBatch:
        """Batch `index` of the epoch's order; reading starts at the first batch asked for (the
        resume index after a resume) and runs ahead from there."""
        if self._next_batch_at != (epoch, index):
            b = self.cfg.train.batch_size
            epoch_batches = [self.train_tuples[self._order[i * b:(i + 1) * b]] for i in range(self.steps_per_epoch)]
            self._batches = self.loader.batches(epoch_batches, start=index)
        self._next_batch_at = (epoch, index + 1)
        return next(self._batches)

    def train_step(self, epoch: int, index: int) -> dict[str, float]:
        started = time.process_time()
        batch = self._batch(epoch, index)
        # Random imposters (triplet) from a generator of (seed, epoch, batch): identical after a resume.
        # The losses draw on the embeddings' device, so off the CPU the generator lives there too.
        device = current().device
        gen = torch.Generator(device=device).manual_seed(
            int(np.random.default_rng([self.cfg.seed, 2, epoch, index]).integers(2**62)))
        loss = view_batch_loss(self.model, self.cfg, batch, self.steps, gen)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.steps += 1
        self.cpu_seconds += time.process_time() - started
        return {"loss": float(loss.detach()), "val_avgR10": self._last_val, "lr": self.optimizer.param_groups[0]["lr"]}

    def end_epoch(self, epoch: int) -> dict:
        started = time.process_time()
        emb = encode_tuples(self.model, self.views, self.val_tuples, VAL_BATCH, self.loader)
        # A narrow encoder can pool all-off ReLU features into a zero vector; it is scored at chance.
        rows = {pair: r.as_row() for pair, r in recall_all_pairs(emb, ks=VAL_KS, zero_vectors="tie").items()}
        summary = recall_summary(rows, self.cfg.data)
        zeros = {view: n for view, n in zero_vector_counts(emb).items() if n}
        val = self._last_val = summary["all"]
        if val > self.best["val_avgR10"]:
            self.best = {"epoch": epoch, "val_avgR10": val, "state": copy.deepcopy(self.model.state_dict())}
        record = {"epoch": epoch + 1, "val_avgR10": val, "val_image_avgR10": summary["image"],
                  "val_crosslingual_avgR10": summary["crosslingual"],
                  **{f"val_{pair}_avgR10": row["avgR10"] for pair, row in rows.items()},
                  **({"val_zero_embeddings": zeros} if zeros else {})}
        self.history.append(record)
        self.cpu_seconds += time.process_time() - started
        # The trainer logs this beside its own 0-based "epoch"; the 1-based one stays in `history`.
        logged = {k: v for k, v in record.items() if k != "epoch"}
        return {**logged, "best_epoch": self.best["epoch"] + 1, "cpu_seconds": round(self.cpu_seconds, 2),
                "steps": self.steps}


def train_run(cfg: RunConfig, views: InstanceViews | None = None, progress: bool = True,
              stop_after_steps: int | None = None, run_dir=None, provenance: dict | None = None,
              loading: LoaderSettings = LoaderSettings()) -> dict:
    """Train one run (resuming an interrupted one of the same provenance); `views`, when given,
    keep their own `in_memory`."""
    views = views or load_views(cfg, loading)
    task = CrabtreeTask(cfg, views, loading.num_workers)
    trainer = Trainer(run_dir or model_dir(cfg.run), max_epochs=cfg.train.epochs, seed=cfg.seed,
                      config=cfg.fingerprint_config(), provenance=provenance,
                      checkpoint_every_seconds=cfg.train.checkpoint_every_seconds,
                      num_threads=cfg.train.num_threads, progress=progress, stop_after_steps=stop_after_steps)
    summary = trainer.fit(task)
    return {**summary, "cpu_seconds": task.cpu_seconds, "steps": task.steps, "task": task, "trainer": trainer}


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage crabtree2021-train@<run>: train one configuration (image ResNet + ResDAVEnet speech
    encoders) from scratch, or resume it after a kill (vgs/train/provenance.py says when)."""
    from vgs.methods.crabtree2021.config import load_run_config, model_dir
    from vgs.pairing.batch_loader import loader_settings
    from vgs.train.provenance import stage_provenance
    cfg = load_run_config(params, run)
    s = train_run(cfg, progress=progress, provenance=stage_provenance(f"crabtree2021-train@{run}"),
                  loading=loader_settings(params.profiled(METHOD).section("data")))
    best = s["task"].best
    return (f"{model_dir(cfg.run)}: {cfg.loss.name}, {cfg.model.pooling} pooling, {cfg.train.scheme}, "
            f"{cfg.model.encoders} encoders, {s['steps']} steps, best epoch {best['epoch'] + 1} (val mean avgR10 "
            f"{best['val_avgR10']:.3f}), {s['elapsed_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU "
            f"(profile {cfg.profile})")
