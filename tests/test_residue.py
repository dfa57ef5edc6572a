"""Residue of a removed class (``bench.residue``) on the SYNTHETIC class task: the probe reads the
features and nothing else, relearning counts steps to 50 % D_ft accuracy and stops at its cap,
neither changes the model, and both are stored for every run of a class task (none on random)."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

import bench
from bench.models import state_hash
from bench.references import get_references
from bench.residue import RELEARN_CAP, RELEARN_IMAGES, ResidueInputs, features, probe_accuracy, relearn_sample, relearn_steps
from bench.results import read_store
from bench.splits import build_task_data
from bench.tasks import Recipe, Task
from bench.train import accuracy

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(synthetic_task: Task, reference_cache: Path):
    td = build_task_data(synthetic_task, 0)
    refs = get_references(td, device=CPU, cache_dir=reference_cache)
    return td, refs


def inputs(model: torch.nn.Module, td, recipe: Recipe | None = None) -> ResidueInputs:
    return ResidueInputs(model, td.val, td.forget_test, relearn_sample(td.forget, 0), recipe or td.task.recipe, CPU)


def test_original_recognises_the_class_at_once_and_the_oracle_must_relearn_it(setup) -> None:
    td, refs = setup
    assert accuracy(refs.original.model, td.forget_test, device=CPU) >= 0.5
    assert relearn_steps(inputs(refs.original.model, td)) == (0.0, min(RELEARN_IMAGES, len(td.forget)))
    assert accuracy(refs.oracle.model, td.forget_test, device=CPU) < 0.5
    steps, _ = relearn_steps(inputs(refs.oracle.model, td))
    assert 1 <= steps <= RELEARN_CAP


def test_hiding_the_class_in_the_head_leaves_the_probe_where_it_was(setup) -> None:
    td, refs = setup
    hidden = copy.deepcopy(refs.original.model)
    with torch.no_grad():
        hidden.head.bias[1] -= 1e4  # class 1 is never predicted: forget-test accuracy 0
    assert accuracy(hidden, td.forget_test, device=CPU) == 0.0
    assert probe_accuracy(inputs(hidden, td)) == probe_accuracy(inputs(refs.original.model, td))
    assert relearn_steps(inputs(hidden, td))[0] >= 1


def test_relearning_stops_at_its_cap(setup) -> None:
    td, refs = setup
    frozen = dataclasses.replace(td.task.recipe, lr=1e-12)
    assert relearn_steps(inputs(refs.oracle.model, td, frozen)) == (float(RELEARN_CAP), min(RELEARN_IMAGES, len(td.forget)))


def test_residue_metrics_leave_the_model_unchanged(setup) -> None:
    td, refs = setup
    model = copy.deepcopy(refs.oracle.model)
    before = state_hash(model)
    probe_accuracy(inputs(model, td))
    relearn_steps(inputs(model, td))
    assert state_hash(model) == before


def test_features_are_the_penultimate_layer(setup) -> None:
    td, refs = setup
    model = refs.original.model
    x = td.val.floats()
    with torch.no_grad():
        expected = model.body(model.normalize(x)).double().numpy()
    assert features(model, td.val, CPU) == pytest.approx(expected)


def test_relearn_sample_is_fixed_by_the_split_seed(setup) -> None:
    td, _ = setup
    a, b = relearn_sample(td.forget, 0, size=5), relearn_sample(td.forget, 0, size=5)
    assert torch.equal(a.x, b.x) and len(a) == 5
    assert relearn_sample(td.forget, 0, size=10_000) is td.forget


def test_every_class_task_run_stores_the_residue_metrics(synthetic_task: Task, synthetic_random_task: Task,
                                                          reference_cache: Path, tmp_path: Path) -> None:
    bench.run(synthetic_task, ["original"], seeds=[0], cache=reference_cache, progress=False,
              results=tmp_path / "class", leaderboard=None)
    rows = read_store(tmp_path / "class")
    for method in ("original", "oracle"):
        got = set(rows.loc[rows["method"] == method, "metric"])
        assert {"probe_accuracy", "relearn_steps"} <= got, method
    original_steps = rows[(rows["method"] == "original") & (rows["metric"] == "relearn_steps")]["value"].item()
    oracle_steps = rows[(rows["method"] == "oracle") & (rows["metric"] == "relearn_steps")]["value"].item()
    assert original_steps == 0.0 < oracle_steps
    bench.run(synthetic_random_task, ["original"], seeds=[0], cache=reference_cache, progress=False,
              results=tmp_path / "random", leaderboard=None)
    assert not {"probe_accuracy", "relearn_steps"} & set(read_store(tmp_path / "random")["metric"])
