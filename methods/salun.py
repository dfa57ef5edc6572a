"""SalUn: random-label fine-tuning of the salient weights only (weight saliency from the forget loss).

Fan, Liu, Zhang, Wei, Wong, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency in Both Image Classification and Generation", ICLR 2024. Reference implementation read:
``OPTML-Group/Unlearn-Saliency`` (``Classification/generate_mask.py`` for the mask,
``Classification/unlearn/RL.py`` and ``unlearn/impl.py`` for the fine-tuning, defaults in
``arg_parser.py`` and the README).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import MethodData, Split, batches, generator
from bench.methods.random_label import random_wrong_labels
from bench.registry import method
from bench.train import make_optimizer, train_step


def forget_gradient_magnitudes(model: nn.Module, forget: Split, *, batch_size: int,
                               device: torch.device) -> dict[str, torch.Tensor]:
    """|∇_θ ℓ_f(θ_0)| per parameter, ℓ_f = (1/|D_f|) Σ_{(x,y)∈D_f} CE(f_θ(x), y), at the original
    weights, the model in eval mode; parameters that get no gradient have magnitude 0."""
    model.to(device).eval()
    model.zero_grad(set_to_none=True)
    for x, y in batches(forget, batch_size, device=device):
        (F.cross_entropy(model(x), y, reduction="sum") / len(forget)).backward()
    out = {name: (p.grad.detach().abs().clone() if p.grad is not None else torch.zeros_like(p))
           for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


def saliency_mask(magnitudes: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Boolean masks marking the k = ⌊ratio · n⌋ largest of the n magnitudes over ALL parameters
    (one global ranking, not per layer).

    Ties are broken deterministically: of equal magnitudes, the one earlier in the flattened
    order (parameters in ``named_parameters`` order, each row-major) ranks higher, so exactly k
    entries are salient whatever the ties.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"saliency ratio must be in [0, 1], got {ratio}")
    flat = torch.cat([m.flatten() for m in magnitudes.values()])
    k = math.floor(ratio * flat.numel())
    order = torch.sort(flat, descending=True, stable=True).indices
    salient = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    salient[order[:k]] = True
    masks, start = {}, 0
    for name, m in magnitudes.items():
        masks[name] = salient[start:start + m.numel()].view_as(m)
        start += m.numel()
    return masks


@torch.no_grad()
def restore_frozen(model: nn.Module, masks: dict[str, torch.Tensor], theta0: dict[str, torch.Tensor]) -> None:
    """θ ← m ⊙ θ + (1 − m) ⊙ θ_0, written as a selection so that frozen weights are bit-exact θ_0."""
    for name, p in model.named_parameters():
        p.copy_(torch.where(masks[name], p, theta0[name]))


@method(
    uses=("forget", "retain"),
    paper="Fan et al. 2024, 'SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency', ICLR 2024",
    version=1,
    bounds={"epochs": (1, None), "lr": (0.0, None), "batch_size": (1, None), "mask_ratio": (0.0, 1.0),
            "momentum": (0.0, 1.0), "weight_decay": (0.0, None)},
)
def salun(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 10, lr: float = 0.013, batch_size: int = 256, mask_ratio: float = 0.5,
    momentum: float = 0.9, weight_decay: float = 5e-4,
) -> nn.Module:
    """Random-label fine-tuning restricted to the weights most salient for the forget loss (SalUn).

    **Saliency** (at the original weights θ_0):

        m_S = 1( |∇_θ ℓ_f(θ; D_f)|_{θ=θ_0} ≥ γ ),   ℓ_f = mean CE on D_f,

    γ chosen so that a share ``mask_ratio`` of all weights is salient (the paper's and the
    README's default 0.5: the median): the top ⌊ratio·n⌋ magnitudes over the whole model,
    ties broken by parameter order (:func:`saliency_mask`).

    **Unlearning** (random labelling on the salient weights): θ_u = m_S ⊙ (Δθ + θ_0) + (1 − m_S) ⊙ θ_0, Δθ
    minimising

        E_{(x,y)∈D_f, y'≠y} CE(f_θ(x), y') + E_{(x,y)∈D_r} CE(f_θ(x), y).

    Algorithm: per epoch, draw a fresh random label y' for every forget image (uniform over the
    classes other than y and not being removed), shuffle D_r ∪ {(x, y')} and take one SGD step
    (momentum, weight decay) per batch, the gradients masked by m_S; after every step the
    non-salient weights are set back to θ_0 exactly.

    Defaults (README example for ResNet-18/CIFAR-10, 10% random forgetting; ``arg_parser.py``):
    mask ratio 0.5, 10 epochs, SGD lr 0.013, momentum 0.9, weight decay 5e-4, batch 256.

    Departures from the reference, with reasons:

    * **Frozen weights stay frozen.** Until upstream's 2026 fix ("Fix weight decay", #33) the
      reference masked only the gradients, so SGD's weight decay (and momentum) still moved the
      "frozen" weights; we mask the gradients *and* reset the non-salient weights to θ_0 after
      every step, so they equal the original's bit for bit (``tests/test_salun.py`` proves it).
    * **Saliency gradient**: the gradient of the mean CE over all of D_f; the reference sums the
      gradients of per-batch mean losses, which weights a smaller last batch up (the ranking is
      the same when every batch has the same size).
    * **Ties**: the reference ranks with an unstable ``argsort``, so which of equal magnitudes is
      salient is arbitrary; ours is stable (see :func:`saliency_mask`).
    * **Random labels**: the reference draws y' uniformly over all classes, so y' = y happens; the
      paper says y' ≠ y, and in class removal a removed class is no useful target: we draw from the
      classes that are neither y nor removed (:func:`bench.methods.random_label.random_wrong_labels`).
    * **Order**: one shuffled pass over the union (the reference's CIFAR-100 branch); its CIFAR-10
      branch runs all forget batches, then all retain batches.
    """
    g = generator(data.seed, "salun")
    masks = saliency_mask(forget_gradient_magnitudes(model, data.forget, batch_size=batch_size, device=device), mask_ratio)
    theta0 = {name: p.detach().clone() for name, p in model.named_parameters()}
    hooks = [p.register_hook(lambda grad, m=masks[name]: grad * m) for name, p in model.named_parameters()]
    opt = make_optimizer(model.parameters(), optimizer="sgd", lr=lr, momentum=momentum, weight_decay=weight_decay)
    kept = torch.tensor([c for c in range(data.num_classes) if c not in data.forget_classes])
    model.train()
    try:
        for _ in range(epochs):
            relabelled = random_wrong_labels(data.forget.y, kept, g)
            union = Split("forget+retain", torch.cat([data.forget.x, data.retain.x]),
                          torch.cat([relabelled, data.retain.y]))
            for x, y in batches(union, batch_size, device=device, shuffle=True, g=g):
                train_step(model, opt, x, y)
                restore_frozen(model, masks, theta0)
    finally:
        for hook in hooks:
            hook.remove()
    return model
