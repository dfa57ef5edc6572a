"""Task splits, method data views and the task/method registries.

Splits are checked by reconstructing, for every image of every split, its index in the dataset's
training set (images of the SYNTHETIC dataset are unique, which the first test asserts), so
"disjoint" and "exactly the class's pool images" are statements about indices, not just sizes.
"""
from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch

from bench.data import Split, TaskData, generator, method_view, seed_stream, surrogate_split
from bench.datasets import load_dataset
from bench.lookup import UnknownName
from bench.registry import get_method, method
from bench.tasks import FORGET_KINDS
from bench.splits import build_task_data
from bench.tasks import ForgetRule, Recipe, Task, get_task, list_tasks

SEED = 0


def no_model() -> torch.nn.Module:
    raise AssertionError("init_model is not called by these tests")


def row_keys(x: torch.Tensor, y: torch.Tensor) -> list[tuple[bytes, int]]:
    return [(x[i].numpy().tobytes(), int(y[i])) for i in range(len(y))]


def train_index() -> dict[tuple[bytes, int], int]:
    ds = load_dataset("synthetic")
    keys = row_keys(ds.train_x, ds.train_y)
    return {k: i for i, k in enumerate(keys)}


def indices_of(split: Split) -> list[int]:
    """The dataset training indices of a split's images (each must be found exactly once)."""
    index = train_index()
    return [index[k] for k in row_keys(split.x, split.y)]


def same_split(a: Split, b: Split) -> bool:
    return torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


@pytest.fixture(scope="module")
def class_data(synthetic_task: Task) -> TaskData:
    return build_task_data(synthetic_task, SEED)


@pytest.fixture(scope="module")
def random_data(synthetic_random_task: Task) -> TaskData:
    return build_task_data(synthetic_random_task, SEED)


def test_synthetic_training_images_are_unique() -> None:
    ds = load_dataset("synthetic")
    assert ds.synthetic
    assert len(train_index()) == len(ds.train_y), "index reconstruction below needs unique (image, label) pairs"


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("which", ["class", "random"])
def test_splits_are_deterministic_in_the_seed(which: str, synthetic_task: Task, synthetic_random_task: Task) -> None:
    task = synthetic_task if which == "class" else synthetic_random_task
    a, b = build_task_data(task, 3), build_task_data(task, 3)
    assert a.split_hash == b.split_hash and a.val_hash == b.val_hash
    for name in ("train", "forget", "retain", "val", "test"):
        assert same_split(getattr(a, name), getattr(b, name)), name
    c = build_task_data(task, 4)
    assert c.val_hash != a.val_hash
    assert c.split_hash != a.split_hash
    assert not same_split(c.val, a.val)
    if which == "random":
        assert not same_split(c.forget, a.forget)


def test_seed_streams_are_stable_and_distinct() -> None:
    assert seed_stream(0, "val") == seed_stream(0, "val")
    assert len({seed_stream(0, "val"), seed_stream(1, "val"), seed_stream(0, "forget"), seed_stream(0, "val", "x")}) == 4
    assert 0 <= seed_stream(123, "init") < 2**63
    assert torch.equal(torch.rand(5, generator=generator(7, "a")), torch.rand(5, generator=generator(7, "a")))
    assert not torch.equal(torch.rand(5, generator=generator(7, "a")), torch.rand(5, generator=generator(7, "b")))


# --------------------------------------------------------------------------- disjointness and composition


@pytest.mark.parametrize("which", ["class", "random"])
def test_forget_retain_val_partition_the_training_set(which: str, class_data: TaskData, random_data: TaskData) -> None:
    td = class_data if which == "class" else random_data
    forget, retain, val = set(indices_of(td.forget)), set(indices_of(td.retain)), set(indices_of(td.val))
    assert len(forget) == len(td.forget) and len(retain) == len(td.retain) and len(val) == len(td.val)
    assert not forget & retain and not forget & val and not retain & val
    assert forget | retain | val == set(range(len(td.dataset.train_y)))
    # the original trains on D_f ∪ D_r, never on the validation split
    assert set(indices_of(td.train)) == forget | retain
    assert len(td.train) == len(forget) + len(retain)


@pytest.mark.parametrize("which", ["class", "random"])
def test_validation_split_is_class_stratified(which: str, class_data: TaskData, random_data: TaskData) -> None:
    td = class_data if which == "class" else random_data
    per_class = Counter(td.dataset.train_y.tolist())
    got = Counter(td.val.y.tolist())
    for c, n in per_class.items():
        assert got[c] == round(td.task.val_fraction * n), c


def test_validation_split_follows_val_fraction(synthetic_task: Task) -> None:
    td = build_task_data(dataclasses.replace(synthetic_task, val_fraction=0.25), SEED)
    per_class = Counter(td.dataset.train_y.tolist())
    assert Counter(td.val.y.tolist()) == {c: round(0.25 * n) for c, n in per_class.items()}


def test_class_removal_forgets_exactly_the_class_pool(class_data: TaskData) -> None:
    td = class_data
    y = td.dataset.train_y
    val = set(indices_of(td.val))
    pool_of_class = {i for i in torch.nonzero(y == 1).flatten().tolist() if i not in val}
    assert set(indices_of(td.forget)) == pool_of_class
    assert (td.forget.y == 1).all()
    assert not (td.retain.y == 1).any()
    assert td.forget_classes == (1,)


def test_class_removal_of_two_classes(synthetic_task: Task) -> None:
    task = dataclasses.replace(synthetic_task, forget=ForgetRule("classes", classes=(0, 2)))
    td = build_task_data(task, SEED)
    assert set(td.forget.y.tolist()) == {0, 2}
    assert set(td.retain.y.tolist()) == {1, 3}
    assert td.forget_test is not None and set(td.forget_test.y.tolist()) == {0, 2}
    assert len(td.forget_test) == int(torch.isin(td.test.y, torch.tensor([0, 2])).sum())


def test_class_removal_shares_the_validation_split_with_random_forgetting(class_data: TaskData, random_data: TaskData) -> None:
    # the validation split depends on the seed only, which is what lets the tasks share an original
    assert class_data.val_hash == random_data.val_hash
    assert same_split(class_data.val, random_data.val)
    assert same_split(class_data.train, random_data.train)


def test_random_forgetting_takes_round_fraction_of_the_pool(random_data: TaskData) -> None:
    td = random_data
    pool = len(td.dataset.train_y) - len(td.val)
    assert len(td.forget) == round(td.task.forget.fraction * pool)
    assert len(td.retain) == pool - len(td.forget)
    assert td.forget_classes == ()
    assert len(set(td.forget.y.tolist())) > 1, "a uniform 20% sample of 4 classes covers more than one class"


def test_forget_test_only_for_class_removal(class_data: TaskData, random_data: TaskData) -> None:
    assert random_data.forget_test is None
    ft = class_data.forget_test
    assert ft is not None
    assert (ft.y == 1).all()
    assert len(ft) == int((class_data.test.y == 1).sum()) > 0


def test_test_split_is_the_datasets_fixed_test_split(class_data: TaskData, random_data: TaskData) -> None:
    ds = class_data.dataset
    for td in (class_data, random_data, build_task_data(class_data.task, 5)):
        assert torch.equal(td.test.x, ds.test_x) and torch.equal(td.test.y, ds.test_y)


def test_bad_forget_class_is_refused(synthetic_task: Task) -> None:
    task = dataclasses.replace(synthetic_task, forget=ForgetRule("classes", classes=(7,)))
    with pytest.raises(ValueError, match="not in 0..3"):
        build_task_data(task, SEED)


def test_task_and_rule_validation() -> None:
    with pytest.raises(ValueError):
        ForgetRule("classes")
    with pytest.raises(ValueError):
        ForgetRule("random", fraction=1.0)
    with pytest.raises(ValueError):
        Recipe(epochs=0, batch_size=1, lr=1.0)
    with pytest.raises(ValueError, match="surrogate"):
        Task(name="t", description="d", dataset="synthetic", arch="digits_cnn",
             forget=ForgetRule("classes", classes=(1,)), recipe=Recipe(1, 1, 1.0), version=1, surrogate="gaussian_noise")


def test_forget_kinds_are_read_from_one_declaration() -> None:
    """ForgetRule, a method's default ``applies_to`` and its check all read ``FORGET_KINDS``."""
    with pytest.raises(ValueError, match=f"unknown forget kind 'first_rows'; valid: {', '.join(FORGET_KINDS)}$"):
        ForgetRule("first_rows")  # type: ignore[arg-type]
    assert get_method("finetune").applies_to == FORGET_KINDS

    def fn(model: torch.nn.Module, data: object, *, device: str) -> torch.nn.Module:
        return model

    for bad in (("class",), ()):
        with pytest.raises(ValueError, match=r"method test-bad-kind: applies_to .* must name forget kinds"):
            method(name="test-bad-kind", uses=(), paper="test only", version=1, applies_to=bad)(fn)


def test_registered_digits_class_task_splits() -> None:
    td = build_task_data(get_task("digits-cnn-class"), SEED)
    assert td.forget_classes == (3,)
    assert (td.forget.y == 3).all() and not (td.retain.y == 3).any()
    assert int((td.dataset.train_y == 3).sum()) == len(td.forget) + int((td.val.y == 3).sum())
    assert len(td.train) + len(td.val) == len(td.dataset.train_y)


# --------------------------------------------------------------------------- what a method is handed


def test_method_view_hides_undeclared_data(class_data: TaskData) -> None:
    surrogate = surrogate_split(class_data)
    view = method_view(class_data, (), no_model)
    assert view.forget is None and view.retain is None and view.surrogate is None
    assert view.val is class_data.val
    assert not hasattr(view, "test") and not hasattr(view, "forget_test")
    assert view.num_classes == 4 and view.forget_classes == (1,) and view.forget_kind == "classes"
    assert view.recipe == class_data.task.recipe and view.seed == SEED

    view = method_view(class_data, ("forget",), no_model, surrogate=surrogate)
    assert view.forget is class_data.forget and view.retain is None and view.surrogate is None

    view = method_view(class_data, ("retain", "surrogate"), no_model, surrogate=surrogate)
    assert view.forget is None and view.retain is class_data.retain and view.surrogate is surrogate


def test_method_view_needs_the_surrogate_a_method_declares(class_data: TaskData) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        method_view(class_data, ("surrogate",), no_model)


def test_retain_fraction_picks_a_per_class_fraction_of_the_retain_set(class_data: TaskData) -> None:
    view = method_view(class_data, ("retain_fraction",), no_model, retain_fraction=0.3)
    assert view.forget is None
    retain_counts = Counter(class_data.retain.y.tolist())
    assert Counter(view.retain.y.tolist()) == {c: int(0.3 * n) for c, n in retain_counts.items()}  # floored
    assert set(indices_of(view.retain)) < set(indices_of(class_data.retain))
    again = method_view(class_data, ("retain_fraction",), no_model, retain_fraction=0.3)
    assert same_split(view.retain, again.retain)
    full = method_view(class_data, ("retain_fraction",), no_model, retain_fraction=1.0)
    assert set(indices_of(full.retain)) == set(indices_of(class_data.retain))


@pytest.mark.parametrize("fraction", [None, 0.0, 1.5])
def test_retain_fraction_out_of_range_is_refused(class_data: TaskData, fraction: float | None) -> None:
    with pytest.raises(ValueError, match="retain_fraction"):
        method_view(class_data, ("retain_fraction",), no_model, retain_fraction=fraction)


def test_surrogate_split_is_unlabeled_seeded_and_shaped(class_data: TaskData, random_data: TaskData) -> None:
    s = surrogate_split(class_data)
    assert s.x.dtype == torch.uint8 and tuple(s.x.shape) == (64, 1, 8, 8)
    assert (s.y == -1).all()
    assert same_split(s, surrogate_split(random_data))  # same seed → same images
    assert not same_split(s, surrogate_split(build_task_data(class_data.task, SEED + 1)))


def test_surrogate_split_needs_a_task_surrogate(synthetic_task: Task) -> None:
    task = dataclasses.replace(synthetic_task, surrogate=None, surrogate_size=0)
    with pytest.raises(ValueError, match="names no surrogate"):
        surrogate_split(build_task_data(task, SEED))


# --------------------------------------------------------------------------- registries


def test_unknown_task_lists_valid_names_and_closest_match() -> None:
    with pytest.raises(UnknownName) as info:
        get_task("digits-cnn-clas")
    text = str(info.value)
    assert "Did you mean 'digits-cnn-class'?" in text
    for name in list_tasks():
        assert name in text


def test_unknown_method_lists_valid_names_and_closest_match() -> None:
    with pytest.raises(UnknownName) as info:
        get_method("finetun")
    text = str(info.value)
    assert "Did you mean 'finetune'?" in text
    assert "neggrad" in text and "retrain" in text


def test_get_task_passes_task_objects_through(synthetic_task: Task) -> None:
    assert get_task(synthetic_task) is synthetic_task
    assert synthetic_task.name not in list_tasks(), "the synthetic test task must not be registered"
