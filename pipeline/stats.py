"""Statistics over replicates, for comparing the candidates of a sweep honestly (scipy,
statsmodels).

A *candidate* is one configuration of a sweep; its replicates differ only in the seed. Per
candidate: n, mean, standard deviation and a Student-t confidence interval. Between the best
candidate and every other: Welch's t-test over the replicates' scores and, where per-example
test results are at hand, a paired permutation test over the test examples (each example's
correctness averaged over a candidate's replicates); Holm's correction for the number of
comparisons.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

CONFIDENCE = 0.95
PERMUTATIONS = 9999


@dataclass(frozen=True)
class Summary:
    """n values: their mean, sample standard deviation and confidence interval."""

    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def summarise(values, confidence: float = CONFIDENCE) -> Summary:
    """Mean, standard deviation (ddof 1) and the Student-t interval of the mean; with one
    value the spread is unknown (NaN)."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, np.nan, np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, np.nan, np.nan, np.nan)
    std = float(x.std(ddof=1))
    if std == 0:
        return Summary(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / np.sqrt(n))
    return Summary(n, mean, std, float(low), float(high))


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b), its confidence interval and Welch's two-sided p-value."""

    diff: float
    low: float
    high: float
    p: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def welch(a, b, confidence: float = CONFIDENCE) -> Difference:
    """Welch's t-test (unequal variances) between two sets of scores: the difference of
    their means with its interval and p-value; NaN where either has fewer than two."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return Difference(np.nan, np.nan, np.nan, np.nan)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, np.nan, np.nan, np.nan)
    if a.std() == 0 and b.std() == 0:  # the t statistic is undefined: equal or apart
        return Difference(diff, diff, diff, 1.0 if diff == 0 else 0.0)
    with warnings.catch_warnings():  # replicates all at 1.0 but one: the p-value stands
        warnings.filterwarnings("ignore", "Precision loss occurred in moment calculation")
        test = stats.ttest_ind(a, b, equal_var=False)
    low, high = test.confidence_interval(confidence)
    return Difference(diff, float(low), float(high), float(test.pvalue))


def paired_permutation(a, b, seed: int = 0) -> float:
    """Two-sided p-value that paired per-example scores ``a`` and ``b`` (the same test
    examples) have the same mean, by permuting each pair's order."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.array_equal(a, b):
        return 1.0
    result = stats.permutation_test(
        (a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
        n_resamples=PERMUTATIONS, alternative="two-sided", rng=np.random.default_rng(seed))
    return float(result.pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = multipletests(p[finite], method="holm")[1]
    return out.tolist()


def p_text(p: float) -> str:
    """``p < 0.001`` or ``p = 0.41`` (``p n/a`` when it cannot be computed)."""
    if not np.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"
