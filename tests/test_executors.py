"""Executors: the same plan gives the same rows in-process, in a process pool and under Ray; a
failing run is recorded while the rest complete; an interrupted plan resumes without duplicates;
every executor resolves a job's dependencies itself, and a dead worker fails only its own job."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bench
from bench.results import read_store, row_files, stored_runs
from bench.run.executors import LocalExecutor, ProcessExecutor
from bench.run.workers import WorkerDied

TIMINGS = {"runtime_seconds", "speedup"}
TESTS_DIR = Path(__file__).parent


def metric_map(rows: list[dict]) -> dict[tuple, float | str]:
    """(run_id, metric) → value for every deterministic metric, plus each run's model hash."""
    out: dict[tuple, float | str] = {}
    for r in rows:
        if r["metric"] not in TIMINGS:
            out[(r["run_id"], r["metric"])] = r["value"]
        out[(r["run_id"], "model_hash")] = r["model_hash"]
    return out


def plan_kwargs(tmp_path: Path, name: str, cache: Path) -> dict:
    return {"seeds": [0, 1], "results": tmp_path / name / "results", "leaderboard": None, "cache": cache,
            "progress": False}


@pytest.fixture(scope="module")
def local_rows(synthetic_task, tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("local")
    return bench.run(synthetic_task, ["finetune", "neggrad"], executor="local", **plan_kwargs(tmp, "local", tmp / "cache"))


def test_processes_match_local_bit_for_bit(synthetic_task, local_rows, tmp_path: Path) -> None:
    rows = bench.run(synthetic_task, ["finetune", "neggrad"], executor="processes", jobs=2,
                     **plan_kwargs(tmp_path, "processes", tmp_path / "cache"))
    assert metric_map(rows) == metric_map(local_rows)
    assert {r["status"] for r in rows} == {"ok"}


def test_ray_matches_local_bit_for_bit(synthetic_task, local_rows, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = bench.run(synthetic_task, ["finetune", "neggrad"], executor="ray",
                         **plan_kwargs(tmp_path, "ray", tmp_path / "cache"))
    finally:
        ray.shutdown()
    assert metric_map(rows) == metric_map(local_rows)


def test_failing_worker_is_recorded_and_the_rest_complete(synthetic_task, tmp_path: Path, monkeypatch) -> None:
    # The failing method lives in a plugin module so that spawned workers register it too.
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.setenv("UNLEARNBENCH_PLUGINS", "plugin_failing_method")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))
    from bench.registry import METHODS

    try:
        rows = bench.run(synthetic_task, ["always_fails", "original"], executor="processes", jobs=2,
                         **plan_kwargs(tmp_path, "fail", tmp_path / "cache"))
    finally:
        METHODS._entries.pop("always_fails", None)
    status = {(r["method"], r["seed"]): (r["status"], r["error"]) for r in rows}
    for seed in (0, 1):
        assert status[("original", seed)][0] == "ok"
        assert status[("oracle", seed)][0] == "ok"
        state, error = status[("always_fails", seed)]
        assert state == "failed" and "RuntimeError: deliberate failure" in error and "Traceback" in error


DRIVER = """
import sys, torch
sys.path.insert(0, {tests!r})
from conftest import make_synthetic_task
from bench.tasks import ForgetRule
import bench
task = make_synthetic_task("synthetic-cnn-class", ForgetRule("classes", classes=(1,)))
bench.run(task, ["finetune", "neggrad", "random_label", "retrain"], seeds=[0, 1, 2], results={results!r},
          leaderboard=None, cache={cache!r}, progress=False, executor={executor!r}, jobs=2)
"""


def test_interrupted_plan_resumes_without_duplicates(synthetic_task, tmp_path: Path) -> None:
    results, cache = tmp_path / "results", tmp_path / "cache"
    script = DRIVER.format(tests=str(TESTS_DIR), results=str(results), cache=str(cache), executor="processes")
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(stored_runs(results)) < 3 and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-way
    proc.wait()
    before = stored_runs(results)
    assert not list(results.rglob("*.tmp")), "an interrupted run left a partial file"

    rows = bench.run(synthetic_task, ["finetune", "neggrad", "random_label", "retrain"], seeds=[0, 1, 2],
                     results=results, leaderboard=None, cache=cache, progress=False)
    computed = {r["run_id"] for r in rows}
    assert not computed & {k for k, v in before.items() if v == "ok"}, "a stored run was recomputed"
    df = read_store(results)
    per_run = df.groupby("run_id")["metric"].apply(list)
    assert all(len(m) == len(set(m)) for m in per_run), "duplicate rows"
    assert df["run_id"].nunique() == 4 * 3 + 3  # 12 method runs + 3 oracle reference runs
    assert set(df["status"]) == {"ok"}
    assert len(row_files(results)) == 15


def test_local_executor_stores_each_run_before_the_next_starts(synthetic_task, tmp_path: Path) -> None:
    """Ctrl-C in the middle of a local plan keeps every run finished before it."""
    from bench.registry import METHODS, method

    @method(uses=(), paper="test", version=1)
    def interrupts(model, data, *, device):
        """Stands for the user pressing Ctrl-C during this run."""
        raise KeyboardInterrupt

    results = tmp_path / "results"
    try:
        with pytest.raises(KeyboardInterrupt):  # timeout=0: every run in this process, where Ctrl-C lands
            bench.run(synthetic_task, ["finetune", "neggrad", "interrupts", "original"], seeds=[0], results=results,
                      leaderboard=None, cache=tmp_path / "cache", progress=False, timeout=0)
    finally:
        METHODS._entries.pop("interrupts", None)
    stored = read_store(results)
    assert set(stored["method"]) == {"oracle", "finetune", "neggrad"}
    assert set(stored["status"]) == {"ok"}


def _fail() -> None:
    raise ValueError("deliberate")


def test_local_executor_resolves_dependencies_and_passes_their_failure_on() -> None:
    pool = LocalExecutor()
    a, broken = pool.submit(int, ("2",)), pool.submit(_fail, ())
    total = pool.submit(lambda x, y: x * y, (3,), [a])
    doomed = pool.submit(lambda x: x, (), [broken])
    assert pool.wait([total]) == [total] and pool.result(total) == 6  # ran its dependency first
    assert pool.wait([broken, doomed]) == [broken]
    assert pool.wait([doomed]) == [doomed]
    with pytest.raises(ValueError, match="deliberate") as caught:
        pool.result(doomed)
    assert caught.value is broken.exception()


def test_process_executor_holds_a_job_until_its_dependencies_are_done_and_survives_a_dead_worker() -> None:
    pool = ProcessExecutor(jobs=1)
    try:
        a = pool.submit(abs, (-4,))
        total = pool.submit(divmod, (), [a, a])
        handles = [a, total]
        while handles:
            handles = [h for h in handles if h not in pool.wait(handles)]
        assert pool.result(total) == (1, 0)
        dead = pool.submit(os._exit, (1,))
        after = pool.submit(abs, (), [dead])
        alone = pool.submit(abs, (-5,))
        pool.wait([dead])
        with pytest.raises(WorkerDied, match=r"its worker process died \(exit code 1\)"):
            pool.result(dead)
        pool.wait([after])
        with pytest.raises(WorkerDied):
            pool.result(after)
        pool.wait([alone])
        assert pool.result(alone) == 5  # a fresh worker runs the rest
    finally:
        pool.shutdown(cancel=True)
