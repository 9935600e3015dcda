"""The replicate statistics against values computed by hand or printed in references."""

import math
import warnings

import numpy as np
import pytest

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
