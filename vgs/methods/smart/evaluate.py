"""Conversion accuracy (Table 1, rows 3-6) and the samples for the conversion figure.

image -> audio: test image -> E_I -> T_I->A -> D_A -> GLC, scored against the image's digit
audio -> image: test audio -> E_A -> T_A->I -> D_I -> MLC, scored against the audio's digit
Also reported, as diagnostics: the same chains on the validation split, and each judge on its
own modality's reconstructions (x -> E -> D -> judge), which separates "the transcoder maps to
the wrong concept" from "the decoder's output is too blurred for the judge".
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from vgs.errors import ParamError, StoreError
from vgs.methods.smart import STYLES
from vgs.methods.smart.config import (JUDGES, METRICS_FILE, MODEL_FILE, SAMPLES_FILE, SUMMARY_FILE, eval_dir,
                                      evaluate_samples_per_digit, judges_dir, run_dir, save_samples)
from vgs.methods.smart.data import SmartData, load_data
from vgs.methods.smart.export import convert, load_trained, reconstruct
from vgs.methods.smart.judges import load_judge
from vgs.methods.smart.model import LabelClassifier, SmartNet, other
from vgs.params import Params
from vgs.train.device import current
from vgs.utils.atomic import atomic_write_json

DIRECTIONS = {"image_to_audio": "image", "audio_to_image": "audio"}


def judge_for(target: str, judges: dict[str, LabelClassifier]) -> LabelClassifier:
    return judges["glc"] if target == "audio" else judges["mlc"]


def conversion_predictions(net: SmartNet, judges: dict[str, LabelClassifier], x: torch.Tensor,
                           source: str) -> tuple[np.ndarray, torch.Tensor]:
    """Judge's predictions for the converted items, and the converted items themselves."""
    out = convert(net, x, source)
    return judge_for(other(source), judges).predict(out).numpy(), out


@torch.no_grad()
def guide_drift(net: SmartNet, judges: dict[str, LabelClassifier], data: SmartData, guides: dict) -> dict:
    """How well the final decoders still decode the guides each transcoder last learned.

    T_m->o was last fitted to guide latents taken from the other modality's encoder at the start
    of m's last phase; phases of o after that move o's latent space. For each direction: the
    judge's accuracy on D_o(stored guide latents) ("stale"), and on D_o(E_o(guide items)) with
    the final encoder ("fresh"). A gap means the conversion loses accuracy to that drift.
    """
    out = {}
    for direction, source in DIRECTIONS.items():
        phases = [e for e, g in guides.items() if g["modality"] == source]
        if not phases:
            continue
        g = guides[max(phases)]
        target = other(source)
        concepts = sorted(g["items"])
        judge = judge_for(target, judges)
        net.eval()
        compute = current()
        stored = compute.to(torch.stack([torch.as_tensor(g["latents"][k]) for k in concepts]))
        items = torch.tensor([g["items"][k] for k in concepts])
        with compute.autocast():
            stale = net.autoencoders[target].decode(stored)
            fresh = net.autoencoders[target](compute.to(data[target].x[items]))[1]
        truth = np.asarray(concepts)
        out[f"{direction}_last_guides_stale_acc"] = float((judge.predict(stale).numpy() == truth).mean())
        out[f"{direction}_last_guides_fresh_acc"] = float((judge.predict(fresh).numpy() == truth).mean())
    return out


def evaluate(net: SmartNet, judges: dict[str, LabelClassifier], data: SmartData, samples_per_digit: int,
             guides: dict | None = None) -> dict:
    t0, w0 = time.process_time(), time.monotonic()
    metrics: dict = guide_drift(net, judges, data, guides) if guides else {}
    samples: dict = {}
    for direction, source in DIRECTIONS.items():
        mod = data[source]
        for split in ("test", "val"):
            idx = mod.indices(split)
            pred, out = conversion_predictions(net, judges, mod.x[torch.from_numpy(idx)], source)
            truth = mod.labels[idx]
            metrics[f"{direction}_{split}_acc"] = float((pred == truth).mean())
            metrics[f"{direction}_{split}_items"] = int(len(idx))
            if split == "test":
                metrics[f"{direction}_test_per_digit"] = {
                    int(k): float((pred[truth == k] == k).mean()) for k in np.unique(truth)}
                picks = np.concatenate([np.flatnonzero(truth == k)[:samples_per_digit] for k in range(10)])
                samples[direction] = {"ids": mod.ids[idx[picks]].tolist(), "labels": truth[picks].tolist(),
                                      "inputs": mod.x[torch.from_numpy(idx[picks])][:, 0].numpy(),
                                      "outputs": out[torch.from_numpy(picks)][:, 0].numpy(),
                                      "predictions": pred[picks].tolist()}
        test = mod.indices("test")
        rec = reconstruct(net, mod.x[torch.from_numpy(test)], source)
        judged = judge_for(source, judges).predict(rec).numpy()
        metrics[f"{source}_reconstruction_test_acc"] = float((judged == mod.labels[test]).mean())
    metrics["cpu_seconds"] = round(time.process_time() - t0, 1)
    metrics["wall_seconds"] = round(time.monotonic() - w0, 1)
    return {"metrics": metrics, "samples": samples}


def evaluate_style(params: Params, style: str, model_path: str | Path | None = None,
                   judges_directory: str | Path | None = None, out_dir: str | Path | None = None) -> dict:
    """Score one trained style; write metrics.json (with the judges' and the training run's facts,
    so the report reads one file per style) and samples.npz."""
    if style not in STYLES:
        raise ParamError(f"unknown SMART training style {style!r}", hint="use one of: " + ", ".join(STYLES))
    model_path = Path(model_path) if model_path else run_dir(style) / MODEL_FILE
    judges_directory = Path(judges_directory) if judges_directory else judges_dir()
    out_dir = Path(out_dir) if out_dir else eval_dir(style)
    data = load_data(params)
    net, ck = load_trained(model_path, data)
    judges = {name: load_judge(name, judges_directory, data) for name in JUDGES}
    result = evaluate(net, judges, data, evaluate_samples_per_digit(params), guides=ck.get("guides"))
    summary_path = model_path.parent / SUMMARY_FILE
    training = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    facts_path = judges_directory / "judges.json"
    if not facts_path.exists():
        raise StoreError(f"{facts_path} does not exist", hint="train the judges first: dvc repro smart-judges")
    judge_facts = json.loads(facts_path.read_text())
    record = {"style": style, "data": data.summary(), "audio": data.audio.description,
              "image_corpus": data.image.corpus, "audio_corpus": data.audio.corpus,
              "audio_speakers": data.audio.description.get("speakers"),
              "metrics": result["metrics"], "judges": {k: judge_facts[k] for k in JUDGES},
              "training": training, "config": ck["config"]}
    atomic_write_json(out_dir / METRICS_FILE, record)
    save_samples(out_dir / SAMPLES_FILE, result["samples"])
    return record


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage smart-evaluate@<style>: judge accuracy of the style's conversions both ways ->
    data/eval/smart/<style>/."""
    m = evaluate_style(params, run)["metrics"]
    return (f"{eval_dir(run)}: image->audio {m['image_to_audio_test_acc']:.4f} "
            f"({m['image_to_audio_test_items']} test images), audio->image {m['audio_to_image_test_acc']:.4f} "
            f"({m['audio_to_image_test_items']} test clips); {m['wall_seconds']:.0f} s wall")
