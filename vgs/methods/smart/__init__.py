"""SMART: Sensory Media Association through Reciprocating Training (Liu et al.).

Two convolutional autoencoders (image, audio), two transcoders between their latent spaces,
trained in alternating phases in which one modality learns to reconstruct itself and to map onto
guides from the other (train.py); label-classifier judges score the conversions (judges.py,
evaluate.py). Choices the paper leaves open: README.md in this folder.
"""
PAPER_ID = "smart"
STYLES = ("hybrid", "classroom")
MODALITIES = ("image", "audio")
