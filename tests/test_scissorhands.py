"""Scissorhands: the SNIP saliency, the quantile threshold, re-initialization, the memory, the GEM
projection (against scipy's general-purpose solvers) and the whole method's determinism."""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import scipy.optimize
import torch
import torch.nn.functional as F

from bench.data import Split, generator, method_view
from bench.models import build_model, eligible_parameters, state_hash
from bench.methods.scissorhands import (
    GEM_EPS,
    connection_sensitivity,
    memory_gradients,
    project_to_cone,
    reinitialize,
    saliency_threshold,
    scissorhands,
    solve_cone_qp,
    trim_masks,
)
from bench.references import model_factory
from bench.splits import build_task_data
from bench.train import train_with_recipe

CPU = torch.device("cpu")


def small_model(seed: int = 0) -> torch.nn.Module:
    return build_model("digits_cnn", in_channels=1, image_size=8, num_classes=4, mean=(0.5,), std=(0.25,), seed=seed)


# ---------------------------------------------------------------------------------------------
# Threshold
# ---------------------------------------------------------------------------------------------


def test_threshold_selects_exactly_the_top_fraction_across_tensors():
    values = torch.randperm(100, generator=torch.Generator().manual_seed(0)).double() + 1.0  # 1..100, shuffled
    saliency = {"a": values[:60].view(6, 10), "b": values[60:90], "c": values[90:].view(2, 5)}
    for sparsity, top in ((0.9, 10), (0.75, 25), (0.97, 3), (0.5, 50)):
        masks = trim_masks(saliency, sparsity)
        chosen = torch.cat([values[:60][masks["a"].flatten()], values[60:90][masks["b"]],
                            values[90:][masks["c"].flatten()]])
        assert len(chosen) == top, sparsity
        assert sorted(chosen.tolist()) == list(range(101 - top, 101)), sparsity


def test_threshold_is_the_kth_smallest_value():
    v = torch.tensor([0.3, 5.0, 0.1, 2.0, 7.5, 0.0, 1.2, 4.4])
    for sparsity in (0.125, 0.25, 0.5, 0.75, 0.9):
        k = int(sparsity * len(v))
        assert saliency_threshold(v, sparsity) == pytest.approx(float(np.sort(v.numpy())[k - 1]))
    assert saliency_threshold(v, 0.0) == -math.inf  # k = 0: every entry is above
    masks = trim_masks({"w": v}, 0.0)
    assert bool(masks["w"].all())


def test_ties_at_the_threshold_are_kept():
    # 6 of 10 saliencies are zero (e.g. dead units); at sparsity 0.5 the threshold is 0 and only the
    # strictly larger entries are reset (4, not 5).
    v = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    mask = trim_masks({"w": v}, 0.5)["w"]
    assert mask.tolist() == [False] * 6 + [True] * 4


def test_threshold_rejects_bad_sparsity():
    with pytest.raises(ValueError, match="sparsity"):
        saliency_threshold(torch.ones(4), 1.0)


# ---------------------------------------------------------------------------------------------
# GEM projection
# ---------------------------------------------------------------------------------------------


def conflicting(p: int, t: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random gradient g and memory G (p×t) with gᵀG_k < 0 for at least one k."""
    gen = torch.Generator().manual_seed(seed)
    memories = torch.randn(p, t, generator=gen, dtype=torch.float64)
    grad = torch.randn(p, generator=gen, dtype=torch.float64) - 2.0 * memories[:, 0]
    assert float(grad @ memories[:, 0]) < 0
    return grad, memories


@pytest.mark.parametrize("t", [1, 3, 6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_makes_every_dot_product_nonnegative(t, seed):
    grad, memories = conflicting(40, t, seed)
    projected = project_to_cone(grad, memories)
    v = solve_cone_qp((memories.T @ memories).numpy(), (memories.T @ grad).numpy())
    dots = (memories.T @ projected).numpy()
    scale = float(grad.norm() * memories.norm(dim=0).max())
    # KKT of the ε-regularised dual: Gᵀg̃ = μ − εv with μ ≥ 0
    assert (dots >= -GEM_EPS * v - 1e-9 * scale).all(), dots
    assert (dots >= -1e-2 * scale).all()
    # without the ridge the constraints hold exactly
    exact = project_to_cone(grad, memories, eps=1e-12)
    assert ((memories.T @ exact).numpy() >= -1e-8 * scale).all()
    assert (v >= 0.5 - 1e-12).all()


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_dual_solution_matches_a_general_bounded_solver(margin):
    grad, memories = conflicting(30, 4, seed=7)
    gram, lin = (memories.T @ memories).numpy(), (memories.T @ grad).numpy()
    q = gram + GEM_EPS * np.eye(4)
    res = scipy.optimize.minimize(lambda v: 0.5 * v @ q @ v + lin @ v, np.full(4, margin + 1.0),
                                  jac=lambda v: q @ v + lin, method="L-BFGS-B",
                                  bounds=[(margin, None)] * 4, options={"ftol": 1e-15, "gtol": 1e-12})
    np.testing.assert_allclose(solve_cone_qp(gram, lin, margin=margin), res.x, rtol=1e-5, atol=1e-6)


def test_margin_zero_is_the_closest_gradient_satisfying_the_constraints():
    # GEM's primal: min ½‖x − g‖² s.t. Gᵀx ≥ 0, solved directly with SLSQP.
    grad, memories = conflicting(12, 3, seed=3)
    g, m = grad.numpy(), memories.numpy()
    res = scipy.optimize.minimize(lambda x: 0.5 * np.sum((x - g) ** 2), g, jac=lambda x: x - g, method="SLSQP",
                                  constraints=[{"type": "ineq", "fun": lambda x: m.T @ x, "jac": lambda x: m.T}],
                                  options={"ftol": 1e-14, "maxiter": 500})
    assert res.success
    projected = project_to_cone(grad, memories, margin=0.0, eps=1e-12).numpy()
    np.testing.assert_allclose(projected, res.x, rtol=1e-5, atol=1e-6)


def test_projection_keeps_dtype_and_shape():
    grad, memories = conflicting(20, 2, seed=5)
    out = project_to_cone(grad.float(), memories.float())
    assert out.dtype == torch.float32 and out.shape == (20,)


# ---------------------------------------------------------------------------------------------
# Saliency, re-initialization, memory
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_setup(synthetic_task):
    torch.manual_seed(0)
    td = build_task_data(synthetic_task, 0)
    original = model_factory(td)()
    train_with_recipe(original, td.train, synthetic_task.recipe, seed=0, device="cpu")
    return td, original


def full_batch_grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(model)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_connection_sensitivity_is_weight_times_forget_gradient(synthetic_setup):
    td, original = synthetic_setup
    big = len(td.forget)  # one batch = the whole forget set, so the shuffle does not matter
    sal = connection_sensitivity(original, td.forget, prune_num=1, batch_size=big, device=CPU, g=generator(0, "t"))
    grads = full_batch_grad(original, td.forget.floats(), td.forget.y)
    params = dict(original.named_parameters())
    assert list(sal) == eligible_parameters(original)
    for name, s in sal.items():
        torch.testing.assert_close(s, (params[name].detach() * grads[name]).abs())
    # prune_num batches accumulate |∇|: two passes over the same full batch double the saliency
    twice = connection_sensitivity(original, td.forget, prune_num=2, batch_size=big, device=CPU, g=generator(0, "t"))
    for name in sal:
        torch.testing.assert_close(twice[name], 2 * sal[name])


def test_reinitialize_touches_only_masked_entries():
    model = small_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.3 for n, p in model.named_parameters()}
    reinitialize(model, masks, generator(0, "reinit"))
    for name, p in model.named_parameters():
        m, old, new = masks[name], before[name], p.detach()
        assert torch.equal(new[~m], old[~m]), name
        if p.dim() == 1:
            assert bool((new[m] == 0).all()), name
        else:
            fan_in = p[0].numel()
            assert bool((new[m] != old[m]).all()), name
            assert float(new[m].abs().max()) <= 1 / math.sqrt(fan_in) + 1e-7, name  # Kaiming-uniform a=√5


def test_reinitialize_draws_the_whole_tensor_then_masks():
    # the same generator state gives the same fresh values wherever two masks overlap
    a, b = small_model(), small_model()
    w = "body.0.weight"
    shape = dict(a.named_parameters())[w].shape
    m1 = torch.zeros(shape, dtype=torch.bool)
    m1[:8] = True
    m2 = torch.zeros(shape, dtype=torch.bool)
    m2[4:] = True
    reinitialize(a, {w: m1}, generator(0, "same"))
    reinitialize(b, {w: m2}, generator(0, "same"))
    pa, pb = dict(a.named_parameters())[w], dict(b.named_parameters())[w]
    assert torch.equal(pa[4:8], pb[4:8])


def test_trimming_respects_the_architecture_rule():
    # allcnn's rule: only stage3 and the head are eligible; everything else must stay bit-identical
    model = build_model("allcnn", in_channels=3, image_size=8, num_classes=3, mean=(0.5,) * 3, std=(0.25,) * 3, seed=0)
    gen = torch.Generator().manual_seed(0)
    forget = Split("forget", torch.randint(0, 256, (6, 3, 8, 8), generator=gen, dtype=torch.uint8),
                   torch.randint(0, 3, (6,), generator=gen))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sal = connection_sensitivity(model, forget, prune_num=1, batch_size=6, device=CPU, g=generator(0, "a"))
    assert set(sal) == set(eligible_parameters(model))
    reinitialize(model, trim_masks(sal, 0.9), generator(0, "b"))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= set(eligible_parameters(model))


def test_memory_is_the_forget_ascent_gradient_and_changes_nothing(synthetic_setup):
    td, original = synthetic_setup
    model = copy.deepcopy(original).train()
    hash_before = state_hash(model)
    mem = memory_gradients(model, td.forget, memory_num=2, batch_size=len(td.forget), device=CPU,
                           g=generator(0, "m"))
    grads = full_batch_grad(original, td.forget.floats(), td.forget.y)
    expected = -torch.cat([grads[n].flatten() for n in eligible_parameters(original)])
    assert mem.shape == (expected.numel(), 2)
    torch.testing.assert_close(mem[:, 0], expected)
    torch.testing.assert_close(mem[:, 1], expected)
    assert state_hash(model) == hash_before and model.training


# ---------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------


def run(td, original, seed: int = 0, **hp) -> torch.nn.Module:
    data = dataclasses.replace(method_view(td, ("forget", "retain"), model_factory(td)), seed=seed)
    hp = {"epochs": 2, "batch_size": 16, "lr": 0.01, "sparsity": 0.9, "lam": 0.1} | hp
    return scissorhands(copy.deepcopy(original), data, device=CPU, **hp)


def test_scissorhands_is_deterministic_under_its_seed(synthetic_setup):
    td, original = synthetic_setup
    a, b = run(td, original), run(td, original)
    assert state_hash(a) == state_hash(b)
    assert state_hash(a) != state_hash(original)
    assert state_hash(run(td, original, seed=1)) != state_hash(a)
    once = run(td, original, refresh_memory=False, memory_num=2)
    assert state_hash(once) == state_hash(run(td, original, refresh_memory=False, memory_num=2))
    logits = a(td.test.floats())
    assert bool(torch.isfinite(logits).all())


def test_scissorhands_needs_forget_and_retain(synthetic_setup):
    td, original = synthetic_setup
    data = method_view(td, ("retain",), model_factory(td))
    with pytest.raises(ValueError, match="forget and retain"):
        scissorhands(copy.deepcopy(original), data, device=CPU)


def test_scissorhands_refuses_models_without_an_architecture_rule(synthetic_setup):
    td, _ = synthetic_setup
    data = method_view(td, ("forget", "retain"), model_factory(td))
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    with pytest.raises(TypeError, match="Classifier"):
        scissorhands(plain, data, device=CPU)


def test_scissorhands_fails_loudly_when_the_ascent_diverges(synthetic_setup):
    td, original = synthetic_setup
    with pytest.raises(FloatingPointError, match="lower lam"):
        run(td, original, lam=1e4, lr=10.0, epochs=20, margin=0.0)


def test_memory_is_recomputed_every_epoch_by_default(synthetic_setup, monkeypatch):
    import bench.methods.scissorhands as shs

    td, original = synthetic_setup
    calls = []
    real = shs.memory_gradients
    monkeypatch.setattr(shs, "memory_gradients", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    run(td, original, epochs=3)
    assert len(calls) == 3  # the reference's refresh at the start of every epoch
    calls.clear()
    run(td, original, epochs=3, refresh_memory=False)
    assert len(calls) == 1
