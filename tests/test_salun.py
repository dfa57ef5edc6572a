"""SalUn: the saliency mask (exact share, global ranking, deterministic ties), the forget-gradient
magnitudes against a hand-computed gradient, and the frozen weights staying bit-exact."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.data import MethodData, Split
from bench.methods.salun import forget_gradient_magnitudes, restore_frozen, saliency_mask, salun
from bench.tasks import Recipe


def test_mask_marks_the_global_top_share():
    mags = {"a": torch.tensor([[0.9, 0.1], [0.5, 0.7]]), "b": torch.tensor([0.3, 0.8, 0.2, 0.6])}
    masks = saliency_mask(mags, 0.5)  # n = 8, k = 4: 0.9, 0.8, 0.7, 0.6
    assert torch.equal(masks["a"], torch.tensor([[True, False], [False, True]]))
    assert torch.equal(masks["b"], torch.tensor([False, True, False, True]))


@pytest.mark.parametrize("ratio, k", [(0.0, 0), (0.1, 1), (0.33, 3), (0.5, 5), (0.99, 9), (1.0, 10)])
def test_mask_share_is_floor_of_ratio_times_n(ratio: float, k: int):
    mags = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.arange(6.0, 10.0)}
    masks = saliency_mask(mags, ratio)
    assert sum(int(m.sum()) for m in masks.values()) == k
    chosen = sorted(torch.cat([mags[n].flatten()[masks[n].flatten()] for n in mags]).tolist())
    assert chosen == [float(v) for v in range(10 - k, 10)]  # the k largest


def test_ties_go_to_the_earlier_weight_and_the_share_stays_exact():
    # all equal: exactly the first k in (parameter order, row-major) are salient
    mags = {"w": torch.ones(2, 2), "b": torch.ones(3)}
    masks = saliency_mask(mags, 0.6)  # k = floor(4.2) = 4
    assert torch.equal(masks["w"], torch.ones(2, 2, dtype=torch.bool))
    assert torch.equal(masks["b"], torch.tensor([False, False, False]))
    # a tie straddling the threshold: 5 > {2, 2, 2} > 1, k = 3 → 5 and the first two 2s
    masks = saliency_mask({"w": torch.tensor([2.0, 1.0, 2.0]), "b": torch.tensor([5.0, 2.0])}, 0.6)
    assert torch.equal(masks["w"], torch.tensor([True, False, True]))
    assert torch.equal(masks["b"], torch.tensor([True, False]))


def test_mask_rejects_a_ratio_outside_unit_interval():
    with pytest.raises(ValueError, match="ratio"):
        saliency_mask({"w": torch.ones(3)}, 1.5)


def test_forget_gradient_is_abs_gradient_of_mean_cross_entropy():
    # one linear layer, logits z = W x + b; d mean CE / dW = mean (softmax(z) − onehot(y)) xᵀ
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    model = nn.Sequential(nn.Flatten(), layer)
    x = torch.randint(0, 256, (5, 1, 2, 2), dtype=torch.uint8)
    y = torch.tensor([0, 2, 1, 1, 0])
    xf = x.float().div(255).flatten(1)
    with torch.no_grad():
        p = torch.softmax(xf @ layer.weight.T + layer.bias, dim=1)
    delta = p - torch.eye(3)[y]
    mags = forget_gradient_magnitudes(model, Split("forget", x, y), batch_size=2, device=torch.device("cpu"))
    assert torch.allclose(mags["1.weight"], (delta.T @ xf / 5).abs(), atol=1e-6)
    assert torch.allclose(mags["1.bias"], delta.mean(0).abs(), atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # leaves no gradient behind


def test_restore_frozen_keeps_salient_and_resets_the_rest():
    model = nn.Linear(2, 2)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    masks = {"weight": torch.tensor([[True, False], [False, True]]), "bias": torch.tensor([False, True])}
    restore_frozen(model, masks, theta0)
    assert torch.equal(model.weight[0, 1], theta0["weight"][0, 1]) and torch.equal(model.bias[0], theta0["bias"][0])
    assert torch.equal(model.weight[0, 0], theta0["weight"][0, 0] + 1.0)


def tiny_data(seed: int = 0) -> MethodData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (60, 1, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (60,), generator=g)
    forget, retain = Split("forget", x[:12], y[:12]), Split("retain", x[12:], y[12:])
    return MethodData(forget=forget, retain=retain, surrogate=None, val=retain, num_classes=3, forget_classes=(),
                      forget_kind="random", recipe=Recipe(epochs=1, batch_size=16, lr=1e-3), seed=seed,
                      init_model=lambda: None)


def tiny_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def test_non_salient_weights_are_exactly_the_originals_despite_weight_decay_and_momentum():
    data = tiny_data()
    original = tiny_model()
    masks = saliency_mask(forget_gradient_magnitudes(copy.deepcopy(original), data.forget, batch_size=256,
                                                     device=torch.device("cpu")), 0.5)
    out = salun(copy.deepcopy(original), data, device=torch.device("cpu"), epochs=5, lr=0.1, batch_size=16,
                mask_ratio=0.5, momentum=0.9, weight_decay=0.1)  # large decay: would move every weight
    n_frozen = n_moved = 0
    for (name, p), p0 in zip(out.named_parameters(), original.parameters()):
        frozen = ~masks[name]
        assert torch.equal(p[frozen], p0[frozen]), f"{name}: a non-salient weight moved"
        n_frozen += int(frozen.sum())
        n_moved += int((p[masks[name]] != p0[masks[name]]).sum())
    assert n_frozen == sum(p.numel() for p in original.parameters()) - sum(int(m.sum()) for m in masks.values())
    assert n_moved > 0.9 * sum(int(m.sum()) for m in masks.values())  # the salient ones did train
    assert all(not p._backward_hooks for p in out.parameters())  # the gradient masks are removed


def test_mask_ratio_zero_returns_the_original_unchanged():
    data = tiny_data()
    original = tiny_model()
    out = salun(copy.deepcopy(original), data, device=torch.device("cpu"), epochs=2, batch_size=16, mask_ratio=0.0)
    for p, p0 in zip(out.parameters(), original.parameters()):
        assert torch.equal(p, p0)


def test_mask_matches_the_reference_generate_mask():
    """Golden masks from the authors' ``save_gradient_ratio`` (tests/fixtures/README.md); we
    compute the gradient in three batches, the reference in one: the mean over D_f is the same."""
    golden = np.load(Path(__file__).parent / "fixtures" / "salun_golden.npz")
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    model.load_state_dict({k: torch.from_numpy(golden[f"salun_param_{k.replace('.', '_')}"]) for k in model.state_dict()})
    forget = Split("forget", torch.from_numpy(golden["salun_x"]), torch.from_numpy(golden["salun_y"]))
    mags = forget_gradient_magnitudes(model, forget, batch_size=5, device=torch.device("cpu"))
    for ratio, key in ((0.1, "01"), (0.5, "05")):
        masks = saliency_mask(mags, ratio)
        for name, mask in masks.items():
            assert torch.equal(mask, torch.from_numpy(golden[f"salun_mask{key}_{name.replace('.', '_')}"]).bool()), name
