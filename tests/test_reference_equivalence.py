"""Our functions reproduce the reference implementations' own outputs (``tests/fixtures/golden.npz``).

Every output array of the golden file is recomputed from its inputs by our code. Tolerances come
from float32 round-off, never from the differences observed: with ε₃₂ = 2⁻²³ the machine epsilon
and n the length of the longest reduction in the computation, the standard first-order bound on a
float32 sum of n terms is n·ε₃₂ relative to the magnitude of its terms. The fixture path is
``$UNLEARNBENCH_GOLDEN`` when set (any file with the same keys and shapes is checked the same way),
else ``tests/fixtures/golden.npz``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.methods.anti_samples import farthest_neighbours
from bench.methods.dlfd import ot_distance
from bench.methods.scar import ClassStats, class_statistics, mahalanobis, nearest_other_class
from bench.methods.scissorhands import GEM_EPS, GEM_MARGIN, project_to_cone

EPS32 = float(np.finfo(np.float32).eps)
#: The constants the reference functions were called with (see tests/fixtures/README.md).
SCAR_DELTA, SCAR_GAMMA, SCAR_SHRINK_TIMES = 0.5, 3.0, 2
DLFD_REG = 0.01

#: key → shape; (N, K, D, ...) are free dimensions, tied together by name.
SCHEMA = {
    "scar_feats": ("N", "D"), "scar_labels": ("N",), "scar_means": ("K", "D"), "scar_inv_cov": ("K", "D", "D"),
    "scar_query": ("Q", "D"), "scar_query_labels": ("Q",), "scar_dist": ("Q", "K"), "scar_target": ("Q",),
    "shs_grad": (1, "P"), "shs_memories": ("P", "T"), "shs_projected": ("P",),
    "dlfd_a": ("A", "C"), "dlfd_b": ("B", "C"), "dlfd_ot": (), "dlfd_ot_same": (),
    "anti_unlearn": ("U", "E"), "anti_retain": ("R", "E"), "anti_farthest": ("U",),
}


def golden_path() -> Path:
    env = os.environ.get("UNLEARNBENCH_GOLDEN")
    return Path(env) if env else Path(__file__).parent / "fixtures" / "golden.npz"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    path = golden_path()
    if not path.is_file():
        raise FileNotFoundError(f"golden file {path} not found; unset UNLEARNBENCH_GOLDEN or point it at a .npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    missing = sorted(set(SCHEMA) - set(arrays))
    if missing:
        raise KeyError(f"golden file {path} lacks the arrays {missing}")
    dims: dict[str, int] = {}
    for key, shape in SCHEMA.items():
        got = arrays[key].shape
        assert len(got) == len(shape), f"{key}: shape {got}, expected {shape}"
        for name, size in zip(shape, got):
            if isinstance(name, int):
                assert size == name, f"{key}: shape {got}, expected {shape}"
            else:
                assert dims.setdefault(name, size) == size, f"{key}: dimension {name} is {size}, elsewhere {dims[name]}"
    return arrays


def close(ours: np.ndarray, ref: np.ndarray, n: int, scale: float) -> None:
    """|ours − ref| ≤ n·ε₃₂·scale elementwise (the float32 bound for reductions of length n)."""
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), ref.astype(np.float64), rtol=0, atol=n * EPS32 * scale)


def golden_stats(golden: dict[str, np.ndarray]) -> ClassStats:
    k = golden["scar_means"].shape[0]
    return ClassStats(classes=torch.arange(k), means=torch.tensor(golden["scar_means"]),
                      precisions=torch.tensor(golden["scar_inv_cov"]))


def our_stats(golden: dict[str, np.ndarray]) -> ClassStats:
    k = golden["scar_means"].shape[0]
    return class_statistics(torch.tensor(golden["scar_feats"]), torch.tensor(golden["scar_labels"]), list(range(k)),
                            delta=SCAR_DELTA, gamma_1=SCAR_GAMMA, gamma_2=SCAR_GAMMA, shrink_times=SCAR_SHRINK_TIMES)


def test_scar_class_means(golden):
    # a mean over the class's images: a reduction as long as the largest class
    n = int(np.bincount(golden["scar_labels"]).max())
    close(our_stats(golden).means.numpy(), golden["scar_means"], n, float(np.abs(golden["scar_means"]).max()))


def test_scar_inverse_covariances(golden):
    # float32 covariance (sums over the class's images) then a D×D pseudo-inverse, whose error the
    # condition number κ of the matrix amplifies: κ·(n + D)·ε₃₂·‖S‖_max
    ref = golden["scar_inv_cov"]
    n = int(np.bincount(golden["scar_labels"]).max()) + ref.shape[-1]
    kappa = float(np.linalg.cond(ref.astype(np.float64)).max())
    close(our_stats(golden).precisions.numpy(), ref, n, kappa * float(np.abs(ref).max()))


def test_scar_mahalanobis_distances(golden):
    ref = golden["scar_dist"]
    d = golden["scar_query"].shape[1]
    dist = mahalanobis(torch.tensor(golden["scar_query"]), golden_stats(golden), SCAR_DELTA)
    # normalisations (length D) and the quadratic form (D·D products): 2D + D² terms, of size ≤ ‖S‖·‖u − m‖²
    scale = float(np.abs(golden["scar_inv_cov"]).max()) * 4.0  # ‖u − m‖² ≤ 4 for unit vectors
    close(dist.numpy(), ref, 2 * d + d * d, scale)


def test_scar_targets(golden):
    dist = torch.tensor(golden["scar_dist"])
    target = nearest_other_class(dist, torch.tensor(golden["scar_query_labels"]), torch.arange(dist.shape[1]))
    np.testing.assert_array_equal(target.numpy(), golden["scar_target"])


def test_scissorhands_gem_projection(golden):
    g, mem = torch.tensor(golden["shs_grad"][0]), torch.tensor(golden["shs_memories"])
    projected = project_to_cone(g, mem, margin=GEM_MARGIN, eps=GEM_EPS)
    p, t = mem.shape
    # GᵀG and Gᵀg are reductions of length P; g̃ = Gv + g one of length T; inputs in float32
    scale = float(np.abs(golden["shs_projected"]).max())
    close(projected.numpy(), golden["shs_projected"], p + t, scale)


@pytest.mark.parametrize("key, other", [("dlfd_ot", "dlfd_b"), ("dlfd_ot_same", "dlfd_a")])
def test_dlfd_ot_cost(golden, key, other):
    a, b = torch.tensor(golden["dlfd_a"]), torch.tensor(golden[other])
    ours = float(ot_distance(a, b, reg=DLFD_REG))
    d, n = a.shape[1], b.shape[0]
    # the cost 1 − cos has absolute round-off d·ε₃₂ (a length-d dot product of unit vectors), and
    # the plan sums to ~1, so OT inherits it; the Sinkhorn exponents C/ε amplify the cost's and the
    # length-n log-sum-exp's round-off by 1/ε relative to the value.
    tol = d * EPS32 + (d + n) * EPS32 / DLFD_REG * abs(float(golden[key]))
    assert abs(ours - float(golden[key])) <= tol, (ours, float(golden[key]), tol)


def test_anti_samples_farthest_neighbour(golden):
    far = farthest_neighbours(torch.tensor(golden["anti_unlearn"]), torch.tensor(golden["anti_retain"]), 1)[:, 0]
    np.testing.assert_array_equal(far.numpy(), golden["anti_farthest"])
