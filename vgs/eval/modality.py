"""Modality classification (Leidal et al. 2017, Section 6): how much an embedding reveals its modality.

An RBF-kernel SVM is trained to tell the two modalities apart from sampled embeddings; its test
accuracy measures modality invariance (0.5 = invariant, 1.0 = fully separable). Paper protocol:
1,076 embeddings per modality, 1,600 for training and the remaining 552 for testing, C chosen by
3-fold cross-validation on the training part.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.svm import SVC

PAPER_PER_MODALITY = 1076
PAPER_TRAIN = 1600
DEFAULT_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def svm_counts(available: int, per_modality: int = PAPER_PER_MODALITY, train: int = PAPER_TRAIN) -> tuple[int, int]:
    """(embeddings per modality, training examples) actually used.

    With fewer than `per_modality` embeddings in the smaller modality both modalities are cut to
    that count, and the training part keeps the paper's share (1600 / 2152).
    """
    if available < 2:
        raise ValueError(f"the modality SVM needs at least 2 embeddings per modality, got {available}")
    n = min(per_modality, available)
    share = train / (2 * per_modality)
    n_train = train if n == per_modality else int(round(share * 2 * n))
    n_train = min(max(n_train, 4), 2 * n - 2)  # leave >= 2 test examples and 2 per CV fold
    return n, n_train


def modality_svm(x: np.ndarray, modality: np.ndarray, per_modality: int = PAPER_PER_MODALITY,
                 train: int = PAPER_TRAIN, c_grid=DEFAULT_C_GRID, folds: int = 3, seed: int = 0) -> dict:
    """Train the modality classifier on `x` (M, Z) with binary/string `modality` (M,).

    Draws `per_modality` embeddings of each of the two modalities without replacement (seeded),
    splits them into `train` training and the rest test examples (stratified by modality), picks
    C on the training part by `folds`-fold CV and reports the test accuracy.
    """
    x = np.asarray(x, dtype=np.float64)
    modality = np.asarray(modality)
    names = np.unique(modality)
    if len(names) != 2:
        raise ValueError(f"the modality SVM needs exactly two modalities, got {list(names)}")
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(modality == m) for m in names]
    n, n_train = svm_counts(min(len(p) for p in pools), per_modality, train)
    chosen = np.concatenate([rng.choice(p, size=n, replace=False) for p in pools])
    y = (modality[chosen] == names[1]).astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x[chosen], y, train_size=n_train, stratify=y, random_state=seed)
    search = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": list(c_grid)},
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    search.fit(x_train, y_train)
    accuracy = float((search.best_estimator_.predict(x_test) == y_test).mean())
    return {"accuracy": accuracy, "per_modality": int(n), "train": int(len(y_train)), "test": int(len(y_test)),
            "C": float(search.best_params_["C"]), "cv_accuracy": float(search.best_score_),
            "modalities": [str(m) for m in names]}
