"""The shared statistical rule (vgs/report/verdicts.py) on synthetic numbers with known answers."""
import numpy as np
import pytest

from vgs.report.verdicts import (FAILS, HOLDS, NOISE, UNTESTED, compare_seeds, learned, one_run_against_seeds,
                                 still_rising,
                                 two_single_runs, weakest)


def test_welch_finds_a_real_difference_and_its_direction():
    assert compare_seeds([0.50, 0.52, 0.51], [0.30, 0.31, 0.29]).verdict == HOLDS
    assert compare_seeds([0.50, 0.52, 0.51], [0.30, 0.31, 0.29], expect_positive=False).verdict == FAILS
    v = compare_seeds([0.50, 0.60, 0.40], [0.49, 0.55, 0.45])
    assert v.verdict == NOISE and v.p_value > 0.5 and "Welch" in v.evidence


def test_false_positive_rates_are_near_five_percent_under_pure_noise():
    rng = np.random.default_rng(0)
    trials = 4000
    welch = sum(compare_seeds(rng.normal(0, 1, 3), rng.normal(0, 1, 3)).verdict != NOISE for _ in range(trials))
    # Welch with 3 + 3 seeds is conservative: at most the nominal 5%.
    assert welch / trials <= 0.06
    pi = sum(one_run_against_seeds(rng.normal(), rng.normal(0, 1, 3)).verdict != NOISE for _ in range(trials))
    assert 0.03 <= pi / trials <= 0.07                       # exact for normal noise: 5%
    two = 0
    for _ in range(trials):
        seeds = rng.normal(0, 1, 3)
        two += two_single_runs(rng.normal(), rng.normal(), float(np.std(seeds, ddof=1)), 3).verdict != NOISE
    assert two / trials <= 0.07
    # The old rule (|difference| over twice the seed sd) passes pure noise far more often.
    old = 0
    for _ in range(trials):
        seeds = rng.normal(0, 1, 3)
        old += abs(rng.normal() - rng.normal()) > 2 * float(np.std(seeds, ddof=1))
    assert old / trials > 0.15


def test_prediction_interval_by_hand():
    # mean 1.0, s = 0.1, n = 3: half-width t(0.975, 2) * 0.1 * sqrt(4/3) = 4.303 * 0.11547 = 0.4968
    v = one_run_against_seeds(1.49, [0.9, 1.0, 1.1])
    assert v.verdict == NOISE and v.one_seed and "1 +- 0.497" in v.evidence
    assert one_run_against_seeds(1.51, [0.9, 1.0, 1.1]).verdict == HOLDS
    assert one_run_against_seeds(0.49, [0.9, 1.0, 1.1]).verdict == FAILS


def test_untested_when_a_run_never_left_chance_and_the_weakest_part_decides():
    assert not learned([0.009, 0.011, 0.019], chance=0.01) and learned([0.01, 0.02], chance=0.01)
    assert weakest([HOLDS, NOISE]) == NOISE and weakest([HOLDS, UNTESTED]) == UNTESTED
    assert weakest([HOLDS, FAILS, UNTESTED]) == FAILS and weakest([]) == UNTESTED
    with pytest.raises(ValueError):
        compare_seeds([1.0], [1.0, 2.0])


def test_spread_and_sign_rules_hold_five_percent_under_noise_and_find_real_effects():
    from vgs.report.verdicts import seeds_sign, single_run_sign, spread_of_single_runs
    rng = np.random.default_rng(1)
    trials = 3000
    fp = 0
    for _ in range(trials):
        s = float(np.std(rng.normal(0, 1, 3), ddof=1))
        fp += spread_of_single_runs(rng.normal(0, 1, 4), s, 3).verdict != NOISE
    assert fp / trials <= 0.07
    assert spread_of_single_runs([0.0, 0.1, 0.2, 20.0], 1.0, 3).verdict == HOLDS   # q(0.95, 4, 2) = 9.8
    fp = sum(single_run_sign(rng.normal(), float(np.std(rng.normal(0, 1, 3), ddof=1)), 3).verdict != NOISE
             for _ in range(trials))
    assert fp / trials <= 0.07
    assert single_run_sign(-9.0, 1.0, 3).verdict == FAILS and single_run_sign(9.0, 1.0, 3).verdict == HOLDS
    assert seeds_sign([1.0, 1.1, 0.9]).verdict == HOLDS and seeds_sign([1.0, -1.1, 0.2]).verdict == NOISE


def test_still_rising_reads_the_gain_of_the_last_quarter_of_epochs():
    flat_after_eight = [0.02, 0.09, 0.18, 0.29, 0.37, 0.46, 0.54, 0.55, 0.52, 0.56, 0.55, 0.54]
    assert not still_rising(flat_after_eight)              # the last 3 of 12 epochs add under 10%
    assert still_rising(flat_after_eight[:8])               # cut at 8: epochs 7-8 added 0.09 of 0.55
    assert still_rising([0.1, 0.2, 0.3, 0.4])               # linear growth gains a quarter
    assert not still_rising([0.5, 0.5, 0.5, 0.5])
    assert not still_rising([0.6, 0.5, 0.4, 0.3])           # peaked first: nothing was gained late
    # The threshold is 10% of the best: 0.5 -> 0.549 is flat, 0.5 -> 0.56 is rising (75% of 4 epochs = epoch 3).
    assert not still_rising([0.3, 0.4, 0.5, 0.549])
    assert still_rising([0.3, 0.4, 0.5, 0.56])
    assert still_rising([0.3])                              # one epoch cannot show flattening
