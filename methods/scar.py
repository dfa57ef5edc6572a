"""SCAR: Mahalanobis feature displacement of the forget set plus distillation on surrogate images.

Bonato, Cotogni, Sabetta, "Is Retain Set All You Need in Machine Unlearning? Restoring
Performance of Unlearned Models with Out-Of-Distribution Images", ECCV 2024. Reference code:
``jbonato1/SCAR`` (``src/Unlearning_methods.py``, defaults in ``src/opts.py``); our reading of it is
``shared/specs/methods.md``. Symbols: g the feature extractor and h the head of the model being
unlearned (``bench.models.feature_head``), f_0 the frozen original, D_f the forget set, D_s the
surrogate (out-of-distribution, unlabeled) images of the task, R the removed classes.

**Class statistics** (computed once, from f_0, no gradient). Tukey transform
t(z) = sign(z)·|z|^δ (= z^δ for the post-ReLU features of every architecture here). For each class
c (minus R in class removal): μ_c = mean of t(g_0(x)), Σ_c = cov of t(g_0(x)) over the class's
images, shrunk twice (``scar``; once in ``scar_self``, as in the reference) by

    Σ' = Σ + γ1·V1·I + γ2·V2·(1 − I),   V1 = mean diag(Σ),  V2 = mean of the non-zero off-diagonal entries,

normalized to a correlation matrix ρ_ij = Σ'_ij / (σ_i σ_j), σ_i = sqrt(Σ'_ii), and inverted with
the pseudo-inverse: S_c = pinv(ρ_c). ``stats="retain"`` embeds the retain set (the reference's
choice; forward passes only: no retain image ever enters a gradient step); ``stats="surrogate"``
embeds D_s pseudo-labelled by argmax f_0 (strictly retain-free).

**Distance** (the paper's Mahalanobis distance to the class distributions):

    d_c(x) = (u − m_c)ᵀ S_c (u − m_c),   u = t(g(x)) / ‖t(g(x))‖₂,   m_c = μ_c / ‖μ_c‖₂,

with g the *current* extractor (gradients flow into it). Each forget image's target class is the
nearest class other than its own label, chosen the first time the image is seen and kept.

**Loss** per optimizer step, one forget batch B_f and one surrogate batch B_s:

    L = λ1 · mean_{x∈B_f} d_{target(x)}(x)  +  λ2 · KL( softmax(f_0(x_s)/T) ‖ softmax(f(x_s)) ),

KL with ``batchmean`` over B_s. The paper's text names a JS divergence; the reference code computes
this KL (teacher temperature only), and so do we. The reference's ``+1e-4`` offsets inside its
log-softmaxes scale the KL by e^{1e-4} only and are left out.

**Class removal** masking: surrogate images whose f_0-argmax is in R are dropped from the
distillation term, and the teacher logits of the classes in R are set to the minimum of the whole
remaining teacher-logit matrix (not per row), so the student learns to never prefer them.

**Random-sample removal**: the teacher logits of D_s are computed once; surrogate images are
drawn class-balanced by f_0's label (with replacement, probability ∝ 1/n_y, n_y the count of that
label, counts below 3 raised to 5 as in the reference's sampler); the distance of a forget image of
class c is weighted by a_c·[a_c ≥ threshold], a_c the model's accuracy on the forget images of
class c over the whole of D_f, in eval mode, measured after the previous optimizer step (no
weighting on the first step) — classes already forgotten down to the threshold stop moving.

**Loop**: per epoch, per forget batch, a fresh pass over D_s (a permutation; in random-sample
removal |D_s| class-balanced draws) of which the first ``num_retain_samp + 1`` batches are used
(the reference's loop bound; fewer if D_s runs out), one Adam step each; the forget batch is
re-embedded at every step. The model is in train mode throughout, as in the reference. Early
stopping, as in the reference: from the third epoch on (0-based epoch index > 1), the forget
accuracy on the whole of D_f (eval mode) is measured after every optimizer step (the last step's
measurement is also the reference's epoch-end check) and the run stops as soon as it falls below
the target: ``target_accuracy`` (0.01) in class removal; in random-sample removal the original's
**validation** accuracy − ``random_margin`` (0.015). The reference uses the original's *test*
accuracy − 0.015 (a test leak); the validation accuracy is its leak-free equivalent. A target ≤ 0
turns early stopping off.

**Self-forget** (``scar_self``, class removal only; shrinkage once, no temperature): no forget set.
The forget images are the surrogate images that f_0 predicts as a class in R, labelled by that
prediction; every surrogate batch gives both terms — the distance term on its pseudo-forget images,
the masked distillation on the others. Each pseudo-forget image's target is recomputed at every
step (the reference never clears its first-pass flag in this mode), and a surrogate batch with no
pseudo-forget image is skipped entirely (the reference's NaN check skips that step). Early
stopping measures the pseudo-forget images at epoch ends: the reference measures the real forget
set, which self-forget, by the paper's own account, does not use (and which the retain-free entry
is not given).

**Entries** (the statistics source is fixed per entry, so ``data_used`` and the hyperparameters
JSON of every row say which ran): ``scar`` (stats="retain"; forget + retain + surrogate),
``scar_retainfree`` (stats="surrogate"; forget + surrogate), ``scar_self`` (stats="retain";
retain + surrogate; class removal only), ``scar_self_retainfree`` (stats="surrogate"; surrogate
only; class removal only).

**Where we differ from the reference code, on purpose**: targets are kept per image (the reference
keeps them per batch position, which a shuffled loader breaks); a target is a class id (the
reference compares the label with a row index of the statistics, which differ once a class is
removed); with several removed classes every one is filtered and masked (the reference filters
the first only); the Tukey transform is the signed power, with a gradient that stays finite at 0;
the random-removal stopping target uses validation accuracy instead of test accuracy (above).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import MethodData, generator, to_float
from bench.models import feature_head
from bench.methods._distill import frozen_copy
from bench.registry import method
from bench.train import accuracy

STATS_SOURCES = ("retain", "surrogate")
PAPER = (
    "Bonato, Cotogni, Sabetta 2024, 'Is Retain Set All You Need in Machine Unlearning? Restoring "
    "Performance of Unlearned Models with Out-Of-Distribution Images', ECCV 2024 (SCAR)"
)
EVAL_BATCH = 1024


# ---------------------------------------------------------------------------------------------
# Statistics and distances (pure functions)
# ---------------------------------------------------------------------------------------------


def tukey(z: torch.Tensor, delta: float) -> torch.Tensor:
    """Tukey's ladder of powers t(z) = sign(z)·|z|^δ, elementwise.

    For δ < 1 the derivative at 0 is infinite; the gradient is taken through ``|z|`` clamped
    away from zero (and is exactly zero at z = 0) so that dead ReLU units never yield NaN.
    """
    mag = z.abs()
    safe = mag.clamp_min(torch.finfo(z.dtype).tiny).pow(delta)
    return torch.where(mag > 0, torch.sign(z) * safe, torch.zeros_like(z))


def shrink_covariance(cov: torch.Tensor, gamma_1: float, gamma_2: float) -> torch.Tensor:
    """Σ + γ1·V1·I + γ2·V2·(1 − I), V1 = mean diag(Σ), V2 = mean of the non-zero off-diagonal
    entries of Σ (0 when there are none)."""
    d = cov.shape[0]
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    v1 = torch.diagonal(cov).mean()
    off = cov * (1 - eye)
    nonzero = off != 0
    v2 = off.sum() / nonzero.sum() if bool(nonzero.any()) else cov.new_zeros(())
    return cov + gamma_1 * v1 * eye + gamma_2 * v2 * (1 - eye)


def correlation(cov: torch.Tensor) -> torch.Tensor:
    """ρ_ij = Σ_ij / (σ_i σ_j), σ_i = sqrt(Σ_ii); a zero-variance coordinate is left unscaled."""
    sigma = torch.sqrt(torch.diagonal(cov).clamp_min(0))
    sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
    return cov / (sigma[:, None] * sigma[None, :])


@dataclass(frozen=True, eq=False)
class ClassStats:
    """Per-class Tukey-space means ``means [K, D]`` and precision matrices ``precisions [K, D, D]``
    for the class ids ``classes [K]`` (int64)."""

    classes: torch.Tensor
    means: torch.Tensor
    precisions: torch.Tensor

    def positions(self, labels: torch.Tensor) -> torch.Tensor:
        """Row index in ``means`` of each class id in ``labels`` (every id must have statistics)."""
        lookup = torch.full((int(self.classes.max()) + 1,), -1, dtype=torch.int64, device=self.classes.device)
        lookup[self.classes] = torch.arange(len(self.classes), device=self.classes.device)
        return lookup[labels]


def class_statistics(
    features: torch.Tensor, labels: torch.Tensor, classes: list[int], *,
    delta: float, gamma_1: float, gamma_2: float, shrink_times: int,
) -> ClassStats:
    """μ_c and S_c = pinv(corr(shrink^k(cov(t(z))))) for each class in ``classes`` that has at
    least two images in ``labels`` (a covariance needs two); computed in float64."""
    kept, means, precisions = [], [], []
    z = tukey(features.double(), delta)
    for c in classes:
        zc = z[labels == c]
        if len(zc) < 2:
            continue
        cov = torch.cov(zc.T)
        for _ in range(shrink_times):
            cov = shrink_covariance(cov, gamma_1, gamma_2)
        kept.append(c)
        means.append(zc.mean(0))
        precisions.append(torch.linalg.pinv(correlation(cov)))
    if not kept:
        raise ValueError(
            "SCAR: no class has two or more images to estimate its statistics from; use a larger "
            "statistics source (stats='retain', or a larger surrogate_size for the task)"
        )
    return ClassStats(
        classes=torch.tensor(kept, dtype=torch.int64, device=features.device),
        means=torch.stack(means).float(),
        precisions=torch.stack(precisions).float(),
    )


def mahalanobis(features: torch.Tensor, stats: ClassStats, delta: float) -> torch.Tensor:
    """``[N, K]``: d_c(z) = (u − m_c)ᵀ S_c (u − m_c), u = t(z)/‖t(z)‖, m_c = μ_c/‖μ_c‖."""
    u = F.normalize(tukey(features, delta), p=2, dim=-1)
    m = F.normalize(stats.means, p=2, dim=-1)
    diff = u[:, None, :] - m[None, :, :]
    return torch.einsum("nkd,kde,nke->nk", diff, stats.precisions, diff)


def nearest_other_class(dist: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Class id of the nearest class (smallest ``dist`` column) that is not the image's own label."""
    own = classes[None, :] == labels[:, None]
    if bool(own.all(1).any()):
        raise ValueError(
            f"SCAR: a forget image has no class other than its own with statistics to move to (classes with "
            f"statistics: {classes.tolist()}). With stats='surrogate' the classes are those the original "
            "predicts for the surrogate images; an undertrained original may predict only one: use "
            "stats='retain', more or other surrogate data, or a better-trained original"
        )
    return classes[dist.masked_fill(own, float("inf")).argmin(1)]


def fixed_targets(
    targets: torch.Tensor, idx: torch.Tensor, dist: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor,
) -> torch.Tensor:
    """Targets of the images ``idx`` (rows of ``dist``), fixed the first time each image is seen.

    ``targets`` holds one class id per image of the whole set, −1 for "not seen yet"; unseen
    images get :func:`nearest_other_class` (written into ``targets``), seen ones keep theirs.
    """
    new = targets[idx] < 0
    if bool(new.any()):
        targets[idx[new]] = nearest_other_class(dist[new].detach(), labels[new], classes)
    return targets[idx]


def mask_removed_logits(teacher_logits: torch.Tensor, removed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-removal masking of the teacher: ``(keep, masked)``.

    ``keep`` marks the rows whose argmax is not a removed class; ``masked`` is those rows with the
    removed classes' logits set to the minimum of the whole kept matrix.
    """
    keep = ~torch.isin(teacher_logits.argmax(1), removed)
    masked = teacher_logits[keep].clone()
    if masked.numel():
        masked[:, removed] = masked.min()
    return keep, masked


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student)), ``batchmean``; 0 for an empty batch."""
    if len(student_logits) == 0:
        return student_logits.sum() * 0.0
    return F.kl_div(F.log_softmax(student_logits, 1), F.log_softmax(teacher_logits / temperature, 1),
                    reduction="batchmean", log_target=True)


# ---------------------------------------------------------------------------------------------
# Shared pieces of the two loops
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def embed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``fn`` applied to uint8 images ``x`` in chunks, no gradient."""
    return torch.cat([fn(to_float(x[i:i + EVAL_BATCH].to(device))) for i in range(0, len(x), EVAL_BATCH)])


def check_stats(name: str, stats: str, data: MethodData) -> None:
    if stats not in STATS_SOURCES:
        raise ValueError(f"{name}: stats must be one of {STATS_SOURCES}, got {stats!r}")
    if stats == "retain" and data.retain is None:
        raise ValueError(f"{name}: stats='retain' needs the retain set, which this entry does not declare; "
                         f"use the retain-free entry ({name}_retainfree) for stats='surrogate'")
    if data.surrogate is None:
        raise ValueError(f"{name} needs the task's surrogate images; give the task a surrogate source")


@torch.no_grad()
def teacher_pass(teacher: nn.Module, x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """f_0's features and logits on uint8 images ``x`` (one pass)."""
    g0, h0 = feature_head(teacher)
    feats = embed(g0, x, device)
    return feats, h0(feats)


def fit_statistics(
    teacher: nn.Module, data: MethodData, stats: str, surrogate_pass: tuple[torch.Tensor, torch.Tensor] | None, *,
    device: torch.device, delta: float, gamma_1: float, gamma_2: float, shrink_times: int,
) -> ClassStats:
    """Class statistics of f_0's features on the retain set (``stats="retain"``) or on the
    surrogate images labelled by f_0's argmax (``stats="surrogate"``, from ``surrogate_pass``)."""
    if stats == "retain":
        assert data.retain is not None
        feats, labels = embed(feature_head(teacher)[0], data.retain.x, device), data.retain.y.to(device)
    else:
        assert surrogate_pass is not None
        feats, labels = surrogate_pass[0], surrogate_pass[1].argmax(1)
    classes = [c for c in range(data.num_classes) if c not in data.forget_classes]
    return class_statistics(feats, labels, classes, delta=delta, gamma_1=gamma_1, gamma_2=gamma_2,
                            shrink_times=shrink_times)


@torch.no_grad()
def forget_accuracies(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, device: torch.device,
) -> tuple[float, torch.Tensor]:
    """Top-1 accuracy of ``model`` on uint8 images ``x`` (eval mode, restored to train after):
    overall, and per class ``[num_classes]`` a_c = accuracy on the images labelled c (0 where none)."""
    model.eval()
    pred = embed(model, x, device).argmax(1)
    model.train()
    y = y.to(device)
    correct = (pred == y).float()
    total = torch.zeros(num_classes, device=device).index_add_(0, y, torch.ones_like(correct))
    hits = torch.zeros(num_classes, device=device).index_add_(0, y, correct)
    return float(correct.double().mean()), hits / total.clamp_min(1)


def class_weights(per_class_acc: torch.Tensor, threshold: float) -> torch.Tensor:
    """w_c = a_c·[a_c ≥ threshold] (the reference's ``vec_forg[vec_forg < th] = 0``)."""
    return torch.where(per_class_acc >= threshold, per_class_acc, torch.zeros_like(per_class_acc))


def balanced_draw_weights(pseudo: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-image draw probability ∝ 1/n_y, n_y the count of the image's f_0-label, with counts
    below 3 raised to 5 first (the reference's correction for rarely predicted classes)."""
    counts = torch.bincount(pseudo, minlength=num_classes)[pseudo].float()
    counts = torch.where(counts < 3, torch.full_like(counts, 5.0), counts)
    return 1.0 / counts


# ---------------------------------------------------------------------------------------------
# SCAR with a forget set
# ---------------------------------------------------------------------------------------------


def scar(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 30, lr: float = 5e-4, weight_decay: float = 0.0, batch_size: int = 1024,
    lambda_1: float = 1.0, lambda_2: float = 5.0, temperature: float = 1.0, delta: float = 0.5,
    gamma_1: float = 3.0, gamma_2: float = 3.0, num_retain_samp: int = 5, target_accuracy: float = 0.01,
    random_margin: float = 0.015, threshold: float = 0.8, stats: str = "retain",
) -> nn.Module:
    """Move forget features to the nearest other class (Mahalanobis) while distilling f_0 on surrogates.

    L = λ1·mean_i d_{target(i)}(x_i^f) + λ2·KL(softmax(f_0(x^s)/T) ‖ softmax(f(x^s))); statistics
    from ``stats`` ("retain": forward passes on D_r only, never a gradient step; "surrogate":
    D_s pseudo-labelled by f_0). See the module docstring for every step.
    """
    check_stats("scar", stats, data)
    if data.forget is None:
        raise ValueError("scar needs the forget set; for class removal without one use scar_self")
    model.to(device)
    teacher = frozen_copy(model)
    g, h = feature_head(model)
    class_removal = data.forget_kind == "classes"
    removed = torch.tensor(data.forget_classes, dtype=torch.int64, device=device)
    sur_x = data.surrogate.x.to(device)
    # Teacher logits of every surrogate image when needed up front (class-balanced draws, or
    # pseudo-labels for the statistics); otherwise per batch, as the reference does.
    sur_pass = teacher_pass(teacher, sur_x, device) if stats == "surrogate" or not class_removal else None
    teacher_sur = sur_pass[1] if sur_pass is not None else None
    st = fit_statistics(teacher, data, stats, sur_pass, device=device, delta=delta, gamma_1=gamma_1,
                        gamma_2=gamma_2, shrink_times=2)

    gen = generator(data.seed, "scar")
    fx, fy = data.forget.x.to(device), data.forget.y.to(device)
    targets = torch.full((len(fy),), -1, dtype=torch.int64, device=device)
    if class_removal:
        stop_below = target_accuracy
    else:
        draw_weight = balanced_draw_weights(teacher_sur.argmax(1), data.num_classes).cpu()
        stop_below = accuracy(teacher, data.val, device=device) - random_margin  # f_0 stays in eval mode
    weights = None  # random removal: per-class weights of the previous step (none before the first)

    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    stop = False
    for epoch in range(epochs):
        for f_idx in torch.randperm(len(fy), generator=gen).to(device).split(batch_size):
            x_f, y_f = to_float(fx[f_idx]), fy[f_idx]
            # a fresh pass over the surrogate set for every forget batch, of which the first
            # num_retain_samp + 1 batches are used (fewer if the set runs out), as in the reference
            if class_removal:
                sur_order = torch.randperm(len(sur_x), generator=gen)
            else:
                sur_order = torch.multinomial(draw_weight, len(sur_x), replacement=True, generator=gen)
            for s_idx in sur_order.to(device).split(batch_size)[:num_retain_samp + 1]:
                feats = g(x_f)
                dist = mahalanobis(feats, st, delta)
                target = fixed_targets(targets, f_idx, dist, y_f, st.classes)
                d = dist.gather(1, st.positions(target)[:, None]).squeeze(1)
                if weights is not None:
                    d = d * weights[y_f]
                x_s = to_float(sur_x[s_idx])
                student = model(x_s)
                if teacher_sur is not None:
                    teacher_logits = teacher_sur[s_idx]
                else:
                    with torch.no_grad():
                        teacher_logits = teacher(x_s)
                if class_removal:
                    keep, teacher_logits = mask_removed_logits(teacher_logits, removed)
                    student = student[keep]
                loss = lambda_1 * d.mean() + lambda_2 * distill_kl(student, teacher_logits, temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                checking = epoch > 1 and stop_below > 0
                if checking or not class_removal:
                    acc, per_class = forget_accuracies(model, fx, fy, data.num_classes, device)
                    if not class_removal:
                        weights = class_weights(per_class, threshold)
                    if checking and acc < stop_below:
                        stop = True
                        break
            if stop:
                break
        if stop:
            break
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------
# SCAR self-forget: class removal from surrogate images alone
# ---------------------------------------------------------------------------------------------


def scar_self(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 30, lr: float = 5e-4, weight_decay: float = 0.0, batch_size: int = 1024,
    lambda_1: float = 1.0, lambda_2: float = 5.0, delta: float = 0.5, gamma_1: float = 3.0,
    gamma_2: float = 3.0, target_accuracy: float = 0.01, stats: str = "retain",
) -> nn.Module:
    """SCAR's self-forget mode: class removal with no forget set, forget images found among surrogates.

    D_f' = {x ∈ D_s : argmax f_0(x) ∈ R}, labelled by that argmax. Per surrogate batch:
    L = λ1·mean_{x∈D_f'} d_{target(x)}(x) + λ2·KL(softmax(masked f_0(x)) ‖ softmax(f(x))) over the
    batch's other images (no temperature; shrinkage applied once; module docstring for the rest).
    """
    check_stats("scar_self", stats, data)
    if data.forget_kind != "classes":
        raise ValueError(f"scar_self applies to class removal only, not {data.forget_kind!r} forgetting")
    model.to(device)
    teacher = frozen_copy(model)
    g, h = feature_head(model)
    removed = torch.tensor(data.forget_classes, dtype=torch.int64, device=device)
    sur_x = data.surrogate.x.to(device)
    sur_pass = teacher_pass(teacher, sur_x, device)
    teacher_sur = sur_pass[1]
    st = fit_statistics(teacher, data, stats, sur_pass, device=device, delta=delta, gamma_1=gamma_1,
                        gamma_2=gamma_2, shrink_times=1)
    pseudo = teacher_sur.argmax(1)
    is_forget = torch.isin(pseudo, removed)
    forget_x, forget_y = sur_x[is_forget], pseudo[is_forget]  # the self-found forget images

    gen = generator(data.seed, "scar_self")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        for s_idx in torch.randperm(len(sur_x), generator=gen).to(device).split(batch_size):
            fgt = is_forget[s_idx]
            if not bool(fgt.any()):  # no pseudo-forget image: the reference skips the whole step
                continue
            feats = g(to_float(sur_x[s_idx]))
            y_f = pseudo[s_idx[fgt]]
            dist = mahalanobis(feats[fgt], st, delta)
            target = nearest_other_class(dist.detach(), y_f, st.classes)  # recomputed at every step
            d = dist.gather(1, st.positions(target)[:, None]).squeeze(1)
            keep, teacher_logits = mask_removed_logits(teacher_sur[s_idx], removed)
            loss = lambda_1 * d.mean() + lambda_2 * distill_kl(h(feats)[keep], teacher_logits, 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if target_accuracy > 0 and len(forget_y):
            if forget_accuracies(model, forget_x, forget_y, data.num_classes, device)[0] < target_accuracy:
                break
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------
# Registration: the statistics source is part of the entry, so the leaderboard shows which ran
# (``data_used`` and the hyperparameters JSON both say it).
# ---------------------------------------------------------------------------------------------

BOUNDS = {
    "epochs": (1, None), "lr": (0.0, None), "weight_decay": (0.0, None), "batch_size": (1, None),
    "lambda_1": (0.0, None), "lambda_2": (0.0, None), "delta": (0.0, None), "gamma_1": (0.0, None),
    "gamma_2": (0.0, None), "target_accuracy": (0.0, 1.0),
}
SCAR_BOUNDS = BOUNDS | {"temperature": (0.0, None), "num_retain_samp": (0, None), "threshold": (0.0, 1.0),
                       "random_margin": (0.0, 1.0)}

# Tuned on each task's validation split (seeds 0, 1, 2; small grids over epochs, batch_size, lr,
# lambda_1, lambda_2, num_retain_samp, threshold), choosing, for class removal, the setting whose
# validation accuracy on the removed classes is ~0 with the highest validation accuracy on the kept
# classes, among those that run in about a second on 2 CPU cores; for random removal, the smallest
# |forget accuracy − original's validation accuracy| + |validation accuracy − original's| (the
# oracle's forget accuracy is about its accuracy on unseen images). The reference's defaults (batch
# 1024, lr 5e-4, 30 epochs) are kept for every other task.
CLASS_FAST = {"epochs": 10, "batch_size": 128, "lr": 2e-3, "num_retain_samp": 2}
# Fashion-MNIST (5400 forget images, 10000 surrogates): one surrogate batch per forget batch is
# enough. Tuned under version 1 (seeds 0, 1, 2 for class, seed 0 for random10), whose epoch-end
# early stopping from the first epoch ended class-removal runs after one epoch; version 2 checks
# only from the third epoch (the reference's rule), so these runs now take their 3 (class) or
# 2 (random10: never stops early) epochs. Not re-tuned.
FMNIST_CLASS = {"epochs": 3, "batch_size": 256, "lr": 1e-3, "num_retain_samp": 0}
FMNIST_RANDOM = {"epochs": 2, "batch_size": 256, "lr": 1e-3, "lambda_1": 3.0, "lambda_2": 20.0, "threshold": 0.9,
                 "num_retain_samp": 0}
SCAR_TUNED = {
    "digits-cnn-class": CLASS_FAST | {"lambda_1": 3.0},
    "digits-cnn-multiclass": CLASS_FAST | {"lambda_1": 0.1, "lambda_2": 50.0},
    "digits-cnn-random10": {"epochs": 5, "batch_size": 128, "lr": 2e-3, "lambda_1": 30.0, "lambda_2": 20.0,
                            "threshold": 0.95, "num_retain_samp": 2},
    "fmnist-lenet-class": FMNIST_CLASS,
    "fmnist-lenet-random10": FMNIST_RANDOM,
}
SCAR_RETAINFREE_TUNED = {
    "digits-cnn-class": CLASS_FAST | {"lambda_1": 0.1, "lambda_2": 50.0},
    "digits-cnn-multiclass": CLASS_FAST | {"lambda_1": 0.1, "lambda_2": 50.0},
    "digits-cnn-random10": {"epochs": 3, "batch_size": 128, "lr": 1e-3, "lambda_1": 0.3, "lambda_2": 20.0,
                            "threshold": 0.95, "num_retain_samp": 2},
    "fmnist-lenet-class": FMNIST_CLASS,
    "fmnist-lenet-random10": FMNIST_RANDOM,
}
# Self-forget: early stopping on the self-found forget images fires after the first epoch, long
# before the real removed-class images are forgotten (validation accuracy on them 0.15-0.2), so
# the tuned settings run a fixed number of epochs (target_accuracy 0 never triggers).
SELF_FAST = {"epochs": 4, "batch_size": 512, "lr": 2e-3, "lambda_2": 20.0, "target_accuracy": 0.0}
SCAR_SELF_TUNED = {
    "digits-cnn-class": SELF_FAST,
    "digits-cnn-multiclass": SELF_FAST,
    "fmnist-lenet-class": SELF_FAST | {"epochs": 2, "lambda_1": 0.1},  # 10000 surrogates: 2 epochs suffice
}
SCAR_SELF_RETAINFREE_TUNED = {
    "digits-cnn-class": SELF_FAST | {"lambda_1": 0.1},
    "digits-cnn-multiclass": SELF_FAST | {"lambda_1": 0.1, "batch_size": 256},
    "fmnist-lenet-class": SELF_FAST | {"epochs": 2, "lambda_1": 0.1},
}

method(name="scar", uses=("forget", "retain", "surrogate"), paper=PAPER, version=2,
       bounds=SCAR_BOUNDS, fixed={"stats": "retain"}, tuned=SCAR_TUNED)(scar)
method(name="scar_retainfree", uses=("forget", "surrogate"), paper=PAPER, version=2,
       bounds=SCAR_BOUNDS, fixed={"stats": "surrogate"}, tuned=SCAR_RETAINFREE_TUNED)(scar)
method(name="scar_self", uses=("retain", "surrogate"), paper=PAPER, version=2, bounds=BOUNDS,
       fixed={"stats": "retain"}, applies_to=("classes",), tuned=SCAR_SELF_TUNED)(scar_self)
method(name="scar_self_retainfree", uses=("surrogate",), paper=PAPER, version=2, bounds=BOUNDS,
       fixed={"stats": "surrogate"}, applies_to=("classes",), tuned=SCAR_SELF_RETAINFREE_TUNED)(scar_self)
