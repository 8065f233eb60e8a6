"""Joint 2-D t-SNE projections (one model for all modalities, so they share one space)."""
from __future__ import annotations

import numpy as np
from sklearn.manifold import TSNE


def joint_tsne(parts: list[np.ndarray], seed: int = 0, perplexity: float = 30.0) -> list[np.ndarray]:
    """Fit one t-SNE on the concatenation of `parts` and split the 2-D result back."""
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    y = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), init="pca",
             random_state=seed).fit_transform(x)
    out, start = [], 0
    for p in parts:
        out.append(y[start:start + len(p)])
        start += len(p)
    return out


def balanced_sample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of `n` items drawn with a seed, spread as evenly as possible over the classes."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    per = {c: rng.permutation(np.flatnonzero(labels == c)).tolist() for c in classes}
    picked: list[int] = []
    while len(picked) < min(n, len(labels)):
        for c in classes:
            if per[c] and len(picked) < n:
                picked.append(per[c].pop())
    return np.asarray(sorted(picked))
