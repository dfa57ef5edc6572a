"""DLFD: distribution-level feature distancing (Choi & Na, arXiv 2409.14747).

Instead of pushing the model away from the forget data, DLFD perturbs retain images so that the
distribution of their outputs moves *away* (in optimal-transport distance) from the outputs of the
forget images, keeps their labels, and trains on them. Utility is kept (the model still fits correctly
labelled retain data) while the loss gap that reveals forget-set membership shrinks. The entropic OT
cost is the reference's own log-domain Sinkhorn (:func:`sinkhorn_plan`), written here in torch so
that it is differentiable and runs on the model's device.
"""
from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import MethodData, Split, batches
from bench.mia import MIN_CV_PER_SIDE, cv_attack_accuracy, per_example_loss
from bench.registry import method
from bench.train import accuracy, predict_logits

#: The reference's Sinkhorn constants: the offset inside its log-sum-exp and its stopping threshold
#: on Σ_i |u_i − u_i^prev|.
LSE_OFFSET = 1e-6
SINKHORN_TOL = 0.1


def cosine_cost(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Cosine cost matrix between two sets of vectors, as the reference computes it.

    C_ij = max(0, 1 − cos(a_i, b_j)), cos = ``F.cosine_similarity(·, ·, eps=eps)`` (the
    reference's ``nn.CosineSimilarity(dim=2, eps=1e-6)`` on broadcast pairs), for ``a`` ``[m, d]``
    and ``b`` ``[n, d]``; returns ``[m, n]``. 0 for vectors pointing the same way, 2 for opposite
    ones. Differentiable in both arguments.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"cosine_cost needs [m, d] and [n, d] tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (1.0 - F.cosine_similarity(a[:, None, :], b[None, :, :], dim=2, eps=eps)).clamp_min(0.0)


def sinkhorn_plan(cost: torch.Tensor, *, reg: float = 0.01, max_iter: int = 50, tol: float = SINKHORN_TOL) -> torch.Tensor:
    """The reference's log-domain Sinkhorn plan T ∈ R^{m×n} for ``cost``, uniform marginals.

    μ = 1/m, ν = 1/n, ε = ``reg``, M(u, v)_ij = (−C_ij + u_i + v_j)/ε,
    lse(A)_i = log(Σ_j exp(A_ij) + 10⁻⁶). From u = v = 0, at most ``max_iter`` times:

        u ← ε·(log μ − lse(M(u, v))) + u,     v ← ε·(log ν − lse(M(u, v)ᵀ)) + v,

    stopping as soon as Σ_i |u_i − u_i^prev| < ``tol`` (0.1: about 13 iterations on typical
    inputs). T = exp(M(u, v)). Autograd runs through every iteration taken (the stopping test
    itself is not differentiated); computed in ``cost``'s dtype and device.
    """
    m, n = cost.shape
    log_mu = torch.full((m,), 1.0 / m, dtype=cost.dtype, device=cost.device).log()
    log_nu = torch.full((n,), 1.0 / n, dtype=cost.dtype, device=cost.device).log()
    u, v = torch.zeros_like(log_mu), torch.zeros_like(log_nu)

    def scaled(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (-cost + u[:, None] + v[None, :]) / reg

    def lse(a: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.exp(a).sum(1) + LSE_OFFSET)

    for _ in range(max_iter):
        u_prev = u
        u = reg * (log_mu - lse(scaled(u, v))) + u
        v = reg * (log_nu - lse(scaled(u, v).T)) + v
        if float((u - u_prev).detach().abs().sum()) < tol:
            break
    return torch.exp(scaled(u, v))


def ot_distance(a: torch.Tensor, b: torch.Tensor, *, reg: float = 0.01, max_iter: int = 50) -> torch.Tensor:
    """Entropic optimal-transport cost between two point clouds of output vectors (``compute_ot_loss``).

    OT(a, b) = ⟨T, C⟩ = Σ_ij T_ij C_ij with C = :func:`cosine_cost` (a, b) and T the plan of
    :func:`sinkhorn_plan` (ε = ``reg``, ≤ ``max_iter`` iterations, the reference's stopping rule).
    A scalar tensor, differentiable in ``a`` and ``b``. ≈ 0 for identical directions.
    """
    cost = cosine_cost(a, b)
    return (sinkhorn_plan(cost, reg=reg, max_iter=max_iter) * cost).sum()


def perturb_retain(
    model: nn.Module,
    x_retain: torch.Tensor,
    y_retain: torch.Tensor,
    forget_outputs: torch.Tensor,
    *,
    steps: int,
    strength: float,
    retain_weight: float,
    forget_weight: float,
    reg: float = 0.01,
    max_iter: int = 50,
) -> torch.Tensor:
    """Sign-gradient perturbation of retain images (DLFD's Algorithm 1, inner loop).

    With δ₀ = 0 and x̃ = clip(x_r + δ, 0, 1) in the model's [0, 1] input space, ``steps`` times:

        L(δ) = −w_r·CE(f(x̃), y_r) + w_f·OT(f(x̃), f(x_f)),    δ ← δ + α·sign(∇_δ L(δ)),

    α = ``strength``, w_r = ``retain_weight``, w_f = ``forget_weight``, OT = :func:`ot_distance`;
    i.e. ascent keeps the perturbed images correctly classified and drives their outputs away from
    the forget outputs ``forget_outputs`` (f(x_f), treated as constants). The model's parameters
    are not touched (gradients are taken with respect to δ only). Returns x̃ = clip(x_r + δ, 0, 1),
    detached.
    """
    delta = torch.zeros_like(x_retain, requires_grad=True)
    forget_outputs = forget_outputs.detach()
    for _ in range(steps):
        outputs = model((x_retain + delta).clamp(0.0, 1.0))
        loss = -retain_weight * F.cross_entropy(outputs, y_retain)
        loss = loss + forget_weight * ot_distance(outputs, forget_outputs, reg=reg, max_iter=max_iter)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += strength * grad.sign()
    return (x_retain + delta.detach()).clamp(0.0, 1.0)


def forgetting_score(model: nn.Module, members: Split, nonmembers: Split, *, seed: int, device: torch.device | str) -> float:
    """DLFD's forgetting score |0.5 − a|, a = the MUFAC/DLFD attack accuracy of the core metric.

    a = :func:`bench.mia.cv_attack_accuracy` on the per-example losses
    (:func:`bench.mia.per_example_loss`) of ``members`` vs ``nonmembers`` (balanced, 10-split
    cross-validated logistic regression). 0 = indistinguishable. Leaves the model in eval mode.
    """
    member_losses = per_example_loss(predict_logits(model, members, device=device), members.y)
    nonmember_losses = per_example_loss(predict_logits(model, nonmembers, device=device), nonmembers.y)
    acc, _ = cv_attack_accuracy(member_losses, nonmember_losses, seed=seed)
    return abs(0.5 - acc)


def retain_weight_at(step: int, total: int, initial: float, final: float) -> float:
    """Linear schedule w_r(t) = w₀ + (w₁ − w₀)·t/(T − 1), t = 0 … T − 1 (w₀ for T = 1)."""
    if total <= 1:
        return initial
    return initial + (final - initial) * step / (total - 1)


@method(
    uses=("forget", "retain"),
    paper="Choi & Na 2024, Distribution-Level Feature Distancing for Machine Unlearning (arXiv 2409.14747)",
    version=2,
    bounds={
        "lr": (0.0, None), "batch_size": (1, None), "weight_decay": (0.0, None), "epochs": (1, None),
        "max_steps": (0, None), "perturbation_steps": (0, None), "perturbation_strength": (0.0, None),
        "forget_weight": (0.0, None), "initial_retain_weight": (0.0, None), "final_retain_weight": (0.0, None),
        "forget_threshold": (0.0, 0.5), "max_forgetting_score": (0.0, 0.5), "ot_reg": (1e-6, None),
        "ot_iterations": (1, None), "eval_every": (1, None),
    },
    # Chosen under version 1 (POT's Sinkhorn, shuffled batches, 300-image monitor sets) and kept
    # for version 2 without re-tuning.
    # Digits (smoke tests): chosen on the validation split, seeds 0-2, by NoMUS on validation,
    # ½·val_acc + ½·(1 − 2·s_val) (s_val: forgetting score of the full forget set vs the validation
    # split), from perturbation_strength ∈ {0.01, 0.05, 0.1, 0.4} × perturbation_steps ∈ {2, 4} ×
    # eval_every ∈ {5, 6, 12} × lr ∈ {0.002, 0.008}; few steps and evaluations keep a run near a
    # CPU-second (the reference's 15 steps and an attack per batch take ~3 CPU-s here).
    tuned={
        "digits-cnn-class": {"perturbation_steps": 2, "perturbation_strength": 0.05, "eval_every": 12},
        "digits-cnn-multiclass": {"perturbation_steps": 2, "perturbation_strength": 0.05, "eval_every": 12},
        "digits-cnn-random10": {"perturbation_steps": 2, "perturbation_strength": 0.1, "eval_every": 12},
        # Fashion-MNIST random 10 %: same criterion, seed 0, one full epoch per run, from
        # lr ∈ {0.001, 0.002, 0.008} × perturbation_strength ∈ {0.01, 0.05, 0.1, 0.4} ×
        # eval_every ∈ {25, 50} (15 perturbation steps). The reference's lr 0.008 costs 1-2 points
        # of validation accuracy here; at 0.002 every strength lands within 0.001 of the best.
        "fmnist-lenet-random10": {"lr": 0.002, "perturbation_strength": 0.1, "eval_every": 25},
        # Fashion-MNIST class removal (outside DLFD's setting: it forgets people, not classes; the
        # suite runs it and reports what it does): the random-10 % values with the 2 perturbation
        # steps of the digits tasks, NOT tuned. Why: there the forgetting score of a removed class
        # never falls below forget_threshold, so every one of the 1,519 steps perturbs; with the
        # defaults (15 steps, an attack per batch) one run took 335 s of the suite's 30-minute
        # budget (measured, seed 0, 2 CPU threads) and left forget accuracy at 0.91.
        "fmnist-lenet-class": {"lr": 0.002, "perturbation_steps": 2, "perturbation_strength": 0.1, "eval_every": 25},
        "fmnist-lenet-multiclass": {"lr": 0.002, "perturbation_steps": 2, "perturbation_strength": 0.1,
                                    "eval_every": 25},
    },
)
def dlfd(
    model: nn.Module, data: MethodData, *, device: torch.device,
    lr: float = 0.008, batch_size: int = 32, weight_decay: float = 5e-4, epochs: int = 1, max_steps: int = 0,
    perturbation_steps: int = 15, perturbation_strength: float = 0.4, forget_weight: float = 3.0,
    initial_retain_weight: float = 0.0, final_retain_weight: float = 1.0,
    forget_threshold: float = 0.15, max_forgetting_score: float = 0.09,
    ot_reg: float = 0.01, ot_iterations: int = 50, eval_every: int = 1,
) -> nn.Module:
    """Train on retain images perturbed away (in OT distance) from the forget outputs; select by validation.

    One step per retain batch (``epochs`` passes, or the first ``max_steps`` batches when > 0),
    each paired with the next batch of a cycling forget loader, both in the splits' fixed order
    (the reference's ``shuffle=False`` loaders); t = 0 … T − 1 over the T steps:

    1. w_r(t) = w₀ + (w₁ − w₀)·t/(T − 1) (``initial_retain_weight`` → ``final_retain_weight``).
    2. While the last forgetting score s ≥ ``forget_threshold`` (s = ∞ before the first
       evaluation): x̃_r = :func:`perturb_retain` (``perturbation_steps`` sign steps of size
       α = ``perturbation_strength`` ascending −w_r·CE(f(x̃_r), y_r) + w_f·OT(f(x̃_r), f(x_f)),
       OT = :func:`ot_distance`, the reference's Sinkhorn with cosine cost, ε = ``ot_reg``,
       ≤ ``ot_iterations`` iterations and its stopping rule), then one SGD
       step on CE(f(x̃_r), y_r). Once s < ``forget_threshold``: one plain SGD step on CE(f(x_r), y_r).
       SGD: momentum 0.9, learning rate ``lr``, weight decay ``weight_decay`` (the reference's).
    3. Every ``eval_every`` steps (and after the last): s = |0.5 − a|, a = the core's MUFAC/DLFD
       attack (:func:`forgetting_score`) on the whole forget set (members) vs the whole
       **validation split** (non-members: the method never sees test data), as the reference does.
       Among evaluated steps with s ≤ ``max_forgetting_score`` the weights with the highest
       validation accuracy are kept and returned; if no step qualifies, the last weights are
       returned.

    ``eval_every = 1`` is the reference behaviour (an attack after every batch); larger values
    keep big tasks affordable and are recorded with the run's hyperparameters.

    Departures from the reference code (``Dasol-Choi/DLFD``, ``unlearn/dlfd.py``), and why:

    * **OT on the perturbed outputs.** The reference computes the OT term on the *unperturbed*
      retain outputs, which is constant in δ, so only the CE term steers the perturbation; we
      follow the paper's objective, OT(f(x_r + δ), f(x_f)).
    * **Train mode.** The reference's model stays in eval mode after its first evaluation; ours
      takes every optimizer step in train mode. The perturbation itself is crafted in eval mode,
      as adversarial perturbations usually are: its 15 extra forward passes would otherwise update
      batch-norm statistics with perturbed images and draw dropout noise into the search.
    * **Clipping in [0, 1] image space.** The reference clips already-normalized tensors to
      [0, 1]; our images are in [0, 1] and normalization is the model's first layer, so the clip
      keeps x_r + δ a valid image.
    * **Selection on a validation split.** The reference selects on MUFAC's ``val`` table, which
      MUFAC's benchmark also reports test accuracy on; we select on the task's validation split,
      carved from training data, and the harness reports on the test split.
    * The attack is balanced (:func:`bench.mia.cv_attack_accuracy` subsamples the larger side),
      so chance is exactly 0.5; the reference's unbalanced attack puts chance at the larger
      side's share, which contradicts the paper's score |0.5 − accuracy|.
    * A retain batch whose forget partner is smaller (the end of a forget pass) is still used:
      the OT term takes uniform marginals of unequal sizes; the reference skips that batch.
    """
    for name, split in (("forget", data.forget), ("retain", data.retain)):
        if split is None or len(split) == 0:
            raise ValueError(f"dlfd needs a non-empty {name} split; declare it in uses= and check the task")
    for name, split in (("forget", data.forget), ("validation", data.val)):
        if len(split) < MIN_CV_PER_SIDE:
            raise ValueError(
                f"dlfd's forgetting score needs at least {MIN_CV_PER_SIDE} {name} images for its "
                f"cross-validated attack, got {len(split)}; use a task with a larger {name} split"
            )
    device = torch.device(device)
    steps_per_epoch = -(-len(data.retain) // batch_size)
    total = epochs * steps_per_epoch if max_steps == 0 else min(max_steps, epochs * steps_per_epoch)
    retain_batches = itertools.chain.from_iterable(
        batches(data.retain, batch_size, device=device) for _ in range(epochs)
    )
    forget_batches = itertools.chain.from_iterable(  # the fixed order again on every pass, as the reference
        batches(data.forget, batch_size, device=device) for _ in itertools.count()
    )

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    model.to(device)
    score = float("inf")
    best_val, best_state = -1.0, None
    for step, (x_r, y_r) in zip(range(total), retain_batches):
        x_f, _ = next(forget_batches)
        if score >= forget_threshold:
            w_r = retain_weight_at(step, total, initial_retain_weight, final_retain_weight)
            model.eval()
            with torch.no_grad():
                forget_outputs = model(x_f)
            x_r = perturb_retain(model, x_r, y_r, forget_outputs, steps=perturbation_steps,
                                 strength=perturbation_strength, retain_weight=w_r,
                                 forget_weight=forget_weight, reg=ot_reg, max_iter=ot_iterations)
        model.train()
        loss = F.cross_entropy(model(x_r), y_r)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

        if (step + 1) % eval_every == 0 or step + 1 == total:
            score = forgetting_score(model, data.forget, data.val, seed=data.seed, device=device)
            if score <= max_forgetting_score:
                val_acc = accuracy(model, data.val, device=device)
                if val_acc > best_val:
                    best_val = val_acc
                    best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model
