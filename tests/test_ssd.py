"""SSD's own formulas: the dampening factor and selection, the importance estimator, the update."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.data import Split
from bench.methods.ssd import dampen, dampening, importances

CPU = torch.device("cpu")
IMP_D = torch.tensor([1.0, 1.0, 0.1, 2.0, 0.0, 0.5])
IMP_F = torch.tensor([5.0, 20.0, 2.0, 20.0, 0.0, 40.0])


def test_selection_and_factor_on_hand_made_importances() -> None:
    # α = 10: selected where I_f > 10·I_D (strictly): j = 1 (20 > 10), 2 (2 > 1), 5 (40 > 5);
    # not 0 (5 ≤ 10), 3 (20 = 20), 4 (0 = 0). β = min(λ·I_D/I_f, 1) on the selected.
    got = dampening(IMP_D, IMP_F, alpha=10.0, lam=1.0)
    assert got.tolist() == pytest.approx([1.0, 1 / 20, 0.1 / 2, 1.0, 1.0, 0.5 / 40])
    # λ = 30: λ·I_D/I_f = 1.5, 1.5, 0.375 on the selected; capped at 1, never above.
    got = dampening(IMP_D, IMP_F, alpha=10.0, lam=30.0)
    assert got.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 1.0, 0.375])
    # α = 0 selects every parameter with I_f > 0; one with I_D = 0 is zeroed (β = 0).
    got = dampening(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 0.5]), alpha=0.0, lam=1.0)
    assert got.tolist() == [0.0, 1.0]


def test_dampen_scales_exactly_the_selected_weights_and_counts_them() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    imp_d = {"weight": IMP_D.reshape(2, 3), "bias": torch.tensor([1.0, 1.0])}
    imp_f = {"weight": IMP_F.reshape(2, 3), "bias": torch.tensor([11.0, 9.0])}
    count = dampen(model, imp_d, imp_f, alpha=10.0, lam=1.0)
    assert count == 4  # weight j = 1, 2, 5 and bias 0
    factor_w = torch.tensor([1.0, 1 / 20, 0.05, 1.0, 1.0, 0.0125]).reshape(2, 3)
    torch.testing.assert_close(model.weight.detach(), before["weight"] * factor_w)
    torch.testing.assert_close(model.bias.detach(), before["bias"] * torch.tensor([1 / 11, 1.0]))


def test_importances_are_batch_mean_gradients_squared_averaged_over_batches() -> None:
    torch.manual_seed(1)
    x = torch.randint(0, 256, (5, 1, 2, 2), dtype=torch.uint8)
    y = torch.tensor([0, 2, 1, 1, 0])
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    w = model[1].weight.detach().double().numpy()
    b = model[1].bias.detach().double().numpy()
    got = importances(model, Split("s", x, y), batch_size=3, device=CPU)  # batches of 3 and 2
    # CE_mean of logits z = W u + b: dL/dW = (1/B) Σ_i (softmax(z_i) − e_{y_i}) u_iᵀ, dL/db = mean(softmax − e_y).
    u_all = x.reshape(5, 4).double().numpy() / 255.0
    sq_w, sq_b = np.zeros_like(w), np.zeros_like(b)
    for rows in (slice(0, 3), slice(3, 5)):
        u, t = u_all[rows], y.numpy()[rows]
        z = u @ w.T + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(t)), t] -= 1.0
        sq_w += ((p.T @ u) / len(t)) ** 2
        sq_b += p.mean(0) ** 2
    np.testing.assert_allclose(got["1.weight"].double().numpy(), sq_w / 2, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(got["1.bias"].double().numpy(), sq_b / 2, rtol=1e-5, atol=1e-10)


GOLDEN = Path(__file__).parent / "fixtures" / "ssd_golden.npz"


@pytest.mark.parametrize("alpha, lam", [(1.0, 1.0), (2.0, 0.5)])
def test_matches_the_reference_functions_on_fixed_inputs(alpha: float, lam: float) -> None:
    """Importances and dampened weights equal the reference ``ParameterPerturber``'s (fixtures README)."""
    gold = np.load(GOLDEN)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    model.load_state_dict({k: torch.from_numpy(gold[f"ssd_init/{k}"]) for k in model.state_dict()})
    forget = Split("forget", torch.from_numpy(gold["ssd_x_f"]), torch.from_numpy(gold["ssd_y_f"]))
    full = Split("full", torch.from_numpy(np.concatenate([gold["ssd_x_r"], gold["ssd_x_f"]])),
                 torch.from_numpy(np.concatenate([gold["ssd_y_r"], gold["ssd_y_f"]])))
    imp_f = importances(model, forget, batch_size=4, device=CPU)
    imp_d = importances(model, full, batch_size=4, device=CPU)
    if (alpha, lam) == (1.0, 1.0):
        for k in imp_f:
            np.testing.assert_allclose(imp_f[k].numpy(), gold[f"ssd_imp_f/{k}"], rtol=1e-5, atol=1e-12)
            np.testing.assert_allclose(imp_d[k].numpy(), gold[f"ssd_imp_d/{k}"], rtol=1e-5, atol=1e-12)
    dampen(model, imp_d, imp_f, alpha=alpha, lam=lam)
    changed = 0
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v.numpy(), gold[f"ssd_after_a{alpha:g}_l{lam:g}/{k}"], rtol=1e-5, atol=1e-7)
        changed += int((v.numpy() != gold[f"ssd_init/{k}"]).sum())
    assert changed > 0  # the fixture dampens some weights, so the comparison is not vacuous
