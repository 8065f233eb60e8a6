"""Inference with a trained model: load a finished run, encode items with the unimodal networks.

Kept apart from train.py so that export and generation depend only on the model, the data and
the checkpoint format, not on the training objective.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vgs.errors import CheckpointError
from vgs.methods.pvae2018.data import DigitData
from vgs.methods.pvae2018.model import AUDIO, IMAGE, MultimodalVAE, NetConfig, model_spec
from vgs.train.device import current
from vgs.train.trainer import load_checkpoint

ENCODE_BATCH_SIZE = 256   # items per forward pass when encoding (export, validation)


@torch.no_grad()
def encode(model: MultimodalVAE, data: DigitData, modality: str, indices: np.ndarray,
           batch_size: int = ENCODE_BATCH_SIZE) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Unimodal posterior (mean, logvar) of every latent the modality's net infers, computed on
    the current device (the model must be there already)."""
    compute = current()
    model.eval()
    chunks: dict[str, list] = {}
    for start in range(0, len(indices), batch_size):
        part = indices[start:start + batch_size]
        batch = compute.to(data.batch(part if modality == AUDIO else None, part if modality == IMAGE else None))
        with compute.autocast():
            posterior = model.infer_unimodal(modality, batch)
        for name, (mean, logvar) in posterior.items():
            chunks.setdefault(name, []).append((mean.float().cpu().numpy(), logvar.float().cpu().numpy()))
    return {name: (np.concatenate([c[0] for c in parts]), np.concatenate([c[1] for c in parts]))
            for name, parts in chunks.items()}


def load_trained(run_dir: str | Path) -> tuple[MultimodalVAE, dict]:
    """The model of a finished run, on the current device, and its checkpoint payload (config
    included)."""
    ck = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    if not ck.get("finished"):
        raise CheckpointError(f"training in {run_dir} has not finished (epoch {ck.get('epoch')})",
                              hint="run the train stage to completion; it resumes from this checkpoint")
    net = dict(ck["config"]["net"])
    net = NetConfig(**{**net, "image_channels": tuple(net["image_channels"])})
    m = ck["config"]["model"]
    model = MultimodalVAE(model_spec(m["kind"], net.latent_dim, m["modality"]), net)
    model.load_state_dict(ck["task"]["model"])
    model.to(current().device)
    model.eval()
    return model, ck
