"""The judges: label classifiers trained with labels on the training split, used only to score
conversions (Section 3, "we trained an audio pattern classifier and an image pattern
classifier with labeled GCDD and MNIST training data").

MLC judges images (MNIST), GLC judges audio (the paper's GCDD; here whatever audio store
smart.data names). The epoch with the best validation accuracy is kept; the test split is only
scored once, at the end.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from vgs.methods.smart.config import JUDGE_FILE, JUDGES, NUM_CLASSES, judge_config, judges_dir
from vgs.methods.smart.data import Modality, SmartData, load_data
from vgs.methods.smart.model import LabelClassifier
from vgs.params import Params
from vgs.train.device import current
from vgs.train.trainer import Trainer, load_checkpoint, save_checkpoint
from vgs.utils.atomic import atomic_write_json
from vgs.utils.seed import seed_everything


def build_judge(cfg: dict) -> LabelClassifier:
    return LabelClassifier(tuple(cfg["input_hw"]), cfg["widths"], NUM_CLASSES, cfg["input_pool"], cfg["hidden"],
                           cfg["dropout"])


class JudgeTask:
    def __init__(self, model: LabelClassifier, mod: Modality, cfg: dict):
        self.model = model
        self.cfg = cfg
        self.compute = current()
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        self.scaler = self.compute.grad_scaler()
        self.train_idx = mod.indices("train")
        self.val_idx = mod.indices("val")
        self.x, self.y = mod.x, torch.from_numpy(mod.labels)
        self.order = None
        self.best = {"val_acc": -1.0, "epoch": -1, "state": None}
        self.cpu_seconds = 0.0

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "best": self.best,
                "scaler": self.scaler.state_dict(), "cpu_seconds": self.cpu_seconds}

    def load_state_dict(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        if s.get("scaler"):     # empty for a disabled (fp32, bf16) scaler
            self.scaler.load_state_dict(s["scaler"])
        self.best = s["best"]
        self.cpu_seconds = s["cpu_seconds"]

    def start_epoch(self, epoch: int) -> None:
        code = list(JUDGES).index(self.cfg["name"])
        self.order = np.random.default_rng([self.cfg["seed"], code, epoch]).permutation(self.train_idx)

    def num_batches(self, epoch: int) -> int:
        return -(-len(self.train_idx) // self.cfg["batch_size"])

    def train_step(self, epoch: int, index: int) -> dict[str, float]:
        t0 = time.process_time()
        b = self.cfg["batch_size"]
        idx = torch.from_numpy(self.order[index * b:(index + 1) * b])
        self.model.train()
        x, y = self.compute.to((self.x[idx], self.y[idx]))
        with self.compute.autocast():
            loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.cpu_seconds += time.process_time() - t0
        return {"loss": loss.item()}

    def end_epoch(self, epoch: int) -> dict[str, float]:
        t0 = time.process_time()
        acc = accuracy(self.model, self.x[torch.from_numpy(self.val_idx)], self.y[self.val_idx].numpy())
        if acc > self.best["val_acc"]:
            state = copy.deepcopy(self.model.state_dict())
            for key, value in state.items():     # the kept weights live on the CPU, like checkpoints
                state[key] = value.cpu()
            self.best = {"val_acc": acc, "epoch": epoch, "state": state}
        self.cpu_seconds += time.process_time() - t0
        return {"val_acc": acc, "cpu_seconds": round(self.cpu_seconds, 2)}


def accuracy(model: LabelClassifier, x: torch.Tensor, labels: np.ndarray) -> float:
    return float((model.predict(x).numpy() == np.asarray(labels)).mean())


def train_judge(params: Params, name: str, data: SmartData, out_dir: str | Path | None = None,
                progress: bool = True, stop_after_steps: int | None = None, provenance: dict | None = None) -> dict:
    cfg = judge_config(params, name)
    mod = data[cfg["modality"]]
    cfg["input_hw"] = list(mod.input_hw)
    out_dir = Path(out_dir) if out_dir else judges_dir() / name
    seed_everything(cfg["seed"])   # initial weights independent of the process's history
    model = build_judge(cfg)
    task = JudgeTask(model, mod, cfg)
    # The fingerprint covers the data too: a judge trained on other inputs must not be resumed.
    config = {"judge": cfg, "store": mod.store_path, "data": mod.description}
    # Set-aside checkpoints stay outside the stage's output directory (which holds every judge).
    trainer = Trainer(out_dir, max_epochs=cfg["epochs"], seed=cfg["seed"], config=config, provenance=provenance,
                      set_aside_to=out_dir.parent.parent / f"{out_dir.parent.name}-{name}.set-aside.pt",
                      progress=progress, stop_after_steps=stop_after_steps)
    result = trainer.fit(task)
    model.load_state_dict(task.best["state"])
    test = mod.indices("test")
    summary = {"name": name, "modality": cfg["modality"], "corpus": mod.corpus,
               "val_acc": task.best["val_acc"], "best_epoch": task.best["epoch"],
               "test_acc": accuracy(model, mod.x[torch.from_numpy(test)], mod.labels[test]),
               "test_items": int(len(test)), "train_items": int(len(task.train_idx)),
               "cpu_seconds": round(task.cpu_seconds, 1), "wall_seconds": round(result["elapsed_seconds"], 1),
               "config": cfg}
    save_checkpoint(out_dir / JUDGE_FILE, {"config": cfg, "state": task.best["state"], "summary": summary})
    return summary


def load_judge(name: str, directory: str | Path | None = None, data: SmartData | None = None) -> LabelClassifier:
    """Judge `name` on the current device, in eval mode. With `data`: a ParamError unless it was
    trained on inputs of the size of `data`'s store."""
    path = Path(directory or judges_dir()) / name / JUDGE_FILE
    ck = load_checkpoint(path)
    if data is not None:
        data[JUDGES[name]].require_input_hw(ck["config"]["input_hw"], f"{path} ({name.upper()})")
    model = build_judge(ck["config"])
    model.load_state_dict(ck["state"])
    model.to(current().device)
    model.eval()
    return model


def train_judges(params: Params, progress: bool = True, provenance: dict | None = None) -> dict:
    data = load_data(params)
    out = {"data": data.summary()}
    for name in JUDGES:
        out[name] = train_judge(params, name, data, progress=progress, provenance=provenance)
    atomic_write_json(judges_dir() / "judges.json", out)
    return out


def stage(params: Params, progress: bool = True) -> str:
    """DVC stage smart-judges: the label classifiers (MLC for images, GLC for speech) that judge
    every conversion -> data/models/smart/judges/."""
    from vgs.train.provenance import stage_provenance
    out = train_judges(params, progress=progress, provenance=stage_provenance("smart-judges"))
    lines = [f"{judges_dir()}: {out['data']} (profile {params.profile()})"]
    for name in ("mlc", "glc"):
        s = out[name]
        lines.append(f"  {name.upper()} ({s['corpus']}): val {s['val_acc']:.4f}, test {s['test_acc']:.4f} "
                     f"on {s['test_items']} items; {s['wall_seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU")
    return "\n".join(lines)
