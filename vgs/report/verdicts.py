"""One statistical rule for the papers' claims: when does a difference between configurations count?

A claim compares configurations by a score (recall, purity, accuracy) that moves from one training
seed to the next. The rule, at the 95% level:

- Seeds on both sides (n >= 2 each): Welch's t-test on the seed values (unequal variances); the
  difference counts when p < 0.05.
- One run against a configuration with seeds (n >= 2): the one run counts as different when it
  falls outside the reference's 95% prediction interval, mean +- t(0.975, n-1) * s * sqrt(1 + 1/n)
  (the spread of one new run around a mean estimated from n runs); the verdict says it rests on one
  seed.
- Two single runs, with the seed spread s (n seeds) of a reference configuration standing in for
  both: their difference has standard deviation s * sqrt(2), so it counts beyond
  t(0.975, n-1) * s * sqrt(2). (Twice s, the old rule, lets about one pure-noise difference in six
  through with known s, and more with s from 3 seeds.)
- A configuration whose validation score never reached twice chance has not started to learn, so
  a claim that rests on it is "untested", never "does not hold".

Verdicts: "holds", "does not hold", "within noise", "untested"; each comes with its evidence (the
p-value or the interval) in words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from scipy import stats

LEVEL = 0.95
HOLDS, FAILS, NOISE, UNTESTED = "holds", "does not hold", "within noise", "untested"
ORDER = {HOLDS: 0, NOISE: 1, UNTESTED: 2, FAILS: 3}


@dataclass(frozen=True)
class Verdict:
    verdict: str
    difference: float          # a - b, in the score's units
    evidence: str              # the test and its numbers, in words
    p_value: float | None = None
    one_seed: bool = False

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "difference": self.difference, "evidence": self.evidence,
                "p_value": self.p_value, "one_seed": self.one_seed}


def _direction(diff: float, expect_positive: bool) -> str:
    return HOLDS if (diff > 0) == expect_positive else FAILS


@lru_cache(maxsize=None)
def t_quantile(df: float) -> float:
    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


@lru_cache(maxsize=None)
def studentized_range_quantile(k: int, df: int) -> float:
    """95% point of the range of k normal values in units of an sd estimated with df degrees of
    freedom (scipy integrates it numerically: 0.1 s a call, so cached)."""
    return float(stats.studentized_range.ppf(LEVEL, k, df))


def compare_seeds(a: Sequence[float], b: Sequence[float], expect_positive: bool = True) -> Verdict:
    """Welch's t-test of mean(a) - mean(b); `expect_positive`: the claim says a > b."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's test needs at least two seeds on each side")
    diff = sum(a) / len(a) - sum(b) / len(b)
    res = stats.ttest_ind(a, b, equal_var=False)
    p = float(res.pvalue) if not math.isnan(res.pvalue) else (0.0 if diff != 0 else 1.0)
    verdict = _direction(diff, expect_positive) if p < 1 - LEVEL else NOISE
    return Verdict(verdict, diff, f"Welch's t-test over {len(a)} and {len(b)} seeds: p = {p:.3g}", p)


def one_run_against_seeds(value: float, reference: Sequence[float], expect_positive: bool = True) -> Verdict:
    """One run of a configuration against the 95% prediction interval of a reference's seeds."""
    ref = [float(x) for x in reference]
    n = len(ref)
    if n < 2:
        raise ValueError("a prediction interval needs at least two reference seeds")
    mean = sum(ref) / n
    s = math.sqrt(sum((x - mean) ** 2 for x in ref) / (n - 1))
    half = t_quantile(n - 1) * s * math.sqrt(1 + 1 / n)
    diff = float(value) - mean
    verdict = _direction(diff, expect_positive) if abs(diff) > half else NOISE
    return Verdict(verdict, diff, f"one seed against the reference's 95% prediction interval "
                                  f"{mean:.4g} +- {half:.3g} ({n} seeds)", one_seed=True)


def two_single_runs(a: float, b: float, seed_sd: float, n_seeds: int, expect_positive: bool = True) -> Verdict:
    """a - b for two single runs, with the seed spread of a reference configuration standing in."""
    if n_seeds < 2:
        raise ValueError("the seed spread needs at least two seeds")
    threshold = t_quantile(n_seeds - 1) * seed_sd * math.sqrt(2)
    diff = float(a) - float(b)
    verdict = _direction(diff, expect_positive) if abs(diff) > threshold else NOISE
    return Verdict(verdict, diff, f"two single runs: |difference| against t(0.975, {n_seeds - 1}) x sqrt(2) x "
                                  f"seed sd = {threshold:.3g}", one_seed=True)


def spread_of_single_runs(values: Sequence[float], seed_sd: float, n_seeds: int) -> Verdict:
    """Whether k single runs differ at all: their range (best minus worst) against the 95% point of
    the studentized range of k runs, with the seed spread s (n seeds) of a reference configuration.
    (Twice s passes about half of all pure-noise comparisons of four runs.)"""
    k = len(values)
    if k < 2 or n_seeds < 2:
        raise ValueError("a spread needs at least two runs and two seeds")
    spread = float(max(values) - min(values))
    threshold = studentized_range_quantile(k, n_seeds - 1) * seed_sd
    verdict = HOLDS if spread > threshold else NOISE
    return Verdict(verdict, spread, f"spread of {k} single runs against the studentized range's 95% point "
                                    f"q(0.95, {k}, {n_seeds - 1}) x seed sd = {threshold:.3g}", one_seed=True)


def single_run_sign(value: float, seed_sd: float, n_seeds: int, expect_positive: bool = True) -> Verdict:
    """Whether one run's difference (of two scores of that run) is away from zero, with the seed
    spread s of that difference from n seeds of a reference: |value| against t(0.975, n-1) x s."""
    if n_seeds < 2:
        raise ValueError("the seed spread needs at least two seeds")
    threshold = t_quantile(n_seeds - 1) * seed_sd
    verdict = _direction(value, expect_positive) if abs(value) > threshold else NOISE
    return Verdict(verdict, float(value), f"one run: |difference| against t(0.975, {n_seeds - 1}) x its seed sd "
                                          f"= {threshold:.3g}", one_seed=True)


def seeds_sign(values: Sequence[float], expect_positive: bool = True) -> Verdict:
    """A difference measured on n >= 2 seeds: one-sample t-test of its mean against zero."""
    v = [float(x) for x in values]
    if len(v) < 2:
        raise ValueError("a t-test needs at least two seeds")
    mean = sum(v) / len(v)
    res = stats.ttest_1samp(v, 0.0)
    p = float(res.pvalue) if not math.isnan(res.pvalue) else (0.0 if mean != 0 else 1.0)
    verdict = _direction(mean, expect_positive) if p < 1 - LEVEL else NOISE
    return Verdict(verdict, mean, f"t-test over {len(v)} seeds: p = {p:.3g}", p)


def learned(validation_scores: Sequence[float], chance: float) -> bool:
    """Whether a run's validation score ever reached twice chance."""
    return bool(validation_scores) and max(validation_scores) >= 2 * chance


def still_rising(validation_scores: Sequence[float], last_fraction: float = 0.25, share: float = 0.10) -> bool:
    """Whether a run stopped while still learning: the last `last_fraction` of its epochs (taken as
    equally long, the score read between epochs by linear interpolation) raised its best validation
    score by at least `share` of that best. A flat run gains less; a run that peaked earlier gains
    nothing."""
    scores = [float(v) for v in validation_scores]
    if len(scores) < 2:
        return bool(scores)      # one epoch says nothing about flattening: count it as rising
    epochs = range(1, len(scores) + 1)
    cut = (1 - last_fraction) * len(scores)
    before = [v for e, v in zip(epochs, scores) if e <= cut]
    if cut >= 1:
        lower = max(e for e in epochs if e <= cut)
        upper = min(len(scores), lower + 1)
        w = cut - lower
        before.append(scores[lower - 1] * (1 - w) + scores[upper - 1] * w)
    best = max(scores)
    reached_before = max(before) if before else 0.0
    return best > 0 and best - reached_before >= share * best


def untested(reason: str, difference: float = float("nan")) -> Verdict:
    return Verdict(UNTESTED, difference, reason)


def weakest(verdicts: Sequence[Verdict | str]) -> str:
    """The verdict of a claim that needs every part: the weakest part's."""
    names = [v.verdict if isinstance(v, Verdict) else v for v in verdicts]
    return max(names, key=ORDER.__getitem__) if names else UNTESTED
