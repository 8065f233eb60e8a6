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
from vgs.methods.pvae2018.model import AUDIO, MultimodalVAE
from vgs.methods.pvae2018.inference import encode
from vgs.store.embeddings import write_embeddings

LATENT_NAMES = {"s": "z_s", "a": "z_a", "i": "z_i", "z": "z"}


def latent_key(name: str) -> str:
    return LATENT_NAMES[name]


def export_split(model: MultimodalVAE, data: DigitData, split: str, path: str | Path, attrs: dict,
                 batch_size: int = 256) -> dict[str, int]:
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
