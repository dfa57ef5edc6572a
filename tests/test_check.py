"""The guards of the published numbers: `bench report --check` (leaderboard freshness) and
`bench check --baseline` (regression), on hand-built rows and on the tiny SYNTHETIC task."""
from __future__ import annotations

import dataclasses
from dataclasses import astuple
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

import bench
from bench import registry
from bench.check import CROSS_ISA_TOLERANCES, check, load_baseline, parse_tolerances
from bench.compare import NOT_COMPARED, compare, hp_changes
from bench.cli import main
from bench.env import parse_device_label
from bench.report import GENERATED_HEADER, format_leaderboard_diff, leaderboard_diff, write_report
from bench.results import COLUMNS, read_store, write_run
from bench.tasks import TASKS, Task

TASK = "digits-cnn-class"


def row(method: str, seed: int, metric: str, value: float, **over) -> dict:
    """One result row of the store's schema (hand-built; no training)."""
    base = {
        "run_id": f"{method}-{seed}", "task": TASK, "task_version": 1, "method": method, "method_version": 1,
        "hyperparameters": '{"epochs": 5, "lr": 0.001}', "data_used": "retain", "surrogate": "", "seed": seed,
        "metric": metric, "value": value, "n": 100, "split_hash": "split", "model_hash": f"model-{method}-{seed}",
        "reference_key": "ref", "package_version": "0.1.0", "torch_version": "2.14.1", "git_commit": "abc123",
        "device": "cpu", "timestamp": "2025-01-01T00:00:00+00:00", "status": "ok", "error": "",
    }
    base.update(over)
    return base


def run_rows(method: str, seed: int, values: dict[str, float], **over) -> list[dict]:
    return [row(method, seed, m, v, **over) for m, v in values.items()]


VALUES = {"forget_accuracy": 0.25, "retain_accuracy": 0.97, "test_accuracy": 0.91, "mia_efficacy": 0.4,
          "runtime_seconds": 1.5, "speedup": 8.0}


def frame(*runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([r for rows in runs for r in rows], columns=list(COLUMNS))


# --------------------------------------------------------------------------- compare (hand-built rows)


def test_identical_runs_pass_and_timings_are_not_compared():
    base = frame(run_rows("finetune", 0, VALUES), run_rows("oracle", 0, VALUES, hyperparameters="{}"))
    new = frame(run_rows("finetune", 0, VALUES | {"runtime_seconds": 9.0, "speedup": 1.0}),
                run_rows("oracle", 0, VALUES | {"runtime_seconds": 3.0}, hyperparameters="{}"))
    result = compare(base, new)
    assert result.ok, result.format()
    assert result.compared == ((TASK, "finetune", 0), (TASK, "oracle", 0))
    assert result.values_compared == 2 * (len(VALUES) - len(NOT_COMPARED))
    assert "OK" in result.format() and "runtime_seconds, speedup, timings" in result.format()


def test_exact_by_default_and_a_tolerance_loosens_one_metric():
    base = frame(run_rows("finetune", 0, VALUES))
    new = frame(run_rows("finetune", 0, VALUES | {"test_accuracy": 0.91 + 1e-12}))
    moved = compare(base, new)
    assert not moved.ok
    (diff,) = moved.moved
    assert diff.key == (TASK, "finetune", 0) and [m.metric for m in diff.moved] == ["test_accuracy"]
    assert diff.moved[0].delta == pytest.approx(1e-12)
    assert compare(base, new, tolerances={"test_accuracy": 1e-9}).ok
    assert not compare(base, new, tolerances={"forget_accuracy": 1e-9}).ok


def test_nan_matches_nan_but_not_a_number():
    base = frame(run_rows("finetune", 0, VALUES | {"mia_efficacy": math.nan}))
    assert compare(base, frame(run_rows("finetune", 0, VALUES | {"mia_efficacy": math.nan}))).ok
    assert not compare(base, frame(run_rows("finetune", 0, VALUES | {"mia_efficacy": 0.5}))).ok


def test_rows_are_matched_by_task_method_seed_not_run_id_and_hyperparameters_named():
    base = frame(run_rows("finetune", 0, VALUES, run_id="old-id"))
    new = frame(run_rows("finetune", 0, VALUES | {"forget_accuracy": 0.3}, run_id="new-id",
                         hyperparameters='{"epochs": 5, "lr": 0.002}'))
    result = compare(base, new)
    (diff,) = result.moved
    assert diff.causes == ("hyperparameters differ: lr 0.001 → 0.002",)
    text = result.format()
    assert "method finetune on task digits-cnn-class (seed 0): moved forget_accuracy" in text
    assert "forget_accuracy: 0.25 → 0.3 (Δ +0.05, tolerance 0)" in text
    assert "likely cause: hyperparameters differ: lr 0.001 → 0.002" in text


@pytest.mark.parametrize("over, cause", [
    ({"method_version": 2}, "method version changed 1 → 2"),
    ({"task_version": 3}, "task version changed 1 → 3"),
    ({"torch_version": "2.15.0"}, "torch 2.14.1 → 2.15.0"),
    ({"package_version": "0.2.0"}, "unlearnbench 0.1.0 → 0.2.0"),
    ({"split_hash": "other"}, "the data split changed"),
    ({"reference_key": "other"}, "the reference models differ"),
    ({"git_commit": "def456", "model_hash": "other"}, "same versions and hyperparameters: nondeterminism or an unversioned code change; "
                               "the baseline was computed at git abc123, the re-run at def456"),
])
def test_likely_cause_names_what_differs(over: dict, cause: str):
    base = frame(run_rows("finetune", 0, VALUES))
    new = frame(run_rows("finetune", 0, VALUES | {"retain_accuracy": 0.5}, **over))
    (diff,) = compare(base, new).moved
    assert any(c.startswith(cause) for c in diff.causes), diff.causes


def test_tiny_differences_point_at_the_thread_count():
    base = frame(run_rows("finetune", 0, VALUES | {"js_to_oracle": 0.0119397}))
    new = frame(run_rows("finetune", 0, VALUES | {"js_to_oracle": 0.0119397 + 3e-10}, model_hash="other"))
    (diff,) = compare(base, new).moved
    assert "nondeterminism or an unversioned code change" in diff.causes[0]
    assert "number of CPU threads" in diff.causes[1]
    assert compare(base, new, tolerances={"js_to_oracle": 1e-6}).ok
    big = frame(run_rows("finetune", 0, VALUES | {"js_to_oracle": 0.2}, model_hash="other"))
    (diff,) = compare(base, big).moved
    assert len(diff.causes) == 1


def test_same_model_hash_points_at_the_metric_code():
    base = frame(run_rows("finetune", 0, VALUES))
    new = frame(run_rows("finetune", 0, VALUES | {"mia_efficacy": 0.9}))
    (diff,) = compare(base, new).moved
    assert "bit-identical unlearned model" in diff.causes[0]


def test_missing_runs_metrics_and_failures_are_reported():
    base = frame(run_rows("finetune", 0, VALUES), run_rows("neggrad", 0, VALUES), run_rows("scar", 0, VALUES))
    failed = [row("scar", 0, "", math.nan, status="failed", error="RuntimeError: boom\nTraceback ...")]
    new = frame(run_rows("finetune", 0, {k: v for k, v in VALUES.items() if k != "mia_efficacy"} | {"js_to_oracle": 0.1}),
                run_rows("dlfd", 0, VALUES), failed)
    result = compare(base, new)
    assert result.missing_in_rerun == ((TASK, "neggrad", 0),)
    assert result.missing_in_baseline == ((TASK, "dlfd", 0),)
    assert result.failed_in_rerun == (((TASK, "scar", 0), "RuntimeError: boom"),)
    (diff,) = result.moved
    assert {(m.metric, m.note) for m in diff.moved} == {("mia_efficacy", "only in the baseline"),
                                                          ("js_to_oracle", "only in the re-run")}
    text = result.format()
    assert "FAILED" in text and "digits-cnn-class · neggrad · seed 0" in text
    assert "digits-cnn-class · dlfd · seed 0" in text and "scar · seed 0: RuntimeError: boom" in text


def test_baseline_run_with_the_same_run_id_is_preferred_else_the_latest_version():
    other = run_rows("finetune", 0, VALUES | {"forget_accuracy": 0.9}, run_id="other", method_version=2,
                     timestamp="2025-06-01T00:00:00+00:00")
    base = frame(run_rows("finetune", 0, VALUES, run_id="same"), other)
    assert compare(base, frame(run_rows("finetune", 0, VALUES, run_id="same"))).ok
    # no run with the new run id: the latest method version is the baseline
    result = compare(base, frame(run_rows("finetune", 0, VALUES, run_id="third")))
    (diff,) = result.moved
    assert diff.moved[0].baseline == 0.9 and "method version changed 2 → 1" in diff.causes


def test_hp_changes_lists_added_removed_and_changed():
    assert hp_changes('{"a": 1, "b": "x"}', '{"a": 2, "c": true}') == 'a 1 → 2, b "x" → (absent), c (absent) → true'
    assert hp_changes("{}", "{}") == ""


def test_parse_tolerances():
    assert parse_tolerances(["test_accuracy=0.01", "mia_auc=0"]) == {"test_accuracy": 0.01, "mia_auc": 0.0}
    with pytest.raises(ValueError, match="unknown metric 'tst_accuracy'"):
        parse_tolerances(["tst_accuracy=0.1"])
    with pytest.raises(ValueError, match="timing"):
        parse_tolerances(["runtime_seconds=1"])
    with pytest.raises(ValueError, match="≥ 0"):
        parse_tolerances(["test_accuracy=-1"])
    with pytest.raises(ValueError, match="METRIC=ABS"):
        parse_tolerances(["test_accuracy"])


def test_load_baseline_from_a_directory_or_a_file(tmp_path: Path):
    rows = run_rows("finetune", 0, VALUES)
    write_run(rows, tmp_path / "results")
    from_dir = load_baseline(tmp_path / "results")
    assert len(from_dir) == len(VALUES)
    from_dir.to_parquet(tmp_path / "base.parquet")
    assert compare(load_baseline(tmp_path / "base.parquet"), frame(rows)).ok
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="cannot read baseline"):
        load_baseline(tmp_path / "bad.parquet")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_baseline(tmp_path / "nothing")
    from_dir.drop(columns=["seed"]).to_parquet(tmp_path / "noseed.parquet")
    with pytest.raises(ValueError, match="lacks the result columns"):
        load_baseline(tmp_path / "noseed.parquet")


# --------------------------------------------------------------------------- bench check (re-runs)


@pytest.fixture(scope="module")
def baseline(synthetic_task: Task, reference_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed-results stand-in: finetune on the SYNTHETIC task, seed 0 (plus its oracle run)."""
    root = tmp_path_factory.mktemp("baseline")
    bench.run(synthetic_task, ["finetune"], seeds=[0], results=root / "results", leaderboard=None,
              cache=reference_cache, progress=False)
    return root / "results"


def test_check_passes_when_nothing_changed(baseline: Path, synthetic_task: Task, reference_cache: Path):
    result = check(baseline, [synthetic_task], ["finetune"], [0], cache=reference_cache)
    assert result.ok, result.format()
    assert set(result.compared) == {(synthetic_task.name, "finetune", 0), (synthetic_task.name, "oracle", 0)}
    assert result.values_compared > 10


def test_a_changed_default_hyperparameter_fails_naming_method_and_metrics(
        baseline: Path, synthetic_task: Task, reference_cache: Path, monkeypatch: pytest.MonkeyPatch):
    spec = registry.METHODS.get("finetune")
    old = spec.defaults["lr"]
    # the effect of a one-line edit of finetune's default learning rate (registry entry restored after the test)
    monkeypatch.setitem(registry.METHODS._entries, "finetune",
                        dataclasses.replace(spec, defaults={**spec.defaults, "lr": old * 2}))
    result = check(baseline, [synthetic_task], ["finetune"], [0], cache=reference_cache)
    assert not result.ok
    (diff,) = result.moved  # the oracle did not move
    assert diff.key == (synthetic_task.name, "finetune", 0)
    assert diff.causes == (f"hyperparameters differ: lr {old} → {old * 2}",)
    moved = sorted(m.metric for m in diff.moved)
    assert moved and not set(moved) & set(NOT_COMPARED)
    text = result.format()
    assert f"method finetune on task {synthetic_task.name} (seed 0): moved {', '.join(moved)}" in text
    for m in diff.moved:
        assert f"seed 0  {m.metric}: " in text


def test_cli_check_exit_codes(baseline: Path, synthetic_task: Task, reference_cache: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setitem(TASKS._entries, synthetic_task.name, synthetic_task)  # removed after the test
    argv = ["check", "--baseline", str(baseline), "--tasks", synthetic_task.name, "--methods", "finetune",
            "--seeds", "0", "--cache", str(reference_cache)]
    assert main(argv) == 0
    assert "bench check: OK" in capsys.readouterr().out
    lr = registry.METHODS.get("finetune").resolve(synthetic_task.name)["lr"]
    assert main(argv + ["--hp", f"lr={lr * 3}", "--results", str(tmp_path / "rerun")]) == 1
    err = capsys.readouterr().err
    assert "bench check: FAILED" in err and "method finetune on task" in err
    assert f"hyperparameters differ: lr {lr} → {lr * 3}" in err
    assert (tmp_path / "rerun").is_dir()  # --results keeps the re-run
    assert main(argv + ["--tolerance", "nonsense=1"]) == 2


# --------------------------------------------------------------------------- bench report --check


def report_rows() -> pd.DataFrame:
    """Three seeds of the references and two methods; the original (doing nothing) is there, so
    that the forgetting metrics have signal and the page ranks its methods."""
    runs = []
    for seed in (0, 1, 2):
        runs.append(run_rows("original", seed, VALUES | {"forget_accuracy": 1.0, "mia_efficacy": seed / 100},
                             hyperparameters="{}", run_id=f"g{seed}", data_used=""))
        runs.append(run_rows("oracle", seed, VALUES | {"forget_accuracy": 0.0 + seed / 100}, hyperparameters="{}",
                             run_id=f"o{seed}", data_used="retain"))
        runs.append(run_rows("finetune", seed, VALUES | {"forget_accuracy": 0.1 + seed / 50}, run_id=f"f{seed}"))
        runs.append(run_rows("neggrad", seed, VALUES | {"forget_accuracy": 0.2 - seed / 40}, run_id=f"n{seed}"))
    return frame(*runs)


@pytest.fixture()
def fresh(tmp_path: Path) -> tuple[Path, Path]:
    """A results store and the leaderboard `bench report` writes from it."""
    results, out = tmp_path / "results", tmp_path / "leaderboard"
    df = report_rows()
    for _, rows in df.groupby("run_id"):
        write_run(rows.to_dict("records"), results)
    write_report(read_store(results), out)
    return results, out


def test_fresh_leaderboard_passes(fresh: tuple[Path, Path], capsys: pytest.CaptureFixture[str]):
    results, out = fresh
    assert leaderboard_diff(read_store(results), out) == []
    assert (out / "plots" / f"{TASK}-tradeoff.svg").exists()
    assert main(["report", "--check", "--results", str(results), "--out", str(out)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_hand_edit_fails_with_a_unified_diff(fresh: tuple[Path, Path], capsys: pytest.CaptureFixture[str]):
    results, out = fresh
    page = out / f"{TASK}.md"
    lines = page.read_text(encoding="utf-8").splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.startswith("|") and line.split("|")[1].strip() == "1")
    first = lines[i].rstrip("\n")
    lines[i] = first.replace("| 1 ", "| 1 (best!) ", 1) + "\n"
    page.write_text("".join(lines), encoding="utf-8")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["report", "--check", "--results", str(results), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"- differs: {TASK}.md" in err
    assert f"-{lines[i]}" in err and f"+{first}\n" in err
    assert f"bench report --results {results} --out {out}" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # --check writes nothing


def test_stale_missing_and_extra_files_fail(fresh: tuple[Path, Path]):
    results, out = fresh
    (out / "plots" / f"{TASK}-runtime.svg").unlink()
    (out / "old-task.md").write_text(GENERATED_HEADER + "\n# Task `old-task`\n", encoding="utf-8")
    (out / "plots" / "old-task-tradeoff.svg").write_bytes((out / "plots" / f"{TASK}-tradeoff.svg").read_bytes())
    (out / "README.md").write_text("not generated\n", encoding="utf-8")  # not ours: ignored
    diffs = leaderboard_diff(read_store(results), out)
    assert [(d.name, d.kind) for d in diffs] == [
        ("old-task.md", "extra"), ("plots/digits-cnn-class-runtime.svg", "missing"),
        ("plots/old-task-tradeoff.svg", "extra"),
    ]
    text = format_leaderboard_diff(diffs, results, out)
    assert "- missing: plots/digits-cnn-class-runtime.svg" in text and "- extra: old-task.md" in text
    # new results make the leaderboard stale; `bench report` brings it back and removes left-overs
    write_run(run_rows("finetune", 3, VALUES, run_id="f3"), results)
    stale = leaderboard_diff(read_store(results), out)
    assert {d.name for d in stale if d.kind == "differs"} >= {"index.md", f"{TASK}.md"}
    write_report(read_store(results), out)
    assert leaderboard_diff(read_store(results), out) == []
    assert not (out / "old-task.md").exists() and (out / "README.md").exists()


def test_line_ending_change_is_reported(fresh: tuple[Path, Path]):
    results, out = fresh
    page = out / "index.md"
    page.write_bytes(page.read_bytes().replace(b"\n", b"\r\n"))
    (diff,) = leaderboard_diff(read_store(results), out)
    assert diff.name == "index.md" and diff.kind == "differs" and "\\r" in diff.diff


def test_check_re_runs_with_the_baselines_threads_and_restores_them(
        baseline: Path, synthetic_task: Task, reference_cache: Path):
    (label,) = read_store(baseline)["device"].unique()
    threads, isa = astuple(parse_device_label(label))
    assert isa == torch.backends.cpu.get_cpu_capability()
    before = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        result = check(baseline, [synthetic_task], ["finetune"], [0], cache=reference_cache)
        assert torch.get_num_threads() == threads + 1
    finally:
        torch.set_num_threads(before)
    assert result.ok, result.format()
    assert result.notes == (f"re-ran with the baseline's {threads} CPU thread(s)",)
    assert result.tolerances == {}


def test_threads_with_a_process_pool_is_refused_before_any_work(baseline: Path, synthetic_task: Task, tmp_path: Path):
    with pytest.raises(ValueError, match="--threads sets the CPU threads of a local re-run"):
        check(baseline, [synthetic_task], ["finetune"], [0], executor="processes", threads=2,
              results=tmp_path / "re-run", cache=tmp_path / "cache")
    assert not (tmp_path / "re-run").exists() and not (tmp_path / "cache").exists()


def test_another_instruction_set_applies_the_cross_isa_tolerances(
        baseline: Path, synthetic_task: Task, reference_cache: Path, tmp_path: Path):
    rows = read_store(baseline)
    threads = parse_device_label(rows["device"].iloc[0]).threads
    rows["device"] = f"cpu ({threads} threads, SOMEOTHERISA)"
    rows.to_parquet(tmp_path / "elsewhere.parquet")
    result = check(tmp_path / "elsewhere.parquet", [synthetic_task], ["finetune"], [0], cache=reference_cache,
                   tolerances={"test_accuracy": 0.5})
    assert result.ok, result.format()
    assert result.tolerances == {**CROSS_ISA_TOLERANCES, "test_accuracy": 0.5}
    assert any("SOMEOTHERISA" in n and "cross-ISA tolerances" in n for n in result.notes)
    assert "note: the baseline ran SOMEOTHERISA" in result.format()


def test_older_task_versions_made_elsewhere_do_not_loosen_the_check(
        baseline: Path, synthetic_task: Task, reference_cache: Path, tmp_path: Path):
    """The published store keeps older task versions' rows (made on an AVX2 machine, say); the
    check compares only the registered version's, so only their device decides exactness."""
    rows = read_store(baseline)
    older = rows.assign(task_version=rows["task_version"] - 1, run_id=rows["run_id"] + "-v0",
                        device="cpu (1 threads, SOMEOTHERISA)", timestamp="2020-01-01T00:00:00+00:00")
    pd.concat([rows, older]).to_parquet(tmp_path / "mixed.parquet")
    result = check(tmp_path / "mixed.parquet", [synthetic_task], ["finetune"], [0], cache=reference_cache)
    assert result.ok, result.format()
    assert result.tolerances == {} and not any("SOMEOTHERISA" in n for n in result.notes)


def test_every_compared_metric_has_a_cross_isa_tolerance():
    """A metric without one is compared exactly across instruction sets, where nothing is exact: the
    residue metrics and the draws' spreads lacked one, so a check on a machine of the
    other kind failed on them."""
    from bench.compare import NOT_COMPARED
    from bench.metrics import METRICS

    missing = sorted(set(METRICS.names()) - set(CROSS_ISA_TOLERANCES) - set(NOT_COMPARED))
    assert not missing, f"measure their cross-ISA |Δ| (bench/check.py) and add tolerances for {missing}"
    assert all(v > 0 for v in CROSS_ISA_TOLERANCES.values())
