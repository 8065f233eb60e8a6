"""Crabtree 2021, "Optimizing Visual Grounding of Latent Representations of Speech from Distant
Language Groups": trilingual image-speech retrieval with several losses, poolings, multiview
schemes and shared speech encoders (README.md in this folder)."""
