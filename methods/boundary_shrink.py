"""Boundary Shrink (Chen et al., CVPR 2023): relabel each forget image with its nearest wrong class,
found by one FGSM step against the original, and fine-tune on D_f with those labels.

Chen, Gao, Liu, Peng, Zhou, "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
Decision Boundary", CVPR 2023. Reference implementations read: ``kairanzhao/RUM:
unlearn/boundary_sh.py`` (``FGSM_perturb``, ``boundary_shrink_iter``) and the authors' released code
as mirrored in public repositories (``boundary_shrink``: FGSM bound 0.1, SGD lr 1e-5, momentum 0.9,
10 "poison" epochs over D_f).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import MethodData, Split, batches
from bench.registry import method
from bench.train import train_epochs

#: Forget images labelled per forward pass of the frozen original.
LABEL_BATCH = 256


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bound: float) -> torch.Tensor:
    """x' = round(255 · clip(x + ε · sign(∇_x CE(f(x), y)), 0, 1)) / 255, ε = ``bound``; f in eval mode."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (torch.round((x + bound * grad.sign()).clamp(0.0, 1.0) * 255) / 255).detach()


def nearest_wrong_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, bound: float,
                         removed: tuple[int, ...]) -> torch.Tensor:
    """ŷ = argmax_{k ∉ {y} ∪ R} f(x')_k, x' = :func:`fgsm` (x, y): the class the adversarial step moves
    the image towards, never its own label nor another removed class (R = ``removed``)."""
    logits = model(fgsm(model, x, y, bound)).detach()
    banned = torch.zeros_like(logits, dtype=torch.bool)
    banned[torch.arange(len(y), device=y.device), y] = True
    if removed:
        banned[:, list(removed)] = True
    return logits.masked_fill(banned, float("-inf")).argmax(1)


@method(
    uses=("forget",),
    paper="Chen et al. 2023, 'Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision Boundary', CVPR 2023 (Boundary Shrink)",
    version=1,
    bounds={"bound": (0.0, 1.0), "epochs": (1, None), "lr": (0.0, None), "batch_size": (1, None), "momentum": (0.0, 1.0)},
    applies_to=("classes",),
)
def boundary_shrink(
    model: nn.Module, data: MethodData, *, device: torch.device,
    bound: float = 0.1, epochs: int = 10, lr: float = 1e-5, batch_size: int = 64, momentum: float = 0.9,
) -> nn.Module:
    """Boundary Shrink: fine-tune on D_f relabelled with each image's FGSM-nearest wrong class.

    1. With the original f_0 frozen (eval mode), for every forget image (x, y):
       x' = round(255 · clip(x + ε·sign(∇_x CE(f_0(x), y)), 0, 1))/255 (ε = ``bound`` = 0.1, the
       paper's), ŷ = argmax_{k ∉ {y} ∪ R} f_0(x')_k — the "nearest but incorrect" class.
    2. min_θ Σ_{x∈D_f} CE(f_θ(x), ŷ(x)) on the clean images, SGD (lr 1e-5, momentum 0.9, no weight
       decay), 10 epochs, batch 64, train mode: the forget class's region shrinks into its neighbours.

    Departures from the reference: (a) ŷ is computed once — the reference recomputes it every
    batch with the same frozen f_0 and the same deterministic step, which gives the same labels;
    (b) when the FGSM step fails to leave class y, the reference trains on ŷ = y (a no-op for that
    image); we take the highest-scoring other class of f_0(x'), the nearest wrong class the paper
    describes; (c) with several removed classes, ŷ is never another removed class (the reference
    removes one class).
    """
    model.to(device).eval()
    labels = torch.cat([nearest_wrong_labels(model, x, y, bound=bound, removed=data.forget_classes).cpu()
                        for x, y in batches(data.forget, LABEL_BATCH, device=device)])
    train_epochs(model, data.forget.with_labels(labels), epochs=epochs, batch_size=batch_size, lr=lr,
                 seed=data.seed, device=device, optimizer="sgd", momentum=momentum, purpose="boundary_shrink")
    return model
