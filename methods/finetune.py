"""Fine-tuning on the retain set (catastrophic forgetting as unlearning)."""
from __future__ import annotations

import torch
from torch import nn

from bench.data import MethodData
from bench.registry import method
from bench.train import train_epochs


@method(
    uses=("retain",),
    paper="Warnecke et al. 2023 / Golatkar et al. 2020 (FT baseline)",
    version=1,
    bounds={"epochs": (1, None), "lr": (0.0, None), "batch_size": (1, None)},
)
def finetune(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 5, lr: float = 1e-3, batch_size: int = 64,
) -> nn.Module:
    """Continue training the original on D_r only: min_θ Σ_{(x,y)∈D_r} CE(f_θ(x), y), Adam."""
    train_epochs(model, data.retain, epochs=epochs, batch_size=batch_size, lr=lr, seed=data.seed,
                 device=device, purpose="finetune")
    return model
