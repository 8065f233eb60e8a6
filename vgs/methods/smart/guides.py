"""Guide selection: z_{c,k}, the representation closest to the centre of concept k's cluster.

Eqs. 1-2 map each item of the learning modality onto a "tentative frozen representation" of the
other modality. Our reading (README, "Guides"): at the start of every phase the signal generator
takes the other-modality items that it presented together with concept k during that phase
(the partners in its co-occurrence stream), the learner encodes them with the other modality's
current encoder, which stays frozen for the whole phase, and the member whose latent is nearest
(Euclidean) to the mean latent of that group becomes the guide. Guides are chosen again at the
start of the next phase of the same modality, from the then-current encoder.
"""
from __future__ import annotations

import numpy as np


def closest_to_centre(latents: np.ndarray, groups: np.ndarray) -> dict[int, int]:
    """For each group g: the row index i (into `latents`) of the member of g nearest to g's mean.

    Ties go to the lowest index, so the choice is deterministic.
    """
    latents = np.asarray(latents, dtype=np.float64)
    groups = np.asarray(groups)
    if latents.ndim != 2 or len(latents) != len(groups):
        raise ValueError("latents must be (N, D) with one group id per row")
    chosen = {}
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        centre = latents[members].mean(axis=0)
        dist = np.linalg.norm(latents[members] - centre, axis=1)
        chosen[int(g)] = int(members[np.argmin(dist)])
    return chosen


def guide_table(partner_items: np.ndarray, concepts: np.ndarray, encode) -> tuple[dict[int, int], dict[int, np.ndarray]]:
    """Guides for one phase.

    partner_items: (N,) other-modality item indices that co-occurred in the phase's episodes
    concepts:      (N,) the concept the generator was teaching in each episode
    encode:        items (M,) -> latents (M, D) with the frozen other-modality encoder
    Returns ({concept: guide item}, {concept: guide latent}). Each item counts once per concept
    however often the generator repeated it.
    """
    pairs = np.unique(np.stack([np.asarray(concepts), np.asarray(partner_items)], axis=1), axis=0)
    items = np.unique(pairs[:, 1])
    latents = np.asarray(encode(items))
    row_of = {int(it): r for r, it in enumerate(items)}
    rows = np.array([row_of[int(it)] for it in pairs[:, 1]])
    picked = closest_to_centre(latents[rows], pairs[:, 0])
    guide_items = {k: int(pairs[i, 1]) for k, i in picked.items()}
    guide_latents = {k: latents[row_of[it]].astype(np.float32) for k, it in guide_items.items()}
    return guide_items, guide_latents
