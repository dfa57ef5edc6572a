"""Memorising tasks: fixed training subsets, shipped forget sets checked by their hash, and the
memorisation estimator and selection (on the SYNTHETIC dataset and by hand)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.forgetsets import index_sha256, load_forget_set, read_forget_set, write_forget_set
from bench.memorisation import (MemorisationScores, estimate_memorisation, half_masks, make_forget_sets,
                                scores_from_correct, select)
from bench.splits import build_task_data
from bench.tasks import MEM_FORGET_SETS, SUITES, TASKS, ForgetRule, Task

from conftest import make_synthetic_task


@pytest.fixture(scope="module")
def subset_task() -> Task:
    """SYNTHETIC random forgetting on a fixed 80-image subset of the 160 training images."""
    return dataclasses.replace(make_synthetic_task("synthetic-subset", ForgetRule("random", fraction=0.25)),
                               split_seed=1, train_subset=80, val_fraction=0.25)


# --------------------------------------------------------------------------- training subsets

def test_subset_is_class_stratified_and_validation_is_held_out_beside_it(subset_task: Task) -> None:
    td = build_task_data(subset_task, 0)
    ds = td.dataset
    assert len(td.train) == 80 and torch.equal(torch.bincount(td.train.y), torch.bincount(ds.train_y) // 2)
    assert torch.equal(ds.train_x[td.train_index], td.train.x)
    assert len(td.val) == 20 and torch.equal(torch.bincount(td.val.y), torch.full((4,), 5))
    val_rows = {tuple(r.flatten().tolist()) for r in td.val.x}
    assert not val_rows & {tuple(r.flatten().tolist()) for r in td.train.x}  # validation lies outside the subset
    assert len(td.forget) == 20 and len(td.retain) == 60
    other = build_task_data(subset_task, 5)  # seeds by role: one subset, one split for every model seed
    assert torch.equal(other.train_index, td.train_index) and other.val_hash == td.val_hash
    whole = build_task_data(dataclasses.replace(subset_task, train_subset=0), 0)
    assert whole.val_hash != td.val_hash  # the original of a subset is keyed by its subset too


def test_new_fields_join_the_identity_only_when_set(subset_task: Task) -> None:
    plain = TASKS.get("digits-cnn-random10").identity()
    assert "train_subset" not in plain and "index_file" not in plain["forget"]  # published run ids unchanged
    assert subset_task.identity()["train_subset"] == 80
    high = TASKS.get("fmnist-lenet-mem10k-highmem").identity()
    assert high["forget"]["index_sha256"] == MEM_FORGET_SETS["fmnist-mem10k-high"]


@pytest.mark.parametrize("change, match", [
    (dict(train_subset=-1), "train_subset > 0"),
    (dict(split_seed=None), "split_seed that fixes it"),
])
def test_bad_subset_is_refused_at_registration(subset_task: Task, change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(subset_task, **change)


def test_subset_larger_than_the_dataset_is_refused(subset_task: Task) -> None:
    with pytest.raises(ValueError, match="must be below the 160 training images"):
        build_task_data(dataclasses.replace(subset_task, train_subset=160), 0)


def test_memorising_suite_is_registered_on_one_pool() -> None:
    tasks = [TASKS.get(t) for t in SUITES["memorising"]]
    assert {t.forget.kind for t in tasks} == {"random", "classes", "examples"} and len(tasks) == 5
    assert len({(t.train_subset, t.split_seed, t.recipe, t.val_fraction) for t in tasks}) == 1  # one original per seed


# --------------------------------------------------------------------------- shipped forget sets

def test_shipped_forget_sets_are_intact_and_name_their_command() -> None:
    for name, sha in MEM_FORGET_SETS.items():
        record = read_forget_set(name)
        assert record["index_sha256"] == sha and record["size"] == 1000 and record["dataset"] == "fashion_mnist"
        assert record["made_by"].startswith("bench memorisation fmnist-lenet-mem10k-random10 --models 32 --size 1000")
    high, low = read_forget_set("fmnist-mem10k-high"), read_forget_set("fmnist-mem10k-low")
    assert not set(high["indices"]) & set(low["indices"])
    assert high["chosen"]["mean_score"] > 0.5 and low["chosen"]["mean_score"] == 0.0


def test_forget_set_round_trip_and_every_refusal(tmp_path: Path) -> None:
    write_forget_set("toy", [7, 3, 5], dataset="synthetic", made_by="by hand", folder=tmp_path)
    sha = index_sha256([3, 5, 7])
    assert load_forget_set("toy", sha, dataset="synthetic", folder=tmp_path).tolist() == [3, 5, 7]
    with pytest.raises(ValueError, match="a changed forget set is a new task version"):
        load_forget_set("toy", "0" * 64, dataset="synthetic", folder=tmp_path)
    with pytest.raises(ValueError, match="lists images of synthetic, not of digits"):
        load_forget_set("toy", sha, dataset="digits", folder=tmp_path)
    with pytest.raises(FileNotFoundError, match="no file"):
        load_forget_set("absent", sha, dataset="synthetic", folder=tmp_path)
    path = tmp_path / "toy.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(record | {"indices": [3, 5, 8]}))
    with pytest.raises(ValueError, match="the file was edited"):
        read_forget_set("toy", tmp_path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not a forget-set file"):
        read_forget_set("toy", tmp_path)


def test_examples_rule_forgets_the_listed_images_and_refuses_foreign_ones(subset_task: Task, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.forgetsets

    pool = build_task_data(subset_task, 0).train_index.tolist()
    monkeypatch.setattr(bench.forgetsets, "FORGETSET_DIR", tmp_path)
    write_forget_set("mine", pool[:10], dataset="synthetic", made_by="by hand")
    rule = ForgetRule("examples", index_file="mine", index_sha256=index_sha256(sorted(pool[:10])))
    td = build_task_data(dataclasses.replace(subset_task, forget=rule), 0)
    assert sorted(td.forget_index.tolist()) == sorted(pool[:10]) and len(td.retain) == 70
    outside = sorted(set(range(160)) - set(pool))[:3]
    write_forget_set("foreign", outside, dataset="synthetic", made_by="by hand")
    foreign = ForgetRule("examples", index_file="foreign", index_sha256=index_sha256(outside))
    with pytest.raises(ValueError, match="lists 3 of its 3 images outside the task's training pool"):
        build_task_data(dataclasses.replace(subset_task, forget=foreign), 0)
    with pytest.raises(ValueError, match="needs index_file"):
        ForgetRule("examples")


# --------------------------------------------------------------------------- the estimator

def test_half_masks_are_exact_seeded_halves() -> None:
    masks = half_masks(11, 4, seed=0)
    assert masks.sum(1).tolist() == [5] * 4 and torch.equal(masks, half_masks(11, 4, seed=0))
    assert not torch.equal(masks, half_masks(11, 4, seed=1)) and len({tuple(m.tolist()) for m in masks}) == 4


def test_scores_are_in_minus_out_correctness_by_hand() -> None:
    masks = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    correct = torch.tensor([[1, 1, 1], [0, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=torch.bool)
    score, in_acc, out_acc, n_in, n_out = scores_from_correct(correct, masks)
    # image 0: in models 0, 2 (both right), out of 1, 3 (both wrong) → 1 − 0
    # image 1: in 1, 2 (right), out 0, 3 (right) → 0;  image 2: in 0, 1 (right, wrong), out 2, 3 (right) → 0.5 − 1
    assert score.tolist() == [1.0, 0.0, -0.5] and n_in.tolist() == [2, 2, 2] and n_out.tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="raise --models"):
        scores_from_correct(correct[:1], masks[:1])


def scores_of(score: list[float], in_acc: list[float], out_acc: list[float]) -> MemorisationScores:
    n = len(score)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return MemorisationScores(torch.arange(100, 100 + n), t(score), t(in_acc), t(out_acc),
                              torch.ones(n, dtype=torch.int64), torch.ones(n, dtype=torch.int64), 2, 0.0)


def test_high_takes_the_top_scores_and_low_only_never_memorised_images() -> None:
    s = scores_of([0.9, 0.0, 0.5, 0.0, 0.7, -0.2], [1, 1, 1, 1, 0.9, 0.8], [0.1, 1, 0.5, 1, 0.2, 1])
    assert select(s, "high", 2, seed=0) == [100, 104]
    assert sorted(select(s, "low", 2, seed=0)) == [101, 103]  # in and out both 1; never 105 (score −0.2)
    with pytest.raises(ValueError, match="only 2 images were right in every model"):
        select(s, "low", 3, seed=0)
    with pytest.raises(ValueError, match="must be smaller than"):
        select(s, "high", 6, seed=0)


def test_estimator_runs_on_a_task_pool(subset_task: Task) -> None:
    td = build_task_data(subset_task, 0)
    seen = []
    scores = estimate_memorisation(td, models=12, device=torch.device("cpu"), on_model=lambda k, s: seen.append(k))
    assert seen == list(range(12)) and torch.equal(scores.index, td.train_index)
    assert torch.all(scores.n_in + scores.n_out == 12) and int(scores.n_in.sum()) == 12 * 40  # exact halves of 80
    assert torch.allclose(scores.score, scores.in_accuracy - scores.out_accuracy)
    again = estimate_memorisation(td, models=12, device=torch.device("cpu"))
    assert torch.equal(again.score, scores.score)  # deterministic


def test_bench_memorisation_never_overwrites_a_forget_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "x-high.json").write_text("{}")
    assert main(["memorisation", "fmnist-lenet-mem10k-random10", "--size", "10", "--name", "x",
                 "--out", str(tmp_path)]) == 2
    assert "is never overwritten" in capsys.readouterr().err and (tmp_path / "x-high.json").read_text() == "{}"
    with pytest.raises(ValueError, match="--size 20000 must be positive and below"):
        make_forget_sets("fmnist-lenet-mem10k-random10", models=2, size=20000, name="y", folder=tmp_path)
