"""ℓ1-sparse: the decaying penalty schedule and the ℓ1 norm by hand, and that the penalty is in the
gradient the optimizer follows."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench.data import MethodData, Split
from bench.methods.l1_sparse import l1_norm, l1_sparse, l1_weight
from bench.tasks import Recipe


def test_schedule_decays_linearly_to_zero_over_all_epochs():
    # γ = 0.2, E = 4, E_0 = 0: 0.2·(1, 3/4, 1/2, 1/4)
    got = [l1_weight(e, gamma=0.2, epochs=4, no_l1_epochs=0) for e in range(4)]
    assert got == pytest.approx([0.2, 0.15, 0.1, 0.05])


def test_schedule_is_zero_in_the_last_no_l1_epochs():
    # γ = 1, E = 5, E_0 = 2: active 3 epochs → 1, 2/3, 1/3, then 0, 0
    got = [l1_weight(e, gamma=1.0, epochs=5, no_l1_epochs=2) for e in range(5)]
    assert got == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0])


def test_schedule_without_an_l1_epoch_fails_loudly():
    with pytest.raises(ValueError, match="no_l1_epochs < epochs"):
        l1_weight(0, gamma=1.0, epochs=3, no_l1_epochs=3)


def test_l1_norm_sums_absolute_weights_and_biases():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
        layer.bias.copy_(torch.tensor([-3.0, 0.25]))
    assert float(l1_norm(layer).detach()) == pytest.approx(6.75)


def data_for(x: torch.Tensor, y: torch.Tensor) -> MethodData:
    retain = Split("retain", x, y)
    return MethodData(forget=None, retain=retain, surrogate=None, val=retain, num_classes=2, forget_classes=(),
                      forget_kind="random", recipe=Recipe(epochs=1, batch_size=4, lr=1e-3), seed=0,
                      init_model=lambda: None)


def test_one_step_follows_cross_entropy_plus_gamma_times_sign():
    # one epoch, one full batch, plain SGD: θ' = θ − lr·(∇CE + γ·sign(θ))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x = torch.randint(1, 256, (4, 1, 2, 2), dtype=torch.uint8)
    y = torch.tensor([0, 1, 1, 0])
    reference = copy.deepcopy(model)
    loss = nn.functional.cross_entropy(reference(x.float() / 255), y)
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    out = l1_sparse(model, data_for(x, y), device=torch.device("cpu"), epochs=1, lr=0.1, batch_size=4, gamma=0.05,
                    momentum=0.0, weight_decay=0.0)
    for p, p0, gr in zip(out.parameters(), reference.parameters(), grads):
        assert torch.allclose(p, p0 - 0.1 * (gr + 0.05 * torch.sign(p0)), atol=1e-6)


def test_gamma_zero_is_plain_fine_tuning_and_gamma_shrinks_the_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    g = torch.Generator().manual_seed(3)
    data = data_for(torch.randint(0, 256, (32, 1, 2, 2), dtype=torch.uint8, generator=g),
                    torch.randint(0, 2, (32,), generator=g))
    kw = dict(device=torch.device("cpu"), epochs=4, lr=0.05, batch_size=8)
    plain = l1_sparse(copy.deepcopy(model), data, gamma=0.0, **kw)
    sparse = l1_sparse(copy.deepcopy(model), data, gamma=0.05, **kw)
    assert float(l1_norm(sparse).detach()) < float(l1_norm(plain).detach())
