"""UNSIR: the noise objective against a hand computation, and the noise kept in [0, 1]."""
from __future__ import annotations

import math

import torch
from torch import nn

from bench.methods.unsir import error_maximising_noise, noise_objective, to_uint8


def test_noise_objective_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    noise = torch.tensor([0.5, 1.0, 0.0, 0.2]).view(2, 1, 2, 1)
    # CE for class 1: row 0: log(e² + 1) − 0; row 1: log(1 + e) − 1
    ce = (math.log(math.exp(2) + 1) + math.log(1 + math.e) - 1) / 2
    energy = ((0.25 + 1.0) + (0.0 + 0.04)) / 2
    assert math.isclose(float(noise_objective(logits, noise, 1, 0.1)), -ce + 0.1 * energy, rel_tol=1e-6)


def test_noise_is_clipped_to_the_image_range_and_raises_the_error() -> None:
    # the error on class 0 grows without bound as the pixels go negative (and class 1's as they grow):
    # unconstrained Adam would leave [0, 1]
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]]))
        model[1].bias.zero_()
    g = torch.Generator().manual_seed(0)
    start = torch.rand((8, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    noise = error_maximising_noise(model, 0, (8, 1, 2, 2), steps=30, lr=0.1, reg=0.0, g=g, device=torch.device("cpu"))
    assert noise.min() >= 0.0 and noise.max() <= 1.0
    assert torch.allclose(noise, torch.zeros_like(noise))  # the constrained optimum is the corner x = 0
    target = torch.zeros(8, dtype=torch.int64)
    assert nn.functional.cross_entropy(model(noise), target) > nn.functional.cross_entropy(model(start), target)


def test_to_uint8_rounds_onto_the_8_bit_grid() -> None:
    assert to_uint8(torch.tensor([0.0, 0.5, 1.0, 1.2, -0.1])).tolist() == [0, 128, 255, 255, 0]
