"""The runner (``bench.run``) and the command line (``bench.cli.main``) on the SYNTHETIC tasks.

Every call passes temporary ``results``/``leaderboard``/``cache`` folders. Throwaway methods are
registered under unique names inside the test that needs them and removed in a ``finally``.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from torch import nn

import bench
from bench import registry
from bench.cli import main
from bench.metrics import METRICS
from bench.models import state_hash
from bench.references import get_references
from bench.report import GENERATED_HEADER
from bench.results import read_store, stored_runs
from bench.run.estimate import Throughput, estimate_group, runtime_ratios
from bench.run.plan import make_plan
from bench.splits import build_task_data
from bench.tasks import TASKS, Task, list_tasks

CPU = torch.device("cpu")
SEEDS = [0, 1]
CHEAP = ["original", "finetune"]


@contextmanager
def throwaway_method(fn: Callable[..., nn.Module], *, uses: tuple[str, ...] = (),
                     applies_to: tuple[str, ...] = ("classes", "random", "identities")) -> Iterator[str]:
    """Register ``fn`` under a unique name for the duration of the block."""
    name = f"zz_test_{fn.__name__}_{uuid.uuid4().hex[:8]}"
    registry.method(name=name, uses=uses, paper="test only", version=1, applies_to=applies_to)(fn)
    try:
        yield name
    finally:
        registry.METHODS._entries.pop(name, None)


def run_dirs(root: Path) -> dict[str, Path]:
    return {"results": root / "results", "leaderboard": root / "lb"}


def runs_of(rows: list[dict]) -> dict[tuple[str, int], str]:
    """(method, seed) → status, one entry per run."""
    out: dict[tuple[str, int], str] = {}
    for r in rows:
        out[(r["method"], r["seed"])] = r["status"]
    return out


def metric(rows: list[dict], method: str, seed: int, name: str) -> float:
    (value,) = [r["value"] for r in rows if r["method"] == method and r["seed"] == seed and r["metric"] == name]
    return value


@pytest.fixture(scope="module")
def first_run(synthetic_task: Task, reference_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("first-run")
    rows = bench.run(synthetic_task, CHEAP, seeds=SEEDS, cache=reference_cache, progress=False, **run_dirs(root))
    return root, rows


# --------------------------------------------------------------------------- bench.run


def test_run_returns_rows_and_writes_files(first_run, synthetic_task: Task) -> None:
    root, rows = first_run
    assert runs_of(rows) == {(m, s): "ok" for m in ["oracle", *CHEAP] for s in SEEDS}
    per_run = {}
    for r in rows:
        per_run.setdefault(r["run_id"], set()).add(r["metric"])
    assert len(per_run) == 6
    for metrics in per_run.values():
        assert {"forget_accuracy", "retain_accuracy", "test_accuracy", "forget_test_accuracy", "mia_efficacy",
                "runtime_seconds", "speedup", "js_to_oracle"} <= metrics <= set(METRICS.names())
    files = sorted(p.relative_to(root / "results").as_posix() for p in (root / "results").rglob("*") if p.is_file())
    rows_files = [f for f in files if not f.endswith(".examples.parquet")]
    assert len(rows_files) == 6 and all(f.endswith(".parquet") and not f.endswith(".failed.parquet") for f in rows_files)
    assert sorted(f.replace(".examples.parquet", ".parquet") for f in files if f not in rows_files) == rows_files
    assert {f.split("/")[1] for f in files} == {"oracle", *CHEAP}
    assert all(f.startswith(f"{synthetic_task.name}/") for f in files)
    df = read_store(root / "results")
    assert len(df) == len(rows)
    assert (root / "lb" / "index.md").exists() and (root / "lb" / f"{synthetic_task.name}.md").exists()
    page = (root / "lb" / f"{synthetic_task.name}.md").read_text()
    assert page.startswith(GENERATED_HEADER) and "finetune" in page


def test_rows_record_what_defines_them(first_run, synthetic_task: Task, reference_cache: Path) -> None:
    _, rows = first_run
    for seed in SEEDS:
        td = build_task_data(synthetic_task, seed)
        refs = get_references(td, device=CPU, cache_dir=reference_cache)
        mine = [r for r in rows if r["seed"] == seed]
        assert {r["split_hash"] for r in mine} == {td.split_hash}
        assert {r["reference_key"] for r in mine} == {refs.oracle.key}
        by_method = {r["method"]: r for r in mine}
        assert by_method["original"]["model_hash"] == state_hash(refs.original.model)
        assert by_method["oracle"]["model_hash"] == state_hash(refs.oracle.model)
        assert by_method["finetune"]["model_hash"] not in (state_hash(refs.original.model), state_hash(refs.oracle.model))
        assert by_method["original"]["data_used"] == "none"
        assert by_method["finetune"]["data_used"] == "retain"
        assert by_method["finetune"]["hyperparameters"] == '{"batch_size":64,"epochs":5,"lr":0.001}'
        assert all(r["task"] == synthetic_task.name and r["task_version"] == 1 and r["device"] == f"cpu ({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})" for r in mine)
        # the original remembers class 1, the oracle never saw it
        assert metric(rows, "original", seed, "forget_accuracy") > 0.9
        assert metric(rows, "oracle", seed, "forget_accuracy") == 0.0
        assert abs(metric(rows, "oracle", seed, "js_to_oracle")) < 1e-12
        assert metric(rows, "oracle", seed, "runtime_seconds") == refs.oracle.train_seconds


def test_second_run_computes_nothing(first_run, synthetic_task: Task, reference_cache: Path) -> None:
    root, _ = first_run
    before = {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*.parquet")}
    again = bench.run(synthetic_task, CHEAP, seeds=SEEDS, cache=reference_cache, progress=False, **run_dirs(root))
    assert again == []
    assert {p: p.stat().st_mtime_ns for p in (root / "results").rglob("*.parquet")} == before


def test_force_recomputes(first_run, synthetic_task: Task, reference_cache: Path, tmp_path: Path) -> None:
    root, first = first_run
    shutil.copytree(root / "results", tmp_path / "results")
    rows = bench.run(synthetic_task, CHEAP, seeds=SEEDS, cache=reference_cache, progress=False, force=True,
                     **run_dirs(tmp_path))
    assert runs_of(rows) == runs_of(first)
    assert {r["run_id"] for r in rows} == {r["run_id"] for r in first}
    # recomputed models are identical (deterministic), the files are rewritten, nothing is duplicated
    assert {(r["method"], r["seed"], r["model_hash"]) for r in rows} == {(r["method"], r["seed"], r["model_hash"]) for r in first}
    assert len(read_store(tmp_path / "results")) == len(rows)


def test_new_seed_runs_only_what_is_missing(first_run, synthetic_task: Task, reference_cache: Path, tmp_path: Path) -> None:
    root, _ = first_run
    shutil.copytree(root / "results", tmp_path / "results")
    rows = bench.run(synthetic_task, [*CHEAP, "retrain"], seeds=[0, 1], cache=reference_cache, progress=False,
                     **run_dirs(tmp_path))
    assert runs_of(rows) == {("retrain", 0): "ok", ("retrain", 1): "ok"}
    for seed in SEEDS:  # retrain is the oracle, bit for bit, through the runner
        (ret,) = {r["model_hash"] for r in rows if r["seed"] == seed}
        stored = read_store(tmp_path / "results")
        (orc,) = set(stored[(stored["method"] == "oracle") & (stored["seed"] == seed)]["model_hash"])
        assert ret == orc
        assert abs(metric(rows, "retrain", seed, "js_to_oracle")) < 1e-12


def test_failing_method_is_recorded_and_the_others_complete(synthetic_task: Task, reference_cache: Path, tmp_path: Path) -> None:
    state = {"fail": True}

    def boom(model: nn.Module, data, *, device: torch.device) -> nn.Module:
        """Raises while state["fail"] is set."""
        if state["fail"]:
            raise RuntimeError("deliberate failure for the test")
        return model

    with throwaway_method(boom) as name:
        rows = bench.run(synthetic_task, [name, "original"], seeds=SEEDS, cache=reference_cache, progress=False,
                         **run_dirs(tmp_path))
        assert runs_of(rows) == {**{(name, s): "failed" for s in SEEDS}, **{(m, s): "ok" for m in ("original", "oracle") for s in SEEDS}}
        failed = [r for r in rows if r["status"] == "failed"]
        assert len(failed) == 2
        for r in failed:
            assert r["error"].startswith("RuntimeError: deliberate failure for the test")
            assert "Traceback (most recent call last)" in r["error"] and "in boom" in r["error"]
        assert sorted(p.name.split("-")[0] for p in (tmp_path / "results").rglob("*.failed.parquet")) == ["seed0", "seed1"]
        page = (tmp_path / "lb" / f"{synthetic_task.name}.md").read_text()
        assert "deliberate failure" in page

        # a failed run is retried by the next run; once it succeeds its failure record is gone
        state["fail"] = False
        rows = bench.run(synthetic_task, [name, "original"], seeds=SEEDS, cache=reference_cache, progress=False,
                         **run_dirs(tmp_path))
        assert runs_of(rows) == {(name, s): "ok" for s in SEEDS}
        assert list((tmp_path / "results").rglob("*.failed.parquet")) == []
        assert set(stored_runs(tmp_path / "results").values()) == {"ok"}


def test_method_returning_a_non_module_fails_its_run(synthetic_task: Task, reference_cache: Path, tmp_path: Path) -> None:
    def not_a_model(model: nn.Module, data, *, device: torch.device) -> nn.Module:
        """Returns the state dict instead of the model."""
        return model.state_dict()

    with throwaway_method(not_a_model) as name:
        rows = bench.run(synthetic_task, [name], seeds=[0], cache=reference_cache, progress=False, **run_dirs(tmp_path))
    (row,) = [r for r in rows if r["method"] == name]
    assert row["status"] == "failed" and "not an nn.Module" in row["error"]


def test_inapplicable_method_is_not_run(synthetic_random_task: Task, reference_cache: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    def class_only(model: nn.Module, data, *, device: torch.device) -> nn.Module:
        """Applies to class removal only."""
        return model

    with throwaway_method(class_only, applies_to=("classes",)) as name:
        rows = bench.run(synthetic_random_task, [name, "original"], seeds=[0], cache=reference_cache, progress=False,
                         **run_dirs(tmp_path))
    assert runs_of(rows) == {("original", 0): "ok", ("oracle", 0): "ok"}
    assert f"not applicable: {name} on {synthetic_random_task.name}" in capsys.readouterr().err


@pytest.mark.parametrize("hp, message", [
    ({"epoch": "3"}, "Did you mean 'epochs'?"),
    ({"epochs": "three"}, "epochs must be (of type int|an integer)"),
    ({"epochs": "2.5"}, "epochs must be (of type int|an integer)"),
    ({"lr": "fast"}, "lr must be of type float"),
    ({"epochs": "0"}, "out of range"),
    ({"lr": -1.0}, "out of range"),
])
def test_bad_hyperparameters_fail_before_any_work(hp: dict, message: str, synthetic_task: Task, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=message):
        bench.run(synthetic_task, "finetune", seeds=[0], hp=hp, cache=cache, progress=False, **run_dirs(tmp_path))
    assert not cache.exists() and not (tmp_path / "results").exists() and not (tmp_path / "lb").exists()


def test_good_hyperparameter_override_is_stored(synthetic_task: Task, reference_cache: Path, tmp_path: Path) -> None:
    rows = bench.run(synthetic_task, "finetune", seeds=[0], hp={"epochs": "1"}, cache=reference_cache,
                     progress=False, **run_dirs(tmp_path))
    assert {r["hyperparameters"] for r in rows if r["method"] == "finetune"} == {'{"batch_size":64,"epochs":1,"lr":0.001}'}


# --------------------------------------------------------------------------- the command line


def cli_dirs(root: Path, cache: Path) -> list[str]:
    return ["--results", str(root / "results"), "--out", str(root / "lb"), "--cache", str(cache), "--no-progress"]


def test_public_api_is_lazy_and_bench_run_stays_callable() -> None:
    """``import bench.registry`` pays for neither torch nor the runner; ``bench.run`` is callable
    even once a module of the ``bench.run`` package is imported."""
    script = ("import sys, bench.registry; assert 'torch' not in sys.modules, 'torch imported'; "
              "import bench.run.plan, bench; assert callable(bench.run) and bench.run.run is bench.run.driver.run")
    subprocess.run([sys.executable, "-c", script], check=True)


def test_ls_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "tasks"]) == 0
    out = capsys.readouterr().out
    for name in list_tasks():
        assert name in out
        assert TASKS.get(name).description in out
    assert "forget=class 3" in out and "suites:" in out


def test_ls_methods(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "methods"]) == 0
    out = capsys.readouterr().out
    for name in bench.list_methods():
        spec = bench.get_method(name)
        assert f"{name}  (v{spec.version})" in out
        assert spec.description in out
    assert "epochs=5, lr=0.001, batch_size=64" in out  # finetune's defaults
    assert "data: forget, retain;" in out and "data: none;" in out


def test_ls_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "metrics"]) == 0
    out = capsys.readouterr().out
    for name in bench.list_metrics():
        assert name in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "goal=oracle" in lines["forget_accuracy"]
    assert "goal=min" in lines["runtime_seconds"]
    assert "goal=max" in lines["speedup"]
    assert "goal=min" in lines["avg_gap"]


@pytest.mark.parametrize("argv, expected", [
    (["run", "digits-cnn-clas", "finetune"], "Did you mean 'digits-cnn-class'?"),
    (["run", "digits-cnn-class", "finetun"], "Did you mean 'finetune'?"),
    (["run", "digits-cnn-class", "finetune", "--hp", "epoch=2"], "Did you mean 'epochs'?"),
    (["run", "digits-cnn-class", "finetune", "--hp", "epochs"], "--hp expects name=value"),
    (["run", "digits-cnn-class", "finetune", "--hp", "lr=-1"], "out of range"),
])
def test_cli_run_errors_exit_2_before_any_work(argv: list[str], expected: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    assert main([*argv, *cli_dirs(tmp_path, cache)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error:") and expected in err
    assert not cache.exists() and not (tmp_path / "results").exists()


def test_cli_unknown_suite_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--suite", "quik", *cli_dirs(tmp_path, tmp_path / "cache")]) == 2
    assert "Did you mean 'quick'?" in capsys.readouterr().err


def test_cli_run_and_report(synthetic_task: Task, reference_cache: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(TASKS._entries, synthetic_task.name, synthetic_task)  # removed after the test
    argv = ["run", synthetic_task.name, "original,finetune", "--seeds", "0", *cli_dirs(tmp_path, reference_cache)]
    assert main(argv[:-1]) == 0  # with the progress bar
    out, err = capsys.readouterr()
    assert "3 run(s) computed (0 failed)" in out
    assert str((tmp_path / "results").resolve()) in out and str((tmp_path / "lb" / "index.md").resolve()) in out
    assert "%|" in err  # the progress bar went to stderr
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "0 run(s) computed" in out and "%|" not in err

    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "report")]) == 0
    assert str((tmp_path / "report" / "index.md").resolve()) in capsys.readouterr().out
    index = (tmp_path / "report" / "index.md").read_text()
    assert index.startswith(GENERATED_HEADER) and synthetic_task.name in index
    # the leaderboard is a function of the results: `report` reproduces what `run` wrote
    for name in ("index.md", f"{synthetic_task.name}.md"):
        assert (tmp_path / "report" / name).read_text() == (tmp_path / "lb" / name).read_text()


def test_cli_run_exits_1_when_a_run_failed(synthetic_task: Task, reference_cache: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def always_fails(model: nn.Module, data, *, device: torch.device) -> nn.Module:
        """Raises."""
        raise ValueError("nope")

    monkeypatch.setitem(TASKS._entries, synthetic_task.name, synthetic_task)
    with throwaway_method(always_fails) as name:
        assert main(["run", synthetic_task.name, name, "--seeds", "0", *cli_dirs(tmp_path, reference_cache)]) == 1
    out, err = capsys.readouterr()
    assert "2 run(s) computed (1 failed)" in out  # the oracle's reference run and the failed one
    assert f"failed: {synthetic_task.name} {name} seed 0: ValueError: nope" in out + err


def test_cli_report_without_results_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "lb")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "lb").exists()


# --------------------------------------------------------------------------- the estimate


def test_estimate_group_adds_up(synthetic_task: Task) -> None:
    td = build_task_data(synthetic_task, 0)
    plan = make_plan([synthetic_task], ["original", "finetune", "retrain", "neggrad"], [0])
    runs = {r.method: r for r in plan.runs}
    speed = Throughput(train=100.0, forward=400.0, attacks=0.5)
    ratios = {(synthetic_task.name, "finetune", runs["finetune"].hyperparameters): 0.4,
              (synthetic_task.name, "neggrad", '{"other":"hyperparameters"}'): 9.0}
    est = estimate_group(td, plan.runs, refs_cached=(False, False), speed=speed, ratios=ratios, setup_seconds=0.25)
    epochs = synthetic_task.recipe.epochs
    oracle_train = epochs * len(td.retain) / 100.0
    forward = (len(td.forget) + len(td.retain) + len(td.test) + len(td.forget_test)) / 400.0
    evaluation = forward + 0.5
    assert est.original == pytest.approx(epochs * len(td.train) / 100.0)
    assert est.oracle == pytest.approx(oracle_train + evaluation + forward + 0.25)
    assert est.runs[runs["finetune"].run_id] == pytest.approx(0.4 * oracle_train + evaluation)
    # never stored with these hyperparameters: the priors
    assert est.runs[runs["original"].run_id] == pytest.approx(evaluation)
    assert est.runs[runs["retrain"].run_id] == pytest.approx(oracle_train + evaluation)
    assert est.runs[runs["neggrad"].run_id] == pytest.approx(0.25 * oracle_train + evaluation)
    cached = estimate_group(td, plan.runs, refs_cached=(True, True), speed=speed, ratios=ratios, oracle_rows=False)
    assert cached.original == 0.0 and cached.oracle == pytest.approx(forward)
    assert cached.runs == est.runs


def test_runtime_ratios_come_from_stored_speedups(first_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, rows = first_run
    speedups = sorted(r["value"] for r in rows if r["method"] == "finetune" and r["metric"] == "speedup")
    (hp,) = {r["hyperparameters"] for r in rows if r["method"] == "finetune"}
    task = rows[0]["task"]
    bad = tmp_path / "bad"
    (bad / task / "finetune").mkdir(parents=True)
    (bad / task / "finetune" / "x.parquet").write_bytes(b"not parquet")
    ratios = runtime_ratios(tmp_path / "missing", bad, root / "results")
    assert ratios[(task, "finetune", hp)] == pytest.approx(sum(1.0 / s for s in speedups) / len(speedups))
    assert ratios[(task, "oracle", "{}")] == pytest.approx(1.0)
    assert ratios[(task, "original", "{}")] < 1e-3
    assert f"not using the runtimes stored in {bad}" in capsys.readouterr().err
    # an earlier directory wins
    assert runtime_ratios(root / "results", root / "results") == ratios


def test_dry_run_prints_the_estimate_and_writes_nothing(synthetic_task: Task, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(TASKS._entries, synthetic_task.name, synthetic_task)  # removed after the test
    argv = ["run", synthetic_task.name, "original,finetune", "--seeds", "0", "--dry-run",
            *cli_dirs(tmp_path / "out", tmp_path / "out" / "cache")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "plan: 2 run(s), 0 already stored, 2 to do; 2 reference model(s) to train; estimated" in err
    assert "references" in err and "runs" in err
    assert not (tmp_path / "out").exists()


def test_dry_run_with_cached_references_trains_none(first_run, synthetic_task: Task, reference_cache: Path,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert bench.run(synthetic_task, CHEAP, seeds=SEEDS, cache=reference_cache, progress=False, dry_run=True,
                     **run_dirs(tmp_path)) == []
    err = capsys.readouterr().err
    assert "plan: 4 run(s), 0 already stored, 4 to do; estimated" in err and "to train" not in err
    assert not any(tmp_path.iterdir())
