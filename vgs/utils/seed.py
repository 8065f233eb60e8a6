"""One call that seeds every random number generator a run touches."""
from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
    if deterministic:
        # Same params, same numbers on CPU; warn (not fail) on ops without a deterministic kernel.
        torch.use_deterministic_algorithms(True, warn_only=True)
