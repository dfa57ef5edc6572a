"""The results store: round trip, atomic writes, no silent overwrites, failure records, corrupt
files reported by name, and what the run id depends on."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench import results
from bench.registry import get_method
from bench.results import (
    COLUMNS,
    SCHEMA,
    CorruptResults,
    canonical_json,
    make_run_id,
    read_store,
    rows_for_run,
    run_path,
    stored_runs,
    write_run,
)
from bench.run.plan import make_plan
from bench.tasks import ForgetRule, Recipe, Task

METRICS = [("forget_accuracy", 0.125, 36), ("retain_accuracy", 1.0, 108), ("runtime_seconds", 0.0123456789012345, 1)]


def common(run_id: str = "abc123", *, task: str = "synthetic-cnn-class", method: str = "finetune", seed: int = 0,
           status: str = "ok") -> dict:
    return {
        "run_id": run_id, "task": task, "task_version": 1, "method": method, "method_version": 2,
        "hyperparameters": canonical_json({"epochs": 5, "lr": 1e-3}), "data_used": "retain", "surrogate": "",
        "seed": seed, "split_hash": "0123456789abcdef", "model_hash": "fedcba9876543210",
        "reference_key": "oracle-xyz", "package_version": "0.1.0", "torch_version": "2.14.1",
        "git_commit": "deadbeef", "device": "cpu", "timestamp": "2026-01-02T03:04:05+00:00",
        "status": status, "error": "",
    }


def ok_rows(run_id: str = "abc123", **kw) -> list[dict]:
    return rows_for_run(common(run_id, **kw), METRICS)


def failed_rows(run_id: str = "abc123", **kw) -> list[dict]:
    return [common(run_id, status="failed", **kw) | {
        "metric": "", "value": float("nan"), "n": 0,
        "error": "RuntimeError: boom\nTraceback (most recent call last):\n  ...",
    }]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- round trip


def test_round_trip(tmp_path: Path) -> None:
    path = write_run(ok_rows(), tmp_path)
    assert path == run_path(tmp_path, "synthetic-cnn-class", "finetune", 0, "abc123", failed=False)
    assert path == tmp_path / "synthetic-cnn-class" / "finetune" / "seed0-abc123.parquet"
    df = read_store(tmp_path)
    assert list(df.columns) == COLUMNS
    assert len(df) == len(METRICS)
    assert df["value"].dtype == "float64"
    for col in ("task_version", "method_version", "seed", "n"):
        assert df[col].dtype == "int64", col
    got = dict(zip(df["metric"], df["value"]))
    for name, value, n in METRICS:
        assert got[name] == value  # raw floats, bit for bit
    assert dict(zip(df["metric"], df["n"])) == {name: n for name, _, n in METRICS}
    first = df.iloc[0]
    for key, value in common().items():
        assert first[key] == value, key
    assert json.loads(first["hyperparameters"]) == {"epochs": 5, "lr": 1e-3}
    assert pq.read_schema(path).equals(SCHEMA, check_metadata=False)


def test_read_store_orders_rows_deterministically(tmp_path: Path) -> None:
    write_run(ok_rows("r2", method="neggrad", seed=1), tmp_path)
    write_run(ok_rows("r1", seed=1), tmp_path)
    write_run(ok_rows("r0", seed=0), tmp_path)
    df = read_store(tmp_path)
    keys = list(zip(df["task"], df["method"], df["seed"], df["run_id"], df["metric"]))
    assert keys == sorted(keys)
    assert set(df["run_id"]) == {"r0", "r1", "r2"}


def test_empty_and_missing_store(tmp_path: Path) -> None:
    df = read_store(tmp_path)
    assert df.empty and list(df.columns) == COLUMNS
    with pytest.raises(FileNotFoundError, match="bench run"):
        read_store(tmp_path / "nope")
    assert stored_runs(tmp_path / "nope") == {}


def test_rows_for_run_is_long_format_with_raw_floats() -> None:
    rows = rows_for_run(common(), [("a", 1, 3), ("b", 0.5, 4)])
    assert [(r["metric"], r["value"], r["n"]) for r in rows] == [("a", 1.0, 3), ("b", 0.5, 4)]
    assert all(type(r["value"]) is float and type(r["n"]) is int for r in rows)
    assert all(r["run_id"] == "abc123" for r in rows)


def test_write_run_validates_its_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one row"):
        write_run([], tmp_path)
    mixed = ok_rows("a")[:1] + ok_rows("b")[:1]
    with pytest.raises(ValueError, match="share a run_id"):
        write_run(mixed, tmp_path)
    assert files_under(tmp_path) == []


# --------------------------------------------------------------------------- atomic writes


def test_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    write_run(ok_rows("a"), tmp_path)
    write_run(failed_rows("b"), tmp_path)
    write_run(ok_rows("a"), tmp_path, force=True)
    assert files_under(tmp_path) == [
        "synthetic-cnn-class/finetune/seed0-a.parquet",
        "synthetic-cnn-class/finetune/seed0-b.failed.parquet",
    ]


def test_interrupted_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = pq.write_table

    def half_then_crash(table: pa.Table, where: str, **kw) -> None:
        real_write(table.slice(0, 1), where, **kw)  # something is on disk under the temporary name
        raise KeyboardInterrupt

    monkeypatch.setattr(results.pq, "write_table", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        write_run(ok_rows(), tmp_path)
    assert files_under(tmp_path) == []
    assert stored_runs(tmp_path) == {}


# --------------------------------------------------------------------------- overwrite rules


def test_completed_run_is_not_overwritten_without_force(tmp_path: Path) -> None:
    path = write_run(ok_rows(), tmp_path)
    before = path.read_bytes()
    changed = [r | {"value": 0.75} for r in ok_rows()]
    with pytest.raises(FileExistsError, match="force"):
        write_run(changed, tmp_path)
    assert path.read_bytes() == before
    with pytest.raises(FileExistsError):
        write_run(failed_rows(), tmp_path)  # a failure does not replace a completed run either
    write_run(changed, tmp_path, force=True)
    assert set(read_store(tmp_path)["value"]) == {0.75}


def test_failed_run_is_recorded_then_superseded_by_success(tmp_path: Path) -> None:
    failed_path = write_run(failed_rows(), tmp_path)
    assert failed_path.name == "seed0-abc123.failed.parquet"
    assert stored_runs(tmp_path) == {"abc123": "failed"}
    df = read_store(tmp_path)
    assert list(df["status"]) == ["failed"] and "Traceback" in df["error"].iloc[0]
    assert df["value"].isna().all()
    write_run(failed_rows(), tmp_path)  # a failure may replace a failure
    ok_path = write_run(ok_rows(), tmp_path)
    assert not failed_path.exists()
    assert ok_path.exists()
    assert stored_runs(tmp_path) == {"abc123": "ok"}
    assert set(read_store(tmp_path)["status"]) == {"ok"}


# --------------------------------------------------------------------------- corrupt files


def test_corrupt_file_is_reported_by_name(tmp_path: Path) -> None:
    write_run(ok_rows("good"), tmp_path)
    bad = write_run(ok_rows("bad", seed=1), tmp_path)
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(CorruptResults) as info:
        read_store(tmp_path)
    assert str(bad) in str(info.value)
    assert "seed0-good" not in str(info.value)


def test_garbage_and_schema_mismatches_are_all_reported(tmp_path: Path) -> None:
    write_run(ok_rows("good"), tmp_path)
    garbage = tmp_path / "t" / "m" / "seed0-garbage.parquet"
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"not parquet at all")
    missing = tmp_path / "t" / "m" / "seed0-missing.parquet"
    pq.write_table(pa.table({"run_id": ["missing"], "value": [1.0]}), missing)
    wrong_type = tmp_path / "t" / "m" / "seed0-wrongtype.parquet"
    table = pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in ok_rows("wrongtype")], schema=SCHEMA)
    table = table.set_column(COLUMNS.index("value"), "value", pa.array(["x"] * len(table)))
    pq.write_table(table, wrong_type)
    with pytest.raises(CorruptResults) as info:
        read_store(tmp_path)
    text = str(info.value)
    assert str(garbage) in text and str(missing) in text and str(wrong_type) in text
    assert "missing columns" in text


# --------------------------------------------------------------------------- stored_runs


def test_stored_runs_parses_file_names(tmp_path: Path) -> None:
    write_run(ok_rows("aaa111"), tmp_path)
    write_run(failed_rows("bbb222", method="neggrad", seed=12), tmp_path)
    # a run with both records (e.g. copied stores): "ok" wins whatever the file order
    ok_path = write_run(ok_rows("ccc333", seed=3), tmp_path)
    ok_path.with_name("seed3-ccc333.failed.parquet").write_bytes(ok_path.read_bytes())
    weird_task = tmp_path / "task-with-dashes" / "method-x" / "seed7-ddd444.parquet"
    weird_task.parent.mkdir(parents=True)
    weird_task.write_bytes(ok_path.read_bytes())
    (tmp_path / "notes.txt").write_text("ignored: not a parquet file")
    assert stored_runs(tmp_path) == {"aaa111": "ok", "bbb222": "failed", "ccc333": "ok", "ddd444": "ok"}


# --------------------------------------------------------------------------- run ids


def base_id(**change) -> str:
    args = dict(task_identity={"name": "t", "version": 1}, task_version=1, method="finetune", method_version=1,
                hyperparameters={"epochs": 5, "lr": 1e-3}, seed=0)
    args.update(change)
    return make_run_id(**args)


def test_run_id_changes_with_everything_that_defines_a_run() -> None:
    ref = base_id()
    assert ref == base_id() and len(ref) == 20
    assert base_id(hyperparameters={"lr": 1e-3, "epochs": 5}) == ref  # key order is irrelevant
    variants = [
        base_id(hyperparameters={"epochs": 6, "lr": 1e-3}),
        base_id(hyperparameters={"epochs": 5, "lr": 2e-3}),
        base_id(seed=1),
        base_id(method_version=2),
        base_id(task_version=2),
        base_id(method="neggrad"),
        base_id(task_identity={"name": "t2", "version": 1}),
    ]
    assert len(set(variants) | {ref}) == len(variants) + 1


def test_planned_run_ids(synthetic_task: Task) -> None:
    def run_id(task: Task = synthetic_task, method: str = "finetune", seed: int = 0, hp: dict | None = None) -> str:
        (run,) = make_plan([task], [method], [seed], hp).runs
        return run.run_id

    ref = run_id()
    assert run_id() == ref
    assert run_id(hp={"epochs": "6"}) != ref
    assert run_id(hp={"epochs": "5"}) == ref  # the default, given explicitly, is the same run
    assert run_id(seed=1) != ref
    assert run_id(method="neggrad") != ref
    assert run_id(task=dataclasses.replace(synthetic_task, version=2)) != ref
    assert run_id(task=dataclasses.replace(synthetic_task, recipe=Recipe(epochs=4, batch_size=32, lr=3e-3))) != ref
    assert run_id(task=dataclasses.replace(synthetic_task, forget=ForgetRule("classes", classes=(2,)))) != ref
    # what does not define the numbers does not change the id
    assert run_id(task=dataclasses.replace(synthetic_task, description="reworded")) == ref

    spec = get_method("finetune")
    bumped = dataclasses.replace(spec, version=spec.version + 1)
    (run,) = make_plan([synthetic_task], ["finetune"], [0]).runs
    same_hp = json.loads(run.hyperparameters)
    assert make_run_id(synthetic_task.identity(), 1, "finetune", bumped.version, same_hp, 0) != ref
    assert make_run_id(synthetic_task.identity(), 1, "finetune", spec.version, same_hp, 0) == ref

