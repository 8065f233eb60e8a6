"""Ranking scores with several relevant items per query: recall@k, MRR and nDCG@k, ties included.

Flickr8k and SpokenCOCO give each image five spoken captions. Scored as those benchmarks do:

- speech -> image: each caption ranks all images; one relevant image (its own);
- image -> speech: each image ranks all captions; its five captions are relevant, and recall@k
  counts a hit when any of them is in the top k.

Repeating each image five times and calling square recall would cap a perfect model's image->speech
R@1 at 0.2 under the tie rule (the five copies tie); this module scores the real protocol.

Beside R@k, the two scores that current retrieval benchmarks report, as they define them with
binary relevance (MTEB's retrieval tasks compute them with pytrec_eval; `ndcg_at_10` is MTEB's main
score):

- MRR: the mean over queries of 1 / rank of the first relevant item;
- nDCG@k: DCG@k / IDCG@k with DCG@k = sum over ranks i <= k of rel_i / log2(i + 1) and IDCG@k the
  DCG of the ideal order (all relevant items first).

Ties: every score is the expectation under a uniformly random order of tied candidates, as for
recall in vgs/eval/retrieval.py (pytrec_eval instead breaks ties by document id, which rewards
document naming; without ties the two agree). Within a block of t candidates scoring the same, of
which r are relevant, each position holds a relevant item with probability r / t, and the first
relevant item of the block lies at position j with probability C(t - r, j - 1) / C(t, j - 1) * r / (t - j + 1).
Similarity is cosine, as in retrieval.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vgs.eval.retrieval import RetrievalInputError

DEFAULT_KS = (1, 5, 10)
NDCG_K = 10


def _normalise(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise RetrievalInputError(f"{name} must be a non-empty (n, d) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise RetrievalInputError(f"{name} has {int((norms == 0).sum())} zero vector(s): cosine is undefined for them")
    return x / norms


def query_scores(scores: np.ndarray, relevant: np.ndarray, ks=DEFAULT_KS, ndcg_k: int = NDCG_K) -> dict[str, float]:
    """R@k, MRR and nDCG@ndcg_k of one query: `scores` over all candidates, `relevant` a bool mask
    (at least one True). Expectations under a random order of tied candidates."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if not relevant.any():
        raise RetrievalInputError("a query needs at least one relevant candidate")
    values, inverse = np.unique(-scores, return_inverse=True)        # blocks of equal score, best first
    size = np.bincount(inverse, minlength=len(values)).astype(np.int64)
    rel = np.bincount(inverse, weights=relevant, minlength=len(values)).astype(np.int64)
    before = np.concatenate([[0], np.cumsum(size)[:-1]])            # candidates ranked ahead of each block
    first = int(np.argmax(rel > 0))                                # the block holding the first relevant item
    g, t, r = int(before[first]), int(size[first]), int(rel[first])
    out: dict[str, float] = {}
    for k in ks:
        m = k - g                                                  # positions of the block inside the top k
        out[f"R{k}"] = 0.0 if m <= 0 else 1.0 if m >= t - r + 1 else 1.0 - _ratio(t - r, t, m)
    # MRR: E[1 / (g + j)], j the position of the first relevant item within its block.
    mrr, none_yet = 0.0, 1.0                                       # P(no relevant among the first j - 1)
    for j in range(1, t - r + 2):
        p_here = none_yet * r / (t - j + 1)
        mrr += p_here / (g + j)
        none_yet -= p_here
    out["MRR"] = mrr
    # nDCG: each position of a block is relevant with probability r_b / t_b.
    dcg = 0.0
    for b in range(len(values)):
        start = int(before[b])
        if start >= ndcg_k:
            break
        if rel[b]:
            positions = np.arange(start + 1, min(start + int(size[b]), ndcg_k) + 1)
            dcg += rel[b] / size[b] * float(np.sum(1.0 / np.log2(positions + 1)))
    ideal = float(np.sum(1.0 / np.log2(np.arange(1, min(int(relevant.sum()), ndcg_k) + 1) + 1)))
    out[f"nDCG{ndcg_k}"] = dcg / ideal
    return out


def _ratio(a: int, b: int, m: int) -> float:
    """C(a, m) / C(b, m) for 0 <= a <= b: the chance that m places drawn from b miss all b - a marked ones."""
    if m > a:
        return 0.0
    out = 1.0
    for i in range(m):
        out *= (a - i) / (b - i)
    return out


@dataclass(frozen=True)
class MultiCaptionResult:
    """Both directions of image <-> caption retrieval with several captions per image."""

    images: int
    captions: int
    image2speech: dict[str, float]
    speech2image: dict[str, float]

    def as_row(self) -> dict:
        row: dict = {"images": self.images, "captions": self.captions}
        row.update({f"i2s_{k}": v for k, v in self.image2speech.items()})
        row.update({f"s2i_{k}": v for k, v in self.speech2image.items()})
        return row


def multi_caption_retrieval(images: np.ndarray, captions: np.ndarray, caption_image: np.ndarray,
                            ks=DEFAULT_KS, ndcg_k: int = NDCG_K) -> MultiCaptionResult:
    """Flickr8k's protocol: every caption against every image (`caption_image[c]` is the row of
    caption c's image), mean R@k, MRR and nDCG@k in both directions."""
    a, b = _normalise(images, "images"), _normalise(captions, "captions")
    owner = np.asarray(caption_image)
    if owner.shape != (len(b),) or owner.dtype.kind not in "iu" or owner.min() < 0 or owner.max() >= len(a):
        raise RetrievalInputError(f"caption_image must give each of the {len(b)} captions the row of its image "
                                  f"(0..{len(a) - 1})")
    if np.bincount(owner, minlength=len(a)).min() == 0:
        raise RetrievalInputError("every image needs at least one caption")
    scores = a @ b.T                                                # (images, captions)
    i2s = [query_scores(scores[i], owner == i, ks, ndcg_k) for i in range(len(a))]
    s2i = [query_scores(scores[:, c], np.arange(len(a)) == owner[c], ks, ndcg_k) for c in range(len(b))]

    def mean(rows):
        return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}

    return MultiCaptionResult(len(a), len(b), mean(i2s), mean(s2i))
