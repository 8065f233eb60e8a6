"""Reciprocating training (Eqs. 1-2) as a TrainTask: one Trainer epoch is one phase.

A phase belongs to one modality m (the learner) and updates only m's group: E_m, D_m and
T_m->other. The other group is frozen (requires_grad off, eval mode) and only serves guides.
  pretrain phase (hybrid style only):  loss = w_rec * ||x - D_m(E_m(x))||^2
  reciprocating phase:                 loss = w_rec * ||x - D_m(E_m(x))||^2
                                              + w_guide * ||z_other,c,k - T_m->other(E_m(x))||^2
(squared L2, averaged over elements). The generator streams (item, partner) episodes of one
concept each; at the start of a reciprocating phase it groups the phase's partners by concept,
and the guide of concept k is the partner closest to the centre of that group in the frozen
other encoder's latent space (guides.py). The learner's step only ever receives an input and a
guide vector, never a label.

Schedules:
  classroom: reciprocating phases from the start, alternating modalities (`first` goes first)
  hybrid:    one pretraining phase per modality (autoencoders alone), then the same
             reciprocating phases on the pre-trained autoencoders.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from vgs.errors import ParamError
from vgs.methods.smart import MODALITIES
from vgs.methods.smart.config import MODEL_FILE, SUMMARY_FILE, run_config, run_dir
from vgs.methods.smart.data import CooccurrenceStream, SmartData, load_data
from vgs.methods.smart.guides import guide_table
from vgs.methods.smart.model import ConvAutoencoder, SmartNet, Transcoder, other
from vgs.params import Params
from vgs.train.device import current
from vgs.train.trainer import Trainer, save_checkpoint
from vgs.utils.atomic import atomic_write_json
from vgs.utils.seed import seed_everything


@dataclass(frozen=True)
class Phase:
    kind: str        # "pretrain" | "reciprocate"
    modality: str    # the learner: "image" | "audio"
    steps: int


def build_schedule(pretrain_steps: dict[str, int], phases: int, steps: dict[str, int], first: str) -> list[Phase]:
    schedule = [Phase("pretrain", m, pretrain_steps[m]) for m in MODALITIES if pretrain_steps.get(m, 0) > 0]
    order = [first, other(first)]
    schedule += [Phase("reciprocate", order[p % 2], steps[order[p % 2]]) for p in range(phases)]
    return schedule


# ----------------------------------------------------------------------------------------------
def build_net(cfg: dict, input_hw: dict[str, tuple[int, int]]) -> SmartNet:
    aes, tcs = {}, {}
    for mod in MODALITIES:
        c = cfg[mod]
        try:
            aes[mod] = ConvAutoencoder(input_hw[mod], c["widths"], cfg["latent_dim"], c["convs_per_stage"],
                                       c["sampling"], cfg["leaky_slope"])
        except ValueError as exc:
            h, w = input_hw[mod]
            most = min((h & -h).bit_length(), (w & -w).bit_length()) - 1   # halvings that keep H and W whole
            raise ParamError(f"smart.model.{mod}: {exc}",
                             hint=f"the {mod} inputs are {h}x{w}: use at most {most} stage(s)") from None
        tcs[mod] = Transcoder(cfg["latent_dim"], cfg["transcoder_hidden"], cfg["transcoder_layers"],
                              cfg["leaky_slope"])
    return SmartNet(aes, tcs)


# ----------------------------------------------------------------------------------------------
def set_learner(net: SmartNet, learner: str) -> None:
    """Make `learner`'s group trainable and freeze the other group (no gradients, eval mode, so
    its batch-norm statistics stay as they are)."""
    for mod in MODALITIES:
        for module in net.group(mod):
            module.train(mod == learner)
            module.requires_grad_(mod == learner)


@torch.no_grad()
def encode(net: SmartNet, modality: str, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Latents of `x` (on the CPU, in fp32) from `modality`'s encoder, in eval mode."""
    compute = current()
    ae = net.autoencoders[modality]
    was = ae.training
    ae.eval()
    with compute.autocast():
        out = torch.cat([ae.encode(compute.to(x[i:i + batch])).float().cpu() for i in range(0, len(x), batch)])
    ae.train(was)
    return out


class SmartTask:
    def __init__(self, net: SmartNet, data: SmartData, schedule: list[Phase], cfg: dict, seed: int):
        self.net = net
        self.data = data
        self.schedule = schedule
        self.cfg = cfg
        self.seed = seed
        self.compute = current()
        self.opt = {m: torch.optim.Adam(net.group_parameters(m), lr=cfg["lr"]) for m in MODALITIES}
        # One scaler for both optimisers: each step updates one group, then updates the scale.
        self.scaler = self.compute.grad_scaler()
        self.streams = {m: CooccurrenceStream(data.pairs(m), seed, m) for m in MODALITIES}
        # Where each phase starts in its modality's stream: phases consume consecutive slices.
        self.starts, used = [], {m: 0 for m in MODALITIES}
        for ph in schedule:
            self.starts.append(used[ph.modality])
            used[ph.modality] += ph.steps * cfg["batch_size"]
        self.cpu_seconds = 0.0
        self.guides: dict[int, dict] = {}   # phase -> {"items": {k: item}} (for the record)
        rng = np.random.default_rng([seed, 99])
        self.val = {m: np.sort(rng.permutation(data[m].indices("val"))[:cfg["val_items"]]) for m in MODALITIES}
        self._episodes = self._targets = None
        self._guide_latents: dict[int, np.ndarray] = {}
        self._sums: dict[str, float] = {}   # this phase's summed step losses (kept across a resume)

    # -- TrainTask ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": {m: o.state_dict() for m, o in self.opt.items()},
                "scaler": self.scaler.state_dict(),
                "cpu_seconds": self.cpu_seconds, "guides": self.guides, "sums": self._sums}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        for m, o in self.opt.items():
            o.load_state_dict(state["opt"][m])
        if state.get("scaler"):     # empty for a disabled (fp32, bf16) scaler
            self.scaler.load_state_dict(state["scaler"])
        self.cpu_seconds = state["cpu_seconds"]
        self.guides = state["guides"]
        self._sums = dict(state["sums"])

    def num_batches(self, epoch: int) -> int:
        return self.schedule[epoch].steps

    def phase_lr(self, epoch: int) -> float:
        """Pretraining at `lr`; reciprocating phases decay geometrically from `lr` to `lr_final`,
        so late phases move each latent space less and the guides a transcoder was fitted to
        stay valid for the other decoder."""
        recip = [e for e, p in enumerate(self.schedule) if p.kind == "reciprocate"]
        if epoch not in recip or len(recip) < 2:
            return self.cfg["lr"]
        frac = recip.index(epoch) / (len(recip) - 1)
        return self.cfg["lr"] * (self.cfg["lr_final"] / self.cfg["lr"]) ** frac

    def start_epoch(self, epoch: int) -> None:
        t0 = time.process_time()
        phase = self.schedule[epoch]
        m = phase.modality
        set_learner(self.net, m)
        for group in self.opt[m].param_groups:
            group["lr"] = self.phase_lr(epoch)
        episodes = self.streams[m].slice(self.starts[epoch], phase.steps * self.cfg["batch_size"])
        self._episodes = episodes
        self._targets = None
        if phase.kind == "reciprocate":
            # Generator side: it knows the concept of every episode it produced.
            concepts = self.data[m].labels[episodes[:, 0]]
            partner = self.data[other(m)]
            items, latents = guide_table(
                episodes[:, 1], concepts,
                lambda idx: encode(self.net, other(m), partner.x[idx], self.cfg["encode_batch"]).numpy())
            self.guides[epoch] = {"modality": m, "items": items,
                                  "latents": {k: torch.from_numpy(v) for k, v in latents.items()}}
            self._guide_latents = latents
            # Learner side: one guide vector per episode, no label.
            self._targets = torch.from_numpy(np.stack([latents[int(k)] for k in concepts]))
        self.cpu_seconds += time.process_time() - t0

    def train_step(self, epoch: int, index: int) -> dict[str, float]:
        t0 = time.process_time()
        phase = self.schedule[epoch]
        m = phase.modality
        b = self.cfg["batch_size"]
        items = self._episodes[index * b:(index + 1) * b, 0]
        x = self.compute.to(self.data[m].x[torch.from_numpy(items)])
        with self.compute.autocast():
            z, y = self.net.autoencoders[m](x)
            rec = F.mse_loss(y, x)
            loss = self.cfg["weight_reconstruction"] * rec
            if self._targets is not None:
                target = self.compute.to(self._targets[index * b:(index + 1) * b])
                guide = F.mse_loss(self.net.transcoders[m](z), target)
                loss = loss + self.cfg["weight_guide"] * guide
        logs = {"rec": rec.item()}
        if self._targets is not None:
            logs["guide"] = guide.item()
        self.opt[m].zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt[m])
        self.scaler.update()
        for k, v in logs.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self.cpu_seconds += time.process_time() - t0
        return {"loss": loss.item(), **logs}

    @torch.no_grad()
    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Phase summary: mean training losses and validation diagnostics for the learner.

        val_guide_acc uses validation labels only to report how often an item's transcoded latent
        lies nearest to its own concept's guide; nothing here feeds back into training.
        """
        t0 = time.process_time()
        phase = self.schedule[epoch]
        m = phase.modality
        n = max(phase.steps, 1)
        out = {"phase": phase.kind, "modality": m, **{f"train_{k}": v / n for k, v in self._sums.items()}}
        self._sums = {}
        val = self.val[m]
        ae = self.net.autoencoders[m]
        ae.eval()
        x = self.compute.to(self.data[m].x[torch.from_numpy(val)])
        with self.compute.autocast():
            z, y = ae(x)
            out["val_rec"] = F.mse_loss(y, x).item()
        if phase.kind == "reciprocate":
            concepts = sorted(self._guide_latents)
            g = self.compute.to(torch.from_numpy(np.stack([self._guide_latents[k] for k in concepts])))
            with self.compute.autocast():
                transcoded = self.net.transcoders[m](z)
            # Distances in fp32: a near tie must not flip with the autocast precision.
            nearest = torch.cdist(transcoded.float(), g).argmin(1).cpu().numpy()
            out["val_guide_acc"] = float(np.mean(np.asarray(concepts)[nearest] == self.data[m].labels[val]))
        set_learner(self.net, m)
        self.cpu_seconds += time.process_time() - t0
        out["cpu_seconds"] = round(self.cpu_seconds, 2)
        return out


# ----------------------------------------------------------------------------------------------
def train_style(params: Params, style: str, out_dir: str | Path | None = None, progress: bool = True,
                stop_after_steps: int | None = None, data: SmartData | None = None,
                provenance: dict | None = None) -> dict:
    """Train one style to completion (resuming a killed run); write model.pt and a summary."""
    config = run_config(params, style)
    cfg = config["train"]
    out_dir = Path(out_dir) if out_dir else run_dir(style)
    data = data or load_data(params, pairs=True)
    # Seed before building: initial weights must not depend on what the process did before.
    seed_everything(config["seed"])
    net = build_net(config["model"], {m: data[m].input_hw for m in MODALITIES})
    schedule = build_schedule(cfg["pretrain_steps"], cfg["phases"], cfg["steps_per_phase"], cfg["first"])
    task = SmartTask(net, data, schedule, cfg, config["seed"])
    trainer = Trainer(out_dir, max_epochs=len(schedule), seed=config["seed"], config=config, provenance=provenance,
                      checkpoint_every_seconds=120.0, log_every_steps=25, progress=progress,
                      stop_after_steps=stop_after_steps)
    result = trainer.fit(task)
    summary = {"style": style, "phases": len(schedule), "schedule": [asdict(p) for p in schedule],
               "steps": sum(p.steps for p in schedule), "cpu_seconds": round(task.cpu_seconds, 1),
               "wall_seconds": round(result["elapsed_seconds"], 1),
               "resumed": result["resumed"], "torch_threads": torch.get_num_threads(),
               "data": data.summary(), "history": _phase_history(out_dir)}
    save_checkpoint(out_dir / MODEL_FILE, {"config": config, "net": net.state_dict(), "guides": task.guides,
                                           "input_hw": {m: data[m].input_hw for m in MODALITIES}})
    atomic_write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def _phase_history(out_dir: Path) -> list[dict]:
    log = out_dir / "train_log.jsonl"
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    # A resumed run logs some phases twice; the last record of each phase wins.
    last = {r["epoch"]: r for r in rows if r.get("end")}
    return [last[e] for e in sorted(last)]


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage smart-train@<style>: train one training style (hybrid, classroom) from scratch, or
    resume it after a kill (vgs/train/provenance.py says when)."""
    from vgs.train.provenance import stage_provenance
    s = train_style(params, run, progress=progress, provenance=stage_provenance(f"smart-train@{run}"))
    return (f"{run_dir(run)}: {s['phases']} phases, {s['steps']} steps on {s['data']}; "
            f"{s['wall_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU (profile {params.profile()})")
