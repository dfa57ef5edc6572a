"""ℓ1-sparse unlearning: fine-tuning on the retain set with an ℓ1 penalty whose weight decays to zero.

Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, "Model Sparsity Can Simplify Machine Unlearning",
NeurIPS 2023 ("sparsity-aware unlearning"). Reference implementations read:
``OPTML-Group/Unlearn-Sparse`` (``unlearn/FT.py``: ``FT_l1`` / ``FT_iter``, ``unlearn/FT_prune.py``,
``unlearn/impl.py``, defaults in ``arg_parser.py`` and the README) and ``kairanzhao/RUM:
unlearn/FT_prune.py`` (the same code).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import MethodData, batches, generator
from bench.registry import method
from bench.train import make_optimizer, train_step


def l1_weight(epoch: int, *, gamma: float, epochs: int, no_l1_epochs: int) -> float:
    """The penalty weight of epoch ``epoch`` (0-based): γ_e = γ · (1 − e / (E − E_0)) for
    e < E − E_0, else 0 (E = ``epochs``, E_0 = ``no_l1_epochs``, the last epochs without penalty).

    Linear decay from γ at the first epoch towards 0, one value per epoch.
    """
    active = epochs - no_l1_epochs
    if active < 1:
        raise ValueError(f"no_l1_epochs={no_l1_epochs} leaves no epoch with the l1 penalty out of epochs={epochs}; "
                         "use no_l1_epochs < epochs")
    if epoch < active:
        return gamma * (1.0 - epoch / active)
    return 0.0


def l1_norm(model: nn.Module) -> torch.Tensor:
    """‖θ‖₁ = Σ |θ_i| over every parameter of the model (weights and biases)."""
    return sum(p.abs().sum() for p in model.parameters())


@method(
    uses=("retain",),
    paper="Jia et al. 2023, 'Model Sparsity Can Simplify Machine Unlearning', NeurIPS 2023 (l1-sparse MU)",
    version=1,
    bounds={"epochs": (1, None), "lr": (0.0, None), "batch_size": (1, None), "gamma": (0.0, None),
            "no_l1_epochs": (0, None), "momentum": (0.0, 1.0), "weight_decay": (0.0, None)},
)
def l1_sparse(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 10, lr: float = 0.01, batch_size: int = 256, gamma: float = 5e-4, no_l1_epochs: int = 0,
    momentum: float = 0.9, weight_decay: float = 5e-4,
) -> nn.Module:
    """Fine-tune on D_r with a decaying ℓ1 penalty (sparsity-aware unlearning, ℓ1-sparse MU).

    Objective of epoch e (the paper's ℓ1-regularised fine-tuning with its linearly decaying γ):

        min_θ  mean_{(x,y)∈B_r} CE(f_θ(x), y) + γ_e · ‖θ‖₁,   γ_e = γ · (1 − e / (E − E_0))  (e < E − E_0), else 0,

    (:func:`l1_weight`), one SGD step (momentum, weight decay) per retain batch, a fresh shuffle
    of D_r each epoch, train mode. The penalty pulls the weights towards a sparse solution early
    and lets plain fine-tuning recover the retain accuracy as γ_e → 0.

    Defaults: the README's ℓ1-sparse command (10 epochs, lr 0.01) and ``arg_parser.py`` (SGD,
    momentum 0.9, weight decay 5e-4, batch 256); E_0 = 0 (the penalty decays over all epochs).
    γ is a choice: the scripts leave it to the user (``--alpha``, whose argparse default 0.2
    belongs to influence unlearning, which shares the flag); 5·10⁻⁴ is the default of a public
    re-implementation of ``FT_l1``, and the paper's own CIFAR-10 value was not checked against
    its text. Its pull on each weight is lr·γ_e per step (before momentum).

    Departures from the reference: none in the computation. The reference's ``FT_iter`` keeps γ
    constant when ``unlearn_epochs == no_l1_epochs`` in one of its two branches and divides by
    zero in the other; we reject that setting with an error. Its prune-first variants and masks
    (``FT_prune_bi``, ``--mask``) are not part of this entry.
    """
    l1_weight(0, gamma=gamma, epochs=epochs, no_l1_epochs=no_l1_epochs)  # reject a bad schedule before training
    opt = make_optimizer(model.parameters(), optimizer="sgd", lr=lr, momentum=momentum, weight_decay=weight_decay)
    g = generator(data.seed, "l1_sparse")
    model.to(device).train()
    for epoch in range(epochs):
        weight = l1_weight(epoch, gamma=gamma, epochs=epochs, no_l1_epochs=no_l1_epochs)

        def loss_fn(logits: torch.Tensor, y: torch.Tensor, weight: float = weight) -> torch.Tensor:
            loss = F.cross_entropy(logits, y)
            return loss + weight * l1_norm(model) if weight > 0 else loss

        for x, y in batches(data.retain, batch_size, device=device, shuffle=True, g=g):
            train_step(model, opt, x, y, loss_fn=loss_fn)
    return model
