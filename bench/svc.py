"""The SVC of SalUn's MIA-efficacy attack (:func:`bench.mia.mia_efficacy`): its fit, an exact and
fast replacement for its prediction, and an estimate of what the attacks of one run cost.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.svm import SVC

#: libsvm kernel-cache size (MB) of the attack; it changes speed, never the fit.
SVC_CACHE_MB = 40

#: Half-width of the band around the decision boundary inside which :func:`svc_predict` asks libsvm,
#: relative to the scale S(x) = Σ_i |α_i y_i| K(x, s_i) + |b|. Two evaluations of f(x) in float64 that
#: sum the same n terms in different orders (with kernel values that differ by a few ulps) differ by
#: at most about (n + 10)·2⁻⁵³·S(x): < 2·10⁻¹² for 10,000 support vectors. The band is 500× wider.
EXACT_BAND = 1e-9


def fit_attack(x: np.ndarray, y: np.ndarray) -> SVC:
    """SalUn's attack, ``SVC(C=3, gamma="auto", kernel="rbf")``, fit on features ``x`` [N, d] and
    labels ``y`` [N] (1 = member).

    ``cache_size`` only bounds libsvm's kernel-column cache (values are recomputed, never
    approximated): the fit is the same to the bit, and 40 MB is faster here than the default 200 MB
    (1.4 s vs 1.7 s on 10,000 points; columns are seldom reused, and a small cache stays in the
    CPU's caches).
    """
    from sklearn.svm import SVC

    return SVC(C=3, gamma="auto", kernel="rbf", cache_size=SVC_CACHE_MB).fit(x, y)


def svc_predict(attack: SVC, x: np.ndarray, *, chunk: int = 128) -> np.ndarray:
    """``attack.predict(x)`` of a fitted binary RBF ``SVC``, exactly, in a fraction of the time.

    libsvm predicts point by point; here the decision function

        f(x) = Σ_i α_i y_i · exp(−γ ‖x − s_i‖²) + b

    (``dual_coef_``, ``support_vectors_``, ``intercept_`` and the fitted γ) is one matrix product per
    ``chunk`` points, and ŷ = ``classes_[1]`` where f(x) > 0, else ``classes_[0]``. The two
    computations of f differ only by rounding (see :data:`EXACT_BAND`), which can flip the sign only
    where |f(x)| ≤ EXACT_BAND · S(x); those points (in practice none) are predicted by libsvm itself.
    So the result equals ``attack.predict(x)`` element for element — the metric is unchanged — at
    about a fifth of the cost (Fashion-MNIST: 5,400 points against ~9,800 support vectors, ~1 s → ~0.2 s).
    """
    if attack.kernel != "rbf" or len(attack.classes_) != 2:
        raise ValueError(f"svc_predict needs a fitted binary RBF SVC, got kernel={attack.kernel!r} "
                         f"with {len(attack.classes_)} classes; call attack.predict instead")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != attack.support_vectors_.shape[1]:
        raise ValueError(f"svc_predict needs x of shape [N, {attack.support_vectors_.shape[1]}], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("svc_predict: the attack features contain NaN or inf; check the model's logits")
    sv = attack.support_vectors_
    coef = attack.dual_coef_[0]
    bias = float(attack.intercept_[0])
    gamma = float(attack._gamma)  # the γ libsvm was fit with ("auto" and "scale" resolved by sklearn)
    decision = np.empty(len(x))
    scale = np.empty(len(x))
    for lo in range(0, len(x), chunk):
        diff = x[lo:lo + chunk, None, :] - sv[None, :, :]  # differences first, as libsvm does
        kernel = np.exp(-gamma * (diff * diff).sum(2))
        decision[lo:lo + chunk] = kernel @ coef + bias
        scale[lo:lo + chunk] = kernel @ np.abs(coef) + abs(bias)
    predicted = attack.classes_[(decision > 0).astype(np.int64)]
    unsure = np.flatnonzero(np.abs(decision) <= EXACT_BAND * scale)
    if len(unsure):
        predicted[unsure] = attack.predict(x[unsure])
    return predicted


def efficacy_seconds(n_shadow: int, n_forget: int, *, features: int, draws: int, threads: int = 1,
                     calibrate: int = 1000) -> float:
    """Estimated wall seconds of ``features`` × ``draws`` :func:`bench.mia.mia_efficacy` attacks
    (the draws of each feature one after the other, the features side by side when ``threads`` > 1,
    as :func:`bench.metrics.compute_metrics` runs them) with ``n_shadow`` shadow points per side and
    ``n_forget`` points to predict. Used to print a run's
    estimate before it starts; never part of a metric.

    One attack on synthetic, overlapping features (Beta(8, 1) vs Beta(6, 1.2), like a trained
    model's confidences on members and non-members) is timed with n₀ = min(n_shadow, ``calibrate``)
    per side, then scaled: the fit as (n / n₀)² — measured on Fashion-MNIST, 0.05–0.07 s·(n/1000)²
    from 250 to 5,000 per side, for real features and synthetic ones alike — and the prediction
    as n_forget·n / (n_pred₀·n₀).
    """
    if n_shadow < 1 or n_forget < 0 or features < 1 or threads < 1 or draws < 1:
        raise ValueError(f"efficacy_seconds needs n_shadow >= 1, n_forget >= 0, features >= 1, threads >= 1, "
                         f"draws >= 1; got {n_shadow}, {n_forget}, {features}, {threads}, {draws}")
    n0 = min(n_shadow, calibrate)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.beta(8.0, 1.0, n0), rng.beta(6.0, 1.2, n0)])[:, None]
    y = np.concatenate([np.ones(n0, dtype=np.int64), np.zeros(n0, dtype=np.int64)])
    start = time.perf_counter()
    attack = fit_attack(x, y)
    fit = time.perf_counter() - start
    queries = x[: min(len(x), max(n_forget, 1))]
    start = time.perf_counter()
    svc_predict(attack, queries)
    predict = time.perf_counter() - start
    one = fit * (n_shadow / n0) ** 2 + predict * (n_forget / len(queries)) * (n_shadow / n0)
    return one * draws * math.ceil(features / min(threads, features))
