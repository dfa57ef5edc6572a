"""A user's mistake is refused before any work, with a message that says what to do (issue 19,
defects 3, 8a, 9b and 10): no traceback, nothing trained, nothing stored.
"""
from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

import bench
from bench import registry
from bench.cli import main
from bench.run.plan import make_plan
from bench.tasks import Task

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
