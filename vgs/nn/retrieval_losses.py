"""Retrieval losses over in-batch negatives, shared by Mortazavi 2020 and Crabtree 2021.

Every loss takes two embedding batches `a` and `b` of shape (B, D) whose row i is a matching
pair; every other row of the batch is a negative. The similarity is the dot product
S[i, j] = <a_i, b_j> (cosine when the inputs are L2-normalised, as the callers do); rows of S are
`a` anchors, columns are `b` anchors. Each loss returns a scalar tensor.

Sources (see each function for the exact formula):
  hinge_all_pairs        Mortazavi 2020 Sec. 4.3, Eq. 3 (its body was lost in extraction)
  triplet                Crabtree 2021 Eq. 2.2-2.5; Harwath, Hsu & Glass 2020 (ResDAVEnet-VQ) code
  info_nce               Crabtree 2021 Eq. 2.7 with M = 0
  masked_margin_softmax  Crabtree 2021 Eq. 2.6-2.7 (Ilharco et al. 2019); fixed, scheduled and
                         adaptive margins (Monfort et al. 2021, Eq. 3)
  hyperspheric           Crabtree 2021 Eq. 2.8 (Wang & Isola 2020)
  multiview_loss         Crabtree 2021 Sec. 2.3 and Chapter 4
`make_pair_loss` builds any of them from params.yaml values and validates them.

Distributed training (vgs/train/distributed.py): inside a torch.distributed process group each
rank passes its own shard of the batch, and every loss first gathers the shards of all ranks
(`global_batch`), so the negatives and the means are those of the whole global batch and N ranks x
B/N train the objective of one process x B. Per-pair margins given as tensors must then be those of
the global batch. Outside a process group (every run on one device) the inputs pass untouched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.nn import functional as F

from vgs.errors import ParamError
from vgs.params import Params
from vgs.train.distributed import gather_with_grad, is_distributed

Tensor = torch.Tensor


def global_batch(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """The embeddings of every rank's shard, with gradients (`a` and `b` themselves on one process)."""
    if not is_distributed():
        return a, b
    return gather_with_grad(a), gather_with_grad(b)


def similarity(a: Tensor, b: Tensor) -> Tensor:
    """S[i, j] = <a_i, b_j> for (B, D) inputs whose row i of `a` matches row i of `b`."""
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (B, D) embedding batches of the same shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError("in-batch negatives need a batch of at least 2 pairs")
    return a @ b.T


def _off_diagonal(n: int, device) -> Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


# -- Mortazavi 2020 ---------------------------------------------------------------------------------
def hinge_all_pairs(a: Tensor, b: Tensor, margin: float, reduction: str = "sum") -> Tensor:
    """Mortazavi 2020, Eq. 3: the hinge loss over every non-matching pair, in both directions.

        L = sum_i sum_{j != i} [ max(0, S_ij - S_ii + margin) + max(0, S_ji - S_ii + margin) ]

    The first term ranks the wrong b_j against a_i's own b_i, the second the wrong a_j against b_i's
    own a_i. The equation body and the margin value ("Hinge threshold ... has been set to ___") were
    lost from the paper text: the paper's margin is n/a, so it is a required argument. The text
    around Eq. 3 fixes the rest: S is the dot product of normalised vectors, and "all non-aligned
    pairs ... in the batch" are used (no sampling, no hardest negative). It cites Karpathy & Fei-Fei
    2015 [3] for the objective, which is a sum over the batch, so `reduction="sum"` is the default.
    `reduction="mean"` divides by the 2 * B * (B - 1) hinge terms (Merkx et al.'s code, whose speech
    encoder Mortazavi adopts, averages instead; with Adam the two differ only in effective step size).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    s = similarity(*global_batch(a, b))
    pos = s.diagonal()
    a_anchor = F.relu(s - pos[:, None] + margin)  # [i, j]: a_i against the wrong b_j
    b_anchor = F.relu(s - pos[None, :] + margin)  # [i, j]: b_j against the wrong a_i
    terms = (a_anchor + b_anchor)[_off_diagonal(len(s), s.device)]
    return terms.sum() if reduction == "sum" else terms.sum() / (2 * terms.numel())


# -- Triplet (Crabtree Eq. 2.5, ResDAVEnet-VQ) -----------------------------------------------------
NEGATIVE_KINDS = ("random", "semi-hard", "hardest")


def _parse_negatives(negatives: str) -> list[str]:
    kinds = negatives.split("+")
    if not kinds or any(k not in NEGATIVE_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise ValueError(f"negatives must be one of {', '.join(NEGATIVE_KINDS)} or several joined by '+', "
                         f"got {negatives!r}")
    return kinds


def _one_way_triplet(s: Tensor, margin: float, kind: str, generator: torch.Generator | None) -> Tensor:
    """mean_i max(0, S[i, imp(i)] - S[i, i] + margin): rows of `s` are the anchors."""
    n = len(s)
    pos = s.diagonal()
    rows = torch.arange(n, device=s.device)
    if kind == "random":
        # Uniform over j != i: draw from B - 1 indices and skip the anchor's own (as the reference code).
        j = torch.randint(0, n - 1, (n,), generator=generator, device=s.device)
        imposter = s[rows, j + (j >= rows).long()]
    elif kind == "hardest":
        imposter = s.masked_fill(~_off_diagonal(n, s.device), float("-inf")).max(dim=1).values
    else:  # semi-hard, exactly as ResDAVEnet-VQ's semihardneg_triplet_loss_from_S
        # The most similar column still strictly less similar than the positive. The reference code
        # masks by multiplication, so masked entries (always including the positive) count as 0:
        # the imposter score is max(0, max{S_ij : S_ij < S_ii}). Kept on purpose for fidelity.
        mask = (s < pos[:, None]).to(s.dtype)
        imposter = (s * mask).max(dim=1).values
    return F.relu(imposter - pos + margin).mean()


def triplet(a: Tensor, b: Tensor, margin: float = 1.0, negatives: str = "random+semi-hard",
            generator: torch.Generator | None = None) -> Tensor:
    """Two-way triplet loss with one imposter per anchor and per negative kind (Crabtree Eq. 2.2-2.5).

        L = sum over kinds k, over directions (a anchors, b anchors) of
            mean_i max(0, S(anchor_i, imposter_k(i)) - S(anchor_i, positive_i) + margin)

    Imposters, always from the batch: "random" uniform over j != i (Crabtree Eq. 2.3-2.4; DAVEnet's
    `sampled_margin_rank_loss`, dharwath/DAVEnet-pytorch steps/util.py, draws them this way);
    "hardest" the most similar j != i; "semi-hard" the most similar j that is still less similar
    than the positive, floored at 0 (see `_one_way_triplet`), as `semihardneg_triplet_loss_from_S`
    in wnhsu/ResDAVEnet-VQ steps/util.py. Kinds may be joined with "+", which sums them.

    The default "random+semi-hard" is Crabtree's Eq. 2.5 (a uniformly sampled term plus a hard
    term) as implemented in the code of the work it cites for it, Harwath, Hsu & Glass 2020 [7]:
    ResDAVEnet-VQ steps/traintest.py sums sampled_triplet_loss_from_S(S) + (S.t()) +
    semihardneg_triplet_loss_from_S(S) + (S.t()), each a mean over anchors. The thesis text calls the
    hard imposter "most similar" (that is "hardest"); the code it cites uses semi-hard.
    Margin 1 is Crabtree's Eq. 2.3 value ("often just 1") and the reference code's default.
    """
    kinds = _parse_negatives(negatives)
    s = similarity(*global_batch(a, b))
    return sum(_one_way_triplet(m, margin, kind, generator) for kind in kinds for m in (s, s.T))


# -- Softmax losses (Crabtree Eq. 2.6-2.7) ----------------------------------------------------------
def _symmetric_cross_entropy(logits: Tensor) -> Tensor:
    """CE(rows -> diagonal) + CE(columns -> diagonal), each a mean over the B anchors."""
    target = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


def masked_margin_softmax(a: Tensor, b: Tensor, margin: float | Tensor, scale: float = 1.0) -> Tensor:
    """Masked margin softmax (Ilharco et al. 2019), Crabtree Eq. 2.6-2.7:

        MMS(X, Y) = -(1/B) sum_i log( e^{s(S_ii - M_i)} / (e^{s(S_ii - M_i)} + sum_{j != i} e^{s S_ij}) )
        L = MMS(a, b) + MMS(b, a)

    i.e. the margin is subtracted from the diagonal of S and the loss is the sum of the two
    directions' cross-entropies (Crabtree's scripts; AVLnet's MMS_loss does the same). The printed
    Eq. 2.6 has lost its -log; the mask set Z is empty on Crabtree's data, so nothing is masked.
    `margin` is a number or a (B,) tensor of per-pair margins (the adaptive margin). `scale` (s)
    multiplies the margined similarities; neither the thesis nor the reference code scales them, so
    it defaults to 1.
    """
    return _margin_softmax(similarity(*global_batch(a, b)), margin, scale)


def _margin_softmax(s: Tensor, margin: float | Tensor, scale: float) -> Tensor:
    margin = torch.as_tensor(margin, dtype=s.dtype, device=s.device)
    return _symmetric_cross_entropy(scale * (s - torch.diag_embed(margin.expand(len(s)))))


def info_nce(a: Tensor, b: Tensor, temperature: float = 1.0) -> Tensor:
    """Symmetric InfoNCE: CE(S / T) over rows + CE(S / T) over columns, each a mean over anchors.

    Crabtree calls MMS with M = 0 InfoNCE (Sec. 2.2.2) and his scripts compute it as the symmetric
    cross-entropy over the in-batch similarity matrix. The thesis gives no temperature (Eq. 2.6-2.7
    have none), so the default T = 1 uses the raw similarities; T is exposed for other papers.
    """
    return masked_margin_softmax(a, b, 0.0, scale=1.0 / temperature)


@dataclass(frozen=True)
class ScheduledMargin:
    """M(step) = initial * growth ** (step // every): Ilharco et al. 2019's schedule as quoted by
    Monfort et al. 2021 ("starts as 0.001 and is exponentially increased by a factor of 1.002 every
    1000 training steps") and used in Crabtree's scripts. `step` is the global optimiser step."""
    initial: float = 0.001
    growth: float = 1.002
    every: int = 1000

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.initial * self.growth ** (step // self.every)


def adaptive_mean_margin(s: Tensor, alpha: float = 0.5) -> Tensor:
    """Monfort et al. 2021 (Spoken Moments), Eq. 3, the Adaptive Mean Margin:

        M_i = alpha * ( S_ii - (1/(B-1)) sum_{j != i} S_ij )

    computed from row i of S (a_i against every b_j), alpha = 0.5 ("In practice we use alpha = 0.5").
    As in the authors' released AMM_loss (roudimit/AVLnet loss.py) the margin is not detached, and
    the same row margin M_i is used for both directions; Eq. 3 read literally would give the b -> a
    direction its own column margin. Returns the (B,) margins.
    """
    n = len(s)
    negatives_mean = (s.sum(dim=1) - s.diagonal()) / (n - 1)
    return alpha * (s.diagonal() - negatives_mean)


def mms_adaptive(a: Tensor, b: Tensor, alpha: float = 0.5, scale: float = 1.0) -> Tensor:
    """Masked margin softmax with the adaptive mean margin (Crabtree Table 3.3 "MMS Adapt")."""
    a, b = global_batch(a, b)
    margin = adaptive_mean_margin(similarity(a, b), alpha)
    return _margin_softmax(similarity(a, b), margin, scale)


# -- Hyperspheric loss (Crabtree Eq. 2.8, Wang & Isola 2020) ----------------------------------------
def _squared_distances(x: Tensor, y: Tensor) -> Tensor:
    # |x_i - y_j|^2 via the Gram matrix: no sqrt, so the gradient stays finite for equal points.
    return ((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T).clamp(min=0)


def _log_mean_exp(v: Tensor) -> Tensor:
    return torch.logsumexp(v, dim=0) - math.log(v.numel())


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """Wang & Isola 2020: log mean_{i < j} exp(-t |x_i - x_j|^2) over the distinct pairs of a view."""
    i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
    return _log_mean_exp(-t * _squared_distances(x, x)[i, j])


def hyperspheric(a: Tensor, b: Tensor, lambda_align: float = 1.0, lambda_unif: float = 1.0,
                 t: float = 2.0, alpha: float = 2.0, form: str = "wang_isola") -> Tensor:
    """lambda_align * align + lambda_unif * unif  (Crabtree Eq. 2.8).

    align = (1/B) sum_i |a_i - b_i|^alpha (Crabtree's HSphere_align, = Wang & Isola's L_align).
    unif, form="wang_isola" (default): (uniformity(a) + uniformity(b)) / 2, the two views averaged,
        as in Wang & Isola's reference loss `lalign(x, y) + lam * (lunif(x) + lunif(y)) / 2`.
    unif, form="thesis": Crabtree's HSphere_uniformity exactly as printed,
        (1 / (B(B+1)/2)) sum_i sum_{j >= i} exp(-t |a_i - b_j|^2), across the views, over i <= j
        (so including the positives i = j) and without the log.
    The thesis attributes the loss to Wang & Isola and keeps their hyper-parameters (t = 2,
    alpha = 2, lambda_align = 1; lambda_unif tuned from 1.0, best 0.75), so their form is the
    default; the printed form, which also pushes positive pairs apart, is kept to compare against.
    """
    a, b = global_batch(a, b)
    align = torch.linalg.vector_norm(a - b, dim=1).pow(alpha).mean()
    if form == "wang_isola":
        unif = (uniformity(a, t) + uniformity(b, t)) / 2
    elif form == "thesis":
        i, j = torch.triu_indices(len(a), len(a), offset=0, device=a.device)
        unif = torch.exp(-t * _squared_distances(a, b)[i, j]).mean()
    else:
        raise ValueError(f"form must be 'wang_isola' or 'thesis', got {form!r}")
    return lambda_align * align + lambda_unif * unif


# -- Multiview schemes (Crabtree Sec. 2.3, Chapter 4) -----------------------------------------------
SCHEMES = ("full_graph", "image_anchor", "average_anchor", "contrast_others")


def view_pairs(views: Sequence[Tensor], scheme: str, renormalise: bool = False) -> list[tuple[Tensor, Tensor]]:
    """The (x, y) batches a scheme contrasts, for K >= 2 views of shape (B, D); view 0 is the image.

    full_graph      (V_i, V_j) for every i < j: K(K-1)/2 pairs.
    image_anchor    (V_0, V_k) for k = 1..K-1: the anchor framework with the image as anchor.
    average_anchor  (V_k, mean of all K views) for every k: the datapoint's centroid as anchor.
    contrast_others (V_k, mean of the other K-1 views) for every k.
    The thesis averages the final representations and says nothing about re-normalising the
    centroid, so by default it is not; `renormalise=True` L2-normalises it.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    k = len(views)
    if k < 2:
        raise ValueError(f"a multiview loss needs at least 2 views, got {k}")

    def centroid(members: list[Tensor]) -> Tensor:
        c = torch.stack(members).mean(0)
        return F.normalize(c, dim=-1) if renormalise else c

    if scheme == "full_graph":
        return [(views[i], views[j]) for i in range(k) for j in range(i + 1, k)]
    if scheme == "image_anchor":
        return [(views[0], views[j]) for j in range(1, k)]
    if scheme == "average_anchor":
        mean = centroid(list(views))
        return [(v, mean) for v in views]
    return [(views[i], centroid([v for j, v in enumerate(views) if j != i])) for i in range(k)]


def multiview_loss(views: Sequence[Tensor], pair_loss: Callable[..., Tensor], scheme: str,
                   renormalise: bool = False, **loss_kwargs: Any) -> Tensor:
    """The mean of `pair_loss` over the pairs of `scheme` (see `view_pairs`).

    Crabtree averages: the anchor framework is (1/(K-1)) sum_{j != i} L(V_i, V_j) and the full graph
    divides its sum over view pairs by a pair count. Its printed form, (1/(B(B+1)/2)) sum_i sum_{j>=i},
    reuses B for the number of views and includes the self-pairs L(V_i, V_i), which are not view pairs
    ("all view-pairs", Ch. 4); we read it as the mean over the K(K-1)/2 pairs i < j. The average and
    contrast-others anchors average over their K terms likewise. `loss_kwargs` (e.g. `step=`,
    `generator=`) go to every `pair_loss` call.
    """
    losses = [pair_loss(x, y, **loss_kwargs) for x, y in view_pairs(views, scheme, renormalise)]
    return torch.stack(losses).mean()


# -- params.yaml factory ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PairLoss:
    """A configured pair loss: `loss(a, b, step=..., generator=...)` -> scalar tensor.

    Every loss accepts the same keywords so a trainer can call any of them the same way: `step` (the
    global optimiser step) is required by schedule-driven losses (`needs_step`) and ignored by the
    others; `generator` seeds random imposters (triplet) and is ignored by the others.
    """
    name: str
    params: dict = field(default_factory=dict)
    needs_step: bool = False

    def __call__(self, a: Tensor, b: Tensor, *, step: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        p = self.params
        if self.name == "hinge":
            return hinge_all_pairs(a, b, p["margin"], p["reduction"])
        if self.name == "triplet":
            return triplet(a, b, p["margin"], p["negatives"], generator)
        if self.name == "infonce":
            return info_nce(a, b, p["temperature"])
        if self.name == "mms":
            return masked_margin_softmax(a, b, p["margin"], p["scale"])
        if self.name == "mms_scheduled":
            if step is None:
                raise ValueError("the mms_scheduled loss needs the global step: call it with step=")
            schedule = ScheduledMargin(p["initial_margin"], p["growth"], p["every"])
            return masked_margin_softmax(a, b, schedule(step), p["scale"])
        if self.name == "mms_adaptive":
            return mms_adaptive(a, b, p["alpha"], p["scale"])
        return hyperspheric(a, b, p["lambda_align"], p["lambda_unif"], p["t"], p["alpha"], p["form"])


_REQUIRED = object()
# name -> {key: (kind, default, lower bound, lower bound inclusive?) or (kind, default, choices)}
_SPECS: dict[str, dict[str, tuple]] = {
    # Mortazavi's margin was lost from the paper text: no default.
    "hinge": {"margin": ("float", _REQUIRED, 0.0, True), "reduction": ("str", "sum", ("sum", "mean"))},
    "triplet": {"margin": ("float", 1.0, 0.0, True), "negatives": ("negatives", "random+semi-hard")},
    "infonce": {"temperature": ("float", 1.0, 0.0, False)},
    "mms": {"margin": ("float", 1.0, 0.0, True), "scale": ("float", 1.0, 0.0, False)},  # Crabtree: M = 1
    "mms_scheduled": {"initial_margin": ("float", 0.001, 0.0, True), "growth": ("float", 1.002, 0.0, False),
                      "every": ("int", 1000, 1), "scale": ("float", 1.0, 0.0, False)},
    "mms_adaptive": {"alpha": ("float", 0.5, 0.0, True), "scale": ("float", 1.0, 0.0, False)},
    "hyperspheric": {"lambda_align": ("float", 1.0, 0.0, True), "lambda_unif": ("float", 1.0, 0.0, True),
                     "t": ("float", 2.0, 0.0, False), "alpha": ("float", 2.0, 0.0, False),
                     "form": ("str", "wang_isola", ("wang_isola", "thesis"))},
}
LOSS_NAMES = tuple(_SPECS)


def _read(section: Params, key: str, spec: tuple) -> Any:
    kind = spec[0]
    get_default = {} if spec[1] is _REQUIRED else {"default": spec[1]}  # no default: missing -> ParamError
    if kind == "str":
        return section.str(key, choices=spec[2], **get_default)
    if kind == "negatives":
        value = section.str(key, **get_default)
        try:
            _parse_negatives(value)
        except ValueError:
            raise ParamError(f"{section.key(key)} must be one of {', '.join(NEGATIVE_KINDS)} or several "
                             f"joined by '+', got {value!r} ({section.source})") from None
        return value
    if kind == "int":
        return section.int(key, min=spec[2], **get_default)
    value = section.float(key, min=spec[2], **get_default)
    if not spec[3] and value <= spec[2]:
        raise ParamError(f"{section.key(key)} must be a number > {spec[2]}, got {value!r} ({section.source})")
    return value


def pair_loss_from_params(section: Params) -> PairLoss:
    """Build the loss described by a params.yaml mapping such as

        loss: {name: mms_adaptive, alpha: 0.5}

    Unknown names, unknown keys and out-of-range values raise ParamError naming the dotted key."""
    name = section.str("name", choices=LOSS_NAMES)
    spec = _SPECS[name]
    for key in section.keys():
        if key != "name" and key not in spec:
            raise ParamError(f"{section.key(key)} is not a parameter of the {name} loss ({section.source})",
                             hint=f"{name} takes: {', '.join(spec)}")
    params = {key: _read(section, key, s) for key, s in spec.items()}
    return PairLoss(name, params, needs_step=(name == "mms_scheduled"))


def make_pair_loss(name: str, _key: str = "loss", _source: str = "params.yaml", **params: Any) -> PairLoss:
    """`make_pair_loss("triplet", margin=1.0)`: the loss `name` with `params`; errors name `<_key>.<param>`."""
    return pair_loss_from_params(Params({"name": name, **params}, _key, _source))
