"""Shared by every test module.

Test modules never import from each other: helpers that several of them use live in support
modules here in tests/ (not named test_*, so pytest does not collect them), imported as top-level
modules because pytest puts tests/ on sys.path:

- image_caption_stores.py  image and spoken-caption manifests and their feature stores
                           (instance pairing, Mortazavi 2020, Crabtree 2021)
- feature_helpers.py       feature configs from params.yaml, speech-like audio, hand-built WAV
                           files, a store's files byte for byte (features, knf_bulk)
- dag_project.py           tiny MNIST/FSDD corpora and `dvc` in a tiny DVC project (DAG, stale weights)
- dvc_support.py           DVC's read commands on a copy of the committed results (DVC results, UI)
- tiny_stores.py           tiny feature stores for end-to-end method tests
- tiny_runs.py             each paper's tiny stores, pairs and params, shared by its tests and its
                           device tests; the trainer's regression task (trainer, device)
- orchestration_support.py one Prefect server per session, tiny DVC projects for orchestration

Fixtures that several modules use belong in this file.
"""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent   # the repository root: params.yaml, dvc.yaml, vgs/


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (tests/..)."""
    return REPO


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run where torch sees a CUDA device and are skipped, with the reason,
    elsewhere (torch is imported only when such a test was collected)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA device; torch {torch.__version__} sees none here")
    for item in gpu_items:
        item.add_marker(skip)
