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
from vgs.methods.smart import PAPER_ID, STYLES
from vgs.methods.smart.data import CooccurrenceStream, SmartData, load_data
from vgs.methods.smart.guides import guide_table
from vgs.methods.smart.model import MODALITIES, ConvAutoencoder, SmartNet, Transcoder, other
from vgs.params import Params
from vgs.train.trainer import Trainer, load_checkpoint, save_checkpoint
from vgs.utils.atomic import atomic_write_json
from vgs.utils.seed import seed_everything



@dataclass(frozen=True)
class Phase:
    kind: str        # "pretrain" | "reciprocate"
    modality: str    # the learner: "image" | "audio"
    steps: int


def build_schedule(pretrain_steps: dict[str, int], phases: int, steps: dict[str, int],
                   first: str = "image") -> list[Phase]:
    schedule = [Phase("pretrain", m, pretrain_steps[m]) for m in MODALITIES if pretrain_steps.get(m, 0) > 0]
    order = [first, other(first)]
    schedule += [Phase("reciprocate", order[p % 2], steps[order[p % 2]]) for p in range(phases)]
    return schedule


# ----------------------------------------------------------------------------------------------
def model_config(params: Params) -> dict:
    m = params.profiled("smart.model")
    cfg = {"latent_dim": m.int("latent_dim", min=1), "transcoder_layers": m.int("transcoder_layers", min=1),
           "transcoder_hidden": m.int("transcoder_hidden", min=1), "leaky_slope": m.float("leaky_slope", min=0)}
    for mod in MODALITIES:
        s = m.section(mod)
        widths = s.list("widths")
        if not widths or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ParamError(f"{s.key('widths')} must be a list of positive integers, got {widths!r} ({m.source})")
        cfg[mod] = {"widths": widths, "convs_per_stage": s.int("convs_per_stage", min=1),
                    "sampling": s.str("sampling", choices=("pool", "stride"))}
    return cfg


def build_net(cfg: dict, input_hw: dict[str, tuple[int, int]]) -> SmartNet:
    aes, tcs = {}, {}
    for mod in MODALITIES:
        c = cfg[mod]
        try:
            aes[mod] = ConvAutoencoder(input_hw[mod], c["widths"], cfg["latent_dim"], c["convs_per_stage"],
                                       c["sampling"], cfg["leaky_slope"])
        except ValueError as exc:
            raise ParamError(f"smart.model.{mod}: {exc}",
                             hint="use as many stages as the input size allows (32x32: <= 5, 96x96: <= 5)") from None
        tcs[mod] = Transcoder(cfg["latent_dim"], cfg["transcoder_hidden"], cfg["transcoder_layers"],
                              cfg["leaky_slope"])
    return SmartNet(aes, tcs)


def train_config(params: Params, style: str) -> dict:
    if style not in STYLES:
        raise ParamError(f"unknown SMART training style {style!r}", hint="use one of: " + ", ".join(STYLES))
    t = params.profiled("smart.train")
    s = params.profiled(f"smart.styles.{style}")
    steps = t.section("steps_per_phase")
    pre = s.section("pretrain_steps")
    return {
        "style": style,
        "batch_size": t.int("batch_size", min=1), "lr": t.float("lr", min=0),
        "weight_reconstruction": t.float("weight_reconstruction", min=0),
        "weight_guide": t.float("weight_guide", min=0),
        "lr_final": t.float("lr_final", min=0),
        "phases": t.int("phases", min=0), "first": t.str("first", choices=MODALITIES),
        "steps_per_phase": {m: steps.int(m, min=1) for m in MODALITIES},
        "pretrain_steps": {m: pre.int(m, min=0) for m in MODALITIES},
        "val_items": t.int("val_items", min=1),
        "encode_batch": t.int("encode_batch", 512, min=1),
    }


def run_config(params: Params, style: str) -> dict:
    """Everything that defines a training run (the checkpoint fingerprint)."""
    return {"seed": params.int("seed"), "data": params.section("smart.data").to_dict(),
            "model": model_config(params), "train": train_config(params, style)}


# ----------------------------------------------------------------------------------------------
def set_learner(net: SmartNet, learner: str) -> None:
    """Make `learner`'s group trainable and freeze the other group (no gradients, eval mode, so
    its batch-norm statistics stay as they are)."""
    for mod in MODALITIES:
        for module in net.group(mod):
            module.train(mod == learner)
            module.requires_grad_(mod == learner)


@torch.no_grad()
def encode(net: SmartNet, modality: str, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    ae = net.autoencoders[modality]
    was = ae.training
    ae.eval()
    out = torch.cat([ae.encode(x[i:i + batch]) for i in range(0, len(x), batch)])
    ae.train(was)
    return out


class SmartTask:
    def __init__(self, net: SmartNet, data: SmartData, schedule: list[Phase], cfg: dict, seed: int):
        self.net = net
        self.data = data
        self.schedule = schedule
        self.cfg = cfg
        self.seed = seed
        self.opt = {m: torch.optim.Adam(net.group_parameters(m), lr=cfg["lr"]) for m in MODALITIES}
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
                "cpu_seconds": self.cpu_seconds, "guides": self.guides, "sums": self._sums}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        for m, o in self.opt.items():
            o.load_state_dict(state["opt"][m])
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
        x = self.data[m].x[torch.from_numpy(items)]
        z, y = self.net.autoencoders[m](x)
        rec = F.mse_loss(y, x)
        loss = self.cfg["weight_reconstruction"] * rec
        logs = {"rec": rec.item()}
        if self._targets is not None:
            guide = F.mse_loss(self.net.transcoders[m](z), self._targets[index * b:(index + 1) * b])
            loss = loss + self.cfg["weight_guide"] * guide
            logs["guide"] = guide.item()
        self.opt[m].zero_grad()
        loss.backward()
        self.opt[m].step()
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
        x = self.data[m].x[torch.from_numpy(val)]
        z, y = ae(x)
        out["val_rec"] = F.mse_loss(y, x).item()
        if phase.kind == "reciprocate":
            concepts = sorted(self._guide_latents)
            g = torch.from_numpy(np.stack([self._guide_latents[k] for k in concepts]))
            nearest = torch.cdist(self.net.transcoders[m](z), g).argmin(1).numpy()
            out["val_guide_acc"] = float(np.mean(np.asarray(concepts)[nearest] == self.data[m].labels[val]))
        set_learner(self.net, m)
        self.cpu_seconds += time.process_time() - t0
        out["cpu_seconds"] = round(self.cpu_seconds, 2)
        return out


# ----------------------------------------------------------------------------------------------
MODEL_FILE = "model.pt"
SUMMARY_FILE = "train_summary.json"


def run_dir(style: str) -> Path:
    return Path("data/models") / PAPER_ID / style


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


def load_trained(path: str | Path) -> tuple[SmartNet, dict]:
    ck = load_checkpoint(path)
    net = build_net(ck["config"]["model"], ck["input_hw"])
    net.load_state_dict(ck["net"])
    net.eval()
    return net, ck


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage smart-train@<style>: train one training style (hybrid, classroom) from scratch, or
    resume it after a kill (vgs/train/provenance.py says when)."""
    from vgs.train.provenance import stage_provenance
    s = train_style(params, run, progress=progress, provenance=stage_provenance(f"smart-train@{run}"))
    return (f"{run_dir(run)}: {s['phases']} phases, {s['steps']} steps on {s['data']}; "
            f"{s['wall_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU (profile {params.profile()})")
