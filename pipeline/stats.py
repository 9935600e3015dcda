"""Statistics over replicates, for comparing the candidates of a sweep honestly (scipy,
statsmodels).

A *candidate* is one configuration of a sweep; its replicates differ only in the seed. Per
candidate: n, mean, standard deviation and a Student-t confidence interval. Between the best
candidate and every other: Welch's t-test over the replicates' scores and, where per-example
test results are at hand, a paired permutation test over the test examples (each example's
correctness averaged over a candidate's replicates); Holm's correction for the number of
comparisons. Power, from the replicates' pooled standard deviation (statsmodels'
two-sample t-test power): how many seeds per candidate would detect a difference, and the
power a comparison had at the difference it observed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

CONFIDENCE = 0.95
PERMUTATIONS = 9999
POWER = 0.8
SEEDS_CAP = 1000


class Interval:
    """A confidence interval ``low`` .. ``high`` (fields of the dataclasses below)."""

    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Summary(Interval):
    """n values: their mean, sample standard deviation and confidence interval."""

    n: int
    mean: float
    std: float
    low: float
    high: float


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
class Difference(Interval):
    """mean(a) - mean(b), its confidence interval and Welch's two-sided p-value."""

    diff: float
    low: float
    high: float
    p: float


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


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    return x[np.isfinite(x)]


def _pooled_std(a: np.ndarray, b: np.ndarray) -> float:
    """The pooled sample standard deviation of two sets of at least two values each."""
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    return float(np.sqrt(pooled))


def _power(effect_size: float, nobs1: int, ratio: float, alpha: float) -> float:
    """Two-sided power of the two-sample t-test (statsmodels). Where scipy's noncentral t
    gives up (NaN, at noncentralities from about 8) the upper tail alone stands in, the
    lower one being negligible there; where that too gives up (from about 36) the power
    is 1."""
    test = TTestIndPower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = test.power(effect_size, nobs1, alpha, ratio=ratio)
        if np.isnan(value):
            value = test.power(effect_size, nobs1, alpha / 2, ratio=ratio, alternative="larger")
    return 1.0 if np.isnan(value) else float(value)


def _plan(a, b, alpha: float, power: float, min_effect: float | None, cap: int
          ) -> tuple[int | None, str, float]:
    """:func:`seeds_needed`, with why there is no number (``"replicates"``, ``"no
    difference"``, ``"cap"``; ``""`` with one) and the difference planned for."""
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie strictly between 0 and 1: {alpha}, {power}")
    a, b = _finite(a), _finite(b)
    diff = abs(float(a.mean() - b.mean())) if len(a) and len(b) else np.nan
    effect = abs(min_effect) if min_effect is not None else diff
    if len(a) < 2 or len(b) < 2:
        return None, "replicates", effect
    if effect == 0:
        return None, "no difference", effect
    sd = _pooled_std(a, b)
    if sd == 0:
        return 2, "", effect
    d = effect / sd
    if cap < 2 or _power(d, cap, 1.0, alpha) < power:
        return None, "cap", effect
    if _power(d, 2, 1.0, alpha) >= power:
        return 2, "", effect
    low, high = 2, cap  # power(low) < power <= power(high); power rises with the seeds
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if _power(d, middle, 1.0, alpha) >= power else (middle, high)
    return high, "", effect


def seeds_needed(a: list[float], b: list[float], alpha: float = 0.05, power: float = POWER,
                 min_effect: float | None = None, cap: int = SEEDS_CAP) -> int | None:
    """How many seeds (replicates) per candidate a two-sided two-sample t-test at ``alpha``
    needs to detect the difference of the means of ``a`` and ``b`` with probability
    ``power``: the smallest whole number (at least 2) that reaches it, the same number per
    candidate, from Cohen's d = difference / the replicates' pooled standard deviation
    (statsmodels' ``TTestIndPower``; the t-test with pooled variance stands in for Welch's).

    ``min_effect``, when given, replaces the observed difference: an absolute difference in
    the metric's units (its sign does not matter), the smallest one worth detecting.
    Non-finite values are left out.

    Edge cases:

    - fewer than 2 replicates in either candidate: ``None`` (no variance estimate);
    - a zero difference (observed, or ``min_effect=0``): ``None`` (no difference to detect),
      whatever the spread;
    - zero pooled variance (each candidate's replicates all equal) and a difference: 2, the
      fewest a t-test takes; any difference is detected with certainty;
    - more than ``cap`` seeds needed: ``None`` (more than ``cap``; out of reach).
    """
    return _plan(a, b, alpha, power, min_effect, cap)[0]


def achieved_power(a: list[float], b: list[float], alpha: float = 0.05) -> float | None:
    """The power the two-sided two-sample t-test at ``alpha`` had, with the replicates at
    hand (``len(a)`` and ``len(b)``), to detect the difference of means it observed: Cohen's
    d = difference / the pooled standard deviation (statsmodels' ``TTestIndPower``).
    Non-finite values are left out.

    Edge cases: fewer than 2 replicates in either candidate: ``None`` (no variance estimate);
    a zero observed difference: ``None`` (no difference to have power at); zero pooled
    variance with a difference: 1.0 (the difference is certain)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1: {alpha}")
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return None
    diff = abs(float(a.mean() - b.mean()))
    if diff == 0:
        return None
    sd = _pooled_std(a, b)
    if sd == 0:
        return 1.0
    return _power(diff / sd, len(a), len(b) / len(a), alpha)


def _amount(x: float) -> str:
    """One decimal from 1 up (as the comparisons print differences), two significant
    digits below."""
    return f"{x:.1f}" if x >= 1 else f"{x:.2g}"


def power_sentence(a: list[float], b: list[float], significant: bool, alpha: float = 0.05,
                   power: float = POWER, min_effect: float | None = None,
                   cap: int = SEEDS_CAP, scale: float = 1.0, unit: str = "") -> str:
    """The power of a comparison in words, for the sweep summary. ``significant``: whether
    the comparison found a difference (then the power it had at the observed difference,
    :func:`achieved_power`) or not (then how many seeds would detect it,
    :func:`seeds_needed`). Differences are printed times ``scale`` followed by ``unit``
    (e.g. 100 and ``" points"`` for accuracies). E.g.

    - ``power 0.93 at the observed difference``
    - ``about 7 seeds per candidate would detect a difference of 0.8 points with 80 % power``
    - ``more than 1000 seeds per candidate would be needed to detect a difference of 0.01
      points with 80 % power``
    - ``no difference to detect``
    - ``one replicate: no power estimate`` (fewer than 2 replicates in a candidate)
    """
    if significant:
        achieved = achieved_power(a, b, alpha)
        if achieved is None:
            return ("one replicate: no power estimate"
                    if min(len(_finite(a)), len(_finite(b))) < 2 else "no difference to detect")
        return f"power {achieved:.2f} at the observed difference"
    seeds, why, effect = _plan(a, b, alpha, power, min_effect, cap)
    if why == "replicates":
        return "one replicate: no power estimate"
    if why == "no difference":
        return "no difference to detect"
    target = f"a difference of {_amount(effect * scale)}{unit} with {power * 100:g} % power"
    if why == "cap":
        return f"more than {cap} seeds per candidate would be needed to detect {target}"
    return f"about {seeds} seeds per candidate would detect {target}"


def undecided_within(a: list[float], b: list[float], max_seeds: int, alpha: float = 0.05,
                     power: float = POWER, p: float | None = None,
                     min_effect: float | None = None) -> bool:
    """Whether more seeds could decide the comparison of ``a`` and ``b``: it is not
    significant now (``p``, e.g. Holm-corrected, at least ``alpha``; by default Welch's
    p-value of :func:`welch`) and :func:`seeds_needed` is at most ``max_seeds`` per
    candidate. False with fewer than 2 replicates in either candidate (no spread to plan
    from) and with no difference to detect."""
    if p is None:
        p = welch(_finite(a), _finite(b)).p
    if np.isfinite(p) and p < alpha:
        return False
    return seeds_needed(a, b, alpha, power, min_effect, cap=max_seeds) is not None
