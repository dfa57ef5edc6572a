"""Isolation of a method from the harness and from every other run (issue 19): a method gets data
it cannot change for anyone else and nothing that leads to undeclared data; a run whose method
edits its inputs, exits, kills its process, hangs or returns a diverged model is stored as failed
with the reason (or, for a diverged model, with what can still be computed), and the sweep goes on.

The misbehaving methods live in tests/plugin_misbehaving_methods.py, registered through
$UNLEARNBENCH_PLUGINS so that worker processes register them too.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

import bench
from bench.registry import METHODS

TESTS_DIR = Path(__file__).parent
PLUGIN = "plugin_misbehaving_methods"


@pytest.fixture
def plugin(monkeypatch):
    """The misbehaving methods, registered here and in any worker process; unregistered after."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.setenv("UNLEARNBENCH_PLUGINS", PLUGIN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    sys.modules.pop(PLUGIN, None)
    module = importlib.import_module(PLUGIN)
    names = [n for n in METHODS.names() if getattr(METHODS.get(n).fn, "__module__", "") == PLUGIN]
    yield module
    for name in names:
        METHODS._entries.pop(name, None)
    sys.modules.pop(PLUGIN, None)


def run(task, methods, tmp_path: Path, store: str = "results", **kwargs) -> list[dict]:
    """``bench.run`` into ``tmp_path`` (one shared reference cache), seed 0, no leaderboard."""
    return bench.run(task, methods, seeds=[0], results=tmp_path / store, leaderboard=None,
                     cache=tmp_path / "cache", progress=False, **kwargs)


def by_method(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """method → metric → row ("" for the one row of a failed run)."""
    out: dict[str, dict[str, dict]] = {}
    for r in rows:
        out.setdefault(r["method"], {})[r["metric"]] = r
    return out


def test_a_method_that_zeroes_its_retain_set_cannot_change_the_next_methods_numbers(synthetic_task, plugin,
                                                                                     tmp_path: Path) -> None:
    clean = by_method(run(synthetic_task, ["original"], tmp_path, "clean"))
    after = by_method(run(synthetic_task, ["zeroes_retain", "original"], tmp_path))
    failed = after["zeroes_retain"][""]
    assert failed["status"] == "failed"
    assert "changed the data it was given in place (retain.x)" in failed["error"]
    for metric in ("retain_accuracy", "forget_accuracy", "test_accuracy", "mia_efficacy"):
        assert after["original"][metric]["value"] == clean["original"][metric]["value"], metric


def reachable(*roots: object) -> list[object]:
    """Every object reachable from ``roots`` through references (``gc.get_referents``: attributes,
    closures, containers, a partial's arguments), except modules, classes and module namespaces:
    a method can import any module anyway; what it must not find is data reached from its arguments."""
    import gc
    import types

    namespaces = {id(vars(m)) for m in list(sys.modules.values()) if m is not None}
    seen: dict[int, object] = {}
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type)) or id(obj) in namespaces:
            continue
        seen[id(obj)] = obj
        stack.extend(gc.get_referents(obj))
    return list(seen.values())


def test_nothing_a_method_without_declared_data_receives_leads_to_the_test_or_forget_set(synthetic_task, plugin,
                                                                                       tmp_path: Path) -> None:
    import torch

    from bench.data import TaskData
    from bench.run import jobs

    rows = run(synthetic_task, ["received"], tmp_path, timeout=0)  # in this process, to look at what it received
    assert {r["status"] for r in rows} == {"ok"}
    model, data = plugin.RECEIVED
    assert data.init_model().__class__ is model.__class__  # it still builds the architecture
    td = next(g.td for (task, seed, _), g in jobs._GROUPS.items() if task == synthetic_task and seed == 0)
    forbidden = {td.test.x.untyped_storage().data_ptr(): "test.x", td.forget.x.untyped_storage().data_ptr(): "forget.x",
                 td.retain.x.untyped_storage().data_ptr(): "retain.x", td.train.x.untyped_storage().data_ptr(): "train.x"}
    found = reachable(model, data)
    assert not [o for o in found if isinstance(o, TaskData)], "a TaskData is reachable from the method's arguments"
    leaks = {forbidden[t.untyped_storage().data_ptr()] for t in found
             if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() in forbidden}
    assert not leaks, f"undeclared data reachable from the method's arguments: {sorted(leaks)}"


def test_a_diverged_model_keeps_its_accuracies_and_its_attacks_are_failed_with_the_reason(synthetic_task, plugin,
                                                                                         tmp_path: Path) -> None:
    from bench.results import read_store
    from bench.splits import build_task_data

    rows = by_method(run(synthetic_task, ["diverges"], tmp_path))["diverges"]
    td = build_task_data(synthetic_task, 0)
    logits = td.dataset.num_classes * (len(td.forget) + len(td.retain) + len(td.test))
    for metric in ("forget_accuracy", "retain_accuracy", "test_accuracy", "runtime_seconds"):
        assert rows[metric]["status"] == "ok" and rows[metric]["value"] == rows[metric]["value"], metric  # not NaN
    for metric in ("mia_efficacy", "mia_efficacy_entropy", "mia_auc", "mia_cv_accuracy", "js_to_oracle", "nomus"):
        assert rows[metric]["status"] == "failed", metric
        assert rows[metric]["error"] == f"the model's outputs are not finite (NaN/inf in {logits} of {logits} logits)"
    stored = read_store(tmp_path / "results")
    assert set(stored.loc[stored["status"] == "ok", "metric"]) >= {"forget_accuracy", "retain_accuracy", "test_accuracy"}


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_a_method_that_exits_or_kills_its_process_is_a_failed_run_and_the_sweep_goes_on(synthetic_task, plugin, executor,
                                                                                         tmp_path: Path) -> None:
    rows = by_method(run(synthetic_task, ["calls_sys_exit", "kills_its_process", "original"], tmp_path,
                         executor=executor, jobs=2))
    exited, killed = rows["calls_sys_exit"][""], rows["kills_its_process"][""]
    assert exited["status"] == "failed" and "method calls_sys_exit called sys.exit(3)" in exited["error"]
    assert killed["status"] == "failed" and "its worker process died (exit code 7)" in killed["error"]
    assert {r["status"] for r in rows["original"].values()} == {"ok"}
    assert {r["status"] for r in rows["oracle"].values()} == {"ok"}


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_a_method_that_never_returns_is_stopped_at_its_time_limit_and_the_sweep_goes_on(synthetic_task, plugin, executor,
                                                                                        tmp_path: Path) -> None:
    rows = by_method(run(synthetic_task, ["never_returns", "original"], tmp_path, executor=executor, jobs=2, timeout=10))
    hung = rows["never_returns"][""]
    assert hung["status"] == "failed" and "exceeded its time limit of 10 s (--timeout)" in hung["error"]
    assert {r["status"] for r in rows["original"].values()} == {"ok"}


def test_the_estimate_and_the_default_time_limit_grow_with_the_epochs_a_run_asks_for(synthetic_task) -> None:
    from bench.registry import get_method
    from bench.run.estimate import TIMEOUT_FLOOR, Throughput, estimate_group, run_limit
    from bench.run.plan import make_plan
    from bench.splits import build_task_data

    td = build_task_data(synthetic_task, 0)
    speed = Throughput(train=1000.0, forward=1e5, attacks=0.0)
    own = get_method("finetune").resolve(synthetic_task.name)["epochs"]
    runs = {e: make_plan([synthetic_task], ["finetune"], [0], {"epochs": e}).runs[0] for e in (own, 10**9)}
    est = estimate_group(td, list(runs.values()), refs_cached=(True, True), speed=speed, ratios={})
    default, huge = est.runs[runs[own].run_id], est.runs[runs[10**9].run_id]
    assert huge > 10**9 / own / 10 * default, "a billion epochs estimated like the method's own setting"
    assert run_limit(default, None) == TIMEOUT_FLOOR and run_limit(huge, None) > huge
    assert run_limit(huge, 0) is None and run_limit(huge, 60) == 60
