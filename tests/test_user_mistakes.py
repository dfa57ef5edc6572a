"""A user's mistake is refused before any work, with a message that says what to do (issue 19,
defects 3, 8a, 9b and 10): no traceback, nothing trained, nothing stored.
"""
from __future__ import annotations

import dataclasses
import math
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import bench
import bench.datasets as datasets_pkg
from bench import registry
from bench.check import check
from bench.cli import build_parser, main
from bench.datasets import load_dataset
from bench.results import COLUMNS
from bench.run.plan import make_plan
from bench.splits import build_task_data
from bench.tasks import ForgetRule, Task

DIGITS = "digits-cnn-class"


def cli_dirs(root: Path) -> list[str]:
    return ["--results", str(root / "results"), "--out", str(root / "lb"), "--cache", str(root / "cache"),
            "--no-progress"]


def nothing_written(root: Path) -> bool:
    return not any((root / name).exists() for name in ("results", "lb", "cache"))


def bench_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, expect a user error (exit 2, no traceback) and return its message."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- 3. non-finite hyperparameters


@pytest.mark.parametrize("item, message", [
    ("retain_weight=nan", "neggrad: retain_weight=nan is not a finite number; give a finite value"),
    ("lr=inf", "neggrad: lr=inf is not a finite number; give a finite value"),
    ("lr=-inf", "neggrad: lr=-inf is not a finite number; give a finite value"),
])
def test_a_non_finite_hyperparameter_is_refused_before_any_work(item: str, message: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    err = bench_error(["run", DIGITS, "neggrad", "--seeds", "0", "--hp", item, *cli_dirs(tmp_path)], capsys)
    assert message in err
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("value", [2.5, math.inf])
def test_an_integer_hyperparameter_refuses_a_fractional_or_non_finite_float(value: float, synthetic_task: Task,
                                                                            tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epochs"):
        bench.run(synthetic_task, "finetune", seeds=[0], hp={"epochs": value}, results=tmp_path / "results",
                  leaderboard=tmp_path / "lb", cache=tmp_path / "cache", progress=False)
    assert nothing_written(tmp_path)
    assert registry.get_method("finetune").resolve(synthetic_task.name, {"epochs": 2.0})["epochs"] == 2


@pytest.mark.parametrize("where", ["default", "tuned", "fixed"])
def test_a_method_cannot_register_a_non_finite_value(where: str) -> None:
    def fn(model: nn.Module, data, *, device: torch.device, lr: float = 0.1) -> nn.Module:
        return model

    if where == "default":
        fn.__kwdefaults__ = {"lr": math.nan}
    name = f"zz_test_non_finite_{uuid.uuid4().hex[:8]}"
    extra = {"tuned": {"some-task": {"lr": math.inf}}} if where == "tuned" else (
        {"fixed": {"lr": -math.inf}} if where == "fixed" else {})
    try:
        with pytest.raises(ValueError, match="is not a finite number"):
            registry.method(name=name, uses=(), paper="test only", version=1, **extra)(fn)
    finally:
        registry.METHODS._entries.pop(name, None)


# --------------------------------------------------------------------------- 8a. duplicate names and seeds


def test_a_task_method_or_seed_named_twice_is_run_once(synthetic_task: Task, reference_cache: Path,
                                                         tmp_path: Path) -> None:
    rows = bench.run([synthetic_task, synthetic_task], ["original", "finetune", "original"], seeds=[1, 0, 1],
                     results=tmp_path / "results", leaderboard=tmp_path / "lb", cache=reference_cache, progress=False)
    runs = {(r["method"], r["seed"]): r["status"] for r in rows}
    assert runs == {(m, s): "ok" for m in ("original", "finetune", "oracle") for s in (0, 1)}
    plan = make_plan([synthetic_task, synthetic_task], ["original", "finetune", "original"], [1, 0, 1])
    assert [(r.method, r.seed) for r in plan.runs] == [("original", 1), ("original", 0), ("finetune", 1), ("finetune", 0)]


# --------------------------------------------------------------------------- 9b. seeds out of range


@pytest.mark.parametrize("seed", ["99999999999999999999999", str(2**63), "-1"])
def test_a_seed_out_of_range_is_refused_before_any_work(seed: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    err = bench_error(["run", DIGITS, "original", "--seeds", "0", seed, *cli_dirs(tmp_path)], capsys)
    assert f"seed {seed} is out of range: seeds are integers in [0, 2**63 - 1]" in err
    assert nothing_written(tmp_path)
    assert [r.seed for r in make_plan([DIGITS], ["original"], [2**63 - 1]).runs] == [2**63 - 1]


# --------------------------------------------------------------------------- 10. errors before work, saying what to do


@pytest.mark.parametrize("source, cause", [
    (None, "ModuleNotFoundError: No module named"),
    ("import bench\nraise NameError('half-written plugin')\n", "NameError: half-written plugin"),
])
def test_a_missing_or_broken_plugin_is_an_error_not_a_traceback(source: str | None, cause: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    module = f"zz_plugin_{uuid.uuid4().hex[:8]}"
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("UNLEARNBENCH_PLUGINS", module)
    err = bench_error(["ls", "methods"], capsys)
    assert f"UNLEARNBENCH_PLUGINS names {module!r}, which cannot be imported ({cause}" in err
    assert "fix the module or remove it from UNLEARNBENCH_PLUGINS" in err


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "mps", "cpu:"])
def test_an_unsupported_device_names_the_ones_that_work(device: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    err = bench_error(["run", DIGITS, "original", "--device", device, *cli_dirs(tmp_path)], capsys)
    assert f"bench: error: unsupported device {device!r}; use cpu, cuda or cuda:N\n" == err
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["run", "--threads", "0"], "argument --threads: must be a positive integer, got '0'"),
    (["run", "--jobs", "0"], "argument --jobs: must be a positive integer, got '0'"),
    (["run", "--cpus-per-run", "-1"], "argument --cpus-per-run: must be a finite number >= 0, got '-1'"),
    (["run", "--gpus-per-run", "nan"], "argument --gpus-per-run: must be a finite number >= 0, got 'nan'"),
    (["check", "--baseline", "results", "--threads", "0"], "argument --threads: must be a positive integer"),
    (["check", "--baseline", "results", "--jobs", "-2"], "argument --jobs: must be a positive integer, got '-2'"),
    (["perf", "--threads", "0"], "argument --threads: must be a positive integer"),
    (["perf", "--workers", "0"], "argument --workers: must be a positive integer"),
    (["perf", "--steps", "0"], "argument --steps: must be a positive integer"),
    (["perf", "--repeats", "0"], "argument --repeats: must be a positive integer"),
])
def test_a_count_flag_refuses_zero_or_a_negative_instead_of_ignoring_it(argv: list[str], message: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("names, message", [
    ([""], "empty task name in '': give one or more names separated by commas"),
    ([","], "empty task name in ',': give one or more names separated by commas"),
    ([DIGITS, "original,,finetune"], "empty method name in 'original,,finetune': give one or more names separated by commas"),
    (["--suite", ""], "unknown suite ''. Valid suites:"),
])
def test_an_empty_task_or_method_name_is_refused_not_read_as_the_default_suite(
        names: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = bench_error(["run", *names, "--dry-run", *cli_dirs(tmp_path)], capsys)
    assert f"bench: error: {message}" in err
    assert "plan:" not in err


def test_a_data_root_that_does_not_exist_is_an_error_not_the_system_copy(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = tmp_path / "nowhere"
    err = bench_error(["run", DIGITS, "original", "--data-root", str(nowhere), "--dry-run", *cli_dirs(tmp_path)], capsys)
    assert f"--data-root {nowhere} does not exist; pass the folder that holds the dataset files" in err
    assert "plan:" not in err
    monkeypatch.setenv("UNLEARNBENCH_DOWNLOAD", "1")  # a download may create the folder it is asked to fill
    assert load_dataset("digits", nowhere).name == "digits"


def test_bench_check_against_a_baseline_without_completed_runs_refuses_before_any_rerun(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty-baseline"
    empty.mkdir()
    argv = ["check", "--baseline", str(empty), "--tasks", DIGITS, "--methods", "original", "--seeds", "0",
            "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "results")]
    err = bench_error(argv, capsys)
    assert f"baseline {empty} holds no completed run, so there is nothing to compare" in err
    assert nothing_written(tmp_path)
    other = pd.DataFrame([{**{c: "" for c in COLUMNS}, "task": "another-task", "method": "original", "seed": 0,
                           "status": "ok", "device": "cpu (1 threads, AVX2)"}])
    with pytest.raises(ValueError, match=f"holds no completed run of the tasks {DIGITS}, seeds 0 and methods original"):
        check(other, [DIGITS], ["original"], [0], cache=tmp_path / "cache", results=tmp_path / "results")
    assert nothing_written(tmp_path)


def test_a_cache_whose_lock_folder_is_a_file_is_refused_before_any_work(synthetic_task: Task, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".locks").write_text("not a folder")
    with pytest.raises(FileExistsError, match=r"\.locks is not a folder, so no reference can be locked; remove it"):
        bench.run(synthetic_task, "original", seeds=[0], results=tmp_path / "results", leaderboard=tmp_path / "lb",
                  cache=cache, progress=False)
    assert not (tmp_path / "results").exists() and sorted(p.name for p in cache.iterdir()) == [".locks"]


def test_method_names_separated_by_spaces_say_to_use_commas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = bench_error(["run", DIGITS, "original", "finetune", "retrain", *cli_dirs(tmp_path)], capsys)
    assert ("bench run takes one task argument and one method argument, got also 'finetune', 'retrain'; separate "
            f"several names with commas, no spaces: bench run {DIGITS} original,finetune,retrain") in err
    assert nothing_written(tmp_path)


def test_mufac_images_that_all_copy_training_images_name_the_duplicates_as_the_cause(tmp_path: Path) -> None:
    from test_faces import SHOTS, PEOPLE, copy_image, mufac_task, write_mufac

    root = write_mufac(tmp_path)
    n_val, n_test = len(PEOPLE["val"]) * SHOTS, len(PEOPLE["test"]) * SHOTS
    for row in range(n_val):
        copy_image(root, ("train", row), ("val", row))
    for row in range(n_test):
        copy_image(root, ("train", n_val + row), ("test", row))
    datasets_pkg._CACHE.clear()
    try:
        with pytest.raises(ValueError) as err:
            build_task_data(mufac_task(ForgetRule("identities", fraction=0.25)), 0, str(tmp_path))
    finally:
        datasets_pkg._CACHE.clear()
    message = str(err.value)
    assert (f"the validation split is empty: the leakage audit dropped all {n_val} of its images: {n_val} as "
            "perceptual duplicates") in message
    assert "of training images, 0 because their person also has training images" in message
    assert "remove the copies of training images from the validation images" in message
    assert "every validation/test person also has training images" not in message


def test_a_validation_split_that_picks_no_image_names_val_fraction(synthetic_task: Task) -> None:
    task = dataclasses.replace(synthetic_task, val_fraction=0.001)
    with pytest.raises(ValueError, match=r"the validation split is empty: val_fraction=0.001 of the \d+ training "
                                         r"images picks none; raise the task's val_fraction"):
        build_task_data(task, 0)
