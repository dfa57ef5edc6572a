"""Cross-seed per-example attacks (bench.crossseed), each against an independent computation: scipy.stats
for the Gaussian test, populations of known Bayes accuracy, loop-by-loop numpy re-derivations of ε and
KLoM, hand-made distributions with values derived by hand, and the reference functions' outputs
(tests/fixtures/crossseed_golden.npz, see tests/fixtures/README.md)."""
from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import torch
from scipy.stats import norm
from sklearn.metrics import roc_curve

from bench import crossseed as cs
from bench.lookup import UnknownName

GOLDEN = np.load(Path(__file__).parent / "fixtures" / "crossseed_golden.npz")
DELTA = 1e-5


def test_docstring_examples_hold():
    assert doctest.testmod(cs, raise_on_error=False).failed == 0


# ---------------------------------------------------------------- phi

def test_phi_is_log_odds_of_the_true_class():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4, 25, 7))
    labels = rng.integers(0, 7, size=(4, 25))
    p = scipy.special.softmax(logits, axis=-1)
    p_y = np.take_along_axis(p, labels[..., None], -1)[..., 0]
    expected = np.log(p_y) - np.log(p.sum(-1) - p_y)
    np.testing.assert_allclose(cs.phi(logits, labels), expected, rtol=1e-9, atol=1e-9)
    as_torch = cs.phi(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels))
    np.testing.assert_allclose(as_torch, expected, atol=1e-5)


def test_phi_stays_exact_where_probabilities_underflow():
    logits = np.array([[1000.0, 0.0, 0.0], [0.0, 800.0, 800.0]])
    np.testing.assert_allclose(cs.phi(logits, np.array([0, 0])), [1000.0 - math.log(2), -800.0 - math.log(2)])


def test_phi_matches_the_competition_code():
    np.testing.assert_allclose(cs.phi(GOLDEN["phi_logits"], GOLDEN["phi_labels"]), GOLDEN["phi_ref"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("logits, labels, match", [
    (np.zeros((3, 4)), np.array([0, 4, 1]), r"labels in \[0, 4\)"),
    (np.zeros((3, 1)), np.array([0, 0, 0]), "K ≥ 2"),
    (np.zeros((3, 4)), np.array([0, 1]), "leading shape"),
    (np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]), "integer labels"),
    (np.full((1, 3), np.nan), np.array([0]), "non-finite"),
])
def test_phi_refuses_bad_input(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        cs.phi(logits, labels)


# ---------------------------------------------------------------- ulira

def ulira_by_loops(U: np.ndarray, O: np.ndarray, variance: str) -> tuple[np.ndarray, np.ndarray]:
    """Λ of every held-out model, fitting each Gaussian from scratch with scipy.stats.norm."""
    def fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        var = x.var(0, ddof=1)
        return x.mean(0), np.full_like(var, var.mean()) if variance == "pooled" else var

    def score(j: int, own: np.ndarray, other: np.ndarray, own_is_u: bool) -> np.ndarray:
        m_own, v_own = fit(np.delete(own, j, axis=0))
        m_other, v_other = fit(other)
        x = own[j]
        lu = norm.logpdf(x, m_own, np.sqrt(v_own)) if own_is_u else norm.logpdf(x, m_other, np.sqrt(v_other))
        lo = norm.logpdf(x, m_other, np.sqrt(v_other)) if own_is_u else norm.logpdf(x, m_own, np.sqrt(v_own))
        return lu - lo

    return (np.stack([score(j, U, O, True) for j in range(len(U))]),
            np.stack([score(j, O, U, False) for j in range(len(O))]))


@pytest.mark.parametrize("variance", ["pooled", "per_example"])
def test_ulira_scores_match_scipy(variance):
    rng = np.random.default_rng(1)
    U = rng.normal(0.5, 1.3, size=(6, 9)) + np.arange(9)
    O = rng.normal(0.0, 0.8, size=(5, 9)) + np.arange(9)
    result = cs.ulira(U, O, variance=variance)
    su, so = ulira_by_loops(U, O, variance)
    np.testing.assert_allclose(result.scores_unlearned, su, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(result.scores_oracle, so, rtol=1e-10, atol=1e-10)
    right = (su > 0).sum() + (so <= 0).sum()
    assert result.accuracy == pytest.approx(right / (su.size + so.size))
    assert result.variance == variance


def test_ulira_tpr_at_fpr_matches_roc_curve():
    rng = np.random.default_rng(2)
    mu = rng.normal(size=400)
    result = cs.ulira(mu + 2.0 + rng.normal(size=(10, 400)), mu + rng.normal(size=(10, 400)))
    scores = np.concatenate([result.scores_unlearned.ravel(), result.scores_oracle.ravel()])
    truth = np.r_[np.ones(result.scores_unlearned.size), np.zeros(result.scores_oracle.size)]
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    assert result.tpr_at_fpr == pytest.approx(tpr[fpr <= 0.01].max())
    assert 0.0 < result.tpr_at_fpr < 1.0


@pytest.mark.parametrize("d", [0.5, 1.0, 2.0])
def test_ulira_approaches_the_bayes_accuracy(d):
    """U ~ N(μ_s + d, 1), O ~ N(μ_s, 1): the Bayes accuracy is Φ(d/2), and the pooled-variance test with
    64 models a side is a plug-in of it. Tolerance: the plug-in's shortfall is second order in the
    estimation error, ≲ 0.1/n (measured 0.014 at n = 8, 0.0008 at n = 64), plus 4 standard errors of the
    accuracy over 4,000 examples (≈ 0.001 with the decisions of one example sharing its fits)."""
    n, S = 64, 4000
    rng = np.random.default_rng(3)
    mu = rng.normal(scale=3.0, size=S)
    result = cs.ulira(mu + d + rng.normal(size=(n, S)), mu + rng.normal(size=(n, S)))
    assert result.variance == "per_example"  # auto from 32 a side; refit pooled below
    pooled = cs.ulira(mu + d + rng.normal(size=(n, S)), mu + rng.normal(size=(n, S)), variance="pooled")
    assert abs(pooled.accuracy - norm.cdf(d / 2)) < 0.1 / n + 0.004
    assert pooled.accuracy < norm.cdf(d / 2) + 0.004  # no rule beats Bayes beyond noise


def test_ulira_tpr_approaches_the_gaussian_value():
    """Equal variances: Λ is the same increasing function of φ − μ_s on every example, so the pooled
    decisions have the ROC of N(d, 1) vs N(0, 1): TPR at 1 % FPR = 1 − Φ(Φ⁻¹(0.99) − d). 128 models a
    side; tolerance: measured shortfall 0.003, SE ≈ 0.002."""
    n, S, d = 128, 3000, 2.0
    rng = np.random.default_rng(4)
    mu = rng.normal(scale=3.0, size=S)
    result = cs.ulira(mu + d + rng.normal(size=(n, S)), mu + rng.normal(size=(n, S)), variance="pooled")
    assert result.tpr_at_fpr == pytest.approx(1 - norm.cdf(norm.ppf(0.99) - d), abs=0.012)


def test_ulira_per_example_variances_reach_bayes_when_spreads_differ():
    """U ~ N(μ_s, (2σ_s)²), O ~ N(μ_s, σ_s²) with σ_s log-uniform on [0.3, 3]: Bayes decides |x − μ_s| > t σ_s,
    t² = 2r² ln r / (r² − 1), r = 2, accuracy ½[(2Φ(t) − 1) + 2(1 − Φ(t/r))] on every example. Per-example
    variances from 128 models reach it (shortfall ≲ 0.3/n, measured 0.001); one pooled variance cannot."""
    n, S, r = 128, 4000, 2.0
    rng = np.random.default_rng(5)
    mu, sigma = rng.normal(scale=3.0, size=S), np.exp(rng.uniform(np.log(0.3), np.log(3.0), size=S))
    U, O = mu + r * sigma * rng.normal(size=(n, S)), mu + sigma * rng.normal(size=(n, S))
    t = math.sqrt(2 * r * r * math.log(r) / (r * r - 1))
    bayes = 0.5 * ((2 * norm.cdf(t) - 1) + 2 * (1 - norm.cdf(t / r)))
    assert cs.ulira(U, O).accuracy == pytest.approx(bayes, abs=0.3 / n + 0.002)
    assert cs.ulira(U, O, variance="pooled").accuracy < bayes - 0.03


def test_ulira_of_identical_populations_is_chance():
    """Tolerance: the held-out model's population is fitted from one model fewer, a downward bias ≲ 0.1/n
    (measured 0.0023 at n = 32), plus 4 standard errors (≈ 0.002 over 4,000 examples)."""
    n, S = 32, 4000
    rng = np.random.default_rng(6)
    mu = rng.normal(scale=3.0, size=S)
    result = cs.ulira(mu + rng.normal(size=(n, S)), mu + rng.normal(size=(n, S)))
    assert abs(result.accuracy - 0.5) < 0.1 / n + 0.008
    assert result.tpr_at_fpr == pytest.approx(0.01, abs=0.006)


def test_ulira_chooses_its_variance_from_the_population_sizes():
    rng = np.random.default_rng(7)
    small = cs.ulira(rng.normal(size=(cs.PER_EXAMPLE_VARIANCE_FROM - 1, 5)), rng.normal(size=(40, 5)))
    large = cs.ulira(rng.normal(size=(cs.PER_EXAMPLE_VARIANCE_FROM, 5)), rng.normal(size=(40, 5)))
    assert (small.variance, large.variance) == ("pooled", "per_example")


@pytest.mark.parametrize("U, O, kwargs, match", [
    (np.zeros((2, 5)), np.zeros((4, 5)), {}, "at least 3 models"),
    (np.zeros((4, 5)), np.zeros((4, 6)), {}, "same examples"),
    (np.zeros((4, 5)), np.zeros((4, 5)), {"variance": "global"}, "variance must be"),
    (np.zeros((4, 5)), np.zeros((4, 5)), {"fpr": 0.0}, "fpr must be"),
    (np.full((4, 5), np.inf), np.zeros((4, 5)), {}, "non-finite"),
    (np.zeros(5), np.zeros((4, 5)), {}, r"\[models, examples\]"),
])
def test_ulira_refuses_bad_input(U, O, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cs.ulira(U, O, **kwargs)


# ---------------------------------------------------------------- eps_quality

def eps_by_loops(U: np.ndarray, O: np.ndarray, delta: float, *, double: bool = True, buffer: float = 2.0) -> np.ndarray:
    """ε per example from the definition, one example at a time: one-threshold cuts between the distinct
    values (and beyond both ends); two-threshold rules by a sweep of r over [M − 2, M + 2] at every
    point where the caught set can change (a sample, a sample + w ± 2, the ends) and between them,
    and for each r every l in [r − w − 2, r − w + 2] that catches a different set; each distinct
    (FPR, FNR) pair's ε by math.log. ``double=False``: one-threshold rules only."""
    out = []
    for s in range(U.shape[1]):
        u, o = U[:, s], O[:, s]
        pos, neg = (o, u) if np.median(o) > np.median(u) else (u, o)
        if min(np.ptp(pos), np.ptp(neg)) < 0.01 * max(np.ptp(pos), np.ptp(neg)):
            out.append(50.0)
            continue
        v = np.unique(np.r_[pos, neg])
        cuts = np.r_[v[0] - 1, (v[1:] + v[:-1]) / 2, v[-1] + 1]
        rates = {(np.mean(neg > t), np.mean(pos <= t)) for t in cuts}
        peaky, other = (pos, neg) if np.ptp(pos) < np.ptp(neg) else (neg, pos)
        m, w, b = peaky.max(), np.ptp(peaky), buffer
        critical = np.unique(np.r_[v, v + w - b, v + w + b, m - b, m + b])
        critical = critical[(critical >= m - b) & (critical <= m + b)]
        for r in np.unique(np.r_[critical, (critical[1:] + critical[:-1]) / 2]) if double else ():
            lows = np.r_[r - w - b, r - w + b, v[(v >= r - w - b) & (v <= r - w + b)]][:, None]
            caught_p = ((peaky >= lows) & (peaky <= r)).mean(1)
            caught_o = ((other >= lows) & (other <= r)).mean(1)
            rates |= set(zip(caught_o, 1 - caught_p))
        best = 0.0
        for fpr, fnr in rates:
            if fpr == 0 and fnr == 0:
                best = math.inf
            elif fpr > 0 and fnr > 0:
                terms = [math.log(1 - delta - a) - math.log(b) for a, b in ((fpr, fnr), (fnr, fpr)) if 1 - delta - a > 0]
                best = max([best, *terms])
        out.append(min(best, 50.0))
    return np.array(out)


def test_eps_matches_its_definition_by_loops():
    rng = np.random.default_rng(8)
    S = 20
    # multiples of 1/8: ties, and every sum and difference exact, so both sides agree on each boundary
    U = np.round(8 * (rng.normal(size=(32, S)) * rng.uniform(0.3, 2.5, S) + rng.uniform(-1, 1, S))) / 8
    O = np.round(8 * rng.normal(size=(32, S)) * 1.5) / 8
    U[:, 0] = 0.25  # degenerate unlearned population → cap
    U[:, 1], O[:, 1] = 2.0, 2.0  # one value both: nothing tells them apart → 0
    U[:, 2], O[:, 2] = 2.0, 1.0  # separable → cap
    O[:, 3] = np.linspace(-5, 5, 32)
    U[:, 3] = np.linspace(-0.5, 0.5, 32)  # peaky inside wide: the two-threshold rule wins
    O[:, 4] = np.arange(32.0)
    U[:, 4] = np.r_[0.0, 31.0, 15.0 + np.arange(30) / 32]  # equal ranges: the smaller median gets the intervals
    # a cluster of U on [0, 0.45] with one O inside, O right above, and U's range 3.33 asking for intervals of
    # length ≥ 1.33: only l stretched into the gap down to the O at −1 catches the cluster alone (ε = log 30;
    # the next best, log 29, also catches U at −2.75 and O at −2 and −1)
    U[:, 5] = np.r_[np.arange(30) / 64, -2.75, -2.875]
    O[:, 5] = np.r_[0.25, -1.0, -2.0, 0.5 + np.arange(1, 16) / 8, -3.0 - np.arange(14) / 4]
    result = cs.eps_quality(U, O)
    expected = eps_by_loops(U, O, DELTA)
    np.testing.assert_allclose(result.epsilons, expected, rtol=1e-12)
    assert expected[:3].tolist() == [50.0, 0.0, 50.0] and expected[5] == pytest.approx(math.log(30 - 32 * DELTA))
    assert eps_by_loops(U[:, 3:4], O[:, 3:4], DELTA, double=False)[0] < expected[3] - 0.5  # needs both rules
    assert (eps_by_loops(U, O, DELTA, buffer=1e6) > expected + 0.1).sum() >= 2  # and the ±2 limits


def test_eps_of_shifted_integers_by_hand():
    """O = {0, …, 31}, U = O + k. For 0 < k ≤ 30 the best rule cuts just above k: FPR = (31 − k)/32,
    FNR = 1/32, ε_k = log(1 − δ − FPR) − log FNR = log(k + 1 − 32δ) (or its mirror image). At k = 31 the
    samples meet at 31 only: every single cut has FPR or FNR zero, and the interval [1, 31] around the
    (equally peaky) oracles has FPR = FNR = 1/32: ε = log(31 − 32δ). k = 0: ε = 0; k = 32: separable, the
    cap. N = 32: ⌈ln 31⌉ = 4, 8 bins of 0.5; 2^(1−bin) points, none beyond."""
    ks = np.array([0, 1, 2, 4, 8, 16, 30, 31, 32])
    O = np.tile(np.arange(32.0)[:, None], (1, len(ks)))
    result = cs.eps_quality(O + ks, O)
    expected = [0.0, *(math.log(k + 1 - 32 * DELTA) for k in ks[1:-2]), math.log(31 - 32 * DELTA), cs.EPSILON_CAP]
    np.testing.assert_allclose(result.epsilons, expected, rtol=1e-12)
    points = [1, 1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 64, 0]
    np.testing.assert_array_equal(result.points, points)
    assert result.n_bins == 8 and result.value == pytest.approx(np.mean(points))


@pytest.mark.parametrize("n, bins", [(32, 8), (55, 8), (56, 10), (512, 14)])  # ⌈ln 54⌉ = 4, ⌈ln 55⌉ = 5
def test_eps_bins_grow_with_the_number_of_models(n, bins):
    rng = np.random.default_rng(9)
    assert cs.eps_quality(rng.normal(size=(n, 3)), rng.normal(size=(n, 3))).n_bins == bins


@pytest.mark.parametrize("case", ["eps", "eps_wide"])
def test_eps_matches_the_competition_code(case):
    """Values on lattices (steps 0.025 and 1/32, spans 1.6 and about 6) coarser than the competition's
    threshold grids (steps ≈ 0.01): its grids catch every set of samples its rules can, as ours do."""
    result = cs.eps_quality(GOLDEN[f"{case}_u"], GOLDEN[f"{case}_o"])
    np.testing.assert_allclose(result.epsilons, GOLDEN[f"{case}_ref"], rtol=1e-6)  # theirs: float32 rates
    assert result.value == pytest.approx(float(GOLDEN[f"{case}_score_ref"]), abs=1e-12)


@pytest.mark.parametrize("nu, no, match", [(31, 31, "at least 32"), (32, 33, "as many unlearned")])
def test_eps_refuses_too_few_or_unequal_models(nu, no, match):
    with pytest.raises(ValueError, match=match):
        cs.eps_quality(np.zeros((nu, 4)), np.zeros((no, 4)))


# ---------------------------------------------------------------- klom_p95

def klom_by_loops(U: np.ndarray, O: np.ndarray) -> np.ndarray:
    out = []
    for s in range(U.shape[1]):
        u, o = np.clip(U[:, s], -100, 100), np.clip(O[:, s], -100, 100)
        lo, hi = min(u.min(), o.min()), max(u.max(), o.max())
        hi = hi if hi > lo else lo + 1
        p = np.histogram(u, bins=20, range=(lo, hi))[0] / len(u)
        q = np.histogram(o, bins=20, range=(lo, hi))[0] / len(o)
        out.append(sum(p[b] * math.log(p[b] / max(q[b], 1e-5)) for b in range(20) if p[b] > 0))
    return np.array(out)


def test_klom_matches_np_histogram_by_loops():
    rng = np.random.default_rng(10)
    U = rng.normal(size=(40, 30)) * rng.uniform(0.3, 3, 30) + rng.uniform(-2, 2, 30)
    O = rng.normal(size=(36, 30))
    U[:, 0] *= 300.0  # clipped
    U[:, 1], O[:, 1] = 4.0, 4.0  # zero range
    U[:5, 2] = O[:, 2].max()  # ties on the last edge
    result = cs.klom_p95(U, O)
    expected = klom_by_loops(U, O)
    np.testing.assert_allclose(result.kl, expected, rtol=1e-12, atol=1e-15)
    assert result.value == pytest.approx(np.percentile(expected, 95))


def test_klom_by_hand():
    """Same samples: KL = 0. U all at the bottom, O all at the top: p = q_floor's bin, KL = log(1/1e-5).
    U in the bottom bin, O half there half at the top: KL = log 2."""
    O = np.r_[np.zeros(16), np.ones(16)]
    cols_u = [O, np.zeros(32), np.zeros(32)]
    cols_o = [O, np.ones(32), O]
    result = cs.klom_p95(np.stack(cols_u, 1), np.stack(cols_o, 1))
    np.testing.assert_allclose(result.kl, [0.0, math.log(1e5), math.log(2)], atol=1e-12)


def test_klom_kl_matches_easydub_on_easydub_counts():
    """EasyDUB counts with np.digitize over bins 1..20, leaving the samples equal to the joint maximum out;
    on those counts our KL (floor, no renormalisation) gives their numbers. Ours counts every sample."""
    U, O = (np.clip(GOLDEN[k], -100, 100) for k in ("klom_u", "klom_o"))
    lo, hi = np.minimum(U.min(0), O.min(0)), np.maximum(U.max(0), O.max(0))
    hi = np.where(hi > lo, hi, lo + 1)

    def counts(x: np.ndarray) -> np.ndarray:
        return np.stack([[np.sum(np.digitize(x[:, s], np.linspace(lo[s], hi[s], 21)) == i) for i in range(1, 21)]
                         for s in range(x.shape[1])])

    np.testing.assert_allclose(cs.kl_from_counts(counts(U), counts(O)), GOLDEN["klom_ref"], rtol=1e-10, atol=1e-12)
    ours = cs.klom_p95(GOLDEN["klom_u"], GOLDEN["klom_o"])
    np.testing.assert_allclose(ours.kl, klom_by_loops(GOLDEN["klom_u"], GOLDEN["klom_o"]), rtol=1e-12)


def test_klom_refuses_fewer_than_32_models():
    with pytest.raises(ValueError, match="at least 32"):
        cs.klom_p95(np.zeros((32, 3)), np.zeros((31, 3)))


# ---------------------------------------------------------------- halves

def populations(n: int, S: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(oracle, original, oracle-like 'unlearned') φ: the original sits ``shift`` above on every example."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(scale=2.0, size=S)
    return (mu + rng.normal(size=(n, S)), mu + shift + rng.normal(size=(n, S)), mu + rng.normal(size=(n, S)))


def test_halves_value_is_the_mean_over_the_swap():
    oracle, original, unlearned = populations(16, 300, 0.8, 11)
    h = cs.halves("ulira_accuracy", oracle, {"original": original, "unlearned": unlearned}, n_boot=200, partitions=1)
    a, b = slice(0, 8), slice(8, 16)
    for name, x in (("original", original), ("unlearned", unlearned)):
        direct = (cs.ulira(x[a], oracle[b]).accuracy + cs.ulira(x[b], oracle[a]).accuracy) / 2
        assert h.values[name].value == pytest.approx(direct)
        assert h.minus_floor[name].value == pytest.approx(direct - h.floor.value)
    floor = (cs.ulira(oracle[a], oracle[b]).accuracy + cs.ulira(oracle[b], oracle[a]).accuracy) / 2
    assert h.floor.value == pytest.approx(floor)
    assert h.details["oracle"][0].variance == "pooled" and (h.n_per_half, h.n_examples, h.partitions) == (8, 300, 1)


def test_halves_average_over_partitions_by_hand():
    oracle, original, _ = populations(16, 300, 0.8, 11)
    h = cs.halves("ulira_accuracy", oracle, {"original": original}, n_boot=50)
    splits = cs.partitions_of(16)
    assert h.partitions == len(splits) == math.ceil(cs.PARTITION_MODELS / 16)
    for name, x in (("original", original), ("oracle", oracle)):
        direct = np.mean([(cs.ulira(x[a], oracle[b]).accuracy + cs.ulira(x[b], oracle[a]).accuracy) / 2 for a, b in splits])
        assert (h.floor if name == "oracle" else h.values[name]).value == pytest.approx(direct)


def test_partitions_are_distinct_disjoint_halves_and_all_of_them_when_few():
    for n in (6, 8, 16, 64):
        splits = cs.partitions_of(n, seed=3)
        assert len(splits) == min(math.comb(n, n // 2) // 2, math.ceil(cs.PARTITION_MODELS / n))
        assert [a.tolist() for a in splits[0]] == [list(range(n // 2)), list(range(n // 2, n))]
        names = set()
        for a, b in splits:
            assert len(a) == len(b) == n // 2 and sorted(np.concatenate([a, b]).tolist()) == list(range(n))
            assert 0 in a  # each unordered partition named once, by the half with seed 0
            names.add(tuple(a))
        assert len(names) == len(splits)
    assert len(cs.partitions_of(6)) == 10  # C(6, 3) / 2: every one
    assert [a.tolist() for a, _ in cs.partitions_of(16, seed=1)] == [a.tolist() for a, _ in cs.partitions_of(16, seed=1)]
    assert [a.tolist() for a, _ in cs.partitions_of(16, seed=1)] != [a.tolist() for a, _ in cs.partitions_of(16, seed=2)]
    with pytest.raises(ValueError, match="even n"):
        cs.partitions_of(7)


def test_one_partition_is_noisier_than_their_average():
    """The reason for averaging: with a model-level offset (one model more confident on every
    example) the floor of a single partition strays from ½ far more than the average does."""
    rng = np.random.default_rng(21)
    S, n = 400, 16
    mu = rng.normal(scale=2.0, size=S)
    singles, averaged = [], []
    for trial in range(12):
        oracle = mu + rng.normal(scale=0.6, size=(n, 1)) + rng.normal(size=(n, S))
        singles.append(cs.halves("ulira_accuracy", oracle, {}, n_boot=1, partitions=1, seed=trial).floor.value)
        averaged.append(cs.halves("ulira_accuracy", oracle, {}, n_boot=1, seed=trial).floor.value)
    assert np.std(averaged) < 0.6 * np.std(singles)


def test_halves_separate_signal_from_floor():
    oracle, original, unlearned = populations(16, 2000, 0.6, 12)
    h = cs.halves("ulira_accuracy", oracle, {"original": original, "unlearned": unlearned}, n_boot=400)
    assert abs(h.floor.value - 0.5) < 0.02 and h.floor.low < h.floor.value < h.floor.high
    assert h.minus_floor["original"].low > 0.03  # Φ(0.3) − ½ ≈ 0.118 before the plug-in's shortfall
    assert h.minus_floor["unlearned"].low < 0 < h.minus_floor["unlearned"].high


def test_halves_bootstrap_width_is_that_of_a_mean_over_examples():
    """Resampling examples: the CI of a mean of S per-example values is ≈ ±1.96·sd/√S."""
    oracle, original, _ = populations(16, 3000, 0.6, 13)
    h = cs.halves("ulira_accuracy", oracle, {"original": original}, n_boot=2000)
    per_example = np.mean([r.per_example for r in h.details["original"]], axis=0)
    expected = 2 * norm.ppf(0.975) * per_example.std(ddof=1) / math.sqrt(len(per_example))
    assert h.values["original"].high - h.values["original"].low == pytest.approx(expected, rel=0.1)


def test_halves_are_deterministic_in_their_seed():
    oracle, original, _ = populations(8, 200, 0.5, 14)
    run = lambda seed: cs.halves("ulira_accuracy", oracle, {"original": original}, n_boot=300, seed=seed)
    assert run(1).values == run(1).values and run(1).values != run(2).values


def test_halves_of_the_nonparametric_metrics():
    oracle, original, _ = populations(64, 150, 3.0, 15)
    eps = cs.halves("eps_quality", oracle, {"original": original}, n_boot=200)
    klom = cs.halves("klom_p95", oracle, {"original": original}, n_boot=200)
    assert eps.minus_floor["original"].high < 0  # forgetting quality: lower when distinguishable
    assert klom.minus_floor["original"].low > 0
    direct = np.mean([np.percentile(r.kl, 95) for r in klom.details["original"]])
    assert klom.values["original"].value == pytest.approx(direct)


@pytest.mark.parametrize("n, populations_, match", [
    (15, {"u": np.zeros((15, 4))}, "even number"),
    (16, {"u": np.zeros((14, 4))}, "oracle's shape"),
    (16, {"oracle": np.zeros((16, 4))}, "names the floor"),
    (4, {"u": np.zeros((4, 4))}, "at least 3 models per population"),
])
def test_halves_refuse_bad_input(n, populations_, match):
    with pytest.raises(ValueError, match=match):
        cs.halves("ulira_accuracy", np.zeros((n, 4)), populations_)


def test_halves_of_an_unknown_metric_name_the_valid_ones():
    with pytest.raises(UnknownName, match="ulira_accuracy"):
        cs.halves("ulira_acuracy", np.zeros((8, 4)), {})


def test_nonparametric_halves_refuse_16_seeds():
    oracle, original, _ = populations(16, 10, 0.5, 16)
    with pytest.raises(ValueError, match="at least 32 models per population.*split halves need 64"):
        cs.halves("eps_quality", oracle, {"original": original})
