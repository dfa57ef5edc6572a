"""SGD fine-tuning on D_r with a per-epoch learning-rate list, shared by ``msg`` and ``ct``.

Both NeurIPS 2023 challenge entries fine-tune with SGD (momentum, weight decay) and a schedule that
is stepped once per epoch (``scheduler.step()`` after each pass over D_r in ``xcadet/deepunlearn``
``munl/unlearning/kgltop2.py`` and ``kgltop5.py``); :func:`bench.train.train_epochs` steps its cosine
schedule per batch, so this module runs the reference's per-epoch form: one optimizer for the whole
run, epoch e at learning rate ``epoch_lrs[e]``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bench.data import Split, batches, generator, seed_stream
from bench.train import make_optimizer, train_step


def cosine_epoch_lrs(lr: float, epochs: int) -> list[float]:
    """``CosineAnnealingLR(T_max=E)`` stepped per epoch: η_e = η·(1 + cos(π e / E)) / 2, e = 0 … E−1."""
    return [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]


def warmup_decay_epoch_lrs(lr: float, epochs: int) -> list[float]:
    """MSG's linear warm-up then linear decay, stepped per epoch. With A = ⌊(E+1)/2⌋, T = E+1 and
    epoch e = 1 … E: η_e = η·e/A for e ≤ A, else η·(T − e)/(T − A).

    (The reference's ``LinearAnnealingLR`` counts ``_step_count`` from 1 at construction.)"""
    warm, total = (epochs + 1) // 2, epochs + 1
    return [lr * e / warm if e <= warm else lr * (total - e) / (total - warm) for e in range(1, epochs + 1)]


def sgd_epochs(model: nn.Module, split: Split, *, epoch_lrs: list[float], batch_size: int, momentum: float,
               weight_decay: float, seed: int, device: torch.device, purpose: str) -> nn.Module:
    """Minimise CE(f_θ(x), y) over ``split``, one epoch per entry of ``epoch_lrs``, one SGD optimizer
    (momentum and weight decay as given); shuffling and the torch RNG seeded from ``(seed, purpose)``."""
    if len(split) == 0:
        raise ValueError(f"cannot fine-tune on an empty {split.name} split")
    torch.manual_seed(seed_stream(seed, purpose, "torch"))
    g = generator(seed, purpose, "order")
    model.to(device).train()
    opt = make_optimizer(model.parameters(), optimizer="sgd", lr=epoch_lrs[0] if epoch_lrs else 0.0,
                         momentum=momentum, weight_decay=weight_decay)
    for lr in epoch_lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        for x, y in batches(split, batch_size, device=device, shuffle=True, g=g):
            train_step(model, opt, x, y)
    return model
