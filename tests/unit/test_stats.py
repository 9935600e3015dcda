"""The replicate statistics against values computed by hand or printed in references."""

import math
import warnings

import numpy as np
import pytest
from statsmodels.stats.power import TTestIndPower

from pipeline import stats

# Welch's t-test, Wikipedia's first example: t = -2.46, about 25 degrees of freedom, p = 0.021.
A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


def test_student_t_interval_by_hand():
    """Mean 5, sample sd sqrt(32/7), t(0.975, 7) = 2.364624 from the table."""
    s = stats.summarise([2, 4, 4, 4, 5, 5, 7, 9])
    sd = math.sqrt(32 / 7)
    half = 2.364624 * sd / math.sqrt(8)
    assert (s.n, s.mean) == (8, 5.0)
    assert s.std == pytest.approx(sd)
    assert (s.low, s.high) == pytest.approx((5 - half, 5 + half), abs=1e-5)
    assert s.low < s.mean < s.high


def test_one_replicate_has_no_spread_and_no_values_no_mean():
    one, none = stats.summarise([0.7]), stats.summarise([float("nan")])
    assert one.n == 1 and one.mean == 0.7 and math.isnan(one.std) and math.isnan(one.low)
    assert none.n == 0 and math.isnan(none.mean)


def test_welch_matches_the_reference_example():
    d = stats.welch(A1, A2)
    assert d.diff == pytest.approx(np.mean(A1) - np.mean(A2))
    assert d.p == pytest.approx(0.021, abs=0.001)
    # the interval by hand: t(0.975, Welch-Satterthwaite df) * the standard error
    v1, v2 = np.var(A1, ddof=1) / 15, np.var(A2, ddof=1) / 15
    df = (v1 + v2) ** 2 / (v1**2 / 14 + v2**2 / 14)
    assert df == pytest.approx(24.99, abs=0.01)
    assert d.half_width == pytest.approx(2.0595 * math.sqrt(v1 + v2), rel=1e-3)
    assert d.low < d.diff < d.high < 0


def test_welch_without_spread_or_replicates():
    assert stats.welch([1.0, 1.0], [1.0, 1.0]).p == 1.0
    assert stats.welch([1.0, 1.0], [0.5, 0.5]).p == 0.0
    assert math.isnan(stats.welch([1.0], [0.5, 0.6]).p)


def test_holm_by_hand():
    """Sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone: 0.03, 0.06, 0.06."""
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.2, float("nan")])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1])


def test_paired_permutation_sees_a_consistent_difference_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    assert stats.paired_permutation(base + 0.05, base) < 0.001
    assert stats.paired_permutation(base, base) == 1.0
    # the same right/wrong examples, shuffled between the two: no difference to find
    right = (rng.random(200) < 0.5).astype(float)
    assert stats.paired_permutation(right, rng.permutation(right)) > 0.05


def test_p_values_in_words():
    assert stats.p_text(0.0004) == "p < 0.001"
    assert stats.p_text(0.0042) == "p = 0.004"
    assert stats.p_text(0.41) == "p = 0.41"
    assert stats.p_text(float("nan")) == "p n/a"


def test_welch_is_quiet_when_a_cell_is_all_at_the_same_score():
    """Attention candidates at 1.000 on every seed but one: scipy warns of precision loss in its
    variance; the comparison stands (p well defined) and the sweep log stays clean."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = stats.welch([1.0, 1.0, 1.0], [1.0, 1.0, 0.999])
    assert 0 < d.p <= 1 and d.low <= d.diff <= d.high


# Power: hand-made replicate sets (a, b) against statsmodels' two-sample t-test power.
REPLICATE_SETS = [
    ([0.80, 0.82, 0.81], [0.78, 0.80, 0.79]),  # d = 2
    ([0.70, 0.75, 0.80], [0.68, 0.72, 0.77]),  # wide spread, small difference
    ([21.0, 23.5, 22.1, 24.0], [20.2, 22.9, 21.0]),  # unequal replicates, chrF-like units
    ([0.61, 0.66, 0.58, 0.63, 0.65], [0.55, 0.60, 0.64, 0.57, 0.59]),
]


def pooled_sd(a, b) -> float:
    """By hand: the replicates' squared deviations from their own means, over n_a + n_b - 2."""
    squares = sum((x - np.mean(a)) ** 2 for x in a) + sum((x - np.mean(b)) ** 2 for x in b)
    return math.sqrt(squares / (len(a) + len(b) - 2))


def seeds_by_statsmodels(effect: float, sd: float, alpha: float, power: float) -> int:
    n = TTestIndPower().solve_power(effect_size=effect / sd, alpha=alpha, power=power,
                                    ratio=1.0, alternative="two-sided")
    return max(2, math.ceil(n))


def standardised(n: int) -> np.ndarray:
    """n values with mean 0 and sample standard deviation 1."""
    z = np.arange(n, dtype=float)
    return (z - z.mean()) / z.std(ddof=1)


@pytest.mark.parametrize(("alpha", "power"), [(0.05, 0.8), (0.01, 0.9)])
@pytest.mark.parametrize(("a", "b"), REPLICATE_SETS)
def test_seeds_needed_agrees_with_statsmodels(a, b, alpha, power):
    diff = abs(np.mean(a) - np.mean(b))
    expected = seeds_by_statsmodels(diff, pooled_sd(a, b), alpha, power)
    assert stats.seeds_needed(a, b, alpha=alpha, power=power) == expected
    assert stats.seeds_needed(b, a, alpha=alpha, power=power) == expected


def test_seeds_needed_for_the_first_set_by_hand():
    """Difference 0.02, standard deviation 0.01: d = 2, 5.09 seeds by statsmodels, so 6."""
    a, b = REPLICATE_SETS[0]
    assert pooled_sd(a, b) == pytest.approx(0.01)
    assert stats.seeds_needed(a, b) == 6


@pytest.mark.parametrize(("a", "b"), REPLICATE_SETS)
def test_min_effect_replaces_the_observed_difference(a, b):
    sd = pooled_sd(a, b)
    for effect in (0.5 * sd, 1.3 * sd):
        expected = seeds_by_statsmodels(effect, sd, 0.05, 0.8)
        assert stats.seeds_needed(a, b, min_effect=effect) == expected
        assert stats.seeds_needed(a, b, min_effect=-effect) == expected  # the sign does not count


def test_min_effect_plans_a_difference_that_was_not_observed():
    a, b = [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]  # the same mean
    assert stats.seeds_needed(a, b) is None
    assert stats.seeds_needed(a, b, min_effect=1.0) == seeds_by_statsmodels(1.0, 1.0, 0.05, 0.8)


def test_seeds_needed_without_spread():
    """All replicates equal within each candidate: any difference is certain with 2 seeds; no
    difference is never detected."""
    assert stats.seeds_needed([0.9, 0.9, 0.9], [0.8, 0.8, 0.8]) == 2
    assert stats.seeds_needed([0.9, 0.9, 0.9], [0.9, 0.9]) is None
    assert stats.seeds_needed([0.9, 0.9, 0.9], [0.9, 0.9], min_effect=0.01) == 2
    assert stats.seeds_needed([0.9, 0.9, 0.9], [0.8, 0.8, 0.8], min_effect=0.0) is None


def test_seeds_needed_without_a_variance_estimate():
    assert stats.seeds_needed([0.8], [0.7, 0.75]) is None
    assert stats.seeds_needed([0.8, 0.82], [0.7]) is None
    assert stats.seeds_needed([0.8], [0.7, 0.75], min_effect=0.05) is None
    assert stats.seeds_needed([0.8, float("nan")], [0.7, 0.75]) is None  # NaN left out
    assert stats.seeds_needed([], []) is None


def test_seeds_needed_beyond_the_cap():
    """d = 0.001 / 0.1 = 0.01: 156,978.2 seeds by statsmodels."""
    a, b = [0.5, 0.6, 0.7], [0.501, 0.601, 0.701]
    assert stats.seeds_needed(a, b) is None
    assert stats.seeds_needed(a, b, cap=200_000) == seeds_by_statsmodels(0.001, 0.1, 0.05, 0.8)
    first = REPLICATE_SETS[0]
    assert stats.seeds_needed(*first, cap=6) == 6 and stats.seeds_needed(*first, cap=5) is None


def test_seeds_needed_for_a_huge_effect_is_two_and_quiet():
    """d = 20: statsmodels' solver does not converge there and its power is NaN for some
    such effects; two seeds detect it."""
    z = standardised(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.seeds_needed(1.0 + 0.01 * z, 0.8 + 0.01 * z) == 2
        assert 0.99 < stats.achieved_power(1.0 + 0.01 * z, 0.8 + 0.01 * z) <= 1.0


@pytest.mark.parametrize(("a", "b"), REPLICATE_SETS)
def test_achieved_power_agrees_with_statsmodels(a, b):
    d = abs(np.mean(a) - np.mean(b)) / pooled_sd(a, b)
    expected = TTestIndPower().power(d, nobs1=len(a), alpha=0.05, ratio=len(b) / len(a))
    assert stats.achieved_power(a, b) == pytest.approx(expected)
    assert stats.achieved_power(a, b, alpha=0.01) < stats.achieved_power(a, b)


def test_achieved_power_rises_with_the_replicates():
    """The same effect, d = 1 (means 0.02 apart, standard deviation 0.02), with 2 to 12
    replicates each."""
    powers = []
    for n in range(2, 13):
        z = standardised(n)
        a, b = 0.80 + 0.02 * z, 0.78 + 0.02 * z
        assert pooled_sd(a, b) == pytest.approx(0.02)
        powers.append(stats.achieved_power(a, b))
        assert powers[-1] == pytest.approx(TTestIndPower().power(1.0, nobs1=n, alpha=0.05))
    assert all(x < y for x, y in zip(powers[:-1], powers[1:], strict=True))
    assert powers[0] > 0.05 and powers[-1] < 0.8


def test_achieved_power_edge_cases():
    assert stats.achieved_power([0.9, 0.9], [0.8, 0.8, 0.8]) == 1.0  # no spread: certain
    assert stats.achieved_power([0.9, 0.9], [0.9, 0.9]) is None  # no difference
    assert stats.achieved_power([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) is None
    assert stats.achieved_power([0.9], [0.8, 0.7]) is None  # no variance estimate


def test_power_in_words():
    a, b = REPLICATE_SETS[0]
    assert (stats.power_sentence(a, b, significant=False, scale=100, unit=" points")
            == "about 6 seeds per candidate would detect a difference of 2.0 points with "
               "80 % power")
    assert (stats.power_sentence(a, b, significant=False, min_effect=0.008, power=0.9)
            == f"about {seeds_by_statsmodels(0.008, 0.01, 0.05, 0.9)} seeds per candidate "
               "would detect a difference of 0.008 with 90 % power")
    assert (stats.power_sentence(a, b, significant=True)
            == f"power {stats.achieved_power(a, b):.2f} at the observed difference")
    assert (stats.power_sentence([0.5, 0.6, 0.7], [0.501, 0.601, 0.701], significant=False,
                                 scale=100, unit=" points")
            == "more than 1000 seeds per candidate would be needed to detect a difference "
               "of 0.1 points with 80 % power")
    same = [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]
    assert stats.power_sentence(*same, significant=False) == "no difference to detect"
    assert (stats.power_sentence([0.8], [0.7, 0.75], significant=False)
            == stats.power_sentence([0.8], [0.7, 0.75], significant=True)
            == "one replicate: no power estimate")
    assert (stats.power_sentence([0.9, 0.9], [0.8, 0.8], significant=True)
            == "power 1.00 at the observed difference")


def test_undecided_within_reach():
    """The first set: Welch p = 0.07 with 3 seeds each, 6 seeds would detect it."""
    a, b = REPLICATE_SETS[0]
    assert stats.welch(a, b).p > 0.05
    assert stats.undecided_within(a, b, max_seeds=10)
    assert stats.undecided_within(a, b, max_seeds=6)
    assert not stats.undecided_within(a, b, max_seeds=5)  # out of reach
    assert not stats.undecided_within(a, b, max_seeds=10, p=0.01)  # decided (e.g. Holm's p)
    assert stats.undecided_within(a, b, max_seeds=3, min_effect=0.05)
    assert not stats.undecided_within([0.9, 0.9], [0.8, 0.8], max_seeds=10)  # decided: p = 0
    assert not stats.undecided_within([0.9, 0.9], [0.9, 0.9], max_seeds=10)  # nothing to find
    assert not stats.undecided_within([0.9], [0.8, 0.7], max_seeds=10)  # no spread to plan from
