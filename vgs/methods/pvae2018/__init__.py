"""PVAE (Hsu & Glass 2018, "Disentangling by Partitioning") with VAE-sp, VAE-im and JMVAE-kl.

See README.md in this folder for the model, the choices the paper leaves open and the CPU profile;
config.py holds the run configuration and the output paths.
"""
