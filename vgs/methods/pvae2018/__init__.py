"""PVAE (Hsu & Glass 2018, "Disentangling by Partitioning") with VAE-sp, VAE-im and JMVAE-kl.

See README.md in this folder for the model, the choices the paper leaves open and the CPU profile.
"""
from pathlib import Path

from vgs.paths import DATA, results_dir

PAPER_ID = "pvae2018"


def model_dir(model: str) -> Path:
    return DATA / "models" / PAPER_ID / model


def embeddings_dir(model: str) -> Path:
    return DATA / "embeddings" / PAPER_ID / model


def eval_path(model: str) -> Path:
    return DATA / "eval" / PAPER_ID / f"{model}.json"


RESULTS = results_dir(PAPER_ID)
