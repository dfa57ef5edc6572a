"""The paired test over seeds that every "within noise" verdict of the leaderboard uses: between
adjacent ranks (:mod:`bench.report.stats`), of an entry against the original (doing nothing) and
of the original against the oracle (a metric's signal on a task, :mod:`bench.report.signal`), and the
confidence intervals those tables print beside p.
Pairing by seed removes the variation the two share (same split, same original, same oracle).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: Level of every paired test: a difference is beyond noise when p < NOISE_ALPHA.
NOISE_ALPHA = 0.05


def paired_t_test(a: pd.Series, b: pd.Series) -> tuple[float, int]:
    """Two-sided paired t-test of equal means over the seeds both series have (finite values):
    d_s = a_s − b_s, t = mean(d) / (sd(d) / √n), p = 2 · (1 − F_{t, n−1}(|t|)).

    Returns (p, n); p is NaN when n < 2 (untestable). With sd(d) = 0 the test is degenerate: p = 1
    when mean(d) = 0 (identical) and p = 0 otherwise (the same difference on every seed)."""
    d = paired_differences(a, b)
    n = len(d)
    if n < 2:
        return math.nan, n
    mean, sd = float(np.mean(d)), float(np.std(d, ddof=1))
    if sd == 0.0:
        return (1.0 if mean == 0.0 else 0.0), n
    t = mean / (sd / math.sqrt(n))
    return float(2.0 * stats.t.sf(abs(t), n - 1)), n


@dataclass(frozen=True)
class Interval:
    """A mean difference with its two-sided (1 − :data:`NOISE_ALPHA`) t confidence interval over
    ``n`` paired values: mean(d) ± t_{1−α/2, n−1} · sd(d) / √n (NaN bounds when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


def t_interval(d: np.ndarray) -> Interval:
    """:class:`Interval` of the mean of ``d`` (finite values). With n ≥ 2 it excludes 0 exactly
    when :func:`paired_t_test` of the same differences gives p < :data:`NOISE_ALPHA`."""
    d = np.asarray(d, dtype="float64")
    n = len(d)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean(d))
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf(1.0 - NOISE_ALPHA / 2, n - 1)) * float(np.std(d, ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def split_half_differences(values: pd.Series) -> np.ndarray:
    """Oracle against oracle: the finite values in seed order, cut to an even count (the last seed
    dropped), halves A = the first N/2 seeds and B = the rest, d_i = A_i − B_i. Independent models
    on both sides, so mean(d) estimates 0 and its interval shows how far apart two models of one
    recipe fall on the metric by chance alone."""
    v = values.sort_index().to_numpy(dtype="float64")
    v = v[np.isfinite(v)]
    half = len(v) // 2
    return v[:half] - v[half:2 * half]


def paired_differences(a: pd.Series, b: pd.Series) -> np.ndarray:
    """d_s = a_s − b_s over the seeds (index) both series have with finite values, in seed order."""
    joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    joined = joined[np.isfinite(joined["a"].to_numpy(float)) & np.isfinite(joined["b"].to_numpy(float))]
    return (joined["a"] - joined["b"]).to_numpy(dtype="float64")


def beyond_noise(p: float) -> bool:
    """Whether a paired test's p rejects equality: p < :data:`NOISE_ALPHA` (NaN, untestable: no)."""
    return not math.isnan(p) and p < NOISE_ALPHA
