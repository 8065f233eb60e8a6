"""Image features: pixel scaling and optional resizing (SMART uses 32x32 MNIST), and the colour
conversion of decoded image files."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vgs.features.config import ImageFeatureConfig

if TYPE_CHECKING:
    from PIL.Image import Image

# Transparent pixels are shown on white, as a browser shows a PNG on a page: dropping the alpha
# channel instead would expose whatever colour the encoder left under it (often black).
BACKGROUND = (255, 255, 255, 255)


def as_rgb(im: "Image") -> "Image":
    """A decoded image of any Pillow mode as RGB: grey levels repeated, palettes looked up, CMYK
    by Pillow's own conversion (an embedded ICC profile is not applied), and an alpha channel or a
    transparent palette or grey entry composited on white."""
    from PIL import Image

    if im.has_transparency_data:
        return Image.alpha_composite(Image.new("RGBA", im.size, BACKGROUND), im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


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
