"""Gradient ascent on the forget set, with an optional retain term (NegGrad / NegGrad+)."""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import MethodData, batches, generator
from bench.registry import method


@method(
    uses=("forget", "retain"),
    paper="Golatkar et al. 2020 (NegGrad); Kurmanji et al. 2023 (NegGrad+)",
    version=1,
    bounds={"epochs": (1, None), "lr": (0.0, None), "batch_size": (1, None), "retain_weight": (0.0, None)},
)
def neggrad(
    model: nn.Module, data: MethodData, *, device: torch.device,
    epochs: int = 3, lr: float = 2e-4, batch_size: int = 64, retain_weight: float = 1.0,
) -> nn.Module:
    """Ascend the forget loss while (optionally) descending the retain loss.

    L(θ) = −CE(f_θ(x_f), y_f) + β·CE(f_θ(x_r), y_r), β = ``retain_weight`` (β = 0: plain NegGrad).
    One step per forget batch, each paired with the next retain batch (cycling); Adam.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = generator(data.seed, "neggrad")
    model.to(device).train()
    for _ in range(epochs):
        retain_iter = itertools.cycle(list(batches(data.retain, batch_size, device=device, shuffle=True, g=g)))
        for x_f, y_f in batches(data.forget, batch_size, device=device, shuffle=True, g=g):
            loss = -F.cross_entropy(model(x_f), y_f)
            if retain_weight > 0:
                x_r, y_r = next(retain_iter)
                loss = loss + retain_weight * F.cross_entropy(model(x_r), y_r)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model
