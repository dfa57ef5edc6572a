"""Cross-seed per-example attacks (``specs/metrics.md``, "Cross-seed, per-example attacks").

A task's N model seeds give, for each forget example s, N values of the logit-scaled confidence
φ (:func:`phi`) under the unlearned models (U) and N under the oracles (O): arrays ``[N, S]``.
Three statistics ask, example by example, whether U's values look like draws of O's:

* :func:`ulira` — leave-one-model-out Gaussian likelihood-ratio test (U-LiRA-style); accuracy over
  every (example, model) decision and TPR at 1 % FPR. Goal: the oracle's (≈ 0.5).
* :func:`eps_quality` — the NeurIPS 2023 unlearning competition's score from per-example ε.
* :func:`klom_p95` — EasyDUB's KLoM: binned KL(U ‖ O) per example, 95th percentile.

All three move with N, so :func:`halves` compares populations of equal size on disjoint seeds:
the method (unlearned of half A vs oracles of half B), the noise floor (oracles of A vs oracles of
B) and the task's signal (originals of A vs oracles of B), each the mean over the swap A ↔ B and
over several partitions of the seeds into halves, with bootstrap confidence intervals over examples.

One idea in about 460 lines, a third of them docstrings: the three statistics share their input
checks and the split-halves comparison, and each one's formula and departures from its reference
live beside its code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Callable, Literal, Mapping

import numpy as np
from scipy.special import logsumexp

from bench.lookup import Registry

#: ``eps_quality`` and ``klom_p95`` are computed from this many models per population only:
#: their scale moves with N (the top ε bin is ⌈ln(N − 1)⌉) and published work uses 32 to 512.
MIN_NONPARAMETRIC_MODELS = 32
#: ``ulira(variance="auto")`` fits per-example variances from this many models per population and
#: a pooled one below: LiRA (Carlini et al. 2022) finds the fixed variance better under 64
#: shadow models, i.e. about 32 per population of an example.
PER_EXAMPLE_VARIANCE_FROM = 32
#: Smallest Gaussian variance :func:`ulira` fits (φ spreads over units; this only keeps a
#: population of identical values from dividing by zero).
VARIANCE_FLOOR = 1e-12
DELTA = 1e-5  #: δ of the competition's (ε, δ) score
EPS_BIN_WIDTH = 0.5  #: width of the competition's ε bins
EPS_BUFFER = 2.0  #: the competition's two-threshold rules: |r − max| ≤ 2 and |length − range| ≤ 2 (peakier population)
EPSILON_CAP = 50.0  #: the competition's ε of a perfectly separable or degenerate example
PEAKY_RATIO = 0.01  #: range ratio under which the competition calls one population degenerate
KLOM_BINS, KLOM_CLIP, KLOM_FLOOR, KLOM_PERCENTILE = 20, 100.0, 1e-5, 95.0  #: EasyDUB's KLoM constants
#: :func:`halves` averages over partitions of the seeds into halves until they place this many
#: models: ⌈256 / N⌉ partitions of N seeds (16 at N = 16, 4 at 64), or every partition when there
#: are fewer. One partition is not enough: measured on ``digits-cnn-random10`` (16 seeds), the floor
#: of the first-vs-second-half partition read 0.553 while 200 random partitions gave 0.495 ± 0.024
#: (sd) — a model's confidence shifts every example at once, so which models share a half moves
#: every decision together, a variation the bootstrap over examples cannot see.
PARTITION_MODELS = 256
_PAIRS_PER_CHUNK = 1 << 21  #: threshold pairs × examples per block of :func:`eps_quality` (~16 MB arrays)

Variance = Literal["auto", "pooled", "per_example"]


def phi(logits: Any, labels: Any) -> np.ndarray:
    """Logit-scaled confidence φ = log p_y − log Σ_{k≠y} p_k = z_y − logsumexp_{k≠y} z_k.

    ``logits`` ``[..., K]`` (numpy or torch), ``labels`` ``[...]``; float64 result ``[...]``. The
    softmax normaliser cancels, so φ is computed from the logits by logsumexp without forming
    probabilities: exact where the competition's log(p + 1e-45) saturates at about ±103.

    >>> round(float(phi(np.array([[2.0, 0.0, 0.0]]), np.array([0]))[0]), 4)  # 2 − log 2
    1.3069
    """
    z, y = _numpy(logits).astype(np.float64), _numpy(labels)
    if z.ndim < 1 or z.shape[-1] < 2 or z.shape[:-1] != y.shape:
        raise ValueError(f"phi needs logits [..., K ≥ 2] and labels [...] of the leading shape, got {z.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"phi needs integer labels, got {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"phi needs labels in [0, {z.shape[-1]}), got [{y.min()}, {y.max()}]")
    if not np.isfinite(z).all():
        raise ValueError("phi got non-finite logits: check the model's outputs before scoring them")
    at_y = y[..., None].astype(np.intp)
    others = z.copy()
    np.put_along_axis(others, at_y, -np.inf, axis=-1)
    return np.take_along_axis(z, at_y, axis=-1)[..., 0] - logsumexp(others, axis=-1)


@dataclass(frozen=True, eq=False)
class ULiRA:
    """:func:`ulira`'s answer. ``per_example[s]``: share of the N_U + N_O decisions on example s that
    were right; ``scores_*``: the log-likelihood ratio Λ of each held-out model, ``[N, S]``."""

    accuracy: float
    tpr_at_fpr: float
    fpr: float
    variance: str  # "pooled" or "per_example": the one used
    per_example: np.ndarray
    scores_unlearned: np.ndarray
    scores_oracle: np.ndarray


def ulira(U: Any, O: Any, *, variance: Variance = "auto", fpr: float = 0.01) -> ULiRA:
    """Leave-one-model-out Gaussian likelihood-ratio test of "unlearned" against "oracle".

    For every held-out model j and example s, fit N(μ_U, σ²_U) and N(μ_O, σ²_O) to φ_s of the
    models left (j out of its own population only) and score

        Λ_j(s) = log N(φ_j(s); μ_U(s), σ²_U) − log N(φ_j(s); μ_O(s), σ²_O),

    predicting "unlearned" when Λ > 0. Means are per example, variances unbiased (n − 1); with
    ``variance="pooled"`` (LiRA's fixed variance) σ² is the mean over examples of the per-example
    variances, one per population; ``"auto"`` takes per-example variances from
    :data:`PER_EXAMPLE_VARIANCE_FROM` models per population and pooled ones below. Leave-one-out
    moments come from the full ones by downdating: μ₋ⱼ = μ − dⱼ/(n−1), SS₋ⱼ = SS − dⱼ²·n/(n−1).

        accuracy = (Σ_{s, j∈U} 1[Λ_j(s) > 0] + Σ_{s, j∈O} 1[Λ_j(s) ≤ 0]) / (S·(N_U + N_O))

    TPR at ``fpr``: the largest share of unlearned scores above a threshold that at most
    ⌊fpr·S·N_O⌋ oracle scores exceed. Identical populations sit slightly *under* 0.5: the held-out
    model's own population is fitted from one model fewer, hence less well; compare with the floor.
    """
    U, O = _check_pair(U, O, "ulira", minimum=3)
    if variance not in ("auto", "pooled", "per_example"):
        raise ValueError(f"ulira: variance must be 'auto', 'pooled' or 'per_example', got {variance!r}")
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"ulira: fpr must be in (0, 1), got {fpr}")
    if variance == "auto":
        variance = "per_example" if min(len(U), len(O)) >= PER_EXAMPLE_VARIANCE_FROM else "pooled"
    pooled = variance == "pooled"
    u_mean, u_var, u_loo_mean, u_loo_var = _gaussian_fits(U, pooled)
    o_mean, o_var, o_loo_mean, o_loo_var = _gaussian_fits(O, pooled)
    scores_u = _log_normal(U, u_loo_mean, u_loo_var) - _log_normal(U, o_mean, o_var)
    scores_o = _log_normal(O, u_mean, u_var) - _log_normal(O, o_loo_mean, o_loo_var)
    per_example = ((scores_u > 0).sum(0) + (scores_o <= 0).sum(0)) / (len(U) + len(O))
    negatives = np.sort(scores_o, axis=None)[::-1]
    allowed = int(math.floor(round(fpr * negatives.size, 9)))  # round: 0.29·100 is 28.999…
    tpr = float(np.mean(scores_u > negatives[allowed]))
    return ULiRA(float(per_example.mean()), tpr, fpr, variance, per_example, scores_u, scores_o)


def _gaussian_fits(x: np.ndarray, pooled: bool) -> tuple[np.ndarray, ...]:
    """(μ, σ², μ₋ⱼ, σ²₋ⱼ) of ``x`` ``[n, S]``: all models, and each model j left out."""
    n = len(x)
    mean = x.mean(0)
    dev = x - mean
    ss = (dev * dev).sum(0)
    var, loo_var = ss / (n - 1), np.maximum(ss - dev * dev * (n / (n - 1)), 0.0) / (n - 2)
    if pooled:
        var, loo_var = np.full_like(var, var.mean()), loo_var.mean(1, keepdims=True)
    return mean, np.maximum(var, VARIANCE_FLOOR), mean - dev / (n - 1), np.maximum(loo_var, VARIANCE_FLOOR)


def _log_normal(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2.0 * np.pi * var) + (x - mean) ** 2 / var)


@dataclass(frozen=True, eq=False)
class EpsQuality:
    """:func:`eps_quality`'s answer: F, each example's ε and points 2^(1−bin), and the bin count."""

    value: float
    epsilons: np.ndarray
    points: np.ndarray
    n_bins: int


def eps_quality(U: Any, O: Any, delta: float = DELTA) -> EpsQuality:
    """The NeurIPS 2023 unlearning competition's forgetting quality F (Triantafillou et al. 2024).

    Per example, the population with the larger median is "positive". Over every decision rule of
    two families — one threshold (positive when φ ≥ t) and two thresholds (the population of
    smaller range w and maximum M, the peakier, is positive when l ≤ φ ≤ r, for |r − M| ≤ 2 and
    |r − l − w| ≤ 2; equal ranges: the other one than the positive) — with rates FPR, FNR over the models,

        ε_rule = max(log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR)   (terms with log of ≤ 0 dropped),

    ε = max over rules of max(ε_rule, 0); rules with exactly one of FPR, FNR zero are skipped
    (too few samples to tell), FPR = FNR = 0 (separable) and a range ratio under
    :data:`PEAKY_RATIO` (a degenerate population) give :data:`EPSILON_CAP`. With bins of width
    0.5 up to ⌈ln(N − 1)⌉ (2⌈ln(N − 1)⌉ bins),

        F = (1/S) Σ_s 2^(1 − b_s),   b_s = ⌊ε_s / 0.5⌋ + 1, and 0 points for ε_s beyond the last bin.

    Departure, on purpose: the competition evaluates these rules on grids of thresholds about
    0.01 apart; we find every set of samples the rules can catch exactly, thresholds anywhere
    (ε ≥ the competition's; equal unless two samples lie within a grid step or a rule's region
    is a sliver narrower than one), and an example no rule separates at all gets ε = 0 where the
    competition's code fails an assertion.
    Requires N_U = N_O ≥ :data:`MIN_NONPARAMETRIC_MODELS`.
    """
    U, O = _check_pair(U, O, "eps_quality", minimum=MIN_NONPARAMETRIC_MODELS, equal=True)
    n, s = U.shape
    step = max(1, _PAIRS_PER_CHUNK // (4 * n * n))
    eps = np.concatenate([_epsilons(U[:, i:i + step], O[:, i:i + step], delta) for i in range(0, s, step)])
    n_bins = int(round(math.ceil(math.log(n - 1)) / EPS_BIN_WIDTH))
    b = np.floor(eps / EPS_BIN_WIDTH)  # 0-based bin
    points = np.where(b < n_bins, np.exp2(-np.minimum(b, n_bins)), 0.0)
    return EpsQuality(float(points.mean()), eps, points, n_bins)


def _epsilons(U: np.ndarray, O: np.ndarray, delta: float) -> np.ndarray:
    """ε of each example of a block ``[n, s]`` (see :func:`eps_quality`)."""
    n = len(U)
    o_pos = np.median(O, 0) > np.median(U, 0)
    pos, neg = np.where(o_pos, O, U), np.where(o_pos, U, O)
    values = np.concatenate([pos, neg])[None]  # [1, 2n, s]: every sample is a candidate threshold
    counts = {(k, x): (v[:, None] >= values if x else v[:, None] > values).sum(0, dtype=np.int32)
              for k, v in (("pos", pos), ("neg", neg)) for x in (True, False)}  # #(≥ or > each value)
    # a rule's ε depends only on its counts (FP, FN) ∈ {0 … n}²: look it up in a table
    rates = np.arange(n + 1) / n
    table = _rule_eps(rates[:, None], rates[None, :], delta).ravel()  # [FP · (n + 1) + FN]
    single = table[counts["neg", True] * (n + 1) + (n - counts["pos", True])].max(0)
    range_pos, range_neg = np.ptp(pos, 0), np.ptp(neg, 0)
    peaky_is_pos = range_pos < range_neg

    def inside(of_pos: np.ndarray) -> np.ndarray:  # [2n (l), 2n (r), s]: #(v_l ≤ x ≤ v_r), 0 if v_l > v_r
        ge = np.where(of_pos, counts["pos", True], counts["neg", True])
        gt = np.where(of_pos, counts["pos", False], counts["neg", False])
        return np.maximum(ge[:, None] - gt[None], 0)

    fp, tp = inside(~peaky_is_pos), inside(peaky_is_pos)  # the peakier population is "positive"
    double = np.where(_reachable(values[0], np.where(peaky_is_pos, pos, neg)), table[fp * (n + 1) + (n - tp)], -np.inf)
    double = double.max((0, 1))
    eps = np.maximum(np.maximum(single, double), 0.0)
    largest, smallest = np.maximum(range_pos, range_neg), np.minimum(range_pos, range_neg)
    degenerate = smallest < PEAKY_RATIO * largest  # False when both ranges are 0
    return np.clip(np.where(degenerate, EPSILON_CAP, eps), 0.0, EPSILON_CAP)


def _reachable(values: np.ndarray, peaky: np.ndarray) -> np.ndarray:
    """[2n (a), 2n (b), s]: whether a competition interval [l, r] catches exactly the samples of
    [v_a, v_b]: l ∈ (prev(v_a), v_a], r ∈ [v_b, next(v_b)), |r − M| ≤ B and |r − l − w| ≤ B, with
    M, w the peakier population's maximum and range and prev / next the neighbouring samples."""
    m, w, b = peaky.max(0), np.ptp(peaky, 0), EPS_BUFFER
    prev = np.where(values[None] < values[:, None], values[None], -np.inf).max(1)  # [2n, s]
    nxt = np.where(values[None] > values[:, None], values[None], np.inf).min(1)
    lo, lo_open = np.maximum(values, m - b)[None], (prev + w - b)[:, None]  # r ≥ lo, r > lo_open
    hi, hi_open = np.minimum(values + w + b, m + b)[:, None], nxt[None]  # r ≤ hi, r < hi_open
    return (lo <= hi) & (lo < hi_open) & (lo_open < hi) & (lo_open < hi_open)


def _rule_eps(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """ε of a rule from its rates; −∞ for a rule skipped, +∞ for a separating one."""
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.fmax(np.log(1.0 - delta - fpr) - np.log(fnr), np.log(1.0 - delta - fnr) - np.log(fpr))
    eps = np.where((fpr > 0) & (fnr > 0) & ~np.isnan(eps), eps, -np.inf)
    return np.where((fpr == 0) & (fnr == 0), np.inf, eps)


@dataclass(frozen=True, eq=False)
class KLoM:
    """:func:`klom_p95`'s answer: the percentile and each example's KL(U ‖ O)."""

    value: float
    kl: np.ndarray


def joint_histograms(U: Any, O: Any, bins: int = KLOM_BINS, clip: float = KLOM_CLIP) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``[S, bins]`` of U and O per example on ``bins`` equal bins spanning both samples.

    Values are clipped to [−clip, clip]; the bins of example s span [lo_s, hi_s], the joint minimum
    and maximum (hi_s = lo_s + 1 when all values are equal), half-open but for the last, closed,
    as ``np.histogram``'s. Departure: EasyDUB bins with ``np.digitize`` and counts bins 1..20, which
    leaves the samples equal to the joint maximum out of both histograms; we count every sample.
    """
    U, O = (np.clip(x, -clip, clip) for x in _check_pair(U, O, "joint_histograms", minimum=1))
    lo = np.minimum(U.min(0), O.min(0))
    hi = np.maximum(U.max(0), O.max(0))
    hi = np.where(hi > lo, hi, lo + 1.0)
    edges = np.linspace(lo, hi, bins + 1, axis=-1)  # [S, bins + 1]
    return _counts(U, edges, bins), _counts(O, edges, bins)


def _counts(x: np.ndarray, edges: np.ndarray, bins: int) -> np.ndarray:
    lo, hi = edges[:, 0], edges[:, -1]
    idx = np.clip(((x - lo) * (bins / (hi - lo))).astype(np.intp), 0, bins - 1)  # then fix rounding
    col = np.broadcast_to(np.arange(len(lo)), x.shape)
    idx = idx - (x < edges[col, idx])
    idx = idx + ((x >= edges[col, idx + 1]) & (idx < bins - 1))
    return np.bincount((col * bins + idx).ravel(), minlength=len(lo) * bins).reshape(len(lo), bins)


def kl_from_counts(p_counts: np.ndarray, q_counts: np.ndarray, floor: float = KLOM_FLOOR) -> np.ndarray:
    """KL(p ‖ q) = Σ_{b: p_b > 0} p_b · log(p_b / max(q_b, floor)) per row of two count arrays.

    p, q: the counts normalised per row (a row without counts is all zeros); the floor applies to
    the bins where p has mass and q is renormalised no further, as EasyDUB's.
    """
    p_counts, q_counts = np.asarray(p_counts, float), np.asarray(q_counts, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.nan_to_num(p_counts / p_counts.sum(-1, keepdims=True))
        q = np.nan_to_num(q_counts / q_counts.sum(-1, keepdims=True))
        terms = np.where(p > 0, p * np.log(p / np.maximum(q, floor)), 0.0)
    return terms.sum(-1)


def klom_p95(U: Any, O: Any) -> KLoM:
    """EasyDUB's KLoM: per example KL(U ‖ O) of :func:`joint_histograms` (20 shared bins, values
    clipped to ±100) by :func:`kl_from_counts` (empty oracle bins floored at 1e-5), then the 95th
    percentile over examples (``np.percentile``, linear). Requires N ≥ :data:`MIN_NONPARAMETRIC_MODELS`
    per population."""
    U, O = _check_pair(U, O, "klom_p95", minimum=MIN_NONPARAMETRIC_MODELS)
    kl = kl_from_counts(*joint_histograms(U, O))
    return KLoM(float(np.percentile(kl, KLOM_PERCENTILE)), kl)


@dataclass(frozen=True)
class CrossSeedMetric:
    """A cross-seed statistic: ``fn(U, O)``, its per-example values and how they reduce to one."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], Any]
    per_example: Callable[[Any], np.ndarray]
    reduce: Callable[[np.ndarray], np.ndarray]  # over the last axis
    goal: str


CROSS_SEED_METRICS: Registry[CrossSeedMetric] = Registry("cross-seed metric")
for _m in (
    CrossSeedMetric("ulira_accuracy", ulira, lambda r: r.per_example, lambda v: v.mean(-1), "oracle"),
    CrossSeedMetric("eps_quality", eps_quality, lambda r: r.points, lambda v: v.mean(-1), "max"),
    CrossSeedMetric("klom_p95", klom_p95, lambda r: r.kl, lambda v: np.percentile(v, KLOM_PERCENTILE, axis=-1), "min"),
):
    CROSS_SEED_METRICS.register(_m.name, _m)


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


@dataclass(frozen=True, eq=False)
class Halves:
    """:func:`halves`' answer. ``values[name]``: population ``name`` of one half vs the oracles of
    the other; ``minus_floor[name]``: its distance to ``floor``, CI paired on the same resamples;
    ``minus_baseline[name]``: its distance to the population named ``baseline`` (empty without one);
    ``details[name]``: the metric's answers, A_p vs B_p then B_p vs A_p for each partition p,
    ``"oracle"`` being the floor's; ``partitions``: their number K."""

    metric: str
    floor: Estimate
    values: Mapping[str, Estimate]
    minus_floor: Mapping[str, Estimate]
    details: Mapping[str, tuple[Any, Any]]
    n_per_half: int
    n_examples: int
    minus_baseline: Mapping[str, Estimate] = field(default_factory=dict)
    baseline: str | None = None
    partitions: int = 1


def partitions_of(n: int, seed: int = 0, count: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Partitions (A, B) of seeds 0 … n − 1 into halves (n even), each unordered partition once:
    every one of the C(n, n/2)/2 when there are at most ``count`` (default ⌈:data:`PARTITION_MODELS`
    / n⌉), else the first-vs-second half followed by ``count`` − 1 drawn by
    ``numpy.random.default_rng([seed, n])`` (without repeats)."""
    count = max(1, math.ceil(PARTITION_MODELS / n)) if count is None else count
    if n < 2 or n % 2 or count < 1:
        raise ValueError(f"partitions_of needs an even n ≥ 2 and count ≥ 1, got n={n}, count={count}")
    seeds = np.arange(n)
    first = (seeds[: n // 2], seeds[n // 2:])
    if math.comb(n, n // 2) // 2 <= count:  # all of them: the halves holding seed 0, from combinations
        return [(np.array(a), np.setdiff1d(seeds, a)) for a in combinations(range(n), n // 2) if a[0] == 0]
    rng, out, seen = np.random.default_rng([seed, n]), [first], {tuple(first[0])}
    while len(out) < count:
        a = np.sort(rng.permutation(n)[: n // 2])
        if a[0] != 0:  # name each unordered partition by its half that holds seed 0
            a = np.setdiff1d(seeds, a)
        if tuple(a) not in seen:
            seen.add(tuple(a))
            out.append((a, np.setdiff1d(seeds, a)))
    return out


def halves(metric: str, oracle: Any, populations: Mapping[str, Any], *, n_boot: int = 1000,
           confidence: float = 0.95, seed: int = 0, baseline: str | None = None,
           partitions: int | None = None) -> Halves:
    """Split-halves comparison of ``populations`` (e.g. ``{"unlearned": U, "original": P}``, each
    ``[N, S]``, row i = model seed i, as ``oracle``) with the oracles, at equal sizes on disjoint seeds.

    For the partitions (A_p, B_p), p = 1 … K, of the seeds into halves (:func:`partitions_of`;
    K = ``partitions``, default ⌈:data:`PARTITION_MODELS` / N⌉), metric m and population X:
    value(X) = (1/K) Σ_p ½·(m(X_{A_p}, O_{B_p}) + m(X_{B_p}, O_{A_p})); floor = value(O) (oracles
    vs oracles). Seed i's unlearned model shares its initialisation with oracle i; the halves never
    pair them. CIs: percentiles of ``n_boot`` resamples of the examples
    (``numpy.random.default_rng(seed)``), every statistic on the same resamples; each metric's fits
    stay those of all examples (a pooled variance moves by O(1/S) with the resample). They cover
    the examples, not the models: the partitions average out which models share a half, but the
    models themselves are the task's seeds. ``baseline`` names one of ``populations`` (the
    original, say) that every other is also compared with: value(X) − value(baseline), paired on
    the same resamples.
    """
    spec = CROSS_SEED_METRICS.get(metric)
    if n_boot < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"halves needs n_boot ≥ 1 and confidence in (0, 1), got {n_boot} and {confidence}")
    if "oracle" in populations:
        raise ValueError("halves: 'oracle' names the floor; give the other populations other names")
    if baseline is not None and baseline not in populations:
        raise ValueError(f"halves: baseline {baseline!r} is not one of the populations {sorted(populations)}")
    O = _matrix(oracle, "halves")
    n, s = O.shape
    if n % 2:
        raise ValueError(f"halves needs an even number of seeds (got {n}): drop one so the halves have equal sizes")
    arrays = {"oracle": O} | {k: _matrix(v, f"halves ({k})") for k, v in populations.items()}
    if any(a.shape != O.shape for a in arrays.values()):
        raise ValueError(f"halves: every population must have the oracle's shape {O.shape}, got "
                         + ", ".join(f"{k} {a.shape}" for k, a in arrays.items()))
    splits = partitions_of(n, seed, partitions)
    details = {k: tuple(r for a, b in splits for r in (spec.fn(x[a], O[b]), spec.fn(x[b], O[a])))
               for k, x in arrays.items()}
    per_example = {k: np.stack([spec.per_example(r) for r in rs]) for k, rs in details.items()}  # [2K, S]
    rng = np.random.default_rng(seed)
    boot = {k: np.empty(n_boot) for k in arrays}
    chunk = max(1, min(128, (1 << 22) // (2 * len(splits) * s)))  # resamples per block: ≤ 32 MB of float64
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, s, size=(min(chunk, n_boot - start), s))
        for k, v in per_example.items():
            boot[k][start:start + len(idx)] = spec.reduce(v[:, idx]).mean(0)
    point = {k: float(spec.reduce(v).mean()) for k, v in per_example.items()}
    q = (100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2)

    def estimate(value: float, draws: np.ndarray) -> Estimate:
        return Estimate(value, *(float(x) for x in np.percentile(draws, q)))

    names = list(populations)
    versus = {k: estimate(point[k] - point[baseline], boot[k] - boot[baseline]) for k in names if k != baseline} if baseline else {}
    return Halves(
        metric, estimate(point["oracle"], boot["oracle"]),
        {k: estimate(point[k], boot[k]) for k in names},
        {k: estimate(point[k] - point["oracle"], boot[k] - boot["oracle"]) for k in names},
        details, n // 2, s, versus, baseline, len(splits),
    )


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _matrix(x: Any, where: str) -> np.ndarray:
    x = _numpy(x).astype(np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{where} needs φ as [models, examples], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{where} got non-finite φ: compute it with bench.crossseed.phi from finite logits")
    return x


def _check_pair(U: Any, O: Any, where: str, *, minimum: int, equal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    U, O = _matrix(U, where), _matrix(O, where)
    if U.shape[1] != O.shape[1]:
        raise ValueError(f"{where}: U and O must cover the same examples, got {U.shape[1]} and {O.shape[1]} columns")
    if equal and len(U) != len(O):
        raise ValueError(f"{where} needs as many unlearned as oracle models, got {len(U)} and {len(O)}")
    if min(len(U), len(O)) < minimum:
        raise ValueError(
            f"{where} needs at least {minimum} models per population, got {len(U)} unlearned and {len(O)} "
            f"oracle: train more seeds (split halves need {2 * minimum})"
        )
    return U, O
