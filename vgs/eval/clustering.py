"""k-means cluster purity (Leidal Eq. 6) and inertia curves (PVAE Figure 3)."""
from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def cluster_purity(cluster_ids: np.ndarray, labels: np.ndarray) -> float:
    """(1/N) * sum over clusters of the size of the cluster's majority class."""
    cluster_ids = np.asarray(cluster_ids)
    labels = np.asarray(labels)
    if cluster_ids.shape != labels.shape or len(labels) == 0:
        raise ValueError("cluster_ids and labels must be non-empty and of equal length")
    total = 0
    for c in np.unique(cluster_ids):
        _, counts = np.unique(labels[cluster_ids == c], return_counts=True)
        total += counts.max()
    return float(total / len(labels))


def kmeans_purity(x: np.ndarray, labels: np.ndarray, k: int = 10, seed: int = 0, n_init: int = 10) -> float:
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(np.asarray(x, dtype=np.float64))
    return cluster_purity(km.labels_, labels)


def inertia_curve(x: np.ndarray, ks=range(1, 21), seed: int = 0, n_init: int = 10) -> dict[int, float]:
    x = np.asarray(x, dtype=np.float64)
    return {int(k): float(KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x).inertia_) for k in ks}
