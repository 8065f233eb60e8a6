"""Recall@k, MRR and nDCG@10 with several captions per image (vgs/eval/ranking.py), against a
brute force over every order of tied candidates and against values computed by hand."""
import itertools
import math

import numpy as np
import pytest

from vgs.eval.ranking import multi_caption_retrieval, query_scores
from vgs.eval.retrieval import RetrievalInputError, recall_at_k


def brute_force(scores, relevant, ks, ndcg_k):
    """Average over every ordering of the tied candidates (scores sorted descending)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    blocks = [list(g) for _, g in itertools.groupby(order, key=lambda i: scores[i])]
    totals, count = {}, 0
    for perm in itertools.product(*[list(itertools.permutations(b)) for b in blocks]):
        ranked = [i for block in perm for i in block]
        rel = [bool(relevant[i]) for i in ranked]
        first = rel.index(True) + 1
        m = {f"R{k}": float(first <= k) for k in ks}
        m["MRR"] = 1.0 / first
        dcg = sum(1 / math.log2(p + 2) for p, x in enumerate(rel[:ndcg_k]) if x)
        ideal = sum(1 / math.log2(p + 2) for p in range(min(sum(rel), ndcg_k)))
        m[f"nDCG{ndcg_k}"] = dcg / ideal
        for key, v in m.items():
            totals[key] = totals.get(key, 0.0) + v
        count += 1
    return {key: v / count for key, v in totals.items()}


def test_expectations_over_tied_orders_match_a_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(2, 8))
        scores = rng.integers(0, 3, n).astype(float)          # many ties
        relevant = rng.random(n) < 0.4
        relevant[rng.integers(n)] = True
        got = query_scores(scores, relevant, ks=(1, 2, 3), ndcg_k=3)
        want = brute_force(list(scores), list(relevant), (1, 2, 3), 3)
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=1e-12), (scores, relevant, key)


def test_hand_computed_values_without_ties():
    # ranks 1..5 by score; relevant at ranks 2 and 4.
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    relevant = [False, True, False, True, False]
    got = query_scores(scores, relevant, ks=(1, 2, 5), ndcg_k=10)
    assert got["R1"] == 0 and got["R2"] == 1 and got["R5"] == 1
    assert got["MRR"] == pytest.approx(0.5)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    assert got["nDCG10"] == pytest.approx(dcg / (1 + 1 / math.log2(3)))        # 0.6509
    assert got["nDCG10"] == pytest.approx(0.650921, abs=1e-6)


def test_one_relevant_item_agrees_with_the_square_recall_and_its_tie_rule():
    rng = np.random.default_rng(3)
    a = rng.integers(-1, 2, (12, 3)).astype(np.float32)
    a[np.linalg.norm(a, axis=1) == 0] = 1.0
    b = a + rng.integers(-1, 2, (12, 3)) * 0.5
    b[np.linalg.norm(b, axis=1) == 0] = 1.0
    square = recall_at_k(a, b, ks=(1, 5))
    ours = multi_caption_retrieval(a, b, np.arange(12), ks=(1, 5))
    assert ours.image2speech["R1"] == pytest.approx(square.a2b[1]) and ours.speech2image["R5"] == pytest.approx(square.b2a[5])


def test_five_captions_per_image_a_perfect_model_scores_one_not_a_fifth():
    images = np.eye(4)
    captions = np.repeat(images, 5, axis=0)                   # five identical captions per image
    owner = np.repeat(np.arange(4), 5)
    res = multi_caption_retrieval(images, captions, owner)
    assert res.image2speech["R1"] == 1 and res.speech2image["R1"] == 1
    assert res.image2speech["MRR"] == 1 and res.image2speech["nDCG10"] == pytest.approx(1.0)
    # The workaround this replaces: each image repeated five times, square recall, R@1 capped at 0.2.
    assert recall_at_k(np.repeat(images, 5, axis=0), captions, ks=(1,)).a2b[1] == pytest.approx(0.2)


def test_bad_input_is_named():
    with pytest.raises(RetrievalInputError, match="caption_image"):
        multi_caption_retrieval(np.eye(3), np.eye(3), np.array([0, 1, 5]))
    with pytest.raises(RetrievalInputError, match="at least one caption"):
        multi_caption_retrieval(np.eye(3), np.eye(3), np.array([0, 1, 1]))
    with pytest.raises(RetrievalInputError, match="zero vector"):
        multi_caption_retrieval(np.zeros((2, 3)), np.eye(3)[:2], np.array([0, 1]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_square_recall_reports_mrr_and_ndcg10_equal_to_the_brute_force_reference_with_ties(seed):
    # One caption per image (digitscenes): RecallResult's MRR and nDCG@10 come from the true item's
    # rank counts; the reference ranks every query in full (vgs/eval/ranking.py), ties included.
    from vgs.eval.ranking import multi_caption_retrieval
    from vgs.eval.retrieval import recall_at_k
    rng = np.random.default_rng(seed)
    # +-unit axis vectors: six directions, so many ties, and every cosine (-1, 0, 1) is exact in
    # float32 and float64 alike, so both computations see the same ties.
    axes = np.vstack([np.eye(3), -np.eye(3)]).astype(np.float32)
    a, b = axes[rng.integers(0, 6, 40)], axes[rng.integers(0, 6, 40)]
    row = recall_at_k(a, b, names=("image", "en")).as_row()
    ref = multi_caption_retrieval(a, b, np.arange(40))
    for ours, theirs in (("a2b", ref.image2speech), ("b2a", ref.speech2image)):
        assert row[f"{ours}_MRR"] == pytest.approx(theirs["MRR"], abs=1e-12)
        assert row[f"{ours}_nDCG10"] == pytest.approx(theirs["nDCG10"], abs=1e-12)
        assert row[f"{ours}_R10"] == pytest.approx(theirs["R10"], abs=1e-12)
    assert row["avgMRR"] == pytest.approx((row["a2b_MRR"] + row["b2a_MRR"]) / 2)


def test_mrr_and_ndcg_of_hand_placed_ranks():
    from vgs.eval.retrieval import ndcg_at, reciprocal_rank
    # rank 1 alone; rank 3 alone; ranks 2..3 tied (mean of 1/2 and 1/3); rank 12 (outside top 10)
    g, t = np.array([0, 2, 1, 11]), np.array([0, 0, 1, 0])
    np.testing.assert_allclose(reciprocal_rank(g, t), [1, 1 / 3, (1 / 2 + 1 / 3) / 2, 1 / 12])
    np.testing.assert_allclose(ndcg_at(g, t, 10), [1, 1 / np.log2(4), (1 / np.log2(3) + 1 / np.log2(4)) / 2, 0])
    # ties straddling the cut-off: ranks 10 and 11 equally likely
    np.testing.assert_allclose(ndcg_at(np.array([9]), np.array([1]), 10), [0.5 / np.log2(11)])
