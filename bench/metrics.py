"""Metrics: pure functions of predicted logits (and the oracle's), one registry entry each.
(Over 300 lines because every metric and composite score is declared here, one home each.)
The two residue metrics of class tasks read the model itself (:mod:`bench.residue`).

Logits are collected once per model per split (:class:`Evaluation`); every metric reads them and
returns ``(value, n)`` — the raw float and the number of examples it was computed on. Each entry
declares its goal: ``max``, ``min`` or ``oracle`` (match the oracle's value; the reporter shows
|value − oracle| per seed), and what it measures (:data:`Measures`: forgetting, utility, cost).

A metric declared with ``draws=True`` averages an attack over seeded draws of its samples
(:func:`bench.mia.over_draws`) and returns :class:`bench.mia.Draws`; it is stored as (mean, n), and
beside it its companion ``<name>_draw_sd`` as (sample sd over the draws, number of draws), which
:func:`register_metric` registers with it (goal ``none``, measures ``spread``): the spread of the
measurement itself, shown on the leaderboard, never ranked, compared or combined.

Composite scores (:data:`COMPOSITES`: ``avg_gap``, ``tow``) combine the per-seed gaps to the oracle
of stored metrics. Each is one declaration here — its goal, the metrics it combines, its formula and
the function that computes it; the reporter applies them to stored rows (they are never stored). A
new composite score is one :func:`register_composite` here and nothing else.

Splits: D_f forget, D_r retain, D_t test, D_ft the test images of the forgotten classes.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from bench import mia, residue
from bench.lookup import Registry
from bench.results import ORIGINAL

Goal = Literal["max", "min", "oracle", "none"]
#: What a metric measures. The reporter reads it, never a list of names: a forgetting metric on
#: which the original is within noise of the oracle has no signal on that task and leaves its
#: composites (:mod:`bench.report.signal`); utility metrics stay, because there the original *is*
#: the ideal; cost metrics are not inputs of a composite; ``combined`` mixes utility and forgetting;
#: ``spread`` is the spread over draws of another metric (its ``_draw_sd`` companion, goal ``none``).
Measures = Literal["forgetting", "utility", "cost", "combined", "spread"]
MEASURES: tuple[str, ...] = ("forgetting", "utility", "cost", "combined", "spread")
#: The name of a draws metric's spread companion is the metric's name and this.
SPREAD_SUFFIX = "_draw_sd"


@dataclass(frozen=True, eq=False)
class SplitLogits:
    logits: torch.Tensor  # float32 [N, K], CPU
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything the metrics of one unlearned model need."""

    forget: SplitLogits
    retain: SplitLogits
    test: SplitLogits  # the full test split D_t
    forget_test: SplitLogits | None  # D_ft (class removal only)
    oracle_forget: SplitLogits  # the oracle's logits on D_f
    forget_classes: tuple[int, ...]
    seed: int
    runtime_seconds: float
    oracle_seconds: float
    residue: residue.ResidueInputs | None = None  # the model itself, for the residue metrics (class tasks)


@dataclass(frozen=True)
class Metric:
    """A stored metric. ``undefined_for``: methods whose value of it means nothing, shown on the
    leaderboard as ``– (<undefined_why>)`` instead of a number (the original's speed-up: it does no
    work, so its runtime is the time of a copy). ``needs_finite``: the metric has no value when a
    logit is NaN or inf (the attacks' scikit-learn models refuse them; a divergence is NaN), so
    such a model's run records it as failed (:func:`refused_metrics`) instead. ``measures``: what
    it measures (:data:`Measures`). ``draws``: ``fn`` returns :class:`bench.mia.Draws`.
    ``spread_of``: the draws metric whose spread this companion stores. ``inputs`` and ``combine``:
    a metric made of others, ``fn(ev) = combine(*(m(ev) for m in inputs))``, which
    :func:`compute_metrics` computes from the inputs' results instead of computing them twice."""

    name: str
    fn: Callable[[Evaluation], tuple[float, int]]
    goal: Goal
    description: str
    measures: Measures
    applies: Callable[[Evaluation], bool] = lambda ev: True
    undefined_for: tuple[str, ...] = ()
    undefined_why: str = ""
    needs_finite: bool = False
    draws: bool = False
    spread_of: str = ""
    inputs: tuple[str, ...] = ()
    combine: Callable[..., tuple[float, int]] | None = None


@dataclass(frozen=True)
class Composite:
    """A score computed per seed from the gaps g_m = |v_m − o_m| of the metrics ``of`` to the
    oracle's value of the same seed; not stored. ``fn`` maps the gaps, an array [rows, len(of)] in
    the order of ``of``, to one score per row; a NaN gap gives a NaN score. ``formula``: the
    formula as the leaderboard prints it. ``fn`` must also accept any subset of those columns (in
    the same order): on a task where a forgetting input has no signal the reporter leaves it out
    (:mod:`bench.report.signal`), so a composite is a symmetric combination (a mean, a product)."""

    name: str
    goal: Goal
    description: str
    of: tuple[str, ...]
    formula: str
    fn: Callable[[np.ndarray], np.ndarray]


METRICS: Registry[Metric] = Registry("metric")
COMPOSITES: Registry[Composite] = Registry("composite score")


def register_metric(name: str, goal: Goal, description: str, applies: Callable[[Evaluation], bool] | None = None,
                    *, measures: Measures, undefined_for: tuple[str, ...] = (), undefined_why: str = "",
                    needs_finite: bool = False, draws: bool = False, inputs: tuple[str, ...] = (),
                    combine: Callable[..., tuple[float, int]] | None = None):
    """Register ``fn(ev) -> (value, n)`` as the stored metric ``name`` (see :class:`Metric`); with
    ``draws=True``, ``fn(ev) -> Draws`` and its ``<name>_draw_sd`` companion too; with ``inputs``
    (registered metrics) and ``combine``, ``fn`` must equal ``combine`` of their results."""
    if bool(inputs) != (combine is not None) or any(i not in METRICS for i in inputs):
        raise ValueError(f"metric {name!r}: give inputs (registered metrics) and combine together")
    if bool(undefined_for) != bool(undefined_why):
        raise ValueError(f"metric {name!r}: give undefined_for and undefined_why together (the methods, and why)")
    if measures not in MEASURES or measures == "spread":
        raise ValueError(f"metric {name!r}: measures={measures!r}; valid: {[m for m in MEASURES if m != 'spread']} "
                         "(a spread is registered with its metric: pass draws=True)")
    applies = applies or (lambda ev: True)

    def wrap(fn: Callable[[Evaluation], tuple[float, int]]):
        METRICS.register(name, Metric(name, fn, goal, description, measures, applies, undefined_for, undefined_why,
                                      needs_finite, draws=draws, inputs=inputs, combine=combine))
        if draws:
            def spread(ev: Evaluation) -> tuple[float, int]:
                result = fn(ev)
                return result.sd, len(result.values)

            METRICS.register(name + SPREAD_SUFFIX, Metric(
                name + SPREAD_SUFFIX, spread, "none", f"sample sd of {name} over its {mia.SHADOW_DRAWS} seeded draws",
                "spread", applies, needs_finite=needs_finite, spread_of=name))
        return fn

    return wrap


def register_composite(name: str, goal: Goal, description: str, *, of: tuple[str, ...], formula: str):
    """Register ``fn(gaps) -> scores`` as the composite score ``name`` (see :class:`Composite`);
    every metric in ``of`` must be a registered metric whose goal is ``oracle``."""
    def wrap(fn: Callable[[np.ndarray], np.ndarray]):
        wrong = [m for m in of if m not in METRICS or METRICS.get(m).goal != "oracle"]
        if wrong:
            raise ValueError(f"composite {name!r} combines gaps to the oracle, but {wrong} are not registered "
                             "metrics with goal 'oracle'; register them first (above) or fix `of`")
        kinds = [m for m in of if METRICS.get(m).measures not in ("forgetting", "utility")]
        if kinds:
            raise ValueError(f"composite {name!r} combines forgetting and utility metrics, but {kinds} measure "
                             "something else (their `measures`); fix `of`")
        COMPOSITES.register(name, Composite(name, goal, description, of, formula, fn))
        return fn

    return wrap


def top1(split: SplitLogits) -> tuple[float, int]:
    """Top-1 accuracy: (1/N) Σ_i 1[argmax_k z_ik = y_i]; NaN on an empty split.

    >>> top1(SplitLogits(torch.tensor([[2., 0.], [0., 1.], [3., 1.]]), torch.tensor([0, 1, 1])))
    (0.6666666666666666, 3)
    """
    n = len(split)
    if n == 0:
        return float("nan"), 0
    return float((split.logits.argmax(1) == split.labels).double().mean()), n


def kept_test(ev: Evaluation) -> SplitLogits:
    """D_t minus D_ft: the test images of the classes that are kept."""
    if not ev.forget_classes:
        return ev.test
    keep = ~torch.isin(ev.test.labels, torch.tensor(ev.forget_classes))
    return SplitLogits(ev.test.logits[keep], ev.test.labels[keep])


@register_metric("forget_accuracy", "oracle", "top-1 accuracy on the forget set D_f (UA = 1 − this)", measures="forgetting")
def forget_accuracy(ev: Evaluation) -> tuple[float, int]:
    return top1(ev.forget)


@register_metric("retain_accuracy", "oracle", "top-1 accuracy on the retain set D_r (RA)", measures="utility")
def retain_accuracy(ev: Evaluation) -> tuple[float, int]:
    return top1(ev.retain)


@register_metric("test_accuracy", "oracle", "top-1 accuracy on the test set D_t (class removal: on the kept classes) (TA)",
                 measures="utility")
def test_accuracy(ev: Evaluation) -> tuple[float, int]:
    return top1(kept_test(ev))


test_accuracy.__test__ = False  # a metric, not a pytest test (pytest collects test_* wherever it is imported)


@register_metric(
    "forget_test_accuracy", "oracle", "top-1 accuracy on the test images of the forgotten classes D_ft",
    applies=lambda ev: ev.forget_test is not None, measures="forgetting",
)
def forget_test_accuracy(ev: Evaluation) -> tuple[float, int]:
    assert ev.forget_test is not None
    return top1(ev.forget_test)


@register_metric("runtime_seconds", "min", "wall time of the method call alone (no evaluation)", measures="cost")
def runtime_seconds(ev: Evaluation) -> tuple[float, int]:
    return float(ev.runtime_seconds), 1


@register_metric("speedup", "max", "oracle training time / runtime_seconds (same device)",
                 undefined_for=(ORIGINAL,), undefined_why="no work", measures="cost")
def speedup(ev: Evaluation) -> tuple[float, int]:
    """speedup = t_oracle / t_method; inf when the method took no measurable time."""
    if ev.runtime_seconds <= 0:
        return float("inf"), 1
    return float(ev.oracle_seconds / ev.runtime_seconds), 1


def efficacy_draws(ev: Evaluation, feature: str) -> mia.Draws:
    """:func:`bench.mia.mia_efficacy` on ``feature`` over :data:`bench.mia.SHADOW_DRAWS` shadow draws."""
    return mia.over_draws(lambda d: (mia.mia_efficacy(
        ev.retain.logits, ev.retain.labels, ev.test.logits, ev.test.labels,
        ev.forget.logits, ev.forget.labels, feature=feature, seed=ev.seed, draw=d,
    ), len(ev.forget)))


@register_metric("mia_efficacy", "oracle", "SalUn MIA-efficacy, SVC on true-class confidence: share of D_f called "
                 "non-member (mean over shadow draws)", needs_finite=True, measures="forgetting", draws=True)
def mia_efficacy(ev: Evaluation) -> mia.Draws:
    return efficacy_draws(ev, "confidence")


@register_metric("mia_efficacy_entropy", "oracle", "SalUn MIA-efficacy, SVC on prediction entropy (mean over shadow "
                 "draws)", needs_finite=True, measures="forgetting", draws=True)
def mia_efficacy_entropy(ev: Evaluation) -> mia.Draws:
    return efficacy_draws(ev, "entropy")


@register_metric("probe_accuracy", "oracle", "linear probe on penultimate features (fitted on D_v, all classes): "
                 "accuracy on D_ft", applies=lambda ev: ev.residue is not None, needs_finite=True, measures="forgetting")
def probe_accuracy(ev: Evaluation) -> tuple[float, int]:
    """See :func:`bench.residue.probe_accuracy` (a function of the model, not of its logits)."""
    assert ev.residue is not None
    return residue.probe_accuracy(ev.residue)


@register_metric("relearn_steps", "oracle", f"full-batch fine-tuning steps on {residue.RELEARN_IMAGES} forget images until "
                 f"D_ft accuracy ≥ {residue.RELEARN_TARGET} (cap {residue.RELEARN_CAP})",
                 applies=lambda ev: ev.residue is not None, needs_finite=True, measures="forgetting")
def relearn_steps(ev: Evaluation) -> tuple[float, int]:
    """See :func:`bench.residue.relearn_steps` (trains a copy of the model)."""
    assert ev.residue is not None
    return residue.relearn_steps(ev.residue)


def forget_test_losses(ev: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """Per-example losses on D_f (members) and D_t (non-members)."""
    return (mia.per_example_loss(ev.forget.logits, ev.forget.labels),
            mia.per_example_loss(ev.test.logits, ev.test.labels))


@register_metric("mia_auc", "oracle", "loss-threshold attack AUC, D_f (members) vs D_t, every image; 0.5 = indistinguishable",
                 needs_finite=True, measures="forgetting")
def mia_auc(ev: Evaluation) -> tuple[float, int]:
    return mia.loss_auc(*forget_test_losses(ev))


@register_metric("mia_cv_accuracy", "oracle", "DLFD/MUFAC attack: 10-split CV logistic regression on losses, D_f vs D_t "
                 "balanced (mean over draws)", needs_finite=True, measures="forgetting", draws=True)
def mia_cv_accuracy(ev: Evaluation) -> mia.Draws:
    members, nonmembers = forget_test_losses(ev)
    return mia.over_draws(lambda d: mia.cv_attack_accuracy(members, nonmembers, seed=ev.seed, draw=d))


@register_metric("js_to_oracle", "min", "mean Jensen–Shannon divergence (nats) of softmax outputs from the oracle's on D_f",
                 needs_finite=True, measures="forgetting")
def js_to_oracle(ev: Evaluation) -> tuple[float, int]:
    """JS(P‖Q) = ½ KL(P‖M) + ½ KL(Q‖M), M = ½(P + Q), P = softmax(f(x)), Q = softmax(f_oracle(x)),
    natural log, averaged over x ∈ D_f. Symmetric by definition; 0 ≤ JS ≤ ln 2."""
    return float(js_divergence(ev.forget.logits, ev.oracle_forget.logits).mean()), len(ev.forget)


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-row Jensen–Shannon divergence (nats) between softmax(logits_p) and softmax(logits_q)."""
    log_p = F.log_softmax(logits_p.double(), dim=1)
    log_q = F.log_softmax(logits_q.double(), dim=1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - torch.log(torch.tensor(2.0, dtype=torch.float64))
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(1)
    return (0.5 * (kl_pm + kl_qm)).clamp_min(0.0)


def nomus_of(test: tuple[float, int], attack: mia.Draws) -> tuple[float, int]:
    """NoMUS = λ·TA + (1 − λ)·(1 − 2·|A_mia − 0.5|), λ = 0.5, TA (``test_accuracy``, n its images)
    and A_mia (``mia_cv_accuracy``, the mean over its draws) on our test split."""
    acc, n = test
    return 0.5 * acc + 0.5 * (1.0 - 2.0 * abs(attack.mean - 0.5)), n


@register_metric("nomus", "max", "MUFAC's NoMUS: ½·test_accuracy + ½·(1 − 2·|mia_cv_accuracy − 0.5|)",
                 needs_finite=True, measures="combined", inputs=("test_accuracy", "mia_cv_accuracy"), combine=nomus_of)
def nomus(ev: Evaluation) -> tuple[float, int]:
    """:func:`nomus_of` of the model's test accuracy and CV attack."""
    return nomus_of(test_accuracy(ev), mia_cv_accuracy(ev))


@register_composite(
    "avg_gap", "min",
    "SalUn's Avg. Gap: mean |Δ to the oracle| of forget, retain, test accuracy and mia_efficacy, per seed, then averaged",
    of=("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy"),
    formula="mean of |Δ to the oracle| of forget, retain, test accuracy and mia_efficacy",
)
def avg_gap(gaps: np.ndarray) -> np.ndarray:
    """avg_gap_s = ¼ (|Δfa_s| + |Δra_s| + |Δta_s| + |Δmia_s|), Δ to the oracle of seed s (SalUn, Fan et al. 2024).

    >>> avg_gap(np.array([[0.1, 0.0, 0.1, 0.2]]))
    array([0.1])
    """
    return gaps.mean(axis=1)


@register_composite(
    "tow", "max",
    "Tug-of-War: (1 − |Δ forget acc|)(1 − |Δ retain acc|)(1 − |Δ test acc|), Δ to the oracle of the same seed",
    of=("forget_accuracy", "retain_accuracy", "test_accuracy"),
    formula="(1 − |Δ forget acc|)(1 − |Δ retain acc|)(1 − |Δ test acc|)",
)
def tow(gaps: np.ndarray) -> np.ndarray:
    """tow_s = (1 − |Δfa_s|)(1 − |Δra_s|)(1 − |Δta_s|), Δ to the oracle of seed s (Tug-of-War, Zhao et al. 2024).

    >>> tow(np.array([[0.5, 0.0, 0.5]]))
    array([0.25])
    """
    return (1.0 - gaps).prod(axis=1)


#: Metrics that spend their time in scikit-learn's libsvm, which releases the GIL. When torch has more
#: than one CPU thread, every metric is computed in a pool of that many threads, these first (they are
#: the long ones: ~2 s each on Fashion-MNIST, the rest ~0.3 s together); each metric is a pure function
#: of the logits and the seed (the residue metrics: of the model, which they never change), so the
#: values are those computed one after the other.
#: The metrics that read the model itself (:mod:`bench.residue`), on class tasks.
RESIDUE_METRICS = ("probe_accuracy", "relearn_steps")
THREADED_METRICS = ("relearn_steps", "probe_accuracy", "mia_efficacy", "mia_efficacy_entropy")


def non_finite_logits(ev: Evaluation) -> str:
    """Why the model's logits cannot feed every metric, or ``""`` when they can: the count of NaN
    or inf among its logits on D_f, D_r and D_t (D_ft is part of D_t)."""
    splits = (ev.forget, ev.retain, ev.test)
    bad = sum(int((~torch.isfinite(s.logits)).sum()) for s in splits)
    if not bad:
        return ""
    return f"the model's outputs are not finite (NaN/inf in {bad} of {sum(s.logits.numel() for s in splits)} logits)"


def refused_metrics(ev: Evaluation) -> dict[str, str]:
    """The metrics that apply to ``ev`` but have no value from its logits → the reason (a model
    whose outputs are not finite: every metric declared ``needs_finite``)."""
    reason = non_finite_logits(ev)
    if not reason:
        return {}
    return {name: reason for name, m in METRICS.items() if m.applies(ev) and m.needs_finite}


def compute_metrics(ev: Evaluation) -> dict[str, tuple[float, int]]:
    """Every registered metric that applies to ``ev`` and has a value (not in
    :func:`refused_metrics`): name → (value, n), in registry order. A draws metric gives its mean
    and, under its companion's name, its spread (one computation for both); a metric with ``inputs``
    is combined from their results when they are computed too."""
    refused = refused_metrics(ev)
    names = [name for name, m in METRICS.items() if m.applies(ev) and name not in refused and not m.spread_of]
    combined = [n for n in names if all(i in names for i in METRICS.get(n).inputs) and METRICS.get(n).combine]
    direct = [n for n in names if n not in combined]
    workers = min(len(direct), torch.get_num_threads())
    if workers <= 1:
        results = {n: METRICS.get(n).fn(ev) for n in direct}
    else:
        first = [n for n in direct if n in THREADED_METRICS] + [n for n in direct if n not in THREADED_METRICS]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metric") as pool:
            futures = {n: pool.submit(METRICS.get(n).fn, ev) for n in first}
            results = {n: futures[n].result() for n in direct}
    for n in combined:  # from their inputs' results: nomus does not redo mia_cv_accuracy's draws
        results[n] = METRICS.get(n).combine(*(results[i] for i in METRICS.get(n).inputs))
    out: dict[str, tuple[float, int]] = {}
    for n in names:
        result = results[n]
        if METRICS.get(n).draws:
            out[n] = (result.mean, result.n)
            out[n + SPREAD_SUFFIX] = (result.sd, len(result.values))
        else:
            out[n] = result
    return out


def metric_goal(name: str) -> Goal | None:
    """The declared goal of a stored metric or a composite score; ``None`` for a name in neither
    registry (a metric the store holds but this version does not define: shown without a goal)."""
    if name in METRICS:
        return METRICS.get(name).goal
    if name in COMPOSITES:
        return COMPOSITES.get(name).goal
    return None
