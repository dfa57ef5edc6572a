"""Boundary Shrink's FGSM nearest wrong class on a hand-made linear model; Boundary Expand's shadow
row and the head after the shadow class is dropped."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bench.methods.boundary_expand import drop_shadow, head_linear, widen
from bench.methods.boundary_shrink import fgsm, nearest_wrong_labels
from bench.models import build_model


def linear_model() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]))
        model[1].bias.zero_()
    return model


def expected_fgsm(W: np.ndarray, x: np.ndarray, y: int, eps: float) -> np.ndarray:
    """∇_x CE(Wx, y) = Wᵀ(softmax(Wx) − e_y); one signed step, clipped and put on the 8-bit grid."""
    z = W @ x
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    p[y] -= 1.0
    return np.round(np.clip(x + eps * np.sign(W.T @ p), 0, 1) * 255) / 255


def test_fgsm_step_matches_the_closed_form() -> None:
    model = linear_model()
    W = model[1].weight.detach().numpy().astype(np.float64)
    x = np.array([153, 128, 51, 26]) / 255  # an 8-bit image; ε·255 = 30.6 keeps clear of rounding ties
    got = fgsm(model, torch.tensor(x, dtype=torch.float32).view(1, 1, 2, 2), torch.tensor([0]), 0.12)
    assert np.allclose(got.view(-1).numpy(), expected_fgsm(W, x, 0, 0.12), atol=1e-6)


def test_nearest_wrong_class_on_a_linear_model() -> None:
    model = linear_model()
    # class 0 image, close to class 1 (x2 = 0.5) and far from class 2 (x3 + x4 = 0.3): after the step
    # z = (0.5, 0.6, 0.5) → class 1; class 0 itself is never chosen
    x = torch.tensor([[0.6, 0.5, 0.2, 0.1]]).view(1, 1, 2, 2)
    assert nearest_wrong_labels(model, x, torch.tensor([0]), bound=0.1, removed=(0,)).tolist() == [1]
    # with class 1 removed too, the nearest allowed class is 2
    assert nearest_wrong_labels(model, x, torch.tensor([0]), bound=0.1, removed=(0, 1)).tolist() == [2]
    # a failed attack (bound 0: the image stays class 0) still yields the best other class
    assert nearest_wrong_labels(model, x, torch.tensor([0]), bound=0.0, removed=(0,)).tolist() == [1]


def test_widen_copies_the_head_and_drop_shadow_restores_its_shape() -> None:
    model = build_model("digits_cnn", in_channels=1, image_size=8, num_classes=10, mean=(0.0,), std=(1.0,), seed=0)
    parent, attr, layer = head_linear(model)
    assert parent is model and attr == "head"
    wide = widen(layer, torch.Generator().manual_seed(0))
    assert wide.weight.shape == (11, 64) and wide.bias.shape == (11,)
    assert torch.equal(wide.weight[:10], layer.weight) and torch.equal(wide.bias[:10], layer.bias)
    assert float(wide.bias[10].detach()) == 0.0
    with torch.no_grad():
        wide.weight.add_(1.0)  # stands in for the training in between
    narrow = drop_shadow(wide)
    assert narrow.weight.shape == layer.weight.shape and narrow.bias.shape == layer.bias.shape
    assert torch.equal(narrow.weight, wide.weight[:10]) and torch.equal(narrow.bias, wide.bias[:10])


def test_shadow_row_is_xavier_normal_over_the_widened_matrix() -> None:
    layer = nn.Linear(4000, 9)
    row = widen(layer, torch.Generator().manual_seed(3)).weight[9].detach()
    assert abs(float(row.std()) - math.sqrt(2.0 / (4000 + 10))) < 0.002


def test_head_linear_finds_the_last_layer_of_a_sequential_head() -> None:
    model = build_model("resnet18_face", in_channels=3, image_size=32, num_classes=5, mean=(0.0,) * 3, std=(1.0,) * 3, seed=0)
    parent, attr, layer = head_linear(model)
    assert parent is model.head and layer is model.head[-1] and layer.out_features == 5
