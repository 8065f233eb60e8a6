"""Seeded validation splits carved out of a corpus's training set.

Every adapter that needs a validation split uses `choose_per_group`: within each group (a
speaker category, a digit, a speaker-digit pair), a seeded share of the members is chosen. Groups
and members are sorted first, so the choice depends only on the seed and the corpus content, not
on directory listing order.
"""
from __future__ import annotations

from typing import Hashable

import numpy as np

from vgs.errors import ParamError

VAL_BY = ("speaker", "utterance")


def choose_per_group(groups: dict[Hashable, list], fraction: float, seed: int,
                     keep_one: bool = False) -> set:
    """round(fraction * len(group)) members of each group, chosen with `seed`.

    keep_one: when a group has at least two members and fraction > 0, choose at least one and
    leave at least one (used for speaker-level splits, where rounding would otherwise leave small
    speaker categories such as TIDIGITS' boys out of validation altogether).
    """
    if not 0.0 <= fraction < 1.0:
        raise ParamError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    chosen: set = set()
    for key in sorted(groups, key=str):
        members = sorted(set(groups[key]), key=str)
        n = int(round(fraction * len(members)))
        if keep_one and fraction > 0 and len(members) >= 2:
            n = min(max(n, 1), len(members) - 1)
        if n:
            picks = rng.choice(len(members), size=n, replace=False)
            chosen.update(members[i] for i in sorted(picks.tolist()))
    return chosen


def check_val_by(val_by: str, corpus: str) -> str:
    if val_by not in VAL_BY:
        raise ParamError(f"corpora.{corpus}.val_by must be one of {VAL_BY}, got {val_by!r} (params.yaml)")
    return val_by
