"""What the harness writes, and where (issue 19): files honour the umask, `bench perf`'s child runs
the code its parent runs, output folders are checked before any work, a full disk is a clear error,
two overlapping runs on one store both finish, only generated leaderboard files are replaced or
removed, and a user's runs go to their own store (runs/), never into the published one."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from bench.models import build_model
from bench.perf import runs as perf_runs
from bench.references import save_checkpoint
from bench.report import write_report
from bench.results import read_store, rows_for_run, run_fields, write_run

TASK = "digits-cnn-class"


def hand_run(method: str, seed: int, forget_accuracy: float) -> list[dict]:
    """One stored-looking run of ``TASK`` (no training), built with the store's own row helpers."""
    common = run_fields(run_id=f"{method}-{seed}", task=TASK, task_version=1, method=method, method_version=1,
                        hyperparameters="{}", data_used="retain", seed=seed, device=torch.device("cpu"))
    return rows_for_run(common, [("forget_accuracy", forget_accuracy, 10), ("retain_accuracy", 0.9, 90),
                                 ("test_accuracy", 0.8, 50), ("mia_efficacy", 0.5, 10)])


def hand_store(root: Path) -> Path:
    for seed in (0, 1):
        write_run(hand_run("oracle", seed, 0.0), root)
        write_run(hand_run("finetune", seed, 0.1 + seed / 10), root)
    return root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- 11: permissions, perf's child


def test_store_cache_and_leaderboard_files_are_created_with_the_umask_not_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        results = hand_store(tmp_path / "results")
        pages = write_report(read_store(results), tmp_path / "leaderboard")
        model = build_model("digits_cnn", in_channels=1, image_size=8, num_classes=10, mean=(0.5,), std=(0.5,), seed=0)
        save_checkpoint(tmp_path / "cache" / "ref.safetensors", model, key="ref", seconds=1.0, device="cpu", task=TASK)
    finally:
        os.umask(old)
    files = [*results.rglob("*.parquet"), *pages, tmp_path / "cache" / "ref.safetensors"]
    assert len(files) > 4
    assert {f.relative_to(tmp_path).as_posix(): oct(mode(f)) for f in files} == {
        f.relative_to(tmp_path).as_posix(): oct(0o644) for f in files}  # 0o666 & ~0o022: readable by others


def test_perf_child_imports_the_running_bench_even_when_pythonpath_has_an_empty_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text('raise ImportError("the decoy bench/ of the current directory")\n')
    monkeypatch.chdir(tmp_path)
    # `export PYTHONPATH=$PYTHONPATH:/x` with PYTHONPATH empty leaves a leading ":" (an entry meaning ".").
    monkeypatch.setenv("PYTHONPATH", os.pathsep + os.environ.get("PYTHONPATH", ""))
    with pytest.raises(RuntimeError, match="exit 2") as err:  # an unknown kind: the real child prints its usage
        perf_runs.run_child("no-such-kind", {})
    assert "usage: python -m bench.perf" in str(err.value)
    assert "decoy" not in str(err.value)
