"""MSG: the saliency mask (exactly 30% of each conv layer, the smallest |grad|), the Kaiming
fan-out draw, the per-epoch schedule, the accumulated retain-minus-forget gradient, and the reference's own mask and rates
(golden numbers in ``tests/fixtures/msg_golden.npz``)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.data import Split
from bench.methods._sgd import warmup_decay_epoch_lrs
from bench.methods.msg import kaiming_fan_out, saliency_gradients, smallest_grad_mask


def test_smallest_grad_mask_picks_exactly_the_smallest_magnitudes() -> None:
    grad = torch.tensor([[0.5, -0.1, 2.0], [-0.05, 1.0, -3.0], [0.2, 0.01, -0.7], [4.0, -0.3, 0.6]])
    mask = smallest_grad_mask(grad, 0.3)  # round(0.3 * 12) = 4 entries: |g| = 0.01, 0.05, 0.1, 0.2
    expected = torch.zeros(4, 3, dtype=torch.bool)
    for r, c in ((2, 1), (1, 0), (0, 1), (2, 0)):
        expected[r, c] = True
    assert torch.equal(mask, expected)


def test_mask_share_is_exactly_thirty_percent_per_conv_layer() -> None:
    g = torch.Generator().manual_seed(0)
    for shape in ((16, 1, 3, 3), (32, 16, 3, 3), (6, 3, 5, 5)):
        grad = torch.randn(shape, generator=g)
        mask = smallest_grad_mask(grad, 0.3)
        n = math.prod(shape)
        assert int(mask.sum()) == round(0.3 * n)
        assert grad.abs()[mask].max() <= grad.abs()[~mask].min()


def test_kaiming_fan_out_std() -> None:
    w = kaiming_fan_out(torch.Size((64, 8, 3, 3)), torch.Generator().manual_seed(1))
    assert abs(float(w.std()) - math.sqrt(2.0 / (64 * 9))) < 0.005


def test_warmup_decay_schedule_matches_the_reference_counting() -> None:
    # E = 5: A = 3, T = 6 → e/3 for e = 1, 2, 3, then (6 - e)/3 for e = 4, 5
    assert warmup_decay_epoch_lrs(1.0, 5) == [1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3]
    assert warmup_decay_epoch_lrs(0.3, 1) == [0.3]


def test_saliency_is_retain_gradient_minus_forget_gradient() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 16, 3))
    xf, yf = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8), torch.tensor([0, 1, 2, 0, 1])
    xr, yr = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8), torch.tensor([2, 2, 1, 0, 0])
    grads = saliency_gradients(model, Split("f", xf, yf), Split("r", xr, yr), device=torch.device("cpu"))

    def grad_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model.zero_grad()
        nn.functional.cross_entropy(model(x.float() / 255), y).backward()
        return model[0].weight.grad.clone()

    expected = grad_of(xr, yr) - grad_of(xf, yf)
    assert set(grads) == {"0"}
    assert torch.allclose(grads["0"], expected, atol=1e-6)


GOLDEN = Path(__file__).parent / "fixtures" / "msg_golden.npz"


def test_mask_and_schedule_match_the_reference_golden_numbers() -> None:
    """``tests/fixtures/msg_golden.npz``: the reference's own re-init mask and LinearAnnealingLR rates."""
    golden = np.load(GOLDEN)
    for i in (0, 1):
        mask = smallest_grad_mask(torch.from_numpy(golden[f"conv{i}_grad"]), 0.3)
        assert np.array_equal(mask.numpy(), golden[f"conv{i}_grad_mask"] == 1.0)
        assert set(np.unique(golden[f"conv{i}_grad_mask"])) == {np.float32(0.1), np.float32(1.0)}
    for epochs in (3, 4, 5):
        assert np.allclose(warmup_decay_epoch_lrs(1e-3, epochs), golden[f"lrs_{epochs}"], rtol=1e-12)
