"""The shared evaluation suite for joint speech-image embeddings (written once, used by every method).

`evaluate_embeddings` takes a flat set of embeddings with their digit labels and modality and
returns one metrics dict:
  purity        k-means (k=10) cluster purity over all embeddings, Leidal Eq. 6
  svm           the modality SVM (vgs.eval.modality): accuracy 0.5 = modality-invariant
  tsne          (optional) one joint 2-D t-SNE of a class-balanced sample per modality

Which embeddings go in is the caller's choice; `pick_inputs` and `flatten_samples` implement the
Leidal protocol (equal numbers of test inputs per modality, every posterior sample of each).
"""
from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from vgs.errors import StoreError
from vgs.eval.clustering import cluster_purity
from vgs.eval.modality import PAPER_PER_MODALITY, PAPER_TRAIN, modality_svm
from vgs.eval.tsne import balanced_sample, joint_tsne
from vgs.store.embeddings import read_embeddings


def pick_inputs(labels: np.ndarray, count: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of `count` inputs spread evenly over the classes (all inputs if None)."""
    labels = np.asarray(labels)
    if count is None or count >= len(labels):
        return np.arange(len(labels))
    return balanced_sample(labels, count, seed=seed)


def flatten_samples(samples: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, S, Z) samples of N inputs -> (N*S, Z) embeddings, their labels and their input index."""
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples[:, None, :]
    n, s, z = samples.shape
    return samples.reshape(n * s, z), np.repeat(np.asarray(labels), s), np.repeat(np.arange(n), s)


def evaluate_embeddings(embeddings: np.ndarray, labels: np.ndarray, modality: np.ndarray, *, k: int = 10,
                        svm_per_modality: int = PAPER_PER_MODALITY, svm_train: int = PAPER_TRAIN,
                        tsne_per_modality: int | None = 200, seed: int = 0, kmeans_init: int = 10) -> dict:
    """Metrics of one embedding space.

    embeddings (M, Z) float, labels (M,) int class labels, modality (M,) e.g. "image"/"audio".
    Purity is computed over all M rows (pass balanced sets: with 10x more images than utterances,
    purity would mostly describe the images). The SVM and t-SNE subsample as their protocols say.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    modality = np.asarray(modality).astype(str)
    if not (len(x) == len(labels) == len(modality)) or x.ndim != 2:
        raise ValueError(f"embeddings {x.shape}, labels {labels.shape} and modality {modality.shape} must "
                         "describe the same rows")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values (did training diverge?)")
    names = sorted(set(modality.tolist()))
    counts = {m: int((modality == m).sum()) for m in names}

    clusters = KMeans(n_clusters=k, n_init=kmeans_init, random_state=seed).fit(x).labels_
    result: dict = {
        "purity": cluster_purity(clusters, labels),
        "purity_k": k,
        "purity_points": counts,
        # Purity of the shared clustering restricted to one modality: high values for each
        # modality with low joint purity mean one cluster per (digit, modality).
        "purity_within": {m: cluster_purity(clusters[modality == m], labels[modality == m]) for m in names},
    }
    if len(names) == 2:
        svm = modality_svm(x, modality, per_modality=svm_per_modality, train=svm_train, seed=seed)
        result["svm_acc"] = svm.pop("accuracy")
        result["svm"] = svm
    if tsne_per_modality:
        parts, part_labels = [], []
        for m in names:
            rows = np.flatnonzero(modality == m)
            pick = rows[balanced_sample(labels[rows], tsne_per_modality, seed=seed)]
            parts.append(x[pick])
            part_labels.append(labels[pick])
        coords = joint_tsne(parts, seed=seed)
        result["tsne"] = {m: {"xy": c.round(4).tolist(), "labels": lab.astype(int).tolist()}
                          for m, c, lab in zip(names, coords, part_labels)}
    return result



def evaluate_file(path, sample_key: str = "samples", views: list[str] | None = None,
                  inputs_per_modality: int | None = None, seed: int = 0, **kwargs) -> dict:
    """The suite on an embedding file (vgs.store.embeddings) with two views; see evaluate_views."""
    data = read_embeddings(path, views)
    names = views or [k for k in data if k != "attrs"]
    for name in names:
        if sample_key not in data[name]:
            raise StoreError(f"embedding file {path}: view {name!r} has no {sample_key!r} array "
                             f"(has {sorted(k for k in data[name] if k != 'attrs')})",
                             hint="re-run the method's export stage")
    return evaluate_views({n: data[n] for n in names}, sample_key, inputs_per_modality, seed, **kwargs)


def evaluate_views(views: dict[str, dict], sample_key: str = "samples", inputs_per_modality: int | None = None,
                   seed: int = 0, **kwargs) -> dict:
    """The suite on per-view arrays {view: {"labels": (N,), sample_key: (N, S, Z) or (N, Z)}}.

    Each view contributes `inputs_per_modality` inputs (class-balanced, seeded; None: as many as
    the smaller view has, so both modalities weigh the same in purity) and every sample of each.
    Returns the metrics with an `inputs` entry stating the counts used.
    """
    count = inputs_per_modality or min(len(v["labels"]) for v in views.values())
    xs, ys, ms, inputs = [], [], [], {}
    for name, view in views.items():
        pick = pick_inputs(view["labels"], count, seed=seed)
        x, y, _ = flatten_samples(view[sample_key][pick], view["labels"][pick])
        xs.append(x)
        ys.append(y)
        ms.append(np.full(len(x), name))
        inputs[name] = {"inputs": int(len(pick)), "available": int(len(view["labels"])),
                        "samples_per_input": int(len(x) // max(len(pick), 1)), "embeddings": int(len(x))}
    metrics = evaluate_embeddings(np.concatenate(xs), np.concatenate(ys), np.concatenate(ms), seed=seed, **kwargs)
    metrics["inputs"] = inputs
    return metrics
