"""Anti-sample generation (methods/anti_samples.py): each step on tiny hand-made data.

Expected values are written out by hand or computed here by brute force (a full float64 distance
matrix with ``torch.cdist``), never read back from the method's own helpers.
"""
from __future__ import annotations

import pytest
import torch

from bench.data import MethodData, Split, generator
from bench.methods.anti_samples import (
    anti_samples,
    antisample_set,
    convex_mix,
    farthest_neighbours,
    generate_antisamples,
    masked_gaussian,
    mixing_weights,
    samples_per_class,
)
from bench.models import build_model, state_hash
from bench.registry import get_method
from bench.tasks import Recipe

CPU = torch.device("cpu")


# --------------------------------------------------------------------------------------------
# Farthest neighbours
# --------------------------------------------------------------------------------------------


def brute_force_farthest(forget: torch.Tensor, retain: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(forget.double(), retain.double())
    return d.argsort(dim=1, descending=True)[:, :k]


def test_farthest_neighbours_hand_made_line() -> None:
    # Retain points at 0, 1, ..., 9 on the x-axis (index i sits at x = i).
    retain = torch.stack([torch.arange(10.0), torch.zeros(10)], dim=1)
    forget = torch.tensor([[0.2, 0.0], [8.9, 0.0], [4.4, 3.0]])
    got = farthest_neighbours(forget, retain, 3, forget_chunk=2, retain_chunk=4)
    # x=0.2: farthest are 9, 8, 7. x=8.9: 0, 1, 2. (4.4, 3): |x − 4.4| largest at 9 (4.6), 0 (4.4), 8 (3.6).
    assert got.tolist() == [[9, 8, 7], [0, 1, 2], [9, 0, 8]]


@pytest.mark.parametrize("forget_chunk,retain_chunk", [(1, 1), (2, 3), (3, 7), (5, 64), (1024, 8192)])
def test_farthest_neighbours_chunked_equals_brute_force(forget_chunk: int, retain_chunk: int) -> None:
    g = torch.Generator().manual_seed(0)
    forget, retain = torch.rand(11, 6, generator=g), torch.rand(23, 6, generator=g)
    for k in (1, 4, 23):
        got = farthest_neighbours(forget, retain, k, forget_chunk=forget_chunk, retain_chunk=retain_chunk)
        assert torch.equal(got, brute_force_farthest(forget, retain, k)), (k, forget_chunk, retain_chunk)


def test_farthest_neighbours_across_chunk_boundary() -> None:
    # The 3 farthest points of the origin are spread over different retain chunks of size 2.
    retain = torch.tensor([[1.0], [9.0], [2.0], [3.0], [8.0], [0.5], [7.0]])
    got = farthest_neighbours(torch.zeros(1, 1), retain, 3, retain_chunk=2)
    assert got.tolist() == [[1, 4, 6]]


def test_farthest_neighbours_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="k must be"):
        farthest_neighbours(torch.zeros(2, 3), torch.zeros(4, 3), 5)


# --------------------------------------------------------------------------------------------
# Masked Gaussian
# --------------------------------------------------------------------------------------------


def test_masking_probability_empirical_rate() -> None:
    x_f, x_n = torch.rand(200, 500), torch.rand(200, 500)
    out = masked_gaussian(x_f, x_n, local_variance=1.0, p=0.95, eps=0.01, g=generator(0, "t"))
    rate = float((out != x_n).double().mean())
    # 100,000 Bernoulli(0.95) draws: standard deviation ≈ 0.0007.
    assert abs(rate - 0.95) < 0.004


def test_masking_p0_keeps_neighbour_and_p1_changes_everything() -> None:
    x_f, x_n = torch.rand(50, 40), torch.rand(50, 40)
    kept = masked_gaussian(x_f, x_n, local_variance=1.0, p=0.0, eps=0.01, g=generator(0, "t"))
    assert torch.equal(kept, x_n)
    changed = masked_gaussian(x_f, x_n, local_variance=1.0, p=1.0, eps=0.01, g=generator(0, "t"))
    assert bool((changed != x_n).all())


def test_masked_gaussian_coordinate_scale() -> None:
    # Column 0: |x_f − x_n| = 0 → σ = ε·v = 0.02; column 1: |x_f − x_n| = 0.5 → σ = 0.51·2 = 1.02.
    n = 20000
    x_n = torch.full((n, 2), 0.5)
    x_f = torch.tensor([0.5, 1.0]).expand(n, 2).clone()
    out = masked_gaussian(x_f, x_n, local_variance=2.0, p=1.0, eps=0.01, g=generator(1, "t"))
    std = (out - x_n).std(dim=0)
    assert abs(float(std[0]) - 0.02) < 0.02 * 0.05
    assert abs(float(std[1]) - 1.02) < 1.02 * 0.05
    assert abs(float((out - x_n).mean(dim=0)[1])) < 0.05


# --------------------------------------------------------------------------------------------
# Convex mixing
# --------------------------------------------------------------------------------------------


def test_mixing_rows_sum_to_one() -> None:
    w = mixing_weights(7, 13, generator(0, "w"))
    assert w.shape == (7, 13)
    assert bool((w > 0).all())
    assert torch.allclose(w.sum(dim=1), torch.ones(7), atol=1e-6)


def test_convex_mix_outputs_are_convex_combinations() -> None:
    # With A = I the output rows are the weights themselves: non-negative, summing to one,
    # also across the row chunks the weights are drawn in.
    w = convex_mix(torch.eye(9), 7, generator(0, "w"), chunk=3)
    assert w.shape == (7, 9)
    assert bool((w >= 0).all())
    assert torch.allclose(w.sum(dim=1), torch.ones(7), atol=1e-6)
    # And on any A each output coordinate lies within that column's range.
    a = torch.randn(9, 5, generator=torch.Generator().manual_seed(3))
    out = convex_mix(a, 11, generator(1, "w"), chunk=4)
    assert bool((out >= a.min(0).values - 1e-6).all()) and bool((out <= a.max(0).values + 1e-6).all())


def test_generate_antisamples_stay_in_unit_interval_and_are_seeded() -> None:
    g = torch.Generator().manual_seed(5)
    forget, retain = torch.rand(30, 16, generator=g), torch.rand(40, 16, generator=g)
    kw = dict(n_generated=12, local_variance=5.0, p=0.95, tail_randomized=20, size_multiplier=2, eps=0.01)
    a = generate_antisamples(forget, retain, g=generator(0, "a"), **kw)
    b = generate_antisamples(forget, retain, g=generator(0, "a"), **kw)
    c = generate_antisamples(forget, retain, g=generator(1, "a"), **kw)
    assert a.shape == (12, 16)
    assert bool((a >= 0).all()) and bool((a <= 1).all())
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_tail_of_one_and_p0_give_the_farthest_image() -> None:
    # T = 1, p = 0: every a_i is the single farthest retain image, so every mixture equals it.
    retain = torch.tensor([[0.0, 0.0], [0.1, 0.1], [1.0, 1.0]])
    forget = torch.tensor([[0.05, 0.0], [0.0, 0.05]])
    out = generate_antisamples(forget, retain, n_generated=4, local_variance=1.0, p=0.0, tail_randomized=1,
                               size_multiplier=1, eps=0.01, g=generator(0, "a"))
    assert torch.allclose(out, torch.ones(4, 2))


# --------------------------------------------------------------------------------------------
# The method on a hand-made multi-class task
# --------------------------------------------------------------------------------------------


def image_split(name: str, values: list[int], labels: list[int]) -> Split:
    """One 1×8×8 uint8 image per value, filled with that value."""
    x = torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).contiguous()
    return Split(name, x, torch.tensor(labels, dtype=torch.int64))


def make_data(*, forget_kind: str = "classes", seed: int = 0) -> MethodData:
    """4 classes; forget classes 1 (bright images) and 3 (dark images); D_r' = classes 0 (black
    images) and 2 (white images), 6 each, so G = 6 and class 1's farthest images are class 0's."""
    forget = image_split("forget", [250, 240, 245, 5, 10], [1, 1, 1, 3, 3])
    retain = image_split("retain", [0] * 6 + [255] * 6, [0] * 6 + [2] * 6)
    val = image_split("val", [0, 255, 250, 5], [0, 2, 1, 3])

    def init():
        return build_model("digits_cnn", in_channels=1, image_size=8, num_classes=4, mean=(0.5,), std=(0.5,), seed=seed)

    return MethodData(
        forget=forget, retain=retain, surrogate=None, val=val, num_classes=4,
        forget_classes=(1, 3) if forget_kind == "classes" else (), forget_kind=forget_kind,
        recipe=Recipe(epochs=1, batch_size=8, lr=1e-3), seed=seed, init_model=init,
    )


def test_samples_per_class_is_mean_selected_count() -> None:
    assert samples_per_class(torch.tensor([0] * 6 + [2] * 6)) == 6
    assert samples_per_class(torch.tensor([0] * 3 + [1] * 4 + [2] * 4)) == 4  # round(11 / 3)


def test_multi_class_labelling_per_forget_class() -> None:
    data = make_data()
    x, y = antisample_set(data, device=CPU, local_variance=1.0, p=0.0, tail_randomized=1, size_multiplier=1, eps=0.01)
    assert x.shape == (12, 1, 8, 8)
    assert y.tolist() == [1] * 6 + [3] * 6
    # p = 0, T = 1: class 1's (bright) anti-samples are the black retain image, class 3's (dark) the white one.
    assert torch.allclose(x[y == 1], torch.zeros(6, 1, 8, 8))
    assert torch.allclose(x[y == 3], torch.ones(6, 1, 8, 8))


def test_antisample_set_is_seeded() -> None:
    kw = dict(device=CPU, local_variance=1.0, p=0.95, tail_randomized=3, size_multiplier=2, eps=0.01)
    a, _ = antisample_set(make_data(seed=0), **kw)
    b, _ = antisample_set(make_data(seed=0), **kw)
    c, _ = antisample_set(make_data(seed=1), **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_method_runs_and_is_deterministic() -> None:
    hashes = []
    for _ in range(2):
        data = make_data()
        model = anti_samples(data.init_model(), data, device=CPU, retain_fraction=1.0, epochs=2, batch_size=8)
        out = model(data.val.floats())
        assert out.shape == (4, 4) and bool(torch.isfinite(out).all())
        hashes.append(state_hash(model))
    assert hashes[0] == hashes[1]


def test_method_refuses_random_forgetting() -> None:
    data = make_data(forget_kind="random")
    with pytest.raises(ValueError, match="removes whole classes"):
        anti_samples(data.init_model(), data, device=CPU)


def test_registered_variants() -> None:
    for name, fraction in (("anti_samples_30", 0.3), ("anti_samples_100", 1.0)):
        spec = get_method(name)
        assert spec.uses == ("forget", "retain_fraction")
        assert spec.applies_to == ("classes",)
        assert spec.resolve("any-task")["retain_fraction"] == fraction
        with pytest.raises(ValueError, match="fixed"):
            spec.resolve("any-task", {"retain_fraction": 0.5})
