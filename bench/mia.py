"""Membership-inference attacks used as unlearning metrics (see ``specs/metrics.md``).

One idea, a little over 300 lines: the three attacks share their input checks, the seeded
subsampling and the exact fast SVC prediction, which would otherwise be split across modules.

Three attacks, each deterministic given the run seed (every random choice draws from
:func:`bench.data.seed_stream` with purpose ``("mia", <purpose>)``):

* :func:`loss_auc` — loss-threshold attack: AUC of −ℓ(x, y), D_f members vs D_t non-members.
* :func:`cv_attack_accuracy` — the DLFD / MUFAC attack: 10-split cross-validated logistic
  regression on the 1-d loss. Lean enough to run at every training step (DLFD's forgetting
  score |0.5 − accuracy|).
* :func:`mia_efficacy` — SalUn's MIA-efficacy: an RBF SVC trained on shadow members (D_r) vs
  shadow non-members (D_t), applied to D_f; the share of D_f called non-member.

The two loss-based attacks first subsample the larger side to the size of the smaller
(:func:`balanced_subsample`) so that chance is exactly 0.5.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from bench.data import seed_stream

if TYPE_CHECKING:
    from sklearn.svm import SVC

# scikit-learn is imported inside the attacks: it costs seconds, and `bench ls` or a method that only
# needs per_example_loss (DLFD) should not pay for it.

#: Features :func:`mia_efficacy` can attack on.
MIA_FEATURES = ("confidence", "entropy")

#: Most shadow examples per side of :func:`mia_efficacy` (its ``max_shadow`` default).
MAX_SHADOW = 5000

#: libsvm kernel-cache size (MB) of the :func:`mia_efficacy` attack; it changes speed, never the fit.
SVC_CACHE_MB = 40

#: Fewest examples per side :func:`cv_attack_accuracy` accepts: with fewer, the 10 % test fold of a
#: split holds about one example per side and each split's accuracy is a multiple of ½.
MIN_CV_PER_SIDE = 10


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per-example cross-entropy ℓ_i = −log softmax(z_i)[y_i] = logsumexp(z_i) − z_{i,y_i}.

    Computed in float64 from ``logits`` ``[N, K]`` and integer ``labels`` ``[N]``; returns a float64
    numpy array of shape ``[N]``.
    """
    _check_logits_labels(logits, labels, "per_example_loss")
    losses = F.cross_entropy(logits.detach().double().cpu(), labels.detach().long().cpu(), reduction="none")
    return losses.numpy().astype(np.float64, copy=False)


def balanced_subsample(
    members: np.ndarray, nonmembers: np.ndarray, *, seed: int, purpose: str
) -> tuple[np.ndarray, np.ndarray]:
    """Subsample the larger of two 1-d samples, without replacement, to the size of the smaller.

    n = min(|members|, |nonmembers|). The smaller side is returned unchanged; the larger keeps n
    elements chosen by ``numpy.random.default_rng(seed_stream(seed, "mia", purpose))``, in their
    original order. Equal sizes: both returned unchanged.
    """
    members, nonmembers = np.asarray(members), np.asarray(nonmembers)
    if members.ndim != 1 or nonmembers.ndim != 1:
        raise ValueError(
            f"balanced_subsample needs two 1-d arrays, got shapes {members.shape} and {nonmembers.shape}"
        )
    n = min(len(members), len(nonmembers))
    rng = np.random.default_rng(seed_stream(seed, "mia", purpose))
    if len(members) > n:
        members = members[np.sort(rng.choice(len(members), size=n, replace=False))]
    elif len(nonmembers) > n:
        nonmembers = nonmembers[np.sort(rng.choice(len(nonmembers), size=n, replace=False))]
    return members, nonmembers


def loss_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray, *, seed: int) -> tuple[float, int]:
    """Loss-threshold attack AUC on a balanced sample.

    After :func:`balanced_subsample` (purpose ``"loss_auc"``) to n per side, the score of an example
    is s = −ℓ (low loss looks like a member) and

        AUC = (1 / n²) Σ_{i ∈ members} Σ_{j ∈ non-members} (1[s_i > s_j] + ½·1[s_i = s_j]),

    computed by ``sklearn.metrics.roc_auc_score`` with label 1 for members. 0.5 = indistinguishable,
    1 = every member has a lower loss than every non-member. Returns (AUC, 2n).
    """
    from sklearn.metrics import roc_auc_score

    members, nonmembers = _check_losses(member_losses, nonmember_losses, "loss_auc", minimum=1)
    members, nonmembers = balanced_subsample(members, nonmembers, seed=seed, purpose="loss_auc")
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    score = -np.concatenate([members, nonmembers])
    return float(roc_auc_score(y, score)), len(y)


def cv_attack_accuracy(
    member_losses: np.ndarray, nonmember_losses: np.ndarray, *, seed: int, n_splits: int = 10
) -> tuple[float, int]:
    """DLFD / MUFAC attack accuracy: cross-validated logistic regression on the per-example loss.

    After :func:`balanced_subsample` (purpose ``"cv_attack"``) to n per side, x_i = ℓ_i (one
    feature), y_i = 1 for members, 0 for non-members. ``LogisticRegression()`` is fit and scored on
    each of ``n_splits`` splits of ``StratifiedShuffleSplit(n_splits, random_state=r)`` (default
    test size 10 %), r = seed_stream(seed, "mia", "cv_attack", "splits") mod 2³²:

        accuracy = (1 / n_splits) Σ_s (1 / |test_s|) Σ_{i ∈ test_s} 1[ŷ_s(x_i) = y_i].

    Chance is exactly 0.5 (balanced classes); DLFD's forgetting score is |0.5 − accuracy|.
    Returns (accuracy, 2n). Raises ``ValueError`` when either side has fewer than
    :data:`MIN_CV_PER_SIDE` examples. About 0.05 s for 1000 examples per side (DLFD calls it
    every training step).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    members, nonmembers = _check_losses(member_losses, nonmember_losses, "cv_attack_accuracy", minimum=MIN_CV_PER_SIDE)
    members, nonmembers = balanced_subsample(members, nonmembers, seed=seed, purpose="cv_attack")
    x = np.concatenate([members, nonmembers])[:, None]
    y = np.concatenate([np.ones(len(members), dtype=np.int64), np.zeros(len(nonmembers), dtype=np.int64)])
    splits = StratifiedShuffleSplit(n_splits=n_splits, random_state=seed_stream(seed, "mia", "cv_attack", "splits") % 2**32)
    # one BLAS thread: the fits are tiny and threads only add overhead (10x on a busy 2-core machine)
    with threadpool_limits(limits=1):
        scores = cross_val_score(LogisticRegression(), x, y, cv=splits, scoring="accuracy")
    return float(np.mean(scores)), len(y)


def stratified_indices(labels: np.ndarray, n: int, *, seed: int, purpose: str) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of size ``n`` of ``labels``.

    Class c with N_c of the N examples gets k_c = ⌊n·N_c / N⌋, plus one for the n − Σ_c ⌊·⌋ classes
    with the largest remainders (n·N_c mod N; ties → smaller class label), so Σ_c k_c = n exactly
    (largest-remainder rounding, integer arithmetic). Within each class, k_c indices are drawn without
    replacement by ``numpy.random.default_rng(seed_stream(seed, "mia", purpose))``, classes in
    ascending order. ``n = N`` returns every index.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"stratified_indices needs 1-d labels, got shape {labels.shape}")
    total = len(labels)
    if not 0 <= n <= total:
        raise ValueError(f"stratified_indices: cannot take {n} of {total} examples; pass 0 <= n <= {total}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quota, remainder = np.divmod(n * counts.astype(np.int64), total)
    short = n - int(quota.sum())
    # classes are ascending, so a stable sort on −remainder breaks ties by the smaller label
    quota[np.argsort(-remainder, kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed_stream(seed, "mia", purpose))
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False) for c, k in zip(classes, quota)
    ]
    return np.sort(np.concatenate(chosen))


def mia_features(logits: torch.Tensor, labels: torch.Tensor, feature: str) -> np.ndarray:
    """The per-example attack feature, float64 ``[N]``, from p = softmax(z):

    * ``"confidence"``: p_y, the probability of the true class;
    * ``"entropy"``: H(p) = −Σ_k p_k log p_k (nats; 0·log 0 = 0).
    """
    if feature not in MIA_FEATURES:
        raise ValueError(f"unknown MIA feature {feature!r}; valid features: {', '.join(MIA_FEATURES)}")
    _check_logits_labels(logits, labels, "mia_features")
    log_p = F.log_softmax(logits.detach().double().cpu(), dim=1)
    if feature == "confidence":
        values = log_p.gather(1, labels.detach().long().cpu()[:, None])[:, 0].exp()
    else:
        values = -(log_p.exp() * log_p).sum(1)  # log_softmax of finite logits is finite, so p = 0 gives 0
    return values.numpy().astype(np.float64, copy=False)


def mia_efficacy(
    retain_logits: torch.Tensor,
    retain_labels: torch.Tensor,
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    forget_logits: torch.Tensor,
    forget_labels: torch.Tensor,
    *,
    feature: str,
    seed: int,
    max_shadow: int = MAX_SHADOW,
) -> float:
    """SalUn's MIA-efficacy: the share of D_f that an SVC trained on shadow data calls non-member.

    Shadow members: a class-stratified random subset of D_r (:func:`stratified_indices`, purpose
    ``"shadow_members"``); shadow non-members: one of D_t (purpose ``"shadow_nonmembers"``); both of
    size n = min(|D_r|, |D_t|, ``max_shadow``). The same subsets serve every feature. The cap keeps
    the attack affordable: fitting an SVC costs O(n²)–O(n³), and 5000 per side keeps Fashion-MNIST
    (|D_t| = 10000) to seconds. (The reference instead takes the *first* |D_t| retain images.)

    With x = :func:`mia_features` (p_y for ``"confidence"``, H(p) for ``"entropy"``), the attack is
    ``SVC(C=3, gamma="auto", kernel="rbf")`` fit on members (label 1) vs non-members (label 0), and

        MIA-efficacy = 1 − (1/|D_f|) Σ_{x ∈ D_f} ŷ(x)   (higher = more forgotten).
    """
    from sklearn.svm import SVC

    if feature not in MIA_FEATURES:
        raise ValueError(f"unknown MIA feature {feature!r}; valid features: {', '.join(MIA_FEATURES)}")
    if max_shadow < 1:
        raise ValueError(f"mia_efficacy: max_shadow must be at least 1, got {max_shadow}")
    for name, labels in (("retain", retain_labels), ("test", test_labels), ("forget", forget_labels)):
        if labels.shape[0] == 0:
            raise ValueError(f"mia_efficacy: the {name} split is empty; it needs at least one example")
    n = min(int(retain_labels.shape[0]), int(test_labels.shape[0]), max_shadow)
    members = stratified_indices(retain_labels.cpu().numpy(), n, seed=seed, purpose="shadow_members")
    nonmembers = stratified_indices(test_labels.cpu().numpy(), n, seed=seed, purpose="shadow_nonmembers")
    members_t, nonmembers_t = torch.from_numpy(members), torch.from_numpy(nonmembers)
    x = np.concatenate([
        mia_features(retain_logits.cpu()[members_t], retain_labels.cpu()[members_t], feature),
        mia_features(test_logits.cpu()[nonmembers_t], test_labels.cpu()[nonmembers_t], feature),
    ])[:, None]
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    # cache_size only bounds libsvm's kernel-column cache (values are recomputed, never approximated):
    # the fit is the same to the bit, and 40 MB is faster here than the default 200 MB (1.4 s vs 1.7 s
    # on 10,000 points; columns are seldom reused, and a small cache stays in the CPU's caches).
    attack = SVC(C=3, gamma="auto", kernel="rbf", cache_size=SVC_CACHE_MB).fit(x, y)
    predicted = svc_predict(attack, mia_features(forget_logits, forget_labels, feature)[:, None])
    return float(1.0 - predicted.mean())


#: Half-width of the band around the decision boundary inside which :func:`svc_predict` asks libsvm,
#: relative to the scale S(x) = Σ_i |α_i y_i| K(x, s_i) + |b|. Two evaluations of f(x) in float64 that
#: sum the same n terms in different orders (with kernel values that differ by a few ulps) differ by
#: at most about (n + 10)·2⁻⁵³·S(x): < 2·10⁻¹² for 10,000 support vectors. The band is 500× wider.
EXACT_BAND = 1e-9


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


def efficacy_seconds(n_shadow: int, n_forget: int, *, features: int = len(MIA_FEATURES), threads: int = 1,
                     calibrate: int = 1000) -> float:
    """Estimated wall seconds of ``features`` :func:`mia_efficacy` attacks (one per feature, as
    :func:`bench.metrics.compute_metrics` runs them: side by side when ``threads`` > 1) with
    ``n_shadow`` shadow points per side and ``n_forget`` points to predict. Used to print a run's
    estimate before it starts; never part of a metric.

    One attack on synthetic, overlapping features (Beta(8, 1) vs Beta(6, 1.2), like a trained
    model's confidences on members and non-members) is timed with n₀ = min(n_shadow, ``calibrate``)
    per side, then scaled: the fit as (n / n₀)² — measured on Fashion-MNIST, 0.05–0.07 s·(n/1000)²
    from 250 to 5,000 per side, for real features and synthetic ones alike — and the prediction
    as n_forget·n / (n_pred₀·n₀).
    """
    from sklearn.svm import SVC

    if n_shadow < 1 or n_forget < 0 or features < 1 or threads < 1:
        raise ValueError(f"efficacy_seconds needs n_shadow >= 1, n_forget >= 0, features >= 1, threads >= 1; got "
                         f"{n_shadow}, {n_forget}, {features}, {threads}")
    n0 = min(n_shadow, calibrate)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.beta(8.0, 1.0, n0), rng.beta(6.0, 1.2, n0)])[:, None]
    y = np.concatenate([np.ones(n0, dtype=np.int64), np.zeros(n0, dtype=np.int64)])
    start = time.perf_counter()
    attack = SVC(C=3, gamma="auto", kernel="rbf", cache_size=SVC_CACHE_MB).fit(x, y)
    fit = time.perf_counter() - start
    queries = x[: min(len(x), max(n_forget, 1))]
    start = time.perf_counter()
    svc_predict(attack, queries)
    predict = time.perf_counter() - start
    one = fit * (n_shadow / n0) ** 2 + predict * (n_forget / len(queries)) * (n_shadow / n0)
    return one * math.ceil(features / min(threads, features))


def _check_logits_labels(logits: torch.Tensor, labels: torch.Tensor, where: str) -> None:
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{where} needs logits [N, K] and labels [N], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(
            f"{where}: labels must lie in [0, {logits.shape[1] - 1}] for {logits.shape[1]} logits, "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )


def _check_losses(members: np.ndarray, nonmembers: np.ndarray, where: str, *, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    members = np.asarray(members, dtype=np.float64)
    nonmembers = np.asarray(nonmembers, dtype=np.float64)
    for name, values in (("member", members), ("non-member", nonmembers)):
        if values.ndim != 1:
            raise ValueError(f"{where} needs 1-d {name} losses, got shape {values.shape}")
        if len(values) < minimum:
            raise ValueError(
                f"{where} needs at least {minimum} {name} losses, got {len(values)}"
                + (f" (the {MIN_CV_PER_SIDE}-split cross-validation holds out 10% per split); use a larger "
                   "forget/test set or report loss_auc instead" if minimum == MIN_CV_PER_SIDE else "")
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{where}: {name} losses contain NaN or inf; check the model's logits for non-finite values")
    return members, nonmembers
