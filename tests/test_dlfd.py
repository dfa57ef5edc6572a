"""DLFD: the Sinkhorn OT term, the perturbation, the forgetting score and checkpoint selection."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data import method_view
from bench.methods.dlfd import (
    cosine_cost,
    dlfd,
    forgetting_score,
    ot_distance,
    perturb_retain,
    retain_weight_at,
    sinkhorn_plan,
)
from bench.mia import cv_attack_accuracy, per_example_loss
from bench.models import build_model
from bench.references import model_factory
from bench.splits import build_task_data
from bench.train import accuracy, predict_logits, train_with_recipe


def small_model(seed: int = 0) -> torch.nn.Module:
    return build_model("digits_cnn", in_channels=1, image_size=8, num_classes=4, mean=(0.5,), std=(0.25,), seed=seed).eval()


def reference_sinkhorn_numpy(cost: np.ndarray, reg: float, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """The u-then-v log-domain iteration written out in float64 numpy; returns (plan, iterations)."""
    m, n = cost.shape
    u, v = np.zeros(m), np.zeros(n)
    for it in range(1, max_iter + 1):
        u_prev = u
        u = reg * (np.log(1 / m) - np.log(np.exp((-cost + u[:, None] + v[None]) / reg).sum(1) + 1e-6)) + u
        v = reg * (np.log(1 / n) - np.log(np.exp((-cost + u[:, None] + v[None]) / reg).sum(0) + 1e-6)) + v
        if np.abs(u - u_prev).sum() < tol:
            break
    return np.exp((-cost + u[:, None] + v[None]) / reg), it


def test_sinkhorn_one_iteration_by_hand():
    cost = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, 0.0]])
    reg = 0.5
    u = reg * (np.log(1 / 3) - np.log(np.exp(-cost / reg).sum(1) + 1e-6))
    v = reg * (np.log(1 / 2) - np.log(np.exp((-cost + u[:, None]) / reg).sum(0) + 1e-6))
    expected = np.exp((-cost + u[:, None] + v[None]) / reg)
    plan = sinkhorn_plan(torch.tensor(cost), reg=reg, max_iter=1)
    np.testing.assert_allclose(plan.numpy(), expected, rtol=1e-12)
    # the last update is v's: the columns carry ν = 1/2 up to the 1e-6 offset inside the log
    np.testing.assert_allclose(plan.sum(0).numpy(), [0.5, 0.5], rtol=1e-5)


def test_sinkhorn_stops_when_u_changes_less_than_tol():
    g = torch.Generator().manual_seed(0)
    cost = 2 * torch.rand(20, 30, generator=g, dtype=torch.float64)
    expected, iterations = reference_sinkhorn_numpy(cost.numpy(), 0.01, 50, 0.1)
    assert 1 < iterations < 50  # the rule stops it early on these inputs
    np.testing.assert_allclose(sinkhorn_plan(cost, reg=0.01).numpy(), expected, rtol=1e-9, atol=1e-15)
    # one iteration fewer is a different plan: the stop is where the rule says, not later or earlier
    shorter = sinkhorn_plan(cost, reg=0.01, max_iter=iterations - 1).numpy()
    assert not np.allclose(shorter, expected, rtol=1e-6)
    # without the rule (tol 0) it runs all max_iter iterations
    np.testing.assert_allclose(sinkhorn_plan(cost, reg=0.01, tol=0.0, max_iter=50).numpy(),
                               reference_sinkhorn_numpy(cost.numpy(), 0.01, 50, 0.0)[0], rtol=1e-9, atol=1e-15)


def test_ot_distance_is_the_plan_cost():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(12, 5, generator=g), torch.randn(9, 5, generator=g)
    cost = cosine_cost(a, b)
    expected = F.relu(1 - F.cosine_similarity(a[:, None], b[None], dim=2))
    torch.testing.assert_close(cost, expected, rtol=1e-5, atol=1e-6)
    assert float(ot_distance(a, b)) == pytest.approx(float((sinkhorn_plan(cost) * cost).sum()), rel=1e-5)


def test_ot_distance_zero_for_identical_sets_and_grows_with_separation():
    g = torch.Generator().manual_seed(2)
    theta = 0.1 * (2 * torch.rand(16, generator=g) - 1)  # a narrow cone of directions around angle 0

    def cone(shift: float) -> torch.Tensor:
        return torch.stack([torch.cos(theta + shift), torch.sin(theta + shift)], 1)

    a = torch.randn(16, 10, generator=g)
    assert float(ot_distance(a, a.clone())) < 1e-4
    shifts = [0.0, 0.3, 0.8, 1.5, 2.5]
    values = [float(ot_distance(cone(0.0), cone(s))) for s in shifts]
    assert values[0] < 5e-3  # the entropic blur (ε = 0.01) across a cone of nearly equal directions
    assert all(lo < hi for lo, hi in zip(values, values[1:])), values
    for s, v in zip(shifts, values):  # the shifted cone's identity matching costs 1 − cos(shift)
        assert v == pytest.approx(1 - math.cos(s), abs=0.02)


def test_ot_gradient_reaches_delta():
    model = small_model()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(8, 1, 8, 8, generator=g)
    forget_out = torch.randn(8, 4, generator=g)
    delta = torch.zeros_like(x, requires_grad=True)
    (grad,) = torch.autograd.grad(ot_distance(model((x + delta).clamp(0, 1)), forget_out), delta)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0
    # the OT-only perturbation (w_r = 0) ascends the OT distance and leaves the weights alone
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ot_before = float(ot_distance(model(x), forget_out))
    x_tilde = perturb_retain(model, x, torch.zeros(8, dtype=torch.long), forget_out, steps=5, strength=0.02,
                             retain_weight=0.0, forget_weight=1.0)
    with torch.no_grad():
        ot_after = float(ot_distance(model(x_tilde), forget_out))
    assert ot_after > ot_before
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_perturbation_is_clipped_to_image_space():
    model = small_model()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    forget_out = torch.randn(16, 4, generator=g)
    x_tilde = perturb_retain(model, x, y, forget_out, steps=4, strength=0.4, retain_weight=0.5, forget_weight=3.0)
    assert x_tilde.shape == x.shape and not x_tilde.requires_grad
    assert float(x_tilde.min()) >= 0.0 and float(x_tilde.max()) <= 1.0
    assert float((x_tilde - x).abs().max()) > 0.3  # it did move, far enough to hit the bounds
    assert bool(((x_tilde == 0) | (x_tilde == 1)).any())
    torch.testing.assert_close(perturb_retain(model, x, y, forget_out, steps=0, strength=0.4, retain_weight=1.0,
                                              forget_weight=3.0), x)


def test_retain_weight_rises_linearly():
    ws = [retain_weight_at(t, 5, 0.0, 1.0) for t in range(5)]
    assert ws == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert retain_weight_at(0, 1, 0.3, 1.0) == 0.3


def test_forgetting_score_is_the_core_attack(synthetic_random_task):
    td = build_task_data(synthetic_random_task, 0)
    model = small_model()
    score = forgetting_score(model, td.forget, td.val, seed=0, device="cpu")
    members = per_example_loss(predict_logits(model, td.forget, device="cpu"), td.forget.y)
    nonmembers = per_example_loss(predict_logits(model, td.val, device="cpu"), td.val.y)
    assert score == abs(0.5 - cv_attack_accuracy(members, nonmembers, seed=0)[0])


@pytest.fixture(scope="module")
def synthetic_setup(synthetic_random_task):
    torch.manual_seed(0)
    td = build_task_data(synthetic_random_task, 0)
    original = model_factory(td)()
    train_with_recipe(original, td.train, synthetic_random_task.recipe, seed=0, device="cpu")
    return td, original


def run_dlfd(td, original, **hp) -> torch.nn.Module:
    import copy

    data = method_view(td, ("forget", "retain"), model_factory(td))
    torch.manual_seed(0)
    return dlfd(copy.deepcopy(original), data, device=torch.device("cpu"), batch_size=16, max_steps=4,
                perturbation_steps=2, perturbation_strength=0.05, **hp)


def test_dlfd_selects_by_validation_accuracy(synthetic_setup):
    td, original = synthetic_setup
    last = run_dlfd(td, original, max_forgetting_score=-1.0)  # no step qualifies: the last weights
    best = run_dlfd(td, original, max_forgetting_score=0.5)  # every step qualifies: the best on validation
    assert accuracy(best, td.val, device="cpu") >= accuracy(last, td.val, device="cpu")
    again = run_dlfd(td, original, max_forgetting_score=0.5)
    for (k, v), w in zip(best.state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, w), k
    logits = predict_logits(best, td.test, device="cpu")
    assert np.isfinite(logits.numpy()).all()


def test_dlfd_refuses_too_small_monitor_sets(synthetic_setup):
    td, original = synthetic_setup
    data = method_view(td, ("forget", "retain"), model_factory(td))
    tiny = data.forget.subset(torch.arange(5))
    from dataclasses import replace

    with pytest.raises(ValueError, match="at least 10 forget images"):
        dlfd(original, replace(data, forget=tiny), device=torch.device("cpu"))
