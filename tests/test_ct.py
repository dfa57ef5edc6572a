"""CT: the spatial transpose of every conv kernel on a hand-made kernel, and the cosine schedule."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.methods._sgd import cosine_epoch_lrs
from bench.methods.ct import transpose_conv_kernels


def test_transpose_on_a_hand_made_kernel() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 3, bias=False), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(9.0).view(1, 1, 3, 3))
        linear = model[2].weight.clone()
    assert transpose_conv_kernels(model) == 1
    assert model[0].weight[0, 0].tolist() == [[0.0, 3.0, 6.0], [1.0, 4.0, 7.0], [2.0, 5.0, 8.0]]
    assert torch.equal(model[2].weight, linear)  # only conv kernels move


def test_transpose_is_per_filter_and_an_involution() -> None:
    conv = nn.Conv2d(2, 3, 5)
    before = conv.weight.detach().clone()
    transpose_conv_kernels(conv)
    for o in range(3):
        for i in range(2):
            for a in range(5):
                for b in range(5):
                    assert conv.weight[o, i, a, b] == before[o, i, b, a]
    transpose_conv_kernels(conv)
    assert torch.equal(conv.weight, before)


def test_non_square_kernels_are_refused() -> None:
    with pytest.raises(ValueError, match="1x3 kernel"):
        transpose_conv_kernels(nn.Conv2d(1, 1, (1, 3)))


def test_cosine_schedule_per_epoch() -> None:
    assert cosine_epoch_lrs(1.0, 3) == pytest.approx([1.0, (1 + math.cos(math.pi / 3)) / 2, (1 + math.cos(2 * math.pi / 3)) / 2])
