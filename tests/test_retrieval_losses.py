"""Retrieval losses (vgs.nn.retrieval_losses) against brute-force loops, hand computations, the
margin schedule, the multiview schemes and the params.yaml factory."""
import math

import pytest
import torch
from torch.nn import functional as F

from vgs.errors import ParamError
from vgs.nn.retrieval_losses import (LOSS_NAMES, SCHEMES, ScheduledMargin, adaptive_mean_margin, global_batch,
                                     hinge_all_pairs, hyperspheric, info_nce, make_pair_loss, masked_margin_softmax,
                                     mms_adaptive, multiview_loss, pair_loss_from_params, triplet, view_pairs,
                                     _one_way_triplet)
from vgs.params import Params

TOL = 1e-5


def batch(b=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    c = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    return a, c


def sim(a, b):
    """S[i][j] = <a_i, b_j> as nested Python lists, computed element by element."""
    return [[sum(x * y for x, y in zip(ai, bj)) for bj in b.tolist()] for ai in a.tolist()]


def transpose(s):
    return [list(col) for col in zip(*s)]


def from_s(s):
    """a = I, b_j = column j of S, so that a @ b.T == S: a way to feed a chosen S to any loss."""
    s = torch.tensor(s, dtype=torch.float64)
    return torch.eye(len(s), dtype=torch.float64), s.T.clone()


# -- hinge (Mortazavi Eq. 3) ------------------------------------------------------------------------
def loop_hinge(a, b, margin):
    s, n, total = sim(a, b), len(a), 0.0
    for i in range(n):
        for j in range(n):
            if j != i:
                total += max(0.0, s[i][j] - s[i][i] + margin) + max(0.0, s[j][i] - s[i][i] + margin)
    return total


def test_hinge_matches_loop():
    a, b = batch()
    for margin in (0.0, 0.2, 1.0):
        expected = loop_hinge(a, b, margin)
        assert hinge_all_pairs(a, b, margin).item() == pytest.approx(expected, abs=TOL)
        assert hinge_all_pairs(a, b, margin, "mean").item() == pytest.approx(expected / (2 * 5 * 4), abs=TOL)


def test_hinge_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # S = [[1, .6], [0, .8]]. a_0 vs b_1: .6-1+.5 = .1; b_0 vs a_1: 0-1+.5 < 0;
    # a_1 vs b_0: 0-.8+.5 < 0; b_1 vs a_0: .6-.8+.5 = .3.
    assert hinge_all_pairs(a, b, 0.5).item() == pytest.approx(0.4)
    assert hinge_all_pairs(a, b, 0.5, "mean").item() == pytest.approx(0.4 / 4)


def test_hinge_is_zero_for_perfect_alignment_within_the_margin():
    e = torch.eye(4)[:3]  # orthonormal rows, a == b: S = I
    assert hinge_all_pairs(e, e, 1.0).item() == 0.0
    assert hinge_all_pairs(e, e, 1.5).item() == pytest.approx(0.5 * 2 * 3 * 2)


# -- triplet ----------------------------------------------------------------------------------------
def loop_triplet(a, b, margin, kinds, generator=None):
    s = sim(a, b)
    n, total = len(s), 0.0
    for kind in kinds:
        for rows in (s, transpose(s)):
            if kind == "random":
                draws = torch.randint(0, n - 1, (n,), generator=generator).tolist()
            term = 0.0
            for i, row in enumerate(rows):
                others = [j for j in range(n) if j != i]
                if kind == "random":
                    imp = row[others[draws[i]]]
                elif kind == "hardest":
                    imp = max(row[j] for j in others)
                else:  # semi-hard, floored at 0 like the reference code
                    imp = max([0.0] + [row[j] for j in range(n) if row[j] < row[i]])
                term += max(0.0, imp - row[i] + margin)
            total += term / n
    return total


@pytest.mark.parametrize("negatives", ["hardest", "semi-hard", "random", "random+semi-hard"])
def test_triplet_matches_loop(negatives):
    a, b = batch(b=6, d=3, seed=1)
    kinds = negatives.split("+")
    got = triplet(a, b, 0.7, negatives, torch.Generator().manual_seed(5))
    expected = loop_triplet(a, b, 0.7, kinds, torch.Generator().manual_seed(5))
    assert got.item() == pytest.approx(expected, abs=TOL)


def test_triplet_hand_computed():
    a, b = from_s([[0.9, 0.5, 0.95], [0.2, 0.7, -0.1], [0.3, -0.4, 0.6]])
    # hardest: rows 1.05, .5, .7; columns .4, .8, 1.35 -> .75 + .85
    assert triplet(a, b, 1.0, "hardest").item() == pytest.approx(1.6)
    # semi-hard: rows .6, .5, .7; columns .4, .8 and, for column 2 (positive .6), the only less
    # similar candidate is -.1, floored to 0 -> .4
    assert triplet(a, b, 1.0, "semi-hard").item() == pytest.approx(0.6 + 1.6 / 3)
    assert triplet(a, b, 1.0, "hardest+semi-hard").item() == pytest.approx(1.6 + 0.6 + 1.6 / 3)


def test_random_imposters_are_uniform_over_the_other_pairs():
    # S[i][j] = (j + 1) * 100^i off the diagonal, 0 on it: with margin 0 the one-way loss times n is
    # sum_i (j_i + 1) * 100^i, whose base-100 digits reveal every anchor's imposter j_i.
    n = 4
    s = torch.tensor([[0.0 if i == j else (j + 1) * 100.0 ** i for j in range(n)] for i in range(n)],
                     dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(n, n)
    for _ in range(3000):
        total = round(_one_way_triplet(s, 0.0, "random", g).item() * n)
        for i in range(n):
            counts[i, (total // 100 ** i) % 100 - 1] += 1
    assert counts.diagonal().sum() == 0  # never the anchor's own pair
    off = counts[~torch.eye(n, dtype=torch.bool)]
    assert off.min() > 0.85 * 1000 and off.max() < 1.15 * 1000  # uniform over the n - 1 others


def test_triplet_is_zero_for_perfect_alignment():
    e = torch.eye(5)
    for negatives in ("hardest", "semi-hard", "random"):
        assert triplet(e, e, 1.0, negatives).item() == 0.0
    assert triplet(e, e, 1.5, "hardest").item() == pytest.approx(2 * 0.5)


# -- InfoNCE and masked margin softmax --------------------------------------------------------------
def loop_softmax(a, b, row_margins, scale):
    s = sim(a, b)
    n, total = len(s), 0.0
    for rows in (s, transpose(s)):
        term = 0.0
        for i, row in enumerate(rows):
            logits = [scale * (row[j] - (row_margins[i] if j == i else 0.0)) for j in range(n)]
            term += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
        total += term / n
    return total


def test_info_nce_matches_loop_and_hand():
    a, b = batch()
    for temperature in (1.0, 0.1):
        expected = loop_softmax(a, b, [0.0] * 5, 1 / temperature)
        assert info_nce(a, b, temperature).item() == pytest.approx(expected, abs=TOL)
    e = torch.eye(2)  # S = I: each row -log(e / (e + 1))
    assert info_nce(e, e).item() == pytest.approx(2 * math.log(1 + math.exp(-1)))


def test_info_nce_minimum_for_perfect_alignment():
    e = torch.eye(6)[:4]
    for t in (1.0, 0.05):
        assert info_nce(e, e, t).item() == pytest.approx(2 * math.log(1 + 3 * math.exp(-1 / t)), abs=TOL)


def test_mms_matches_loop_and_hand():
    a, b = batch()
    for margin, scale in ((1.0, 1.0), (0.3, 5.0)):
        expected = loop_softmax(a, b, [margin] * 5, scale)
        assert masked_margin_softmax(a, b, margin, scale).item() == pytest.approx(expected, abs=TOL)
    assert masked_margin_softmax(a, b, 0.0).item() == pytest.approx(info_nce(a, b).item(), abs=1e-12)
    e = torch.eye(2)  # margin 1 on S = I: diagonal logit 0 = the negative's, -log(1/2) per anchor
    assert masked_margin_softmax(e, e, 1.0).item() == pytest.approx(2 * math.log(2))


def test_scheduled_margin_values():
    m = ScheduledMargin()
    assert m(0) == pytest.approx(0.001)
    assert m(999) == pytest.approx(0.001)
    assert m(1000) == pytest.approx(0.001 * 1.002)
    assert m(5000) == pytest.approx(0.001 * 1.002 ** 5)
    loss = make_pair_loss("mms_scheduled")
    a, b = batch()
    assert loss.needs_step
    assert loss(a, b, step=5000).item() == pytest.approx(masked_margin_softmax(a, b, m(5000)).item(), abs=1e-12)
    with pytest.raises(ValueError, match="step="):
        loss(a, b)


def test_adaptive_margin_matches_monfort_eq3_and_loop():
    s = torch.tensor([[0.9, 0.5, 0.2], [0.1, 0.4, 0.3], [0.0, 0.6, 0.8]])
    # alpha * (S_ii - mean_{j != i} S_ij), from the rows
    expected = [0.5 * (0.9 - 0.35), 0.5 * (0.4 - 0.2), 0.5 * (0.8 - 0.3)]
    assert adaptive_mean_margin(s, 0.5).tolist() == pytest.approx(expected)
    a, b = batch(b=6, d=5, seed=3)
    s = sim(a, b)
    margins = [0.5 * (s[i][i] - sum(s[i][j] for j in range(6) if j != i) / 5) for i in range(6)]
    assert mms_adaptive(a, b, 0.5).item() == pytest.approx(loop_softmax(a, b, margins, 1.0), abs=TOL)


def test_adaptive_margin_is_not_detached():
    # alpha = 1 cancels the positive from the a->b logits (Monfort: "removes the positive pair
    # similarity from the optimization"); a detached margin would leave it in the gradient.
    a, b = batch(b=4, d=3, seed=4)
    a = a.clone().requires_grad_()
    row_term = lambda m: F.cross_entropy(a @ b.T - torch.diag_embed(m), torch.arange(4))
    s = a @ b.T
    live = torch.autograd.grad(row_term(adaptive_mean_margin(s, 1.0)), a, retain_graph=True)[0]
    frozen = torch.autograd.grad(row_term(adaptive_mean_margin(s, 1.0).detach()), a)[0]
    assert not torch.allclose(live, frozen)
    full = torch.autograd.grad(mms_adaptive(a, b, 1.0), a)[0]
    assert torch.isfinite(full).all() and full.abs().sum() > 0


# -- hyperspheric -----------------------------------------------------------------------------------
def loop_hyperspheric(a, b, la, lu, t, alpha, form):
    al, bl, n = a.tolist(), b.tolist(), len(a)
    sq = lambda x, y: sum((p - q) ** 2 for p, q in zip(x, y))
    align = sum(sq(x, y) ** (alpha / 2) for x, y in zip(al, bl)) / n
    if form == "wang_isola":
        def unif(v):
            vals = [math.exp(-t * sq(v[i], v[j])) for i in range(n) for j in range(i + 1, n)]
            return math.log(sum(vals) / len(vals))
        u = (unif(al) + unif(bl)) / 2
    else:
        vals = [math.exp(-t * sq(al[i], bl[j])) for i in range(n) for j in range(i, n)]
        u = sum(vals) / (n * (n + 1) / 2)
    return la * align + lu * u


@pytest.mark.parametrize("form", ["wang_isola", "thesis"])
def test_hyperspheric_matches_loop(form):
    a, b = batch(b=6, d=4, seed=2)
    for la, lu, t, alpha in ((1.0, 1.0, 2.0, 2.0), (1.0, 0.75, 1.0, 1.0), (0.5, 2.0, 3.0, 1.5)):
        expected = loop_hyperspheric(a, b, la, lu, t, alpha, form)
        assert hyperspheric(a, b, la, lu, t, alpha, form).item() == pytest.approx(expected, abs=TOL)


def test_hyperspheric_hand_computed():
    e = torch.eye(2)
    # a == b: align 0; the two points are at squared distance 2: log exp(-2t) = -4 in each view
    assert hyperspheric(e, e).item() == pytest.approx(-4.0)
    # thesis form: pairs (0,0), (1,1) at distance 0 and (0,1) at squared distance 2
    assert hyperspheric(e, e, form="thesis").item() == pytest.approx((2 + math.exp(-4)) / 3)
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert hyperspheric(e, b, lambda_unif=0.0).item() == pytest.approx(1.0)  # (2 + 0) / 2
    assert hyperspheric(e, b, lambda_unif=0.0, alpha=1.0).item() == pytest.approx(math.sqrt(2) / 2)


def test_hyperspheric_alignment_term_is_zero_only_when_aligned():
    a, b = batch(b=5, d=3, seed=7)
    assert hyperspheric(a, a, lambda_unif=0.0).item() == 0.0
    assert hyperspheric(a, b, lambda_unif=0.0).item() > 0.1


# -- gradients --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradients_flow_to_both_sides(name):
    a, b = batch(b=6, d=5, seed=9)
    a, b = a.float().requires_grad_(), b.float().requires_grad_()
    loss = make_pair_loss(name, **({"margin": 0.2} if name == "hinge" else {}))
    value = loss(F.normalize(a, dim=1), F.normalize(b, dim=1), step=3000,
                 generator=torch.Generator().manual_seed(0))
    assert value.dim() == 0
    value.backward()
    for g in (a.grad, b.grad):
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_gradients_are_finite_for_collapsed_embeddings():
    x = torch.ones(4, 3, requires_grad=True)
    (hyperspheric(x, x) + hyperspheric(x, x, form="thesis")).backward()
    assert torch.isfinite(x.grad).all()


# -- multiview schemes ------------------------------------------------------------------------------
def expected_pairs(views, scheme, renormalise):
    k = len(views)
    norm = (lambda c: F.normalize(c, dim=1)) if renormalise else (lambda c: c)
    if scheme == "full_graph":
        return [(views[i], views[j]) for i in range(k) for j in range(k) if i < j]
    if scheme == "image_anchor":
        return [(views[0], views[j]) for j in range(k) if j != 0]
    if scheme == "average_anchor":
        total = views[0].clone()
        for v in views[1:]:
            total = total + v
        return [(v, norm(total / k)) for v in views]
    out = []
    for i in range(k):
        total = torch.zeros_like(views[0])
        for j in range(k):
            if j != i:
                total = total + views[j]
        out.append((views[i], norm(total / (k - 1))))
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("renormalise", [False, True])
def test_multiview_schemes_contrast_the_right_pairs(scheme, renormalise):
    views = list(batch(b=4, d=3, seed=11)) + list(batch(b=4, d=3, seed=12))  # K = 4, view 0 = image
    calls = []
    w = torch.arange(1.0, 4.0, dtype=torch.float64)

    def recorder(x, y, **kw):  # order-sensitive, so a swapped pair would change the value
        calls.append((x, y, kw))
        return (x * w).sum() - 2 * (y * w).sum() ** 2

    pairs = expected_pairs(views, scheme, renormalise)
    got = multiview_loss(views, recorder, scheme, renormalise=renormalise, step=7)
    assert len(calls) == len(pairs) == {"full_graph": 6, "image_anchor": 3}.get(scheme, 4)
    for (x, y, kw), (ex, ey) in zip(calls, pairs):
        assert torch.allclose(x, ex) and torch.allclose(y, ey) and kw == {"step": 7}
    expected = sum(recorder(x, y).item() for x, y in pairs) / len(pairs)
    assert got.item() == pytest.approx(expected, abs=TOL)


def test_multiview_with_a_real_loss_and_bad_input():
    views = [F.normalize(torch.randn(5, 4), dim=1) for _ in range(3)]
    loss = make_pair_loss("infonce")
    expected = (info_nce(views[0], views[1]) + info_nce(views[0], views[2]) + info_nce(views[1], views[2])) / 3
    assert multiview_loss(views, loss, "full_graph").item() == pytest.approx(expected.item(), abs=TOL)
    sched = make_pair_loss("mms_scheduled")
    assert multiview_loss(views, sched, "image_anchor", step=2000).item() == pytest.approx(
        (masked_margin_softmax(views[0], views[1], 0.001 * 1.002 ** 2)
         + masked_margin_softmax(views[0], views[2], 0.001 * 1.002 ** 2)).item() / 2, abs=TOL)
    with pytest.raises(ValueError, match="scheme"):
        view_pairs(views, "star")
    with pytest.raises(ValueError, match="at least 2 views"):
        view_pairs(views[:1], "full_graph")


# -- factory ----------------------------------------------------------------------------------------
def test_factory_defaults_and_dispatch():
    assert make_pair_loss("triplet").params == {"margin": 1.0, "negatives": "random+semi-hard"}
    assert make_pair_loss("mms").params == {"margin": 1.0, "scale": 1.0}
    assert make_pair_loss("mms_adaptive").params == {"alpha": 0.5, "scale": 1.0}
    assert make_pair_loss("infonce").params == {"temperature": 1.0}
    assert make_pair_loss("hyperspheric", lambda_unif=0.75).params["lambda_unif"] == 0.75
    a, b = batch()
    assert make_pair_loss("hinge", margin=0.3)(a, b).item() == pytest.approx(hinge_all_pairs(a, b, 0.3).item())
    assert make_pair_loss("mms", margin=0.2, scale=3)(a, b).item() == pytest.approx(
        masked_margin_softmax(a, b, 0.2, 3.0).item())
    assert make_pair_loss("hyperspheric", form="thesis")(a, b).item() == pytest.approx(
        hyperspheric(a, b, form="thesis").item())


@pytest.mark.parametrize("name, params, key", [
    ("infonce", {"temprature": 0.1}, "loss.temprature"),
    ("infonce", {"temperature": 0}, "loss.temperature"),
    ("hinge", {}, "loss.margin"),  # the paper's margin is n/a: it must be given
    ("hinge", {"margin": 0.2, "reduction": "avg"}, "loss.reduction"),
    ("mms", {"margin": "1"}, "loss.margin"),
    ("mms", {"margin": -0.1}, "loss.margin"),
    ("mms_scheduled", {"every": 0}, "loss.every"),
    ("triplet", {"negatives": "semihard"}, "loss.negatives"),
    ("hyperspheric", {"form": "sphere"}, "loss.form"),
    ("contrastive", {}, "loss.name"),
])
def test_bad_params_raise_param_error_naming_the_key(name, params, key):
    with pytest.raises(ParamError, match=key.replace(".", r"\.")):
        make_pair_loss(name, **params)


def test_params_section_errors_name_the_full_key():
    section = Params({"crabtree2021": {"loss": {"name": "mms_adaptive", "alpha": True}}}).section("crabtree2021.loss")
    with pytest.raises(ParamError, match=r"crabtree2021\.loss\.alpha"):
        pair_loss_from_params(section)
    ok = Params({"loss": {"name": "mms_adaptive", "alpha": 0.25}}).section("loss")
    assert pair_loss_from_params(ok).params["alpha"] == 0.25


def test_outside_a_process_group_the_losses_take_their_inputs_as_they_are():
    """One process (every run so far): nothing is gathered, so the numbers cannot change."""
    a, b = batch()
    assert all(x is y for x, y in zip(global_batch(a, b), (a, b)))
    assert mms_adaptive(a, b).item() == masked_margin_softmax(a, b, adaptive_mean_margin(a @ b.T)).item()
