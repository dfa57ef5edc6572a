"""Reference models: the cache (hit, corrupt/mismatched/tampered files rebuilt, no pickles),
the keys (what the original and the oracle depend on), and ``retrain`` = the oracle bit for bit."""
from __future__ import annotations

import copy
import dataclasses
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bench.data import TaskData, method_view
from bench.datasets import ImageDataset
from bench.models import state_hash
from bench.references import (
    CorruptCheckpoint,
    dataset_facts,
    get_references,
    load_checkpoint,
    model_factory,
    reference_key,
    save_checkpoint,
)
from bench.registry import get_method
from bench.splits import build_task_data
from bench.tasks import ForgetRule, Recipe, Task

CPU = torch.device("cpu")
SEED = 0


@pytest.fixture(scope="module")
def td(synthetic_task: Task) -> TaskData:
    return build_task_data(synthetic_task, SEED)


@pytest.fixture(scope="module")
def trained(td: TaskData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A cache holding the references of ``td``: (folder, original state hash, oracle state hash)."""
    cache = tmp_path_factory.mktemp("refs")
    refs = get_references(td, device=CPU, cache_dir=cache)
    assert refs.original.trained_now and refs.oracle.trained_now
    return cache, state_hash(refs.original.model), state_hash(refs.oracle.model)


@pytest.fixture
def cache(trained: tuple[Path, str, str], tmp_path: Path) -> Path:
    """A private copy of the trained cache that a test may damage."""
    folder = tmp_path / "cache"
    folder.mkdir()
    for f in trained[0].glob("*.safetensors"):
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def cache_file(cache: Path, kind: str, td: TaskData) -> Path:
    path = cache / f"{reference_key(kind, td, CPU)}.safetensors"
    assert path.exists()
    return path


def aside_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.corrupt-*"))


# --------------------------------------------------------------------------- cache hit


def test_second_call_loads_from_the_cache(td: TaskData, trained: tuple[Path, str, str]) -> None:
    folder, original_hash, oracle_hash = trained
    refs = get_references(td, device=CPU, cache_dir=folder)
    assert not refs.original.trained_now and not refs.oracle.trained_now
    assert state_hash(refs.original.model) == original_hash
    assert state_hash(refs.oracle.model) == oracle_hash
    assert refs.original.key.startswith("original-") and refs.oracle.key.startswith("oracle-")
    assert refs.oracle.train_seconds > 0  # the oracle's training time is recorded and reloaded
    again = get_references(td, device=CPU, cache_dir=folder)
    assert again.oracle.train_seconds == refs.oracle.train_seconds
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".locks", f"{refs.original.key}.safetensors", f"{refs.oracle.key}.safetensors"]
    ), "the cache holds the two checkpoints and no temporary files"


def test_references_are_trained_to_the_recipe(td: TaskData, trained: tuple[Path, str, str]) -> None:
    from bench.train import accuracy

    refs = get_references(td, device=CPU, cache_dir=trained[0])
    assert accuracy(refs.original.model, td.forget, device=CPU) > 0.9  # the original learned class 1
    assert accuracy(refs.oracle.model, td.forget, device=CPU) == 0.0  # the oracle never saw it
    assert refs.original.model.arch == "digits_cnn"


def test_checkpoint_metadata(td: TaskData, trained: tuple[Path, str, str]) -> None:
    path = cache_file(trained[0], "oracle", td)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["key"] == path.stem
    assert meta["arch"] == "digits_cnn"
    assert meta["weights_sha256"] == trained[2]
    assert float(meta["train_seconds"]) > 0
    assert meta["task"] == td.task.name


# --------------------------------------------------------------------------- broken cache files are rebuilt


def rebuild_oracle(td: TaskData, cache: Path, oracle_hash: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Call get_references on a damaged oracle file; check it was moved aside and rebuilt identically."""
    refs = get_references(td, device=CPU, cache_dir=cache)
    assert not refs.original.trained_now, "only the damaged oracle is retrained"
    assert refs.oracle.trained_now
    assert state_hash(refs.oracle.model) == oracle_hash, "retraining is deterministic"
    aside = aside_files(cache)
    assert len(aside) == 1 and aside[0].name.startswith(refs.oracle.key)
    err = capsys.readouterr().err
    assert str(cache_file(cache, "oracle", td)) in err and "retraining" in err
    reloaded = get_references(td, device=CPU, cache_dir=cache)
    assert not reloaded.oracle.trained_now and state_hash(reloaded.oracle.model) == oracle_hash
    return err


def test_truncated_cache_file_is_rebuilt(td, trained, cache, capsys) -> None:
    path = cache_file(cache, "oracle", td)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    rebuild_oracle(td, cache, trained[2], capsys)


def test_garbage_cache_file_is_rebuilt(td, trained, cache, capsys) -> None:
    cache_file(cache, "oracle", td).write_bytes(b"\x00garbage, not a safetensors file" * 10)
    rebuild_oracle(td, cache, trained[2], capsys)


def test_empty_cache_file_is_rebuilt(td, trained, cache, capsys) -> None:
    cache_file(cache, "oracle", td).write_bytes(b"")
    rebuild_oracle(td, cache, trained[2], capsys)


def test_cache_file_with_another_key_is_rebuilt(td, trained, cache, capsys) -> None:
    path = cache_file(cache, "oracle", td)
    model = model_factory(td)()
    save_checkpoint(path, model, key="oracle-0000000000", seconds=1.0, device="cpu", task=td.task.name)
    err = rebuild_oracle(td, cache, trained[2], capsys)
    assert "does not match" in err


def test_cache_file_for_another_architecture_is_rebuilt(td, trained, cache, capsys) -> None:
    path = cache_file(cache, "oracle", td)
    model = model_factory(td)()
    model.arch = "lenet"  # the metadata now claims another architecture
    save_checkpoint(path, model, key=path.stem, seconds=1.0, device="cpu", task=td.task.name)
    err = rebuild_oracle(td, cache, trained[2], capsys)
    assert "architecture" in err


def test_weights_tampered_cache_file_is_rebuilt(td, trained, cache, capsys) -> None:
    path = cache_file(cache, "oracle", td)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    name = sorted(state)[0]
    state[name] = state[name] + 0.5  # a valid safetensors file with the same metadata, other values
    save_file(state, str(path), metadata=meta)
    with pytest.raises(CorruptCheckpoint, match="hash"):
        load_checkpoint(path, model_factory(td)(), expected_key=path.stem)
    rebuild_oracle(td, cache, trained[2], capsys)


def test_cache_file_with_missing_tensor_is_rebuilt(td, trained, cache, capsys) -> None:
    path = cache_file(cache, "oracle", td)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    del state[sorted(state)[-1]]
    save_file(state, str(path), metadata=meta)
    err = rebuild_oracle(td, cache, trained[2], capsys)
    assert "do not fit" in err


class _Payload:
    """Unpickling this creates a marker file: the test fails if anything unpickles a checkpoint."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickled_checkpoint_is_never_unpickled(writer, td, trained, cache, capsys, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-was-executed"
    path = cache_file(cache, "oracle", td)
    payload = {"state": _Payload(str(marker))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    rebuild_oracle(td, cache, trained[2], capsys)
    assert not marker.exists()


# --------------------------------------------------------------------------- what the keys depend on


def test_original_is_shared_by_tasks_that_differ_only_in_the_forget_rule(
    td: TaskData, trained: tuple[Path, str, str], cache: Path, synthetic_random_task: Task, synthetic_task: Task
) -> None:
    random_td = build_task_data(synthetic_random_task, SEED)
    other_class_td = build_task_data(dataclasses.replace(synthetic_task, forget=ForgetRule("classes", classes=(2,))), SEED)
    for other in (random_td, other_class_td):
        assert reference_key("original", other, CPU) == reference_key("original", td, CPU)
        assert reference_key("oracle", other, CPU) != reference_key("oracle", td, CPU)
    refs = get_references(random_td, device=CPU, cache_dir=cache)
    assert not refs.original.trained_now and state_hash(refs.original.model) == trained[1]
    assert refs.oracle.trained_now


def test_keys_depend_on_seed_recipe_and_device(td: TaskData, synthetic_task: Task) -> None:
    other_seed = build_task_data(synthetic_task, SEED + 1)
    longer = build_task_data(dataclasses.replace(synthetic_task, recipe=Recipe(epochs=4, batch_size=32, lr=3e-3)), SEED)
    other_val = build_task_data(dataclasses.replace(synthetic_task, val_fraction=0.2), SEED)
    for kind in ("original", "oracle"):
        key = reference_key(kind, td, CPU)
        assert reference_key(kind, td, CPU) == key
        assert reference_key(kind, other_seed, CPU) != key
        assert reference_key(kind, longer, CPU) != key
        assert reference_key(kind, other_val, CPU) != key
        assert reference_key(kind, td, torch.device("cuda")) != key
    # the task's name and description define nothing about the models
    renamed = build_task_data(dataclasses.replace(synthetic_task, name="renamed", description="other"), SEED)
    assert reference_key("original", renamed, CPU) == reference_key("original", td, CPU)
    assert reference_key("oracle", renamed, CPU) == reference_key("oracle", td, CPU)


def test_oracle_depends_on_the_split(td: TaskData, synthetic_random_task: Task) -> None:
    a, b = build_task_data(synthetic_random_task, 1), build_task_data(synthetic_random_task, 2)
    assert a.split_hash != b.split_hash
    assert reference_key("oracle", a, CPU) != reference_key("oracle", b, CPU)


def test_model_factory_gives_the_seeds_initial_weights(td: TaskData, synthetic_task: Task) -> None:
    init = model_factory(td)
    assert state_hash(init()) == state_hash(init())
    other = model_factory(build_task_data(synthetic_task, SEED + 1))()
    assert state_hash(other) != state_hash(init())


# --------------------------------------------------------------------------- retrain = oracle


def test_retrain_equals_the_oracle_bit_for_bit(td: TaskData, trained: tuple[Path, str, str]) -> None:
    refs = get_references(td, device=CPU, cache_dir=trained[0])
    spec = get_method("retrain")
    data = method_view(td, spec.uses, model_factory(td))
    out = spec.fn(copy.deepcopy(refs.original.model), data, device=CPU, **spec.resolve(td.task.name))
    assert state_hash(out) == state_hash(refs.oracle.model) == trained[2]


# --------------------------------------------------------------------------- per-process dataset facts


def _tiny_dataset(value: int) -> ImageDataset:
    x = torch.full((4, 1, 8, 8), value, dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1])
    return ImageDataset("tiny", x, y, x.clone(), y.clone(), ("a", "b"), "generated (synthetic)", synthetic=True)


def test_dataset_facts_follow_the_dataset_not_its_id() -> None:
    for _ in range(200):
        first = _tiny_dataset(10)
        first_id = id(first)
        dataset_facts(SimpleNamespace(dataset=first))
        del first
        second = _tiny_dataset(200)
        if id(second) == first_id:
            assert dataset_facts(SimpleNamespace(dataset=second))[0] == second.content_hash()
            return
    pytest.skip("CPython did not reuse an object id in 200 tries; cannot exercise the memo here")
