"""Image features: pixel scaling and optional resizing (SMART uses 32x32 MNIST)."""
from __future__ import annotations

import numpy as np

from vgs.features.config import ImageFeatureConfig


def image_features(images: np.ndarray, cfg: ImageFeatureConfig, batch: int = 4096) -> np.ndarray:
    """(N, H, W) uint8 -> (N, size, size) float32, pixels multiplied by cfg.scale."""
    x = images.astype(np.float32) * cfg.scale
    if cfg.size is None or cfg.size == x.shape[1] == x.shape[2]:
        return x
    if cfg.resize_method == "pad":
        ph, pw = cfg.size - x.shape[1], cfg.size - x.shape[2]
        if ph < 0 or pw < 0:
            raise ValueError(f"cannot pad {x.shape[1:]} images to {cfg.size}")
        return np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    import torch
    import torch.nn.functional as F

    out = np.empty((len(x), cfg.size, cfg.size), dtype=np.float32)
    for start in range(0, len(x), batch):
        t = torch.from_numpy(x[start:start + batch])[:, None]
        out[start:start + batch] = F.interpolate(t, size=(cfg.size, cfg.size), mode="bilinear",
                                                 align_corners=False, antialias=True)[:, 0].numpy()
    return out
