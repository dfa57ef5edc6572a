"""CT, "convolution transpose" (NeurIPS 2023 unlearning challenge, top 7): transpose every conv
kernel's two spatial axes, then fine-tune on D_r.

Triantafillou et al., "Are we making progress in unlearning? Findings from the first NeurIPS
unlearning competition", 2024; re-implemented and ranked by DeepUnlearn (Cadet et al., 2024).
Reference implementation read: ``xcadet/deepunlearn: munl/unlearning/kgltop5.py``
(``rotate_weight`` and the fine-tune in ``KGLTop5.unlearn``).
"""
from __future__ import annotations

import torch
from torch import nn

from bench.data import MethodData
from bench.registry import method

from ._sgd import cosine_epoch_lrs, sgd_epochs


@torch.no_grad()
def transpose_conv_kernels(model: nn.Module) -> int:
    """W[o, i, a, b] ← W[o, i, b, a] for the weight of every ``nn.Conv2d``; returns how many layers.

    A non-square kernel would change shape (and its padding would no longer match), so it is refused."""
    count = 0
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        kh, kw = conv.weight.shape[2:]
        if kh != kw:
            raise ValueError(f"ct transposes square conv kernels; layer {name} has a {kh}x{kw} kernel")
        conv.weight.copy_(conv.weight.transpose(2, 3).clone())
        count += 1
    if count == 0:
        raise ValueError("ct transposes conv kernels and this model has none; use a convolutional architecture")
    return count


@method(
    uses=("retain",),
    paper="Triantafillou et al. 2024, NeurIPS 2023 Machine Unlearning Challenge (convolution transpose, top 7); DeepUnlearn (Cadet et al. 2024)",
    version=1,
    bounds={"epochs": (1, None), "lr": (0.0, None), "batch_size": (1, None), "momentum": (0.0, 1.0),
            "weight_decay": (0.0, None)},
)
def ct(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 3, lr: float = 1e-3, batch_size: int = 64, momentum: float = 0.9, weight_decay: float = 5e-4,
) -> nn.Module:
    """Convolution transpose: swap each conv kernel's spatial axes, then fine-tune on D_r.

    1. For every conv layer, W ← Wᵀ over the two spatial axes (W'[o, i, a, b] = W[o, i, b, a]): the
       filters keep their norms and channel structure but no longer match the features the later
       layers learned — a structured perturbation instead of noise.
    2. Fine-tune on D_r: min_θ Σ CE(f_θ(x), y), SGD (momentum 0.9, weight decay 5e-4, batch 64),
       ``epochs`` = 3 epochs, cosine annealing stepped per epoch: η_e = η·(1 + cos(π e/E))/2, e = 0 … E−1.

    Defaults are the reference's (``ORIGINAL_*``). Departures: the weight is transposed in place
    (the reference wraps a non-contiguous transposed view in a new ``nn.Parameter``: same values);
    non-square kernels are refused rather than changing the layer's shape.
    """
    model.to(device)
    transpose_conv_kernels(model)
    sgd_epochs(model, data.retain, epoch_lrs=cosine_epoch_lrs(lr, epochs), batch_size=batch_size,
               momentum=momentum, weight_decay=weight_decay, seed=data.seed, device=device, purpose="ct")
    return model
