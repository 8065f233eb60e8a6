"""Table 1 of Hsu & Glass (2018) as printed (k-means purity with k=10, as fractions).

The text lost the "Lat." column (which latent each row clusters) and the symbols in the row
names; both follow from Sections 4.2-4.4: VAE-sp/VAE-im/JMVAE-kl cluster their only latent,
"PVAE (no L_contr)" is the ablation, and the last two rows are the style latents z_a (speech
column) and z_i (image column). VAE-sp has no image value and VAE-im no speech value (printed "-").
"""
from __future__ import annotations

# (model, speech latent, image latent): (TIDIGIT-MNIST speech, image), (SecuVoice-MNIST speech, image)
TABLE1 = [
    ("vae-sp", "z", None, (0.4573, None), (0.6373, None)),
    ("vae-im", None, "z", (None, 0.7638), (None, 0.7638)),
    ("jmvae-kl", "z", "z", (0.4548, 0.9816), (0.6443, 0.9846)),
    ("pvae-nocontrast", "z_s", "z_s", (0.6569, 0.9795), (0.7780, 0.9843)),
    ("pvae", "z_s", "z_s", (0.9977, 0.9910), (0.9930, 0.9902)),
    ("pvae-nocontrast", "z_a", "z_i", (0.3088, 0.2173), (0.3369, 0.2243)),
    ("pvae", "z_a", "z_i", (0.2479, 0.2063), (0.2578, 0.2181)),
]

# Our diagnostic model, not in the paper: PVAE plus an independence term on z_i (objective.py).
# Its rows follow Table 1 when it is among the trained models.
NOT_IN_PAPER = [
    ("pvae-independence", "z_s", "z_s"),
    ("pvae-independence", "z_a", "z_i"),
]

DISPLAY_NAMES = {"vae-sp": "VAE-sp", "vae-im": "VAE-im", "jmvae-kl": "JMVAE-kl",
                 "pvae-nocontrast": "PVAE (no contrastive)", "pvae": "PVAE",
                 "pvae-independence": "PVAE + z_i independence (ours; not in paper)"}
