"""Metrics and membership-inference attacks, each checked against an independent computation
(scikit-learn, scipy) on fixed inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from scipy.spatial.distance import jensenshannon
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.svm import SVC

from bench import metrics, mia
from bench.data import seed_stream
from bench.metrics import METRICS, THREADED_METRICS, Evaluation, SplitLogits, compute_metrics


# ---------------------------------------------------------------- helpers

def random_split(n: int, k: int, seed: int, *, scale: float = 2.0, classes: list[int] | None = None) -> SplitLogits:
    rng = np.random.default_rng(seed)
    labels = rng.choice(classes if classes is not None else k, size=n)
    logits = rng.normal(scale=scale, size=(n, k))
    logits[np.arange(n), labels] += rng.normal(1.0, 1.0, size=n)  # better than chance, not perfect
    return SplitLogits(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64))


def confident_split(n: int, k: int, seed: int, *, margin: float) -> SplitLogits:
    """Logits whose true class leads by about ``margin``: large margin = member-like (high p_y, low H)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(scale=0.3, size=(n, k))
    logits[np.arange(n), labels] += margin + rng.normal(scale=0.3, size=n)
    return SplitLogits(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64))


def make_eval(*, forget_classes: tuple[int, ...] = (), with_forget_test: bool = False, k: int = 4) -> Evaluation:
    kept = [c for c in range(k) if c not in forget_classes]
    forget = random_split(40, k, 1, classes=list(forget_classes) or None)
    retain = random_split(200, k, 2, classes=kept)
    test = random_split(120, k, 3)
    if forget_classes:
        # the model has unlearned the forgotten classes: never predicts them on D_ft
        gone = torch.isin(test.labels, torch.tensor(forget_classes))
        logits = test.logits.clone()
        logits[gone] = -10.0
        logits[gone, (test.labels[gone] + 1) % k] = 10.0
        test = SplitLogits(logits, test.labels)
    forget_test = None
    if with_forget_test:
        gone = torch.isin(test.labels, torch.tensor(forget_classes))
        forget_test = SplitLogits(test.logits[gone], test.labels[gone])
    return Evaluation(
        forget=forget, retain=retain, test=test, forget_test=forget_test,
        oracle_forget=random_split(40, k, 4), forget_classes=forget_classes, seed=7,
        runtime_seconds=2.5, oracle_seconds=40.0,
    )


def sk_accuracy(split: SplitLogits) -> float:
    return accuracy_score(split.labels.numpy(), split.logits.numpy().argmax(1))


def scipy_losses(split: SplitLogits) -> np.ndarray:
    log_p = scipy.special.log_softmax(split.logits.numpy().astype(np.float64), axis=1)
    return -log_p[np.arange(len(split)), split.labels.numpy()]


# ---------------------------------------------------------------- accuracies

def test_top1_matches_sklearn_accuracy():
    split = random_split(257, 7, 0)
    value, n = metrics.top1(split)
    assert n == 257
    assert value == pytest.approx(sk_accuracy(split), abs=1e-12)
    assert 0.0 < value < 1.0  # the fixture is neither trivial nor hopeless


def test_top1_empty_split_is_nan():
    value, n = metrics.top1(SplitLogits(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64)))
    assert math.isnan(value) and n == 0


def test_accuracy_metrics_match_sklearn_random_forgetting():
    ev = make_eval()
    assert metrics.forget_accuracy(ev) == (pytest.approx(sk_accuracy(ev.forget), abs=1e-12), 40)
    assert metrics.retain_accuracy(ev) == (pytest.approx(sk_accuracy(ev.retain), abs=1e-12), 200)
    assert metrics.test_accuracy(ev) == (pytest.approx(sk_accuracy(ev.test), abs=1e-12), 120)


def test_test_accuracy_on_class_removal_excludes_forgotten_classes():
    ev = make_eval(forget_classes=(1, 3), with_forget_test=True)
    y = ev.test.labels.numpy()
    keep = ~np.isin(y, [1, 3])
    expected = accuracy_score(y[keep], ev.test.logits.numpy()[keep].argmax(1))
    value, n = metrics.test_accuracy(ev)
    assert n == int(keep.sum()) < len(y)
    assert value == pytest.approx(expected, abs=1e-12)
    assert value > sk_accuracy(ev.test)  # the forgotten classes (all wrong) were really left out
    ft_value, ft_n = metrics.forget_test_accuracy(ev)
    assert ft_n == int((~keep).sum())
    assert ft_value == pytest.approx(accuracy_score(y[~keep], ev.test.logits.numpy()[~keep].argmax(1)), abs=1e-12)
    assert ft_value == 0.0


# ---------------------------------------------------------------- Jensen–Shannon

def test_js_divergence_matches_scipy_squared_distance():
    rng = np.random.default_rng(11)
    a = torch.tensor(rng.normal(scale=3, size=(50, 6)), dtype=torch.float32)
    b = torch.tensor(rng.normal(scale=3, size=(50, 6)), dtype=torch.float32)
    ours = metrics.js_divergence(a, b).numpy()
    p = scipy.special.softmax(a.numpy().astype(np.float64), axis=1)
    q = scipy.special.softmax(b.numpy().astype(np.float64), axis=1)
    expected = np.array([jensenshannon(pi, qi) ** 2 for pi, qi in zip(p, q)])  # natural log by default
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-12)


def test_js_divergence_symmetric_zero_on_identical_bounded_by_ln2():
    rng = np.random.default_rng(12)
    a = torch.tensor(rng.normal(scale=3, size=(30, 5)), dtype=torch.float32)
    b = torch.tensor(rng.normal(scale=3, size=(30, 5)), dtype=torch.float32)
    np.testing.assert_allclose(metrics.js_divergence(a, b).numpy(), metrics.js_divergence(b, a).numpy(), atol=1e-12)
    np.testing.assert_allclose(metrics.js_divergence(a, a).numpy(), 0.0, atol=1e-12)
    disjoint = metrics.js_divergence(torch.tensor([[60.0, -60.0]]), torch.tensor([[-60.0, 60.0]])).item()
    assert disjoint <= math.log(2) + 1e-12
    assert disjoint == pytest.approx(math.log(2), abs=1e-9)
    assert (metrics.js_divergence(a, b) <= math.log(2) + 1e-12).all()


def test_js_to_oracle_is_mean_over_forget_set():
    ev = make_eval()
    p = scipy.special.softmax(ev.forget.logits.numpy().astype(np.float64), axis=1)
    q = scipy.special.softmax(ev.oracle_forget.logits.numpy().astype(np.float64), axis=1)
    expected = np.mean([jensenshannon(pi, qi) ** 2 for pi, qi in zip(p, q)])
    value, n = metrics.js_to_oracle(ev)
    assert n == 40 and value == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- per-example loss

def test_per_example_loss_matches_scipy_and_sklearn_log_loss():
    split = random_split(90, 5, 21, scale=4.0)
    ours = mia.per_example_loss(split.logits, split.labels)
    assert ours.dtype == np.float64 and ours.shape == (90,)
    np.testing.assert_allclose(ours, scipy_losses(split), rtol=1e-10)
    probs = scipy.special.softmax(split.logits.numpy().astype(np.float64), axis=1)
    assert ours.mean() == pytest.approx(log_loss(split.labels.numpy(), probs, labels=range(5)), rel=1e-9)


def test_per_example_loss_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="labels must lie"):
        mia.per_example_loss(torch.zeros(3, 4), torch.tensor([0, 1, 4]))


# ---------------------------------------------------------------- balanced subsample

@pytest.mark.parametrize("sizes", [(30, 80), (80, 30), (25, 25)])
def test_balanced_subsample_sizes_membership_and_determinism(sizes):
    rng = np.random.default_rng(31)
    a, b = rng.normal(size=sizes[0]), rng.normal(size=sizes[1]) + 10.0
    n = min(sizes)
    sa, sb = mia.balanced_subsample(a, b, seed=3, purpose="x")
    assert len(sa) == len(sb) == n
    for original, sub in ((a, sa), (b, sb)):
        if len(original) == n:
            np.testing.assert_array_equal(sub, original)  # the smaller side is untouched
        else:
            assert len(np.unique(sub)) == n and np.isin(sub, original).all()  # without replacement
    again = mia.balanced_subsample(a, b, seed=3, purpose="x")
    np.testing.assert_array_equal(again[0], sa)
    np.testing.assert_array_equal(again[1], sb)
    if sizes[0] != sizes[1]:
        larger = 0 if sizes[0] > sizes[1] else 1
        other_seed = mia.balanced_subsample(a, b, seed=4, purpose="x")[larger]
        other_purpose = mia.balanced_subsample(a, b, seed=3, purpose="y")[larger]
        assert not np.array_equal(other_seed, (sa, sb)[larger])
        assert not np.array_equal(other_purpose, (sa, sb)[larger])


# ---------------------------------------------------------------- loss-threshold AUC

def test_loss_auc_matches_mann_whitney_u_on_every_image():
    rng = np.random.default_rng(41)
    members = np.round(rng.gamma(1.0, 0.3, size=60), 1)  # rounded: plenty of ties
    nonmembers = np.round(rng.gamma(1.5, 0.5, size=150), 1)
    auc, n = mia.loss_auc(members, nonmembers)
    assert n == 210  # every image, unequal sides
    u = scipy.stats.mannwhitneyu(-members, -nonmembers, alternative="two-sided").statistic  # U of the members' scores
    assert auc == pytest.approx(u / (60 * 150), abs=1e-12)
    assert auc > 0.6  # members have lower losses here


def test_loss_auc_extremes_and_chance():
    low, high = np.linspace(0.0, 0.1, 20), np.linspace(1.0, 2.0, 35)
    assert mia.loss_auc(low, high)[0] == 1.0
    assert mia.loss_auc(high, low)[0] == 0.0
    assert mia.loss_auc(low, low)[0] == pytest.approx(0.5, abs=1e-12)
    # one distribution, sides 1:9: chance stays at 0.5 without balancing
    rng = np.random.default_rng(42)
    assert mia.loss_auc(rng.gamma(1.2, 0.5, 2000), rng.gamma(1.2, 0.5, 18000))[0] == pytest.approx(0.5, abs=0.02)


# ---------------------------------------------------------------- DLFD / MUFAC CV attack

def hand_cv_accuracy(members: np.ndarray, nonmembers: np.ndarray, seed: int, draw: int = 0) -> float:
    """Draw 0 from the single stream of earlier versions, draw d > 0 from ("cv_attack", "draw<d>")."""
    rng = np.random.default_rng(seed_stream(seed, "mia", "cv_attack", *([f"draw{draw}"] if draw else [])))
    nm = nonmembers[np.sort(rng.choice(len(nonmembers), size=len(members), replace=False))]  # members: the smaller side
    m = members
    x = np.concatenate([m, nm]).reshape(-1, 1)
    y = np.r_[np.ones(len(m)), np.zeros(len(nm))]
    purpose = ("cv_attack", f"draw{draw}") if draw else ("cv_attack",)
    splits = StratifiedShuffleSplit(n_splits=10, random_state=seed_stream(seed, "mia", *purpose, "splits") % 2**32)
    accs = []
    for train, test in splits.split(x, y):
        model = LogisticRegression().fit(x[train], y[train])
        accs.append(np.mean(model.predict(x[test]) == y[test]))
    return float(np.mean(accs))


def test_cv_attack_accuracy_matches_hand_written_loop():
    rng = np.random.default_rng(51)
    members, nonmembers = rng.gamma(1.0, 0.4, size=120), rng.gamma(1.6, 0.5, size=300)
    acc, n = mia.cv_attack_accuracy(members, nonmembers, seed=9)
    assert n == 240
    assert acc == pytest.approx(hand_cv_accuracy(members, nonmembers, 9), abs=1e-12)
    assert 0.5 < acc < 1.0
    for draw in (1, 5):
        assert mia.cv_attack_accuracy(members, nonmembers, seed=9, draw=draw)[0] == pytest.approx(
            hand_cv_accuracy(members, nonmembers, 9, draw), abs=1e-12)


def test_draws_mean_sd_and_determinism():
    d = mia.Draws((0.2, 0.4, 0.9), 50)
    assert d.mean == pytest.approx(0.5) and d.sd == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert mia.Draws((0.3,), 5).sd == 0.0
    seen = []
    got = mia.over_draws(lambda k: (seen.append(k) or 0.25 * k, 7), draws=4)
    assert seen == [0, 1, 2, 3] and got == mia.Draws((0.0, 0.25, 0.5, 0.75), 7)
    with pytest.raises(ValueError, match="at least one draw"):
        mia.over_draws(lambda k: (0.0, 1), draws=0)
    assert mia.draw_purpose("p", 0) == ("p",) and mia.draw_purpose("p", 3) == ("p", "draw3")
    # the draws are different samples, each deterministic in the seed
    labels = np.arange(500) % 5
    picks = [mia.stratified_indices(labels, 100, seed=4, purpose="q", draw=d) for d in range(3)]
    assert not np.array_equal(picks[0], picks[1]) and not np.array_equal(picks[1], picks[2])
    np.testing.assert_array_equal(picks[2], mia.stratified_indices(labels, 100, seed=4, purpose="q", draw=2))
    np.testing.assert_array_equal(picks[0], mia.stratified_indices(labels, 100, seed=4, purpose="q"))


def test_cv_attack_accuracy_chance_and_separated():
    rng = np.random.default_rng(52)
    same_a, same_b = rng.gamma(1.2, 0.5, size=1000), rng.gamma(1.2, 0.5, size=1400)
    chance, _ = mia.cv_attack_accuracy(same_a, same_b, seed=1)
    assert abs(chance - 0.5) < 0.06
    separated, _ = mia.cv_attack_accuracy(rng.uniform(0.0, 0.05, 200), rng.uniform(2.0, 4.0, 300), seed=1)
    assert separated > 0.99


def test_cv_attack_accuracy_small_sets_fail_loudly():
    with pytest.raises(ValueError, match="at least 10 member losses, got 9"):
        mia.cv_attack_accuracy(np.arange(9.0), np.arange(50.0), seed=0)
    with pytest.raises(ValueError, match="at least 10 non-member losses"):
        mia.cv_attack_accuracy(np.arange(50.0), np.arange(3.0), seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        mia.cv_attack_accuracy(np.r_[np.arange(20.0), np.inf], np.arange(50.0), seed=0)


# ---------------------------------------------------------------- SalUn MIA-efficacy

def test_stratified_indices_allocation_and_determinism():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    idx = mia.stratified_indices(labels, 10, seed=0, purpose="p")
    assert np.bincount(labels[idx]).tolist() == [5, 3, 2]
    equal = np.repeat([4, 7, 9], 3)
    idx = mia.stratified_indices(equal, 5, seed=0, purpose="p")
    assert [int((equal[idx] == c).sum()) for c in (4, 7, 9)] == [2, 2, 1]  # remainder ties → smaller label
    rng = np.random.default_rng(61)
    labels = rng.choice(6, size=997, p=[0.4, 0.25, 0.15, 0.1, 0.07, 0.03])
    idx = mia.stratified_indices(labels, 301, seed=2, purpose="p")
    assert len(idx) == 301 == len(np.unique(idx)) and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels, minlength=6)
    got = np.bincount(labels[idx], minlength=6)
    assert np.all(np.abs(got - 301 * counts / len(labels)) < 1)
    np.testing.assert_array_equal(idx, mia.stratified_indices(labels, 301, seed=2, purpose="p"))
    assert not np.array_equal(idx, mia.stratified_indices(labels, 301, seed=3, purpose="p"))
    np.testing.assert_array_equal(mia.stratified_indices(labels, len(labels), seed=2, purpose="p"), np.arange(len(labels)))


def independent_efficacy(shadow_in: SplitLogits, shadow_out: SplitLogits, forget: SplitLogits, feature: str) -> float:
    def feat(split: SplitLogits) -> np.ndarray:
        p = scipy.special.softmax(split.logits.numpy().astype(np.float64), axis=1)
        if feature == "confidence":
            return p[np.arange(len(split)), split.labels.numpy()]
        return scipy.stats.entropy(p, axis=1)

    x = np.r_[feat(shadow_in), feat(shadow_out)].reshape(-1, 1)
    y = np.r_[np.ones(len(shadow_in)), np.zeros(len(shadow_out))]
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return 1.0 - clf.predict(feat(forget).reshape(-1, 1)).mean()


def mixed_split(n: int, k: int, seed: int, margins: tuple[float, float]) -> SplitLogits:
    """Half member-like, half non-member-like examples: a non-trivial attack target."""
    a, b = confident_split(n // 2, k, seed, margin=margins[0]), confident_split(n - n // 2, k, seed + 100, margin=margins[1])
    return SplitLogits(torch.cat([a.logits, b.logits]), torch.cat([a.labels, b.labels]))


@pytest.mark.parametrize("feature", ["confidence", "entropy"])
def test_mia_efficacy_matches_independent_svc_pipeline(feature):
    retain = mixed_split(150, 5, 71, (6.0, 2.0))  # |D_r| = |D_t| ≤ cap: shadow sets are the whole splits
    test = mixed_split(150, 5, 72, (3.0, 0.5))
    forget = mixed_split(80, 5, 73, (5.0, 1.0))
    ours = mia.mia_efficacy(retain.logits, retain.labels, test.logits, test.labels, forget.logits, forget.labels,
                            feature=feature, seed=3)
    expected = independent_efficacy(retain, test, forget, feature)
    assert ours == pytest.approx(expected, abs=1e-12)
    assert 0.0 < ours < 1.0


def test_mia_efficacy_capped_shadow_sets_match_independent_pipeline():
    retain = mixed_split(400, 4, 81, (6.0, 2.0))
    test = mixed_split(250, 4, 82, (3.0, 0.5))
    forget = mixed_split(60, 4, 83, (5.0, 1.0))
    ours = mia.mia_efficacy(retain.logits, retain.labels, test.logits, test.labels, forget.logits, forget.labels,
                            feature="confidence", seed=8, max_shadow=100)
    members = torch.from_numpy(mia.stratified_indices(retain.labels.numpy(), 100, seed=8, purpose="shadow_members"))
    nonmembers = torch.from_numpy(mia.stratified_indices(test.labels.numpy(), 100, seed=8, purpose="shadow_nonmembers"))
    expected = independent_efficacy(
        SplitLogits(retain.logits[members], retain.labels[members]),
        SplitLogits(test.logits[nonmembers], test.labels[nonmembers]),
        forget, "confidence",
    )
    assert ours == pytest.approx(expected, abs=1e-12)


def test_mia_efficacy_metric_is_the_mean_over_shadow_draws_with_its_spread():
    ev = make_eval()
    ev = Evaluation(**{**ev.__dict__, "retain": random_split(400, 4, 12), "test": random_split(300, 4, 13)})
    args = (ev.retain.logits, ev.retain.labels, ev.test.logits, ev.test.labels, ev.forget.logits, ev.forget.labels)
    per_draw = [mia.mia_efficacy(*args, feature="confidence", seed=ev.seed, max_shadow=mia.MAX_SHADOW, draw=d)
                for d in range(mia.SHADOW_DRAWS)]
    stored = compute_metrics(ev)
    assert stored["mia_efficacy"] == (pytest.approx(np.mean(per_draw), abs=1e-12), len(ev.forget))
    assert stored["mia_efficacy_draw_sd"] == (pytest.approx(np.std(per_draw, ddof=1), abs=1e-12), mia.SHADOW_DRAWS)
    assert stored["mia_efficacy_draw_sd"][0] > 0  # 300 of 400 retain images per draw: the draws differ
    # the companion, called alone, computes the same spread
    assert METRICS.get("mia_efficacy_draw_sd").fn(ev) == stored["mia_efficacy_draw_sd"]
    members, nonmembers = scipy_losses(ev.forget), scipy_losses(ev.test)
    cv = [mia.cv_attack_accuracy(members, nonmembers, seed=ev.seed, draw=d)[0] for d in range(mia.SHADOW_DRAWS)]
    assert stored["mia_cv_accuracy"][0] == pytest.approx(np.mean(cv), abs=1e-12)
    assert stored["mia_cv_accuracy_draw_sd"] == (pytest.approx(np.std(cv, ddof=1), abs=1e-12), mia.SHADOW_DRAWS)


def test_spread_companions_are_registered_with_their_metric_and_never_ranked():
    spreads = {name: m for name, m in METRICS.items() if m.measures == "spread"}
    assert set(spreads) == {n + metrics.SPREAD_SUFFIX for n, m in METRICS.items() if m.draws}
    assert {"mia_efficacy", "mia_efficacy_entropy", "mia_cv_accuracy"} <= {m.spread_of for m in spreads.values()}
    for name, m in spreads.items():
        assert m.goal == "none" and METRICS.get(m.spread_of).draws
        assert all(name not in c.of for _, c in metrics.COMPOSITES.items())
    with pytest.raises(ValueError, match="draws=True"):
        metrics.register_metric("a_spread", "none", "x", measures="spread")


@pytest.mark.parametrize("feature", ["confidence", "entropy"])
def test_mia_efficacy_members_low_nonmembers_high(feature):
    retain = confident_split(300, 10, 91, margin=9.0)  # memorized: p_y ≈ 1, H ≈ 0
    test = confident_split(300, 10, 92, margin=1.0)  # unseen: p_y ≈ 0.2, H high
    member_like = confident_split(100, 10, 93, margin=9.0)
    nonmember_like = confident_split(100, 10, 94, margin=1.0)
    args = (retain.logits, retain.labels, test.logits, test.labels)
    low = mia.mia_efficacy(*args, member_like.logits, member_like.labels, feature=feature, seed=0)
    high = mia.mia_efficacy(*args, nonmember_like.logits, nonmember_like.labels, feature=feature, seed=0)
    assert low < 0.05 and high > 0.95


def test_mia_efficacy_deterministic_and_validates():
    retain, test, forget = confident_split(200, 3, 1, margin=4), confident_split(120, 3, 2, margin=1), confident_split(50, 3, 3, margin=2)
    args = (retain.logits, retain.labels, test.logits, test.labels, forget.logits, forget.labels)
    assert mia.mia_efficacy(*args, feature="entropy", seed=1, max_shadow=60) == mia.mia_efficacy(*args, feature="entropy", seed=1, max_shadow=60)
    with pytest.raises(ValueError, match="confidence, entropy"):
        mia.mia_efficacy(*args, feature="modified_entropy", seed=1)
    empty = SplitLogits(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="forget split is empty"):
        mia.mia_efficacy(*args[:4], empty.logits, empty.labels, feature="confidence", seed=1)


# ---------------------------------------------------------------- composites of the registry

def test_nomus_formula():
    ev = make_eval()
    acc = sk_accuracy(ev.test)
    attack = np.mean([mia.cv_attack_accuracy(scipy_losses(ev.forget), scipy_losses(ev.test), seed=ev.seed, draw=d)[0]
                      for d in range(mia.SHADOW_DRAWS)])
    value, n = metrics.nomus(ev)
    assert n == len(ev.test)
    assert value == pytest.approx(0.5 * acc + 0.5 * (1 - 2 * abs(attack - 0.5)), abs=1e-9)


def test_speedup_is_oracle_time_over_runtime():
    ev = make_eval()
    assert metrics.speedup(ev) == (pytest.approx(40.0 / 2.5), 1)
    assert metrics.runtime_seconds(ev) == (2.5, 1)
    instant = Evaluation(**{**ev.__dict__, "runtime_seconds": 0.0})
    assert metrics.speedup(instant)[0] == float("inf")


def test_compute_metrics_forget_test_only_for_class_removal():
    random_forgetting = metrics.compute_metrics(make_eval())
    class_removal = metrics.compute_metrics(make_eval(forget_classes=(2,), with_forget_test=True))
    assert "forget_test_accuracy" not in random_forgetting
    assert "forget_test_accuracy" in class_removal
    from_logits = set(metrics.METRICS.names()) - set(metrics.RESIDUE_METRICS)  # no model given: no residue
    assert set(class_removal) == from_logits
    assert set(random_forgetting) == from_logits - {"forget_test_accuracy"}
    for name, (value, n) in class_removal.items():
        assert isinstance(value, float) and math.isfinite(value) and n > 0, name


def test_threaded_attacks_give_the_sequential_values_in_registry_order():
    ev = make_eval(forget_classes=(1,), with_forget_test=True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sequential = compute_metrics(ev)
        torch.set_num_threads(2)
        threaded = compute_metrics(ev)
    finally:
        torch.set_num_threads(before)
    assert list(threaded) == list(sequential) == [n for n in METRICS.names() if n in sequential]
    assert threaded == sequential
    assert set(THREADED_METRICS) - set(metrics.RESIDUE_METRICS) <= set(threaded)


def test_nomus_is_combined_from_its_inputs_without_redoing_the_attack(monkeypatch):
    ev = make_eval()
    alone = metrics.nomus(ev)
    acc, n = metrics.test_accuracy(ev)
    cv = metrics.mia_cv_accuracy(ev).mean
    assert alone == (pytest.approx(0.5 * acc + 0.5 * (1.0 - 2.0 * abs(cv - 0.5)), abs=1e-12), n)
    calls = []
    real = mia.cv_attack_accuracy
    monkeypatch.setattr(mia, "cv_attack_accuracy", lambda *a, **kw: calls.append(kw.get("draw")) or real(*a, **kw))
    stored = compute_metrics(ev)
    assert stored["nomus"] == (pytest.approx(alone[0], abs=1e-12), n)
    assert sorted(calls) == list(range(mia.SHADOW_DRAWS))  # once per draw, not twice
    with pytest.raises(ValueError, match="inputs .* and combine together"):
        metrics.register_metric("bad", "max", "x", measures="combined", inputs=("no_such_metric",), combine=min)
