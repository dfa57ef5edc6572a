"""The contract every registered method must meet, on the tiny SYNTHETIC tasks.

Parametrized over ``bench.registry.list_methods()`` at collection time, so a method added to
``methods/`` is tested without editing this file; each runs on class removal and, where its
``applies_to`` allows, on random forgetting. With its default (+ fixed) hyperparameters (a few
slow (method, kind) pairs run with smaller settings, listed in ``CONTRACT_OVERRIDES``) a method must:

* return an ``nn.Module`` whose logits on the test split are finite and have one column per class;
* be deterministic: two calls with the same seed give weights with the same ``state_hash``;
* work when every undeclared kind of data is ``None`` (it is handed exactly what the runner hands it);
* leave its inputs alone: the splits it was given are not modified in place;
* and, through the runner, never receive data it did not declare.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from bench.run import evaluate
from bench.run.plan import RunSpec
from bench.data import MethodData, Split, TaskData, method_view, seed_stream, surrogate_split
from bench.splits import build_task_data
from bench.group import split_logits
from bench.metrics import SplitLogits
from bench.models import state_hash
from bench.references import References, get_references, model_factory
from bench.registry import DATA_KINDS, MethodSpec, get_method, list_methods
from bench.results import canonical_json
from bench.tasks import Task
from bench.train import predict_logits

CPU = torch.device("cpu")
SEED = 0
KINDS = ("classes", "random")
BASELINES = {"original", "retrain", "finetune", "neggrad", "random_label"}

#: The only departures from the defaults, for (method, kind) pairs whose defaults are too slow for a
#: 144-image task. SCAR on random forgetting draws ``batch_size`` = 1024 surrogate images with
#: replacement for each of its 6 steps per epoch, whatever the data size (≈ 30 s per call on one
#: loaded core); 64 images and 3 epochs run the same code path in well under a second.
CONTRACT_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("scar", "random"): {"batch_size": 64, "epochs": 3},
    ("scar_retainfree", "random"): {"batch_size": 64, "epochs": 3},
}

CASES = [
    pytest.param(name, kind, id=f"{name}-{kind}")
    for name in list_methods()
    for kind in KINDS
    if kind in get_method(name).applies_to
]


@dataclasses.dataclass(frozen=True, eq=False)
class Context:
    task: Task
    td: TaskData
    refs: References
    surrogate: Split


@pytest.fixture(scope="module")
def contexts(synthetic_task: Task, synthetic_random_task: Task, reference_cache: Path) -> dict[str, Context]:
    out = {}
    for kind, task in (("classes", synthetic_task), ("random", synthetic_random_task)):
        td = build_task_data(task, SEED)
        refs = get_references(td, device=CPU, cache_dir=reference_cache)
        out[kind] = Context(task, td, refs, surrogate_split(td))
    return out


def fingerprint(*splits: Split | None) -> str:
    h = hashlib.sha256()
    for s in splits:
        if s is not None:
            h.update(s.x.numpy().tobytes())
            h.update(s.y.numpy().tobytes())
    return h.hexdigest()


def contract_hp(spec: MethodSpec, kind: str, ctx: Context) -> dict[str, Any]:
    """Defaults, then fixed values (and the overrides above, where a pair has any)."""
    return spec.resolve(ctx.task.name, CONTRACT_OVERRIDES.get((spec.name, kind)))


def view_for(spec: MethodSpec, hp: dict[str, Any], ctx: Context) -> MethodData:
    """What the runner hands the method: method_view with its declared uses."""
    return method_view(ctx.td, spec.uses, model_factory(ctx.td), retain_fraction=hp.get("retain_fraction"),
                       surrogate=ctx.surrogate if "surrogate" in spec.uses else None)


def same(given: Split | None, split: Split | None) -> bool:
    """``given`` holds the images and labels of ``split`` (the view itself, or a run's private copy)."""
    return given is not None and split is not None and torch.equal(given.x, split.x) and torch.equal(given.y, split.y)


def check_view(spec: MethodSpec, hp: dict[str, Any], data: MethodData, ctx: Context) -> None:
    """Declared data present, undeclared data None, the rest as the task says."""
    td = ctx.td
    assert same(data.forget, td.forget) if "forget" in spec.uses else (data.forget is None)
    assert same(data.surrogate, ctx.surrogate) if "surrogate" in spec.uses else (data.surrogate is None)
    if "retain" in spec.uses:
        assert same(data.retain, td.retain)
    elif "retain_fraction" in spec.uses:
        assert data.retain is not None and 0 < len(data.retain) <= len(td.retain)
        if hp["retain_fraction"] < 1.0:
            assert len(data.retain) < len(td.retain)
    else:
        assert data.retain is None
    assert same(data.val, td.val)
    assert data.seed == SEED and data.num_classes == td.dataset.num_classes
    assert data.forget_classes == td.forget_classes and data.forget_kind == td.task.forget.kind
    assert data.recipe == td.task.recipe


def test_every_method_is_collected() -> None:
    names = list_methods()
    assert BASELINES <= set(names)
    assert {case.values[0] for case in CASES} == set(names), "every method applies to classes or random forgetting"
    for name in names:
        spec = get_method(name)
        assert set(spec.uses) <= set(DATA_KINDS)
        assert spec.name == name and spec.version >= 1
    for (name, kind), overrides in CONTRACT_OVERRIDES.items():  # stale entries fail loudly
        if name in names:
            get_method(name).resolve("contract", overrides)


@pytest.mark.parametrize("name, kind", CASES)
def test_method_contract(name: str, kind: str, contexts: dict[str, Context]) -> None:
    ctx = contexts[kind]
    spec = get_method(name)
    hp = contract_hp(spec, kind, ctx)
    data = view_for(spec, hp, ctx)
    check_view(spec, hp, data, ctx)
    before = fingerprint(ctx.td.forget, ctx.td.retain, ctx.td.val, ctx.surrogate, data.retain)
    original_hash = state_hash(ctx.refs.original.model)

    def call() -> nn.Module:
        model = copy.deepcopy(ctx.refs.original.model)
        torch.manual_seed(seed_stream(SEED, "method", spec.name))  # as the runner does
        return spec.fn(model, data, device=CPU, **hp)

    first = call()
    assert isinstance(first, nn.Module), f"{name} returned {type(first).__name__}"
    logits = predict_logits(first, ctx.td.test, device=CPU)
    assert logits.shape == (len(ctx.td.test), ctx.td.dataset.num_classes)
    assert torch.isfinite(logits).all(), f"{name} gives non-finite logits on the test split"
    assert torch.isfinite(predict_logits(first, ctx.td.forget, device=CPU)).all()
    first_hash = state_hash(first)

    second = call()
    assert state_hash(second) == first_hash, f"{name} is not deterministic under a fixed seed"
    assert fingerprint(ctx.td.forget, ctx.td.retain, ctx.td.val, ctx.surrogate, data.retain) == before, \
        f"{name} modified the data it was given in place"
    assert state_hash(ctx.refs.original.model) == original_hash, f"{name} modified the cached original"


@pytest.mark.parametrize("name, kind", CASES)
def test_runner_hands_only_declared_data(name: str, kind: str, contexts: dict[str, Context],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``bench.run.evaluate.run_method`` (surrogate images offered even when undeclared), a spy in the
    method's place records what it is given; metrics are stubbed out, this is about the data."""
    ctx = contexts[kind]
    spec = get_method(name)
    hp = contract_hp(spec, kind, ctx)
    seen: dict[str, Any] = {}

    def spy(model: nn.Module, data: MethodData, *, device: torch.device, **kwargs: Any) -> nn.Module:
        seen.update(data=data, hp=kwargs, device=device)
        return model

    monkeypatch.setattr(evaluate, "model_metrics",  # ((values, refused), logits)
                        lambda model, td, *a, **k: (({"stub": (0.0, 1)}, {}), split_logits(model, td, CPU)))
    run = RunSpec(ctx.task, spec.name, spec.version, canonical_json(hp), SEED)
    oracle_forget = SplitLogits(predict_logits(ctx.refs.oracle.model, ctx.td.forget, device=CPU), ctx.td.forget.y)
    rows = evaluate.run_method(dataclasses.replace(spec, fn=spy), run, ctx.td, ctx.refs, oracle_forget, CPU, ctx.surrogate).rows
    assert [r["status"] for r in rows] == ["ok"], rows[0].get("error")
    assert rows[0]["data_used"] == (",".join(spec.uses) or "none")
    check_view(spec, hp, seen["data"], ctx)
    for given, cached in ((seen["data"].forget, ctx.td.forget), (seen["data"].retain, ctx.td.retain), (seen["data"].val, ctx.td.val)):
        assert given is None or given.x.data_ptr() != cached.x.data_ptr(), "a run must get its own copy of the splits"
    assert seen["hp"] == hp
