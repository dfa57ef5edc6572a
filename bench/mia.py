"""Membership-inference attacks used as unlearning metrics (see ``specs/metrics.md``).

The three attacks share their input checks and the seeded subsampling; the SVC itself (its exact
fast prediction, its cost) is :mod:`bench.svc`.

Three attacks, each deterministic given the run seed (every random choice draws from
:func:`bench.data.seed_stream` with purpose ``("mia", <purpose>)``):

* :func:`loss_auc` — loss-threshold attack: AUC of −ℓ(x, y), D_f members vs D_t non-members,
  on every image (AUC does not depend on the sides' sizes, so nothing is drawn).
* :func:`cv_attack_accuracy` — the DLFD / MUFAC attack: 10-split cross-validated logistic
  regression on the 1-d loss, after subsampling the larger side to the size of the smaller
  (:func:`balanced_subsample`) so that chance is exactly 0.5. Lean enough to run at every
  training step (DLFD's forgetting score |0.5 − accuracy|).
* :func:`mia_efficacy` — SalUn's MIA-efficacy: an RBF SVC trained on shadow members (D_r) vs
  shadow non-members (D_t), applied to D_f; the share of D_f called non-member.

**Draws.** The last two depend on a random sample (the balanced subsample and the CV splits; the
shadow sets), and one sample is not enough: redrawing the shadow sets of one run moved
``mia_efficacy`` of ``random_label`` on ``digits-cnn-random10`` between 0.07 and 0.59 (issue 20).
So the metrics average each over :data:`SHADOW_DRAWS` seeded draws (:func:`over_draws`) and store
the spread beside the mean. Draw d of purpose p draws from ``("mia", *draw_purpose(p, d))``; draw
0 is the single draw of earlier versions (DLFD's training-time monitor uses it alone).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from bench.data import seed_stream
from bench.svc import fit_attack, svc_predict

# scikit-learn is imported inside the attacks: it costs seconds, and `bench ls` or a method that only
# needs per_example_loss (DLFD) should not pay for it.

#: Features :func:`mia_efficacy` can attack on.
MIA_FEATURES = ("confidence", "entropy")

#: Most shadow examples per side of :func:`mia_efficacy` (its ``max_shadow`` default). With
#: :data:`SHADOW_DRAWS` draws the fits cost SHADOW_DRAWS·(n/1000)²·~0.06 s: 2500 per side keeps
#: Fashion-MNIST's eight draws to about twice the cost of the single 5000-per-side fit they replace.
MAX_SHADOW = 2500

#: Seeded draws each sampled attack is averaged over (:func:`over_draws`).
SHADOW_DRAWS = 8

#: Fewest examples per side :func:`cv_attack_accuracy` accepts: with fewer, the 10 % test fold of a
#: split holds about one example per side and each split's accuracy is a multiple of ½.
MIN_CV_PER_SIDE = 10


@dataclass(frozen=True)
class Draws:
    """An attack's value on each of several seeded draws of its samples, and the examples one draw
    used. ``mean`` = (1/D) Σ_d v_d; ``sd`` = the sample standard deviation
    √(Σ_d (v_d − mean)² / (D − 1)) (0 for a single draw)."""

    values: tuple[float, ...]
    n: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def sd(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


def draw_purpose(purpose: str, draw: int) -> tuple[str, ...]:
    """The seed-stream purpose of draw ``draw`` of ``purpose``: ``(purpose,)`` for draw 0 (the
    single draw of earlier versions), ``(purpose, "draw<d>")`` after."""
    if draw < 0:
        raise ValueError(f"draw must be >= 0, got {draw}")
    return (purpose,) if draw == 0 else (purpose, f"draw{draw}")


def over_draws(attack: Callable[[int], tuple[float, int]], draws: int = SHADOW_DRAWS) -> Draws:
    """``attack(d)`` → (value, n) for d = 0 … draws − 1, as :class:`Draws`."""
    if draws < 1:
        raise ValueError(f"over_draws needs at least one draw, got {draws}")
    results = [attack(d) for d in range(draws)]
    return Draws(tuple(float(v) for v, _ in results), results[0][1])


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per-example cross-entropy ℓ_i = −log softmax(z_i)[y_i] = logsumexp(z_i) − z_{i,y_i}.

    Computed in float64 from ``logits`` ``[N, K]`` and integer ``labels`` ``[N]``; returns a float64
    numpy array of shape ``[N]``.
    """
    _check_logits_labels(logits, labels, "per_example_loss")
    losses = F.cross_entropy(logits.detach().double().cpu(), labels.detach().long().cpu(), reduction="none")
    return losses.numpy().astype(np.float64, copy=False)


def balanced_subsample(
    members: np.ndarray, nonmembers: np.ndarray, *, seed: int, purpose: str, draw: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Subsample the larger of two 1-d samples, without replacement, to the size of the smaller.

    n = min(|members|, |nonmembers|). The smaller side is returned unchanged; the larger keeps n
    elements chosen by ``numpy.random.default_rng(seed_stream(seed, "mia", *draw_purpose(purpose,
    draw)))``, in their original order. Equal sizes: both returned unchanged.
    """
    members, nonmembers = np.asarray(members), np.asarray(nonmembers)
    if members.ndim != 1 or nonmembers.ndim != 1:
        raise ValueError(
            f"balanced_subsample needs two 1-d arrays, got shapes {members.shape} and {nonmembers.shape}"
        )
    n = min(len(members), len(nonmembers))
    rng = np.random.default_rng(seed_stream(seed, "mia", *draw_purpose(purpose, draw)))
    if len(members) > n:
        members = members[np.sort(rng.choice(len(members), size=n, replace=False))]
    elif len(nonmembers) > n:
        nonmembers = nonmembers[np.sort(rng.choice(len(nonmembers), size=n, replace=False))]
    return members, nonmembers


def loss_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> tuple[float, int]:
    """Loss-threshold attack AUC on every image.

    With m members and u non-members, the score of an example is s = −ℓ (low loss looks like a
    member) and

        AUC = (1 / (m·u)) Σ_{i ∈ members} Σ_{j ∈ non-members} (1[s_i > s_j] + ½·1[s_i = s_j]),

    computed by ``sklearn.metrics.roc_auc_score`` with label 1 for members. 0.5 = indistinguishable,
    1 = every member has a lower loss than every non-member. The AUC is a mean over pairs, so unequal
    sides leave its chance level at 0.5 and no subsample (no seed) is needed. Returns (AUC, m + u).
    """
    from sklearn.metrics import roc_auc_score

    members, nonmembers = _check_losses(member_losses, nonmember_losses, "loss_auc", minimum=1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    score = -np.concatenate([members, nonmembers])
    return float(roc_auc_score(y, score)), len(y)


def cv_attack_accuracy(
    member_losses: np.ndarray, nonmember_losses: np.ndarray, *, seed: int, n_splits: int = 10, draw: int = 0
) -> tuple[float, int]:
    """DLFD / MUFAC attack accuracy: cross-validated logistic regression on the per-example loss.

    After :func:`balanced_subsample` (purpose ``"cv_attack"``, draw ``draw``) to n per side,
    x_i = ℓ_i (one feature), y_i = 1 for members, 0 for non-members. ``LogisticRegression()`` is fit
    and scored on each of ``n_splits`` splits of ``StratifiedShuffleSplit(n_splits, random_state=r)``
    (default test size 10 %), r = seed_stream(seed, "mia", *draw_purpose("cv_attack", draw),
    "splits") mod 2³²:

        accuracy = (1 / n_splits) Σ_s (1 / |test_s|) Σ_{i ∈ test_s} 1[ŷ_s(x_i) = y_i].

    Chance is exactly 0.5 (balanced classes); DLFD's forgetting score is |0.5 − accuracy|.
    Returns (accuracy, 2n). Raises ``ValueError`` when either side has fewer than
    :data:`MIN_CV_PER_SIDE` examples. About 0.05 s for 1000 examples per side (DLFD calls it
    every training step).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    members, nonmembers = _check_losses(member_losses, nonmember_losses, "cv_attack_accuracy", minimum=MIN_CV_PER_SIDE)
    members, nonmembers = balanced_subsample(members, nonmembers, seed=seed, purpose="cv_attack", draw=draw)
    x = np.concatenate([members, nonmembers])[:, None]
    y = np.concatenate([np.ones(len(members), dtype=np.int64), np.zeros(len(nonmembers), dtype=np.int64)])
    state = seed_stream(seed, "mia", *draw_purpose("cv_attack", draw), "splits") % 2**32
    splits = StratifiedShuffleSplit(n_splits=n_splits, random_state=state)
    # one BLAS thread: the fits are tiny and threads only add overhead (10x on a busy 2-core machine)
    with threadpool_limits(limits=1):
        scores = cross_val_score(LogisticRegression(), x, y, cv=splits, scoring="accuracy")
    return float(np.mean(scores)), len(y)


def stratified_indices(labels: np.ndarray, n: int, *, seed: int, purpose: str, draw: int = 0) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of size ``n`` of ``labels``.

    Class c with N_c of the N examples gets k_c = ⌊n·N_c / N⌋, plus one for the n − Σ_c ⌊·⌋ classes
    with the largest remainders (n·N_c mod N; ties → smaller class label), so Σ_c k_c = n exactly
    (largest-remainder rounding, integer arithmetic). Within each class, k_c indices are drawn without
    replacement by ``numpy.random.default_rng(seed_stream(seed, "mia", *draw_purpose(purpose, draw)))``,
    classes in ascending order. ``n = N`` returns every index.
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
    rng = np.random.default_rng(seed_stream(seed, "mia", *draw_purpose(purpose, draw)))
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
    draw: int = 0,
) -> float:
    """SalUn's MIA-efficacy: the share of D_f that an SVC trained on shadow data calls non-member.

    Shadow members: a class-stratified random subset of D_r (:func:`stratified_indices`, purpose
    ``"shadow_members"``); shadow non-members: one of D_t (purpose ``"shadow_nonmembers"``); both of
    size n = min(|D_r|, |D_t|, ``max_shadow``), drawn with draw number ``draw``. The same subsets
    serve every feature. The cap keeps the attack affordable: fitting an SVC costs O(n²)–O(n³), and
    the metrics fit :data:`SHADOW_DRAWS` of them. (The reference instead takes the *first* |D_t|
    retain images, once.)

    With x = :func:`mia_features` (p_y for ``"confidence"``, H(p) for ``"entropy"``), the attack is
    ``SVC(C=3, gamma="auto", kernel="rbf")`` fit on members (label 1) vs non-members (label 0), and

        MIA-efficacy = 1 − (1/|D_f|) Σ_{x ∈ D_f} ŷ(x)   (higher = more forgotten).
    """
    if feature not in MIA_FEATURES:
        raise ValueError(f"unknown MIA feature {feature!r}; valid features: {', '.join(MIA_FEATURES)}")
    if max_shadow < 1:
        raise ValueError(f"mia_efficacy: max_shadow must be at least 1, got {max_shadow}")
    for name, labels in (("retain", retain_labels), ("test", test_labels), ("forget", forget_labels)):
        if labels.shape[0] == 0:
            raise ValueError(f"mia_efficacy: the {name} split is empty; it needs at least one example")
    n = min(int(retain_labels.shape[0]), int(test_labels.shape[0]), max_shadow)
    members = stratified_indices(retain_labels.cpu().numpy(), n, seed=seed, purpose="shadow_members", draw=draw)
    nonmembers = stratified_indices(test_labels.cpu().numpy(), n, seed=seed, purpose="shadow_nonmembers", draw=draw)
    members_t, nonmembers_t = torch.from_numpy(members), torch.from_numpy(nonmembers)
    x = np.concatenate([
        mia_features(retain_logits.cpu()[members_t], retain_labels.cpu()[members_t], feature),
        mia_features(test_logits.cpu()[nonmembers_t], test_labels.cpu()[nonmembers_t], feature),
    ])[:, None]
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    attack = fit_attack(x, y)
    predicted = svc_predict(attack, mia_features(forget_logits, forget_labels, feature)[:, None])
    return float(1.0 - predicted.mean())


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
