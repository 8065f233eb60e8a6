"""The paper's printed values (Liu et al., Table 1), for the report's `acc_paper` column."""
from __future__ import annotations

# Table 1 of Liu et al., accuracy in percent (all six cells survived the text extraction).
PAPER = {
    "mlc": 99.47,
    "glc": 96.15,
    ("hybrid", "image_to_audio"): 99.59,
    ("hybrid", "audio_to_image"): 97.33,
    ("classroom", "image_to_audio"): 99.05,
    ("classroom", "audio_to_image"): 97.19,
}
