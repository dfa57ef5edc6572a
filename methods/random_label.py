"""Random labels: train on the forget set relabelled with random wrong classes, plus the retain set."""
from __future__ import annotations

import torch
from torch import nn

from bench.data import MethodData, Split, generator
from bench.registry import method
from bench.train import train_epochs


def random_wrong_labels(y: torch.Tensor, allowed: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """For each label y_i, a uniformly random class from ``allowed`` \\ {y_i}."""
    out = torch.empty_like(y)
    for i, label in enumerate(y.tolist()):
        choices = allowed[allowed != label]
        out[i] = choices[torch.randint(len(choices), (1,), generator=g)]
    return out


@method(
    uses=("forget", "retain"),
    paper="Hayase et al. 2020; Graves et al. 2021 (random labelling)",
    version=1,
    bounds={"epochs": (1, None), "lr": (0.0, None), "batch_size": (1, None)},
)
def random_label(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 3, lr: float = 1e-3, batch_size: int = 64,
) -> nn.Module:
    """Fine-tune on D_r ∪ {(x, ỹ) : x ∈ D_f}, ỹ uniform over the wrong classes (the kept classes
    for class removal): min_θ Σ CE(f_θ(x), y) over that union, Adam."""
    kept = torch.tensor([c for c in range(data.num_classes) if c not in data.forget_classes])
    relabelled = random_wrong_labels(data.forget.y, kept, generator(data.seed, "random_label"))
    union = Split("forget+retain", torch.cat([data.forget.x, data.retain.x]), torch.cat([relabelled, data.retain.y]))
    train_epochs(model, union, epochs=epochs, batch_size=batch_size, lr=lr, seed=data.seed, device=device,
                 purpose="random_label")
    return model
