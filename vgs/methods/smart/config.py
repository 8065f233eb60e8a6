"""SMART's run configuration, read from params.yaml (section `smart`), and where each step writes.

The readers return plain dicts: they are stored as they are in every checkpoint and metrics file
(the training fingerprint), so their keys are part of the outputs. Every key that params.yaml
gives is required here; the few that it leaves out (`smart.train.encode_batch`, the judges'
`hidden` and `dropout`) have their one default in this module.

Also here: the samples file format, read by the report stage, which must not need the models
(so this module imports no torch).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vgs.errors import ParamError, StoreError
from vgs.methods.smart import MODALITIES, PAPER_ID, STYLES
from vgs.params import Params
from vgs.utils.atomic import atomic_path

SAMPLINGS = ("pool", "stride")
JUDGES = {"mlc": "image", "glc": "audio"}
NUM_CLASSES = 10            # the ten spoken/written digits every judge tells apart
ENCODE_BATCH = 512          # items per forward pass when encoding guide candidates
JUDGE_HIDDEN = 128
JUDGE_DROPOUT = 0.3


# -- params readers --------------------------------------------------------------------------------
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
                    "sampling": s.str("sampling", choices=SAMPLINGS)}
    return cfg


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
        "encode_batch": t.int("encode_batch", ENCODE_BATCH, min=1),
    }


def run_config(params: Params, style: str) -> dict:
    """Everything that defines a training run (the checkpoint fingerprint)."""
    return {"seed": params.int("seed"), "data": params.section("smart.data").to_dict(),
            "model": model_config(params), "train": train_config(params, style)}


def judge_config(params: Params, name: str) -> dict:
    j = params.profiled("smart.judges")
    c = j.section(name)
    widths = c.list("widths")
    return {"name": name, "modality": JUDGES[name], "widths": widths,
            "input_pool": c.int("input_pool", min=1), "hidden": c.int("hidden", JUDGE_HIDDEN, min=1),
            "dropout": c.float("dropout", JUDGE_DROPOUT, min=0, max=1),
            "epochs": c.int("epochs", min=1), "batch_size": j.int("batch_size", min=1), "lr": j.float("lr", min=0),
            "seed": params.int("seed")}


def evaluate_samples_per_digit(params: Params) -> int:
    return params.int("smart.evaluate.samples_per_digit", min=1)


# -- outputs ---------------------------------------------------------------------------------------
MODEL_FILE = "model.pt"
SUMMARY_FILE = "train_summary.json"
JUDGE_FILE = "judge.pt"
METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.npz"


def run_dir(style: str) -> Path:
    return Path("data/models") / PAPER_ID / style


def judges_dir() -> Path:
    return Path("data/models") / PAPER_ID / "judges"


def eval_dir(style: str) -> Path:
    return Path("data/eval") / PAPER_ID / style


def save_samples(path: str | Path, samples: dict[str, dict]) -> None:
    """samples[direction][name] -> array, stored as `direction/name` in one .npz file."""
    arrays = {f"{direction}/{key}": np.asarray(value)
              for direction, s in samples.items() for key, value in s.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_samples(path: str | Path) -> dict[str, dict]:
    out: dict = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            direction, name = key.split("/", 1)
            out.setdefault(direction, {})[name] = z[key]
    return out


def load_record(style: str) -> dict:
    path = eval_dir(style) / METRICS_FILE
    if not path.exists():
        raise StoreError(f"{path} does not exist", hint=f"run the evaluation first: dvc repro smart-evaluate@{style}")
    return json.loads(path.read_text())
