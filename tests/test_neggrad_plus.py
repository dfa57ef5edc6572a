"""NegGrad+: the loss on hand-made logits, and one SGD step against the hand-derived gradient."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from bench.data import MethodData, Split
from bench.methods.neggrad_plus import neggrad_plus, neggrad_plus_loss
from bench.tasks import Recipe


def test_loss_on_hand_made_logits():
    # retain: logits (0, 0) → CE = log 2 for either label; (log 3, 0), y = 0 → CE = log(4/3)
    # forget: logits (0, 0, 0), y = 2 → CE = log 3
    lr_, yr = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]), torch.tensor([1, 0])
    lf, yf = torch.zeros(1, 3), torch.tensor([2])
    retain_ce = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    for alpha in (0.0, 0.95, 1.0):
        expected = alpha * retain_ce - (1 - alpha) * math.log(3.0)
        assert float(neggrad_plus_loss(lr_, yr, lf, yf, alpha)) == pytest.approx(expected, abs=1e-6)


def test_one_step_descends_retain_and_ascends_forget():
    # linear model on 1 pixel per image, plain SGD, one retain and one forget batch:
    # θ' = θ − lr·(α ∇CE_r − (1 − α) ∇CE_f), ∇ of mean CE wrt W = mean (softmax − onehot) xᵀ
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2, bias=False))
    w0 = model[1].weight.detach().clone()
    xr, yr = torch.tensor([[[[255]]], [[[51]]]], dtype=torch.uint8), torch.tensor([0, 1])
    xf, yf = torch.tensor([[[[102]]]], dtype=torch.uint8), torch.tensor([1])

    def grad(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xf_ = x.float().flatten(1) / 255
        p = torch.softmax(xf_ @ w0.T, dim=1)
        return (p - torch.eye(2)[y]).T @ xf_ / len(y)

    alpha, lr = 0.8, 0.5
    data = MethodData(forget=Split("forget", xf, yf), retain=Split("retain", xr, yr), surrogate=None,
                      val=Split("val", xr, yr), num_classes=2, forget_classes=(), forget_kind="random",
                      recipe=Recipe(epochs=1, batch_size=2, lr=1e-3), seed=0, init_model=lambda: None)
    out = neggrad_plus(copy.deepcopy(model), data, device=torch.device("cpu"), epochs=1, lr=lr, batch_size=2,
                       alpha=alpha, momentum=0.0)
    expected = w0 - lr * (alpha * grad(xr, yr) - (1 - alpha) * grad(xf, yf))
    assert torch.allclose(out[1].weight, expected, atol=1e-6)


def test_alpha_one_ignores_the_forget_set():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    g = torch.Generator().manual_seed(1)
    xr, yr = torch.randint(0, 256, (8, 1, 2, 2), dtype=torch.uint8, generator=g), torch.randint(0, 2, (8,), generator=g)
    outs = []
    for forget_label in (0, 1):
        xf = torch.randint(0, 256, (3, 1, 2, 2), dtype=torch.uint8, generator=g)
        data = MethodData(forget=Split("forget", xf, torch.full((3,), forget_label)), retain=Split("retain", xr, yr),
                          surrogate=None, val=Split("val", xr, yr), num_classes=2, forget_classes=(),
                          forget_kind="random", recipe=Recipe(epochs=1, batch_size=4, lr=1e-3), seed=0,
                          init_model=lambda: None)
        outs.append(neggrad_plus(copy.deepcopy(model), data, device=torch.device("cpu"), epochs=2, batch_size=4,
                                 alpha=1.0))
    for a, b in zip(outs[0].parameters(), outs[1].parameters()):
        assert torch.equal(a, b)
