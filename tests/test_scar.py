"""SCAR: the statistics, the distance, the target choice and the logit masking against small
hand-computed examples, and end-to-end runs of every SCAR entry on SYNTHETIC tasks."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import bench
from bench.data import method_view, surrogate_split
from bench.methods.scar import (
    ClassStats,
    class_statistics,
    correlation,
    distill_kl,
    fixed_targets,
    mahalanobis,
    mask_removed_logits,
    nearest_other_class,
    balanced_draw_weights,
    class_weights,
    forget_accuracies,
    scar,
    shrink_covariance,
    tukey,
)
from bench.references import get_references, model_factory
from bench.registry import get_method
from bench.splits import build_task_data
from bench.tasks import ForgetRule, Recipe, Task

SCAR_ENTRIES = ("scar", "scar_retainfree", "scar_self", "scar_self_retainfree")
TINY = Recipe(epochs=3, batch_size=32, lr=3e-3)


def synthetic_task(name: str, forget: ForgetRule) -> Task:
    return Task(name=name, description="SYNTHETIC SCAR test task", dataset="synthetic", arch="digits_cnn",
                forget=forget, recipe=TINY, version=1, surrogate="gaussian_noise", surrogate_size=200)


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def test_tukey_is_signed_power_with_finite_gradient_at_zero():
    z = torch.tensor([4.0, 0.0, 0.25, -9.0], requires_grad=True)
    t = tukey(z, 0.5)
    assert torch.allclose(t, torch.tensor([2.0, 0.0, 0.5, -3.0]))
    t.sum().backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[1] == 0.0
    assert torch.isclose(z.grad[0], torch.tensor(0.25))  # d/dz sqrt(z) = 1 / (2·2)


def test_shrinkage_once_and_twice_by_hand():
    cov = torch.tensor([[2.0, 1.0, 0.0], [1.0, 4.0, 0.0], [0.0, 0.0, 6.0]])
    # V1 = (2+4+6)/3 = 4; non-zero off-diagonal entries 1, 1 → V2 = 1; + 3·4·I + 3·1·(1−I)
    once = shrink_covariance(cov, 3.0, 3.0)
    assert torch.allclose(once, torch.tensor([[14.0, 4.0, 3.0], [4.0, 16.0, 3.0], [3.0, 3.0, 18.0]]))
    # V1 = 16; off-diagonal 4, 3, 4, 3, 3, 3 → V2 = 10/3; + 48·I + 10·(1−I)
    twice = shrink_covariance(once, 3.0, 3.0)
    assert torch.allclose(twice, torch.tensor([[62.0, 14.0, 13.0], [14.0, 64.0, 13.0], [13.0, 13.0, 66.0]]))


def test_shrinkage_of_a_diagonal_matrix_adds_no_off_diagonal_term():
    shrunk = shrink_covariance(torch.diag(torch.tensor([1.0, 3.0])), 3.0, 3.0)  # V1 = 2, V2 = 0
    assert torch.equal(shrunk, torch.diag(torch.tensor([7.0, 9.0])))


def test_correlation_normalization_by_hand():
    rho = correlation(torch.tensor([[4.0, 2.0], [2.0, 9.0]]))  # σ = (2, 3)
    assert torch.allclose(rho, torch.tensor([[1.0, 1.0 / 3.0], [1.0 / 3.0, 1.0]]))


def test_class_statistics_by_hand():
    # class 0: t(z) = sqrt → (1,0), (3,0), (1,2), (3,2): mean (2,1), cov (4/3)·I, shrunk twice
    # stays a multiple of I (no off-diagonal), correlation I, pinv I. Class 1 has one image: skipped.
    feats = torch.tensor([[1.0, 0.0], [9.0, 0.0], [1.0, 4.0], [9.0, 4.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 0, 0, 1])
    st = class_statistics(feats, labels, [0, 1], delta=0.5, gamma_1=3.0, gamma_2=3.0, shrink_times=2)
    assert st.classes.tolist() == [0]
    assert torch.allclose(st.means, torch.tensor([[2.0, 1.0]]))
    assert torch.allclose(st.precisions, torch.eye(2)[None], atol=1e-6)


def test_class_statistics_with_correlated_features_by_hand():
    # t(z) = z for δ = 1: points (0,0), (2,2), (2,0): mean (4/3, 2/3);
    # cov = [[4/3, 2/3], [2/3, 4/3]]; shrink once: V1 = 4/3, V2 = 2/3 → [[16/3, 8/3], [8/3, 16/3]];
    # correlation [[1, 1/2], [1/2, 1]]; inverse (4/3)·[[1, −1/2], [−1/2, 1]].
    feats = torch.tensor([[0.0, 0.0], [2.0, 2.0], [2.0, 0.0]])
    st = class_statistics(feats, torch.zeros(3, dtype=torch.int64), [0], delta=1.0, gamma_1=3.0, gamma_2=3.0,
                          shrink_times=1)
    assert torch.allclose(st.means[0], torch.tensor([4.0 / 3.0, 2.0 / 3.0]))
    assert torch.allclose(st.precisions[0], torch.tensor([[4.0 / 3.0, -2.0 / 3.0], [-2.0 / 3.0, 4.0 / 3.0]]), atol=1e-5)


def test_class_statistics_without_any_usable_class_fails_loudly():
    with pytest.raises(ValueError, match="two or more images"):
        class_statistics(torch.rand(3, 2), torch.tensor([0, 1, 2]), [0, 1, 2], delta=0.5, gamma_1=3.0,
                         gamma_2=3.0, shrink_times=2)


# --------------------------------------------------------------------------------------------
# Distance and targets
# --------------------------------------------------------------------------------------------


def test_mahalanobis_distance_by_hand():
    # z = (4, 0) → t = (2, 0) → u = (1, 0). Class 5: μ = (0, 9) → m = (0, 1), diff = (1, −1),
    # S = [[2, .5], [.5, 1]] → 2 − 2·0.5 + 1 = 2. Class 7: μ = (3, 0) → m = (1, 0) → 0.
    st = ClassStats(classes=torch.tensor([5, 7]), means=torch.tensor([[0.0, 9.0], [3.0, 0.0]]),
                    precisions=torch.stack([torch.tensor([[2.0, 0.5], [0.5, 1.0]]), torch.eye(2)]))
    d = mahalanobis(torch.tensor([[4.0, 0.0]]), st, 0.5)
    assert torch.allclose(d, torch.tensor([[2.0, 0.0]]))
    assert st.positions(torch.tensor([7, 5, 7])).tolist() == [1, 0, 1]


def test_nearest_other_class_never_picks_own_label():
    dist = torch.tensor([[0.1, 0.5, 0.3], [0.2, 0.1, 0.9], [0.4, 0.3, 0.2]])
    labels = torch.tensor([0, 1, 2])
    assert nearest_other_class(dist, labels, torch.tensor([0, 1, 2])).tolist() == [2, 0, 1]


def test_nearest_other_class_maps_positions_to_class_ids():
    # class 1 removed: statistics for classes 0, 2, 3; the forget images' label 1 is not a candidate
    dist = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.7, 0.3]])
    assert nearest_other_class(dist, torch.tensor([1, 1]), torch.tensor([0, 2, 3])).tolist() == [2, 0]


def test_nearest_other_class_without_a_candidate_fails_loudly():
    with pytest.raises(ValueError, match="no class other than its own"):
        nearest_other_class(torch.tensor([[0.3]]), torch.tensor([4]), torch.tensor([4]))


def test_targets_are_fixed_at_the_first_pass():
    classes = torch.tensor([0, 1, 2])
    targets = torch.full((4,), -1, dtype=torch.int64)
    first = fixed_targets(targets, torch.tensor([2, 0]), torch.tensor([[0.0, 0.1, 0.9], [0.5, 0.4, 0.1]]),
                          torch.tensor([0, 0]), classes)
    assert first.tolist() == [1, 2]
    assert targets.tolist() == [2, -1, 1, -1]
    # image 2 again, now nearest to class 2, with image 3 new: image 2 keeps class 1
    again = fixed_targets(targets, torch.tensor([3, 2]), torch.tensor([[0.9, 0.0, 0.2], [0.9, 0.8, 0.1]]),
                          torch.tensor([1, 0]), classes)
    assert again.tolist() == [2, 1]
    assert targets.tolist() == [2, -1, 1, 2]


# --------------------------------------------------------------------------------------------
# Distillation pieces
# --------------------------------------------------------------------------------------------


def test_class_removal_logit_masking_by_hand():
    teacher = torch.tensor([[1.0, 5.0, 2.0], [4.0, 2.0, 3.0], [-1.0, 1.0, 7.0]])
    keep, masked = mask_removed_logits(teacher, torch.tensor([1]))
    assert keep.tolist() == [False, True, True]  # row 0's argmax is the removed class 1
    # the minimum of the whole kept matrix (−1), not of each row, goes into the removed column
    assert torch.equal(masked, torch.tensor([[4.0, -1.0, 3.0], [-1.0, -1.0, 7.0]]))
    assert teacher[1, 1] == 2.0  # the input is left untouched


def test_masking_of_several_removed_classes():
    teacher = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 1.0, 0.5, 2.0], [1.0, 0.0, 2.0, 9.0]])
    keep, masked = mask_removed_logits(teacher, torch.tensor([1, 3]))
    assert keep.tolist() == [False, True, False]
    assert torch.equal(masked, torch.tensor([[5.0, 0.5, 0.5, 0.5]]))


def test_distill_kl_matches_the_definition():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    temperature = 2.0
    p = [[math.exp(v / temperature) for v in row] for row in teacher.tolist()]
    p = [[v / sum(row) for v in row] for row in p]
    q = [[math.exp(v) for v in row] for row in student.tolist()]
    q = [[v / sum(row) for v in row] for row in q]
    expected = sum(pi * math.log(pi / qi) for pr, qr in zip(p, q) for pi, qi in zip(pr, qr)) / 2
    assert math.isclose(float(distill_kl(student, teacher, temperature)), expected, rel_tol=1e-5)
    assert float(distill_kl(student[:0], teacher[:0], 1.0)) == 0.0


def test_forget_accuracies_overall_and_per_class():
    class Fixed(torch.nn.Module):  # predicts the class stored in the first pixel
        def forward(self, x):
            return F.one_hot(x[:, 0, 0, 0].mul(255).round().long(), 3).float()

    # class 0: 3 of 4 right; class 2: 1 of 1; class 1 absent (0)
    x = torch.tensor([0, 0, 0, 1, 2], dtype=torch.uint8).view(5, 1, 1, 1)
    acc, per_class = forget_accuracies(Fixed(), x, torch.tensor([0, 0, 0, 0, 2]), 3, torch.device("cpu"))
    assert acc == 0.8
    assert per_class.tolist() == [0.75, 0.0, 1.0]


def test_class_weights_zero_classes_below_threshold():
    acc = torch.tensor([0.75, 0.0, 1.0])
    assert class_weights(acc, 0.8).tolist() == [0.0, 0.0, 1.0]
    assert class_weights(acc, 0.5).tolist() == [0.75, 0.0, 1.0]


def test_balanced_draw_weights_raise_counts_below_three_to_five():
    # label counts: class 0 ×4, class 1 ×2 (→ 5), class 2 ×1 (→ 5)
    pseudo = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    assert balanced_draw_weights(pseudo, 3).tolist() == pytest.approx([0.25] * 4 + [0.2] * 3)


# --------------------------------------------------------------------------------------------
# Registration and end to end
# --------------------------------------------------------------------------------------------


def test_entries_declare_their_statistics_source():
    assert get_method("scar").uses == ("forget", "retain", "surrogate")
    assert get_method("scar_retainfree").uses == ("forget", "surrogate")
    assert get_method("scar_self").uses == ("retain", "surrogate")
    assert get_method("scar_self_retainfree").uses == ("surrogate",)
    assert get_method("scar_self").applies_to == ("classes",)
    assert get_method("scar").resolve("any")["stats"] == "retain"
    assert get_method("scar_retainfree").resolve("any")["stats"] == "surrogate"
    with pytest.raises(ValueError, match="fixed"):
        get_method("scar").resolve("any", {"stats": "surrogate"})


def method_data(task: Task, uses: tuple[str, ...], cache: Path):
    """The method's view of ``task`` (seed 0) and a factory of copies of its trained original."""
    td = build_task_data(task, 0)
    original = get_references(td, device=torch.device("cpu"), cache_dir=cache).original.model
    data = method_view(td, uses, model_factory(td), surrogate=surrogate_split(td))
    return data, lambda: copy.deepcopy(original)


def test_bad_stats_value_lists_the_options(reference_cache):
    data, make = method_data(synthetic_task("synthetic-scar-stats", ForgetRule("classes", classes=(1,))),
                             ("forget", "surrogate"), reference_cache)
    with pytest.raises(ValueError, match="'retain', 'surrogate'"):
        scar(make(), data, device=torch.device("cpu"), stats="ood")
    with pytest.raises(ValueError, match="retain-free entry"):
        scar(make(), data, device=torch.device("cpu"), stats="retain")  # retain not declared


@pytest.mark.parametrize("stats", ["retain", "surrogate"])
def test_scar_is_deterministic_under_a_seed(stats, reference_cache):
    data, make = method_data(synthetic_task("synthetic-scar-det", ForgetRule("random", fraction=0.2)),
                             ("forget", "retain", "surrogate"), reference_cache)
    a = scar(make(), data, device=torch.device("cpu"), epochs=2, stats=stats)
    b = scar(make(), data, device=torch.device("cpu"), epochs=2, stats=stats)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), make().state_dict().values()))


def test_every_entry_runs_end_to_end_on_synthetic_tasks(tmp_path, reference_cache):
    classes = synthetic_task("synthetic-scar-class", ForgetRule("classes", classes=(1,)))
    random = synthetic_task("synthetic-scar-random", ForgetRule("random", fraction=0.2))
    rows = bench.run([classes, random], list(SCAR_ENTRIES), seeds=[0], hp={"epochs": 3},
                     results=tmp_path / "results", leaderboard=tmp_path / "lb", cache=reference_cache,
                     progress=False)
    runs = {(r["task"], r["method"]) for r in rows if r["method"] != "oracle"}
    # scar_self applies to class removal only: not planned for the random task
    assert runs == {(classes.name, m) for m in SCAR_ENTRIES} | {(random.name, "scar"), (random.name, "scar_retainfree")}
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"][:1]
    assert all(math.isfinite(r["value"]) for r in rows if r["metric"] != "speedup")
    used = {r["method"]: r["data_used"] for r in rows if r["task"] == classes.name}
    assert used["scar"] == "forget,retain,surrogate" and used["scar_self_retainfree"] == "surrogate"
    assert {r["surrogate"] for r in rows if r["method"] in SCAR_ENTRIES} == {"gaussian_noise"}
    page = (tmp_path / "lb" / f"{classes.name}.md").read_text()
    assert '"stats":"surrogate"' in page and '"stats":"retain"' in page


def test_early_stopping_acts_from_the_third_epoch_only(monkeypatch, reference_cache):
    # one forget batch and one surrogate batch: one optimizer step per epoch
    data, make = method_data(synthetic_task("synthetic-scar-class", ForgetRule("classes", classes=(1,))),
                             ("forget", "retain", "surrogate"), reference_cache)
    steps = []
    real_step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (steps.append(1), real_step(self, *a, **k)))
    scar(make(), data, device=torch.device("cpu"), epochs=5, target_accuracy=1.01)  # always below target
    assert len(steps) == 3  # epochs 0 and 1 run whole, the check stops epoch 2 after its first step
    steps.clear()
    scar(make(), data, device=torch.device("cpu"), epochs=5, target_accuracy=0.0)  # early stopping off
    assert len(steps) == 5
