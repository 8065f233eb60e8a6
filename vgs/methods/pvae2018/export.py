"""Export: unimodal posteriors of every latent for each split, as embedding HDF5 files.

data/embeddings/pvae2018/<model>/<split>.h5 (schema: vgs/store/embeddings.py), one view per
modality the model has, each with
  ids, labels, index              feature-store ids, digit labels, store rows
  <latent>_mean, <latent>_logvar  (N, dim) unimodal posterior of z_s, z_a, z_i (PVAE) or z
  frames (audio only)             (N,) number of frames after VAD trimming
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vgs.methods.pvae2018.data import DigitData
from vgs.methods.pvae2018.inference import ENCODE_BATCH_SIZE, encode
from vgs.methods.pvae2018.model import AUDIO, MultimodalVAE
from vgs.params import Params
from vgs.store.embeddings import write_embeddings

LATENT_NAMES = {"s": "z_s", "a": "z_a", "i": "z_i", "z": "z"}


def latent_key(name: str) -> str:
    return LATENT_NAMES[name]


def export_split(model: MultimodalVAE, data: DigitData, split: str, path: str | Path, attrs: dict,
                 batch_size: int = ENCODE_BATCH_SIZE) -> dict[str, int]:
    views, view_attrs, counts = {}, {}, {}
    for m in model.spec.modalities:
        idx = data.split(m, split)
        store = data.audio_store if m == AUDIO else data.image_store
        arrays = {"ids": store.ids[idx], "labels": store.labels[idx], "index": idx.astype(np.int64)}
        for name, (mean, logvar) in encode(model, data, m, idx, batch_size).items():
            arrays[f"{latent_key(name)}_mean"] = mean
            arrays[f"{latent_key(name)}_logvar"] = logvar
        if m == AUDIO:
            arrays["frames"] = np.array([len(data.audio[i]) for i in idx], dtype=np.int64)
        views[m] = arrays
        view_attrs[m] = {"store": str(store.path), "modality": m,
                         "latents": [latent_key(n) for n in model.spec.unimodal_latents[m]]}
        counts[m] = len(idx)
    write_embeddings(path, views, {**attrs, "split": split}, view_attrs)
    return counts


def stage(params: Params, run: str, progress: bool = True) -> str:
    """DVC stage pvae2018-export@<model>: every latent of every input of the export splits ->
    data/embeddings/pvae2018/<model>/<split>.h5."""
    import time

    import torch

    from vgs.methods.pvae2018.config import PAPER_ID, embeddings_dir, load_data_config, model_dir
    from vgs.methods.pvae2018.data import DigitData, stats_from_model
    from vgs.methods.pvae2018.inference import load_trained
    from vgs.utils.atomic import atomic_path
    splits = params.list("pvae2018.export.splits")
    start = time.process_time()
    model, ck = load_trained(model_dir(run))
    data = DigitData(load_data_config(params))
    data.require_input_sizes(model.cfg, f"the checkpoint of {model_dir(run)}")
    data.stats = stats_from_model(model)  # normalise exactly as in training
    attrs = {"method": PAPER_ID, "run": run, "config": ck["config"], "fingerprint": ck["fingerprint"]}
    lines = []
    with torch.no_grad(), atomic_path(embeddings_dir(run)) as tmp:
        tmp.mkdir(parents=True)
        for split in splits:
            counts = export_split(model, data, split, tmp / f"{split}.h5", attrs)
            lines.append(f"{embeddings_dir(run)}/{split}.h5: " + ", ".join(f"{m} {n}" for m, n in counts.items()))
    lines.append(f"export {run}: {time.process_time() - start:.1f} CPU s")
    return "\n".join(lines)
