"""Recall@k for cross-modal retrieval (spoken captions <-> images, caption language <-> language).

One shared implementation for every method: `recall_at_k` for one view pair, `recall_all_pairs`
for every pair of K views, `recall_from_embedding_file` to recompute recall from an embedding file
alone, and `oracle_recall`, the best recall any model can reach when some candidates cannot be told
apart from the true one. The definitions (tie rule, oracle, chunking) are in docs/retrieval-eval.md.

Row i of every view is the same datapoint: a[i] and b[i] are a true match, every other row of the
other view is a distractor. Similarity is cosine.

Ties: a query's true item scored s ranks behind the `greater` candidates that score strictly more
than s, and among the `ties` other candidates that score exactly s in random order. Recall@k counts
the expected hit under uniform random tie-breaking,

    P(rank <= k) = clip((k - greater) / (ties + 1), 0, 1),

which is neither optimistic nor pessimistic about a model that scores many candidates alike.

Zero vectors have no direction, so cosine is undefined for them and recall refuses them by default.
A method whose trained encoder can legitimately output one (an average of ReLU features that are all
off) passes `zero_vectors="tie"`: a zero vector's cosine with anything is taken as 0, so a zero query
ties every candidate that scores 0 (chance level by the tie rule) and a zero candidate scores 0 for
every query. `zero_vector_counts` says how many there were, for the report.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from vgs.errors import StoreError, VgsError

DEFAULT_KS = (1, 5, 10)
NDCG_K = 10              # MTEB's main retrieval score is nDCG@10
# Queries per block. Each block holds a (chunk x N) float32 score matrix and a bool mask of the
# same shape: 5 * chunk * N bytes (256 MB at N = 100,000). Measured sgemm throughput on the 2-core
# dev machine, d = 1024: 128 rows 237, 256 rows 301, 512 rows 307, 1024 rows 284 GFLOP/s.
DEFAULT_CHUNK_SIZE = 512
_FLOAT32_MAX = float(np.finfo(np.float32).max)
ZERO_VECTOR_RULES = ("error", "tie")


class RetrievalInputError(VgsError, ValueError):
    """Embeddings, ks or a fits matrix that recall cannot be computed from."""


@dataclass(frozen=True)
class RecallResult:
    """Recall@k of one view pair in both directions.

    `a2b[k]`: each row of view `a` queries all rows of view `b`; `b2a[k]` the other way round;
    `avg[k]` their mean (Crabtree's avgR@k). `as_row()` gives one flat CSV/JSON row.
    """

    a: str
    b: str
    n: int
    a2b: dict[int, float]
    b2a: dict[int, float]
    # MRR and nDCG@10 per direction ({"MRR": .., "nDCG10": ..}), the scores that current retrieval
    # benchmarks report (MTEB's main score is ndcg_at_10); empty for an oracle.
    a2b_rank: dict[str, float] = field(default_factory=dict)
    b2a_rank: dict[str, float] = field(default_factory=dict)

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(self.a2b)

    @property
    def avg(self) -> dict[int, float]:
        return {k: (self.a2b[k] + self.b2a[k]) / 2 for k in self.ks}

    def as_row(self) -> dict:
        """{"a", "b", "n", "a2b_R1", ..., "b2a_R1", ..., "avgR1", ...}: plain str/int/float values."""
        row: dict = {"a": self.a, "b": self.b, "n": self.n}
        row.update({f"a2b_R{k}": v for k, v in self.a2b.items()})
        row.update({f"b2a_R{k}": v for k, v in self.b2a.items()})
        row.update({f"avgR{k}": v for k, v in self.avg.items()})
        for name in self.a2b_rank:
            row[f"a2b_{name}"], row[f"b2a_{name}"] = self.a2b_rank[name], self.b2a_rank[name]
            row[f"avg{name}"] = (self.a2b_rank[name] + self.b2a_rank[name]) / 2
        return row


# -- one view pair ---------------------------------------------------------------------------------
def recall_at_k(a: np.ndarray, b: np.ndarray, ks=DEFAULT_KS, chunk_size: int = DEFAULT_CHUNK_SIZE,
                names: tuple[str, str] = ("a", "b"), zero_vectors: str = "error") -> RecallResult:
    """Cosine recall@k between two views whose row i is the same datapoint.

    Parameters
    ----------
    a, b : (N, D) arrays of real numbers; float32 input is used without a copy and never modified.
    ks : the cut-offs, each in 1..N.
    chunk_size : queries scored per block; memory is about 5 * chunk_size * N bytes on top of the inputs.
    names : the view names used in error messages and in the result.
    zero_vectors : "error" (default) refuses a zero row; "tie" scores it 0 against everything
        (module docstring).

    Returns
    -------
    RecallResult with R@k for a->b, b->a and their mean. A query's hit at k is the probability
    that its true item is within the top k under uniform random tie-breaking (module docstring).
    """
    a_view = _prepare_view(a, names[0], zero_vectors)
    b_view = _prepare_view(b, names[1], zero_vectors)
    _check_pair(a_view, b_view)
    return _recall_of_prepared(a_view, b_view, _check_ks(ks, len(a_view.x)), _check_chunk_size(chunk_size))


def recall_all_pairs(views: dict[str, np.ndarray], ks=DEFAULT_KS,
                     chunk_size: int = DEFAULT_CHUNK_SIZE, zero_vectors: str = "error") -> dict[str, RecallResult]:
    """Recall@k for every unordered pair of views, keyed "<a>-<b>" in the order of `views`.

    With views {"image", "en", "de"} the keys are "image-en", "image-de", "en-de". Every view must
    have the same N rows, row i being the same datapoint in all of them.
    """
    if len(views) < 2:
        raise RetrievalInputError(f"recall needs at least two views, got {list(views)}",
                                  hint="pass e.g. {'image': image_embeddings, 'en': caption_embeddings}")
    prepared = {name: _prepare_view(x, name, zero_vectors) for name, x in views.items()}
    first = next(iter(prepared.values()))
    for view in prepared.values():
        _check_pair(first, view)
    ks = _check_ks(ks, len(first.x))
    chunk_size = _check_chunk_size(chunk_size)
    return {f"{a}-{b}": _recall_of_prepared(prepared[a], prepared[b], ks, chunk_size)
            for a, b in itertools.combinations(prepared, 2)}


def true_match_counts(queries: np.ndarray, candidates: np.ndarray, chunk_size: int = DEFAULT_CHUNK_SIZE,
                      names: tuple[str, str] = ("queries", "candidates")) -> tuple[np.ndarray, np.ndarray]:
    """For each query row i: how many candidates score strictly above candidates[i], and how many
    other candidates score exactly the same (cosine, float32). Two (N,) int64 arrays."""
    q_view = _prepare_view(queries, names[0])
    c_view = _prepare_view(candidates, names[1])
    _check_pair(q_view, c_view)
    return _true_match_counts(q_view, c_view, _check_chunk_size(chunk_size))


def hit_probability(greater: np.ndarray, ties: np.ndarray, k: int) -> np.ndarray:
    """P(true item within the top k) when it ties with `ties` others in random order after `greater`."""
    return np.clip((k - np.asarray(greater, dtype=np.float64)) / (np.asarray(ties, dtype=np.float64) + 1), 0.0, 1.0)


# -- the oracle ------------------------------------------------------------------------------------
def oracle_recall(fits: np.ndarray, ks=DEFAULT_KS, names: tuple[str, str] = ("a", "b")) -> RecallResult:
    """The best recall@k any model can reach when candidates can be indistinguishable from the truth.

    `fits[i, j]` (N x N, bool) says candidate j fits query i as well as the true item i does, given
    the labels; the diagonal must be True. The best ranking puts the m_i = fits[i].sum() fitting
    candidates first in random order, so query i scores min(k, m_i) / m_i. a2b uses rows as queries,
    b2a the columns (the transpose). The same tie rule as `recall_at_k` with greater = 0 and
    ties = m_i - 1, so a model that reaches the oracle scores exactly this.
    """
    fits = np.asarray(fits)
    if fits.ndim != 2 or fits.shape[0] != fits.shape[1] or fits.shape[0] == 0:
        raise RetrievalInputError(f"fits must be a non-empty square (N x N) matrix, got shape {fits.shape}",
                                  hint="fits[i, j] says whether candidate j fits query i; row i of both views "
                                       "is the same datapoint, so there are as many candidates as queries")
    if fits.dtype != np.bool_:
        if fits.dtype.kind not in "iu" or not np.isin(fits, (0, 1)).all():
            raise RetrievalInputError(f"fits must be boolean, got dtype {fits.dtype}",
                                      hint="build it with a comparison, e.g. labels[:, None] == labels[None, :]")
        fits = fits.astype(bool)
    bad = np.flatnonzero(~np.diagonal(fits))
    if len(bad):
        raise RetrievalInputError(f"fits[{bad[0]}, {bad[0]}] is False ({len(bad)} diagonal entries are): "
                                  "the true item must fit its own query",
                                  hint="set the diagonal to True (np.fill_diagonal(fits, True))")
    n = fits.shape[0]
    ks = _check_ks(ks, n)
    fitting_per_row = np.count_nonzero(fits, axis=1)
    fitting_per_column = np.count_nonzero(fits, axis=0)

    def recall(fitting):
        return {k: float(np.mean(np.minimum(k, fitting) / fitting)) for k in ks}

    return RecallResult(a=names[0], b=names[1], n=n, a2b=recall(fitting_per_row), b2a=recall(fitting_per_column))


# -- from an embedding file ------------------------------------------------------------------------
def recall_from_embedding_file(path: str | Path, views: list[str] | None = None, array: str = "embedding",
                               ks=DEFAULT_KS, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, RecallResult]:
    """`recall_all_pairs` on the (N, D) array `array` of each view of an embedding file.

    Rows are aligned by `ids` (the first view's order), so views may be stored in any row order,
    but they must hold the same set of ids. `views=None` uses every view of the file in HDF5's
    (alphabetical) order, except that a view named "image" comes first. StoreError names the view
    and the first id that does not match.
    """
    aligned = read_aligned_views(path, views, array)
    return recall_all_pairs(aligned, ks=ks, chunk_size=chunk_size)


def read_aligned_views(path: str | Path, views: list[str] | None = None,
                       array: str = "embedding") -> dict[str, np.ndarray]:
    """{view: (N, D) float32 array}, rows reordered so that row i is the same id in every view."""
    from vgs.store.embeddings import read_embedding_attrs, read_embeddings

    read_embedding_attrs(path)   # a missing or corrupt file: the store module's own error
    with h5py.File(path, "r") as f:
        available = list(f.keys())
    names = list(views) if views else sorted(available, key=lambda v: v != "image")
    if len(names) < 2:
        raise StoreError(f"embedding file {path}: recall needs two or more views, got {names}",
                         hint="pass at least two views, or export both modalities")
    content = read_embeddings(path, names)
    ids, arrays = {}, {}
    for name in names:
        if array not in content[name]:
            has = sorted(k for k in content[name] if k != "attrs")
            raise StoreError(f"embedding file {path}: view {name!r} has no {array!r} array (has {has})",
                             hint="pass array= one of these, or re-run the method's export stage")
        ids[name] = content[name]["ids"]
        arrays[name] = content[name][array]

    reference = names[0]
    position = _id_positions(path, reference, ids[reference])
    aligned = {}
    for name in names:
        x = arrays[name]
        if x.ndim != 2 or len(x) != len(ids[name]):
            raise StoreError(f"embedding file {path}: {name}/{array} has shape {x.shape}; recall needs "
                             f"({len(ids[name])}, D), one vector per id",
                             hint="pick a per-item array such as array='mean', not per-sample embeddings")
        if name == reference:
            aligned[name] = x
            continue
        own = _id_positions(path, name, ids[name])
        missing = [i for i in ids[reference] if i not in own]
        if missing:
            raise StoreError(f"embedding file {path}: view {name!r} has no row for id {missing[0]!r} "
                             f"({len(missing)} ids of view {reference!r} are missing)",
                             hint="every view must hold the same datapoints; re-export the run or pass views=")
        extra = [i for i in ids[name] if i not in position]
        if extra:
            raise StoreError(f"embedding file {path}: view {name!r} has id {extra[0]!r} that view "
                             f"{reference!r} lacks ({len(extra)} such ids)",
                             hint="every view must hold the same datapoints; re-export the run or pass views=")
        order = np.fromiter((own[i] for i in ids[reference]), dtype=np.int64, count=len(position))
        aligned[name] = x if np.array_equal(order, np.arange(len(order))) else x[order]
    return aligned


def _id_positions(path, view: str, ids: np.ndarray) -> dict[str, int]:
    position = {i: row for row, i in enumerate(ids)}
    if len(position) != len(ids):
        seen: set = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))
        raise StoreError(f"embedding file {path}: view {view!r} holds id {duplicate!r} more than once",
                         hint="ids must be unique within a view; re-run the export stage")
    return position


# -- the work --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _View:
    name: str
    x: np.ndarray          # (N, D) float32, C-contiguous; the caller's array when it already was
    inv_norm: np.ndarray   # (N,) float32, 1 / ||x_i||


def zero_vector_counts(views: dict[str, np.ndarray]) -> dict[str, int]:
    """{view: number of all-zero rows}."""
    return {name: int(np.count_nonzero(~np.any(np.asarray(x) != 0, axis=1))) for name, x in views.items()}


def _prepare_view(x, name: str, zero_vectors: str = "error") -> _View:
    if zero_vectors not in ZERO_VECTOR_RULES:
        raise RetrievalInputError(f"zero_vectors={zero_vectors!r} is not a rule recall knows",
                                  hint="use one of " + ", ".join(ZERO_VECTOR_RULES))
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise RetrievalInputError(f"view {name!r} has dtype {x.dtype}; recall needs real numbers",
                                  hint="pass a float32 (N, D) array of embeddings")
    if x.ndim != 2:
        raise RetrievalInputError(f"view {name!r} has shape {x.shape}; recall needs (N, D), one vector per item",
                                  hint="average per-sample embeddings (N, S, D) over S, or reshape (N,) to (N, 1)")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise RetrievalInputError(f"view {name!r} is empty (shape {x.shape})",
                                  hint="check the split that was encoded; recall needs at least one item")
    # No copy for float32 C-contiguous input: at N = 100k, D = 1024 a copy is 400 MB per view.
    x = np.ascontiguousarray(x, dtype=np.float32)
    # Squared norms in float64, in row blocks so no float64 copy of x exists: float32 squares of
    # large entries would overflow, and a non-finite norm flags NaN or inf anywhere in the row.
    squared = np.empty(len(x), dtype=np.float64)
    block = max(1, 2 ** 22 // x.shape[1])
    for start in range(0, len(x), block):
        rows = x[start:start + block].astype(np.float64)
        squared[start:start + block] = np.einsum("ij,ij->i", rows, rows)
    norm = np.sqrt(squared)
    bad = np.flatnonzero(~np.isfinite(norm))
    if len(bad):
        raise RetrievalInputError(f"view {name!r}: row {bad[0]} contains NaN or infinite values "
                                  f"({len(bad)} rows do)", hint="the model diverged or the export is broken; "
                                  "re-train or re-export (and check values fit in float32)")
    zero = np.flatnonzero(norm == 0)
    if len(zero) and zero_vectors == "error":
        raise RetrievalInputError(f"view {name!r}: row {zero[0]} is a zero vector ({len(zero)} rows are); cosine "
                                  "similarity is undefined for it",
                                  hint="drop or fix these items (a zero embedding usually means empty input), "
                                  "or pass zero_vectors='tie' where a model may output one")
    # 1/norm must be a finite float32, and scores (unit query . row) must not overflow float32.
    bad = np.flatnonzero(((norm * _FLOAT32_MAX < 1.0) & (norm > 0)) | (norm > _FLOAT32_MAX))
    if len(bad):
        raise RetrievalInputError(f"view {name!r}: row {bad[0]} has norm {norm[bad[0]]:.3g}, outside the range "
                                  f"float32 cosine can handle ({len(bad)} rows are)",
                                  hint="rescale the embeddings (cosine does not change with scale)")
    # A zero row (only under the "tie" rule) gets 1/norm = 0, so every score it takes part in is 0.
    with np.errstate(divide="ignore"):
        inv_norm = np.where(norm > 0, 1.0 / norm, 0.0)
    return _View(name, x, inv_norm.astype(np.float32))


def _check_pair(a: _View, b: _View) -> None:
    if len(a.x) != len(b.x):
        raise RetrievalInputError(f"views {a.name!r} and {b.name!r} have {len(a.x)} and {len(b.x)} rows; row i "
                                  "of each must be the same datapoint",
                                  hint="align the views by datapoint id (recall_from_embedding_file does)")
    if a.x.shape[1] != b.x.shape[1]:
        raise RetrievalInputError(f"views {a.name!r} and {b.name!r} have dimensions {a.x.shape[1]} and "
                                  f"{b.x.shape[1]}; cosine needs one shared space",
                                  hint="pass embeddings of the joint space (the same array of every view)")


def _check_ks(ks, n: int) -> tuple[int, ...]:
    ks = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not ks:
        raise RetrievalInputError("ks is empty", hint="pass the cut-offs, e.g. ks=(1, 5, 10)")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise RetrievalInputError(f"k = {k!r} is not an integer", hint="pass whole numbers, e.g. ks=(1, 5, 10)")
        if k <= 0:
            raise RetrievalInputError(f"k = {k} must be at least 1", hint="pass cut-offs >= 1, e.g. ks=(1, 5, 10)")
        if k > n:
            raise RetrievalInputError(f"k = {k} exceeds the {n} candidates",
                                      hint=f"use cut-offs up to {n}, or evaluate on more items")
    return tuple(dict.fromkeys(int(k) for k in ks))


def _check_chunk_size(chunk_size) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise RetrievalInputError(f"chunk_size = {chunk_size!r} must be a positive integer",
                                  hint=f"leave the default ({DEFAULT_CHUNK_SIZE}) or pass e.g. 256")
    return int(chunk_size)


def reciprocal_rank(greater: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """E[1 / rank] of the true item, uniformly placed among its `ties` equals after `greater`
    better ones: the mean of 1/(g+1) .. 1/(g+t+1), a difference of harmonic numbers."""
    from scipy.special import digamma   # here: scipy.special is not needed by recall alone

    g = np.asarray(greater, dtype=np.float64)
    t = np.asarray(ties, dtype=np.float64)
    return (digamma(g + t + 2) - digamma(g + 1)) / (t + 1)


def ndcg_at(greater: np.ndarray, ties: np.ndarray, k: int = 10) -> np.ndarray:
    """E[nDCG@k] with one relevant item (IDCG = 1): the mean over its possible ranks r of
    1 / log2(r + 1) for r <= k, else 0."""
    g = np.asarray(greater, dtype=np.int64)
    t = np.asarray(ties, dtype=np.int64)
    gains = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])   # gains[r] = DCG of ranks 1..r
    top = np.minimum(g + t + 1, k)
    return np.where(g < k, gains[np.clip(top, 0, k)] - gains[np.clip(g, 0, k)], 0.0) / (t + 1)


def _recall_of_prepared(a: _View, b: _View, ks: tuple[int, ...], chunk_size: int) -> RecallResult:
    def scores(queries, candidates):
        greater, ties = _true_match_counts(queries, candidates, chunk_size)
        recall = {k: float(hit_probability(greater, ties, k).mean()) for k in ks}
        # fsum: exactly rounded, so the mean does not depend on the order of the queries
        return recall, {"MRR": math.fsum(reciprocal_rank(greater, ties)) / len(greater),
                        f"nDCG{NDCG_K}": math.fsum(ndcg_at(greater, ties, NDCG_K)) / len(greater)}

    (a2b, a2b_rank), (b2a, b2a_rank) = scores(a, b), scores(b, a)
    return RecallResult(a=a.name, b=b.name, n=len(a.x), a2b=a2b, b2a=b2a, a2b_rank=a2b_rank, b2a_rank=b2a_rank)


def _true_match_counts(queries: _View, candidates: _View, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(queries.x)
    chunk_size = min(chunk_size, n)
    greater = np.empty(n, dtype=np.int64)
    ties = np.empty(n, dtype=np.int64)
    # Buffers reused across blocks: allocating 100+ MB per block costs page faults on every block.
    scores_buffer = np.empty((chunk_size, n), dtype=np.float32)
    mask_buffer = np.empty((chunk_size, n), dtype=bool)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        rows = np.arange(stop - start)
        scores, mask = scores_buffer[:stop - start], mask_buffer[:stop - start]
        unit_queries = queries.x[start:stop] * queries.inv_norm[start:stop, None]
        # cos(q, c) = (q/|q|) . c * (1/|c|): scaling the scores instead of the candidates means no
        # normalised copy of the candidate view. Duplicate candidates still score bit-identically.
        np.matmul(unit_queries, candidates.x.T, out=scores)
        scores *= candidates.inv_norm
        # The true score comes from the same matmul as its rivals, so exact ties are exact.
        true_scores = scores[rows, start + rows][:, None]
        np.greater(scores, true_scores, out=mask)
        greater[start:stop] = np.count_nonzero(mask, axis=1)
        np.equal(scores, true_scores, out=mask)
        ties[start:stop] = np.count_nonzero(mask, axis=1) - 1  # minus the true item itself
    return greater, ties
