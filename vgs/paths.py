"""Where each stage reads and writes, relative to the repository root (one place, so stages,
dvc.yaml and tests agree)."""
from __future__ import annotations

from pathlib import Path

DATA = Path("data")
RESULTS = Path("results")


def raw_dir(corpus: str) -> Path:
    return DATA / "raw" / corpus


def manifest_path(corpus: str) -> Path:
    return DATA / "manifests" / f"{corpus}.jsonl"


def store_path(corpus: str, config: str) -> Path:
    return DATA / "features" / corpus / f"{config}.zarr"


def feature_set_store(feature_set: str, params) -> Path:
    """Store path of a `feature_sets` entry such as fsdd-fbank80."""
    fs = params.section(f"feature_sets.{feature_set}")
    return store_path(fs.str("corpus"), fs.str("config"))


def pairs_path(name: str) -> Path:
    return DATA / "pairs" / f"{name}.zarr"


def results_dir(paper_id: str) -> Path:
    return RESULTS / paper_id
