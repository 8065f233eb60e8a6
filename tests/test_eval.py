"""The shared evaluation suite: purity (Leidal Eq. 6), the modality SVM protocol, t-SNE, file input."""
import h5py
import numpy as np
import pytest

from vgs.errors import StoreError
from vgs.eval.clustering import cluster_purity, kmeans_purity
from vgs.eval.modality import modality_svm, svm_counts
from vgs.eval.suite import evaluate_embeddings, evaluate_file, flatten_samples, pick_inputs
from vgs.store.embeddings import write_embeddings


def test_purity_matches_hand_computed_example():
    # cluster 0: {a, a, b} -> 2; cluster 1: {b, b, c} -> 2; cluster 2: {c} -> 1; N = 7
    clusters = np.array([0, 0, 0, 1, 1, 1, 2])
    labels = np.array(["a", "a", "b", "b", "b", "c", "c"])
    assert cluster_purity(clusters, labels) == pytest.approx(5 / 7)
    assert cluster_purity(np.zeros(4), np.array([1, 1, 1, 1])) == 1.0
    # Two clusters per digit (one per modality) with k = #digits: k-means must merge digits.
    assert cluster_purity(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3])) == 0.5


def test_kmeans_purity_of_separated_blobs_is_one():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 20, size=(10, 8))
    labels = np.repeat(np.arange(10), 30)
    x = centres[labels] + rng.normal(size=(300, 8))
    assert kmeans_purity(x, labels, k=10) == 1.0


def test_svm_counts_follow_the_paper_or_scale_down():
    assert svm_counts(4800) == (1076, 1600)          # 1,076 + 1,076, 1,600 train, 552 test
    assert svm_counts(1076) == (1076, 1600)
    n, train = svm_counts(300)                        # too few: 300 + 300, paper's train share
    assert n == 300 and train == round(1600 / 2152 * 600)


def _two_modalities(shift, n=1200, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(n, dim)), rng.normal(size=(n, dim)) + shift])
    modality = np.array(["image"] * n + ["audio"] * n)
    return x, modality


def test_svm_separates_separable_modalities():
    x, m = _two_modalities(shift=6.0)
    r = modality_svm(x, m, seed=1)
    assert r["accuracy"] >= 0.99
    assert (r["per_modality"], r["train"], r["test"]) == (1076, 1600, 552)
    assert r["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)


def test_svm_is_at_chance_on_identical_distributions():
    x, m = _two_modalities(shift=0.0)
    r = modality_svm(x, m, seed=2)
    assert 0.40 <= r["accuracy"] <= 0.60


def test_svm_uses_the_smaller_modality_count_for_both():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000 + 150, 4))
    m = np.array(["image"] * 2000 + ["audio"] * 150)
    r = modality_svm(x, m)
    assert r["per_modality"] == 150 and r["train"] + r["test"] == 300
    with pytest.raises(ValueError, match="exactly two"):
        modality_svm(x, np.array(["a"] * len(x)))


def test_pick_inputs_and_flatten_samples():
    labels = np.repeat(np.arange(10), [50, 5, 5, 5, 5, 5, 5, 5, 5, 5])
    pick = pick_inputs(labels, 20, seed=0)
    assert len(pick) == 20 and np.all(np.bincount(labels[pick], minlength=10) == 2)
    samples = np.arange(3 * 2 * 4).reshape(3, 2, 4)
    x, y, owner = flatten_samples(samples, np.array([7, 8, 9]))
    assert x.shape == (6, 4) and list(y) == [7, 7, 8, 8, 9, 9] and list(owner) == [0, 0, 1, 1, 2, 2]
    assert np.array_equal(x[3], samples[1, 1])


def _digit_space(invariant: bool, n_per_class=12, dim=16, seed=0):
    """Sampled embeddings with digit clusters; modalities share clusters only when `invariant`."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, size=(2, 10, dim))
    labels = np.repeat(np.arange(10), n_per_class)
    image = centres[0][labels] + rng.normal(size=(len(labels), dim))
    audio = centres[0 if invariant else 1][labels] + rng.normal(size=(len(labels), dim))
    x = np.concatenate([image, audio])
    return x, np.concatenate([labels, labels]), np.array(["image"] * len(labels) + ["audio"] * len(labels))


def test_evaluate_embeddings_reports_both_regimes():
    x, y, m = _digit_space(invariant=True)
    inv = evaluate_embeddings(x, y, m, svm_per_modality=120, svm_train=160, tsne_per_modality=20)
    assert inv["purity"] == 1.0 and inv["svm_acc"] <= 0.75
    assert set(inv["tsne"]) == {"audio", "image"} and len(inv["tsne"]["audio"]["xy"]) == 20
    x, y, m = _digit_space(invariant=False)
    split = evaluate_embeddings(x, y, m, svm_per_modality=120, svm_train=160, tsne_per_modality=None)
    assert split["svm_acc"] >= 0.95 and split["purity"] < 0.9
    assert split["purity_within"]["image"] > split["purity"]
    with pytest.raises(ValueError, match="NaN"):
        evaluate_embeddings(np.full((4, 2), np.nan), np.zeros(4), np.array(["a", "b"] * 2))


def test_evaluate_file_balances_inputs_and_rejects_bad_files(tmp_path):
    x, y, m = _digit_space(invariant=True, n_per_class=4)
    img, aud = x[m == "image"], x[m == "audio"]
    rng = np.random.default_rng(0)
    views = {
        # 40 images but only 20 utterances: purity must use 20 of each.
        "image": {"ids": [f"i{k}" for k in range(80)], "labels": np.concatenate([y[m == "image"]] * 2),
                  "samples": np.concatenate([img, img])[:, None, :] + rng.normal(0, 0.1, (80, 3, img.shape[1]))},
        "audio": {"ids": [f"a{k}" for k in range(20)], "labels": y[m == "audio"][::2],
                  "samples": aud[::2, None, :] + rng.normal(0, 0.1, (20, 3, aud.shape[1]))},
    }
    path = tmp_path / "run.h5"
    write_embeddings(path, views, {"method": "test"})
    r = evaluate_file(path, inputs_per_modality=None, svm_per_modality=60, svm_train=80, tsne_per_modality=None)
    assert r["inputs"]["image"] == {"inputs": 20, "available": 80, "samples_per_input": 3, "embeddings": 60}
    assert r["purity_points"] == {"audio": 60, "image": 60}
    with pytest.raises(StoreError, match="no 'mean'"):
        evaluate_file(path, sample_key="mean")
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(path.read_bytes()[:300])
    with pytest.raises(StoreError, match="corrupt"):
        evaluate_file(bad)
    with pytest.raises(StoreError, match="does not exist"):
        evaluate_file(tmp_path / "missing.h5")
    with h5py.File(path, "a") as f:  # the file is still readable after the failed reads
        assert "image" in f
