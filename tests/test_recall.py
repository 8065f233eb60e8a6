"""Recall@k (vgs.eval.retrieval): brute-force agreement, the tie rule, the oracle, bad input, files."""
import csv
import io
import json
from fractions import Fraction

import numpy as np
import pytest

from vgs.errors import StoreError, VgsError
from vgs.eval.retrieval import (RecallResult, hit_probability, oracle_recall, recall_all_pairs, recall_at_k,
                                recall_from_embedding_file, true_match_counts, zero_vector_counts)
from vgs.store.embeddings import write_embeddings


# -- references ------------------------------------------------------------------------------------
def brute_force_direction(queries, candidates, ks, score):
    """R@k by explicit loops over a full score table, with the documented random-tie expectation."""
    n = len(queries)
    table = [[score(queries[i], candidates[j]) for j in range(n)] for i in range(n)]
    recall = {k: 0.0 for k in ks}
    for i in range(n):
        true = table[i][i]
        greater = sum(1 for j in range(n) if table[i][j] > true)
        ties = sum(1 for j in range(n) if j != i and table[i][j] == true)
        for k in ks:
            recall[k] += min(1.0, max(0.0, (k - greater) / (ties + 1)))
    return {k: v / n for k, v in recall.items()}


def float64_cosine(q, c):
    return float(np.dot(q, c) / (np.linalg.norm(q) * np.linalg.norm(c)))


def exact_cosine_key(q, c):
    """A key ordered exactly like cos(q, c) for integer vectors and a fixed q: sign(q.c) (q.c)^2 / |c|^2."""
    dot = int(np.dot(q.astype(np.int64), c.astype(np.int64)))
    return Fraction((1 if dot >= 0 else -1) * dot * dot, int(np.dot(c.astype(np.int64), c.astype(np.int64))))


def brute_force(a, b, ks, score=float64_cosine):
    return brute_force_direction(a, b, ks, score), brute_force_direction(b, a, ks, score)


def noisy_pair(n, dim, noise, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, dim)).astype(np.float32)
    b = (a + noise * rng.standard_normal((n, dim))).astype(np.float32)
    return a, b


# -- agreement with the brute-force reference ------------------------------------------------------
@pytest.mark.parametrize("n,dim", [(1, 4), (7, 3), (33, 8), (64, 16)])
@pytest.mark.parametrize("chunk", ["one", "non_divisor", "larger_than_n", "default"])
def test_matches_brute_force_on_random_data(n, dim, chunk):
    a, b = noisy_pair(n, dim, noise=1.5, seed=n)
    chunk_size = {"one": 1, "non_divisor": 5, "larger_than_n": n + 3, "default": 512}[chunk]
    ks = tuple(k for k in (1, 2, 5, 10) if k <= n)
    result = recall_at_k(a, b, ks=ks, chunk_size=chunk_size)
    a2b, b2a = brute_force(a, b, ks)
    assert result.a2b == pytest.approx(a2b, abs=1e-12)
    assert result.b2a == pytest.approx(b2a, abs=1e-12)
    assert result.avg == pytest.approx({k: (a2b[k] + b2a[k]) / 2 for k in ks}, abs=1e-12)
    assert result.n == n and result.ks == ks
    if n > 10:  # noise 1.5 leaves a task that is neither solved nor hopeless
        assert 0.0 < result.a2b[1] < 1.0


def test_chunk_size_does_not_change_counts():
    a, b = noisy_pair(50, 8, noise=2.0, seed=3)
    reference = true_match_counts(a, b, chunk_size=50)
    for chunk_size in (1, 2, 7, 49, 51, 1000):
        greater, ties = true_match_counts(a, b, chunk_size=chunk_size)
        np.testing.assert_array_equal(greater, reference[0])
        np.testing.assert_array_equal(ties, reference[1])


def test_inputs_are_not_modified_and_any_real_dtype_works():
    a, b = noisy_pair(20, 6, noise=1.0, seed=1)
    a_before, b_before = a.copy(), b.copy()
    r32 = recall_at_k(a, b, ks=(1, 5))
    np.testing.assert_array_equal(a, a_before)
    np.testing.assert_array_equal(b, b_before)
    r64 = recall_at_k(a.astype(np.float64), np.asfortranarray(b), ks=(1, 5))
    assert r64 == r32


# -- ties ------------------------------------------------------------------------------------------
def test_ties_hand_computed_three_items():
    # Rows 0 and 1 are the same vector in both views: each of their queries sees its true item
    # tied with one other, so it is a hit at 1 with probability 1/2 (optimistic rule: 1,
    # pessimistic: 0). Row 2 is unique. R@1 = (1/2 + 1/2 + 1) / 3 = 2/3, R@2 = 1.
    a = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    result = recall_at_k(a, a.copy(), ks=(1, 2))
    assert result.a2b == pytest.approx({1: 2 / 3, 2: 1.0})
    assert result.b2a == pytest.approx({1: 2 / 3, 2: 1.0})
    greater, ties = true_match_counts(a, a)
    assert greater.tolist() == [0, 0, 0] and ties.tolist() == [1, 1, 0]


def test_ties_hand_computed_with_a_better_candidate():
    # s = cos 45 deg. Query a0 = [1, 0]: true b0 = [1, 1] scores s, b1 = [1, 0] scores 1 (greater),
    # b2 = [1, 1] and b3 = [1, -1] score s (ties): greater 1, ties 2, so P(hit at k) = (k - 1) / 3.
    # a1 = [1, 0] finds b1 alone at 1; a2 = [1, 1] ties b2 with b0; a3 = [1, -1] finds b3 alone.
    a = np.array([[1, 0], [1, 0], [1, 1], [1, -1]], dtype=np.float32)
    b = np.array([[1, 1], [1, 0], [1, 1], [1, -1]], dtype=np.float32)
    greater, ties = true_match_counts(a, b)
    assert greater.tolist() == [1, 0, 0, 0] and ties.tolist() == [2, 0, 1, 0]
    result = recall_at_k(a, b, ks=(1, 2, 3, 4))
    assert result.a2b == pytest.approx({1: (0 + 1 + 1 / 2 + 1) / 4, 2: (1 / 3 + 3) / 4, 3: (2 / 3 + 3) / 4, 4: 1.0})
    # b -> a: b0 = [1, 1] prefers a2 (greater 1) and ties a0 with a1; b1 = [1, 0] ties a1 with a0.
    assert result.b2a == pytest.approx({1: (0 + 1 / 2 + 1 + 1) / 4, 2: (1 / 2 + 1 + 1 + 1) / 4, 3: 1.0, 4: 1.0})


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk_size", [1, 6, 512])
def test_tie_rule_matches_exact_reference_on_integer_embeddings(seed, chunk_size):
    # Entries in {-1, 0, 1} in 3-D: many candidates share the true item's cosine exactly, and
    # scaled rows (2x) tie with their originals. The reference compares cosines in exact rationals.
    rng = np.random.default_rng(seed)
    a = rng.integers(-1, 2, size=(40, 3))
    b = rng.integers(-1, 2, size=(40, 3))
    a[(a == 0).all(axis=1)] = 1
    b[(b == 0).all(axis=1)] = 1
    b[::5] *= 2
    ks = (1, 3, 5, 10)
    result = recall_at_k(a.astype(np.float32), b.astype(np.float32), ks=ks, chunk_size=chunk_size)
    a2b, b2a = brute_force(a, b, ks, score=exact_cosine_key)
    assert result.a2b == pytest.approx(a2b, abs=1e-12)
    assert result.b2a == pytest.approx(b2a, abs=1e-12)
    _, ties = true_match_counts(a, b)
    assert (ties > 0).mean() > 0.5  # the tie rule is what is being tested here


def test_hit_probability_is_the_random_tie_break_expectation():
    greater, ties = np.array([0, 0, 3, 3, 10]), np.array([0, 4, 0, 2, 0])
    assert hit_probability(greater, ties, 1).tolist() == pytest.approx([1, 1 / 5, 0, 0, 0])
    assert hit_probability(greater, ties, 4).tolist() == pytest.approx([1, 4 / 5, 1, 1 / 3, 0])
    # The same by simulation: rank = greater + uniform position among ties + 1.
    rng = np.random.default_rng(0)
    ranks = greater[:, None] + rng.integers(0, ties[:, None] + 1, size=(5, 20000)) + 1
    assert (ranks <= 4).mean(axis=1) == pytest.approx(hit_probability(greater, ties, 4), abs=0.02)


# -- sanity levels ---------------------------------------------------------------------------------
def test_perfect_embeddings_give_one():
    a, _ = noisy_pair(200, 32, noise=0.0, seed=0)
    for b in (a.copy(), 3.0 * a):  # cosine ignores scale
        result = recall_at_k(a, b)
        assert result.a2b == {1: 1.0, 5: 1.0, 10: 1.0}
        assert result.b2a == {1: 1.0, 5: 1.0, 10: 1.0}
        assert result.avg == {1: 1.0, 5: 1.0, 10: 1.0}


def test_random_embeddings_are_at_chance():
    rng = np.random.default_rng(0)
    n, trials = 100, 40
    totals = {1: 0.0, 5: 0.0, 10: 0.0}
    for _ in range(trials):
        result = recall_at_k(rng.standard_normal((n, 16)), rng.standard_normal((n, 16)))
        for k in totals:
            totals[k] += result.avg[k] / trials
    for k, value in totals.items():
        assert value == pytest.approx(k / n, rel=0.25), (k, value)


# -- the oracle ------------------------------------------------------------------------------------
def test_oracle_identity_and_all_true():
    n = 20
    assert oracle_recall(np.eye(n, dtype=bool)).avg == {1: 1.0, 5: 1.0, 10: 1.0}
    everything = oracle_recall(np.ones((n, n), dtype=bool), ks=(1, 5, 10, 20))
    assert everything.a2b == pytest.approx({1: 1 / n, 5: 5 / n, 10: 10 / n, 20: 1.0})
    assert everything.b2a == everything.a2b


def test_oracle_hand_computed_and_asymmetric():
    labels = np.array([0, 0, 1, 1, 1])  # m = 2, 2, 3, 3, 3
    result = oracle_recall(labels[:, None] == labels[None, :], ks=(1, 2, 3))
    assert result.a2b == pytest.approx({1: (2 / 2 + 3 / 3) / 5, 2: 4 / 5, 3: 1.0})
    fits = np.eye(3, dtype=bool)
    fits[0, 1] = fits[0, 2] = True  # rows fit 3, 1, 1 candidates; columns 1, 2, 2
    result = oracle_recall(fits, ks=(1, 2))
    assert result.a2b == pytest.approx({1: (1 / 3 + 2) / 3, 2: (2 / 3 + 2) / 3})
    assert result.b2a == pytest.approx({1: (1 + 1 / 2 + 1 / 2) / 3, 2: 1.0})
    assert result.avg[1] == pytest.approx((7 / 9 + 2 / 3) / 2)


def test_a_model_that_only_knows_the_class_reaches_the_oracle():
    labels = np.random.default_rng(0).integers(0, 6, size=60)
    one_hot = np.eye(6, dtype=np.float32)[labels]
    model = recall_at_k(one_hot, one_hot.copy(), ks=(1, 5, 10))
    oracle = oracle_recall(labels[:, None] == labels[None, :], ks=(1, 5, 10))
    assert model.a2b == pytest.approx(oracle.a2b, abs=1e-12)
    assert model.b2a == pytest.approx(oracle.b2a, abs=1e-12)


# -- all pairs and the result row ------------------------------------------------------------------
def test_all_pairs_keys_and_values():
    a, b = noisy_pair(30, 8, noise=1.0, seed=2)
    _, c = noisy_pair(30, 8, noise=1.0, seed=5)
    views = {"image": a, "en": b, "de": c}
    results = recall_all_pairs(views, ks=(1, 5))
    assert list(results) == ["image-en", "image-de", "en-de"]
    assert results["image-de"] == recall_at_k(a, c, ks=(1, 5), names=("image", "de"))
    assert (results["en-de"].a, results["en-de"].b) == ("en", "de")


def test_result_row_goes_into_json_and_csv():
    result = RecallResult(a="image", b="en", n=4, a2b={1: 0.25, 5: 1.0}, b2a={1: 0.75, 5: 1.0})
    row = result.as_row()
    assert row == {"a": "image", "b": "en", "n": 4, "a2b_R1": 0.25, "a2b_R5": 1.0, "b2a_R1": 0.75,
                   "b2a_R5": 1.0, "avgR1": 0.5, "avgR5": 1.0}
    assert json.loads(json.dumps(row)) == row
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row))
    writer.writeheader()
    writer.writerow(row)
    assert out.getvalue().splitlines()[1] == "image,en,4,0.25,1.0,0.75,1.0,0.5,1.0"


# -- bad input -------------------------------------------------------------------------------------
def _good(n=6, dim=3):
    return noisy_pair(n, dim, noise=1.0, seed=0)


def _with(array, row, value):
    array = array.copy()
    array[row] = value
    return array


@pytest.mark.parametrize("make_args,message", [
    (lambda a, b: (_with(a, 2, 0.0), b), "row 2 is a zero vector"),
    (lambda a, b: (a, _with(b, 4, np.nan)), "row 4 contains NaN or infinite"),
    (lambda a, b: (_with(a, 1, np.inf), b), "row 1 contains NaN or infinite"),
    (lambda a, b: (a, b[:5]), "have 6 and 5 rows"),
    (lambda a, b: (a, b[:, :2]), "dimensions 3 and 2"),
    (lambda a, b: (a[:0], b[:0]), "is empty"),
    (lambda a, b: (a[:, :0], b[:, :0]), "is empty"),
    (lambda a, b: (a[0], b[0]), "recall needs (N, D)"),
    (lambda a, b: (a.astype(str), b), "recall needs real numbers"),
    (lambda a, b: (_with(a, 0, 1e-40), b), "outside the range"),   # 1/norm overflows float32
    (lambda a, b: (a, _with(b, 3, 3e38)), "outside the range"),    # scores would overflow float32
])
def test_bad_embeddings_are_clear_errors(make_args, message):
    a, b = _good()
    with pytest.raises(VgsError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        recall_at_k(*make_args(a, b), ks=(1,))
    assert info.value.hint and isinstance(info.value, ValueError)


@pytest.mark.parametrize("ks,message", [
    ((0, 1), "k = 0 must be at least 1"),
    ((1, -5), "k = -5 must be at least 1"),
    ((1, 7), "k = 7 exceeds the 6 candidates"),
    ((), "ks is empty"),
    ((1.5,), "is not an integer"),
])
def test_bad_ks_are_clear_errors(ks, message):
    a, b = _good()
    with pytest.raises(VgsError, match=message) as info:
        recall_at_k(a, b, ks=ks)
    assert info.value.hint
    with pytest.raises(VgsError, match=message):
        oracle_recall(np.eye(6, dtype=bool), ks=ks)


def test_bad_chunk_size_and_too_few_views():
    a, b = _good()
    with pytest.raises(VgsError, match="chunk_size = 0"):
        recall_at_k(a, b, chunk_size=0, ks=(1,))
    with pytest.raises(VgsError, match="at least two views"):
        recall_all_pairs({"image": a}, ks=(1,))
    with pytest.raises(VgsError, match="'de' has 4 rows|have 6 and 4 rows"):
        recall_all_pairs({"image": a, "en": b, "de": b[:4]}, ks=(1,))


@pytest.mark.parametrize("fits,message", [
    (np.ones((3, 4), dtype=bool), "square"),
    (np.zeros((0, 0), dtype=bool), "square"),
    (~np.eye(3, dtype=bool) | np.diag([True, False, True]), r"fits\[1, 1\] is False"),
    (np.full((3, 3), 0.5), "must be boolean"),
])
def test_bad_fits_are_clear_errors(fits, message):
    with pytest.raises(VgsError, match=message) as info:
        oracle_recall(fits, ks=(1,))
    assert info.value.hint


# -- from an embedding file ------------------------------------------------------------------------
def _write_file(path, views, array="embedding", ids=None, seed=0):
    rng = np.random.default_rng(seed)
    contents = {}
    for name, x in views.items():
        view_ids = ids[name] if ids else np.array([f"item{i:03d}" for i in range(len(x))], dtype=object)
        order = rng.permutation(len(x))  # stored in a different row order per view
        contents[name] = {"ids": view_ids[order], "labels": np.zeros(len(x), dtype=np.int64),
                          array: x[order], "logvar": np.zeros_like(x[order])}
    write_embeddings(path, contents, attrs={"method": "test", "run": "r"})


def test_embedding_file_round_trip(tmp_path):
    a, b = noisy_pair(40, 8, noise=1.0, seed=7)
    _, c = noisy_pair(40, 8, noise=1.0, seed=8)
    path = tmp_path / "run.h5"
    _write_file(path, {"en": b, "image": a, "de": c})
    from_file = recall_from_embedding_file(path, ks=(1, 5, 10))
    assert list(from_file) == ["image-de", "image-en", "de-en"]  # image first, then HDF5's (sorted) order
    assert from_file == recall_all_pairs({"image": a, "de": c, "en": b}, ks=(1, 5, 10))
    chosen = recall_from_embedding_file(path, views=["de", "en"], ks=(1,))
    assert list(chosen) == ["de-en"]
    assert chosen["de-en"].a2b == recall_at_k(c, b, ks=(1,)).a2b


def test_embedding_file_errors(tmp_path):
    a, b = noisy_pair(10, 4, noise=1.0, seed=0)
    ids = np.array([f"item{i}" for i in range(10)], dtype=object)
    other = ids.copy()
    other[3] = "stranger"
    path = tmp_path / "mismatch.h5"
    _write_file(path, {"image": a, "en": b}, ids={"image": ids, "en": other})
    with pytest.raises(StoreError, match="view 'en' has no row for id 'item3'") as info:
        recall_from_embedding_file(path, ks=(1,))
    assert info.value.hint
    with pytest.raises(StoreError, match="view 'image' has no row for id 'stranger'"):
        recall_from_embedding_file(path, views=["en", "image"], ks=(1,))

    good = tmp_path / "good.h5"
    _write_file(good, {"image": a, "en": b})
    with pytest.raises(StoreError, match="has no 'mean' array"):
        recall_from_embedding_file(good, array="mean", ks=(1,))
    with pytest.raises(StoreError, match="has no view 'fr'"):
        recall_from_embedding_file(good, views=["image", "fr"], ks=(1,))
    with pytest.raises(StoreError, match="two or more views"):
        recall_from_embedding_file(good, views=["image"], ks=(1,))
    with pytest.raises(StoreError, match="does not exist"):
        recall_from_embedding_file(tmp_path / "absent.h5", ks=(1,))

    duplicated = ids.copy()
    duplicated[5] = "item4"
    dup_path = tmp_path / "dup.h5"
    _write_file(dup_path, {"image": a, "en": b}, ids={"image": ids, "en": duplicated})
    with pytest.raises(StoreError, match="'en' holds id 'item4' more than once"):
        recall_from_embedding_file(dup_path, ks=(1,))

    samples = tmp_path / "samples.h5"
    write_embeddings(samples, {v: {"ids": ids, "labels": np.zeros(10, dtype=np.int64),
                                   "samples": np.ones((10, 2, 4), dtype=np.float32)} for v in ("image", "en")},
                     attrs={})
    with pytest.raises(StoreError, match=r"shape \(10, 2, 4\)"):
        recall_from_embedding_file(samples, array="samples", ks=(1,))


# -- zero vectors under the "tie" rule -------------------------------------------------------------
def cosine_or_zero(q, c):
    """The documented rule: a zero vector's cosine with anything is 0."""
    if not np.any(q) or not np.any(c):
        return 0.0
    return float64_cosine(q, c)


@pytest.mark.parametrize("chunk_size", [1, 4, 512])
def test_zero_vectors_tie_matches_brute_force(chunk_size):
    a, b = noisy_pair(12, 5, noise=1.0, seed=3)
    a[[2, 7]] = 0.0        # zero queries and zero candidates, one of them a true pair
    b[[7, 9]] = 0.0
    ks = (1, 3, 10)
    result = recall_at_k(a, b, ks=ks, chunk_size=chunk_size, zero_vectors="tie")
    a2b, b2a = brute_force(a, b, ks, score=cosine_or_zero)
    for k in ks:
        assert result.a2b[k] == pytest.approx(a2b[k], abs=1e-12)
        assert result.b2a[k] == pytest.approx(b2a[k], abs=1e-12)
    assert zero_vector_counts({"a": a, "b": b}) == {"a": 2, "b": 2}


def test_zero_query_scores_chance_level():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((10, 4)).astype(np.float32)
    b = a.copy()
    a[0] = 0.0
    r = recall_at_k(a, b, ks=(1, 5), zero_vectors="tie")
    # Query 0 ties all 10 candidates: expected hit k/10; the other nine queries hit at rank 1.
    assert r.a2b[1] == pytest.approx((9 + 1 / 10) / 10)
    assert r.a2b[5] == pytest.approx((9 + 5 / 10) / 10)


def test_unknown_zero_vector_rule_is_a_clear_error():
    a, b = noisy_pair(4, 3, noise=0.1, seed=0)
    with pytest.raises(VgsError, match="zero_vectors='drop' is not a rule"):
        recall_all_pairs({"a": a, "b": b}, zero_vectors="drop")
