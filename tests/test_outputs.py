"""What the harness writes, and where (issue 19): files honour the umask, `bench perf`'s child runs
the code its parent runs, output folders are checked before any work, a full disk is a clear error,
two overlapping runs on one store both finish, only generated leaderboard files are replaced or
removed, and a user's runs go to their own store (runs/), never into the published one."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.models import build_model
from bench.perf import runs as perf_runs
from bench.references import save_checkpoint
from bench.report import GENERATED_HEADER, write_report
from bench.results import read_store, row_files, rows_for_run, run_fields, write_run
from bench.tasks import TASKS, Task

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


# --------------------------------------------------------------------------- 9a: unwritable folders, a full disk


@pytest.fixture()
def registered(synthetic_task: Task):
    """The synthetic task under its name, so that the CLI can run it."""
    TASKS.register(synthetic_task.name, synthetic_task)
    yield synthetic_task.name
    TASKS._entries.pop(synthetic_task.name, None)


def cli_run(task: str, methods: str, tmp_path: Path, cache: Path, *extra: str) -> int:
    return main(["run", task, methods, "--seeds", "0", "--no-progress", "--results", str(tmp_path / "results"),
                 "--out", str(tmp_path / "lb"), "--cache", str(cache), *extra])


@pytest.mark.parametrize("option", ["--results", "--out", "--cache"])
def test_a_file_given_as_an_output_folder_is_an_error_before_any_work(
        option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.run.driver as driver

    def no_work(*args, **kwargs):
        raise AssertionError("the plan was made before the output folders were checked")

    monkeypatch.setattr(driver, "make_plan", no_work)
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    folder = {"--results": a_file, "--out": a_file, "--cache": a_file / "cache"}[option]
    args = {"--results": tmp_path / "results", "--out": tmp_path / "lb", "--cache": tmp_path / "cache"} | {option: folder}
    rc = main(["run", TASK, "original", "--seeds", "0", "--dry-run", "--no-progress",
               *[str(x) for kv in args.items() for x in kv]])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"bench: error: {option} {folder}" in err and "is a file, not a folder" in err
    assert f"pass a folder for {option}" in err
    assert a_file.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_full_disk_at_write_time_is_a_clear_error_and_changes_nothing_stored(
        registered: str, tmp_path: Path, reference_cache: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.results as results_module

    assert cli_run(registered, "original", tmp_path, reference_cache) == 0
    store = tmp_path / "results"
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}

    def disk_full(table, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(results_module, "write_table_atomic", disk_full)
    capsys.readouterr()
    assert cli_run(registered, "finetune", tmp_path, reference_cache) == 2
    err = capsys.readouterr().err
    assert (f"bench: error: cannot store run {registered} finetune seed 0 in {store}: No space left on device; "
            "nothing stored was changed") in err
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before


def test_a_full_disk_while_the_leaderboard_is_written_is_a_clear_error_and_leaves_whole_pages(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.report.build as build

    results, out = hand_store(tmp_path / "results"), tmp_path / "site"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def disk_full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(build, "atomic_write_text", disk_full)
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"bench: error: cannot write the leaderboard in {out}: No space left on device; the results store is unchanged" in err
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------------------- 8b: overlapping runs on one store


def test_a_run_another_bench_run_stored_meanwhile_is_skipped_and_the_plan_goes_on(
        registered: str, tmp_path: Path, reference_cache: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.run.schedule as schedule

    other, mine = tmp_path / "other", tmp_path / "mine"
    assert cli_run(registered, "original,finetune", other, reference_cache) == 0
    theirs = {p.relative_to(other / "results"): p.read_bytes() for p in (other / "results").rglob("*.parquet")}
    real = schedule.execute_run

    def overlapped(*args, **kwargs):
        """The run is computed here while the other `bench run` stores everything it planned."""
        rows = real(*args, **kwargs)
        for name, data in theirs.items():
            (mine / "results" / name).parent.mkdir(parents=True, exist_ok=True)
            (mine / "results" / name).write_bytes(data)
        return rows

    monkeypatch.setattr(schedule, "execute_run", overlapped)
    capsys.readouterr()
    # --timeout 0: the runs execute in this process, where the patched execute_run is seen
    assert cli_run(registered, "original,finetune", mine, reference_cache, "--timeout", "0") == 0
    out = capsys.readouterr()
    for method in ("original", "finetune"):
        assert f"skipped: {registered} {method} seed 0: another `bench run` stored it meanwhile" in out.out
    assert "error" not in out.err
    assert {p.relative_to(mine / "results"): p.read_bytes() for p in (mine / "results").rglob("*.parquet")} == theirs
    assert (mine / "lb" / "index.md").exists()  # the plan went on to its end: the leaderboard is written


# --------------------------------------------------------------------------- 2: only generated files are replaced


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_bench_report_never_overwrites_or_deletes_a_file_it_did_not_generate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results, out = hand_store(tmp_path / "results"), tmp_path / "site"
    mine = {"index.md": b"# my own index\n", f"{TASK}.md": b"my notes on the task\n",
            "plots/mine.svg": b"<svg/>\n", "plots/figures/fig1.svg": b"<svg/>\n"}
    for name, data in mine.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    assert main(["report", "--results", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (f"bench: error: {out / 'index.md'}, {out / f'{TASK}.md'}: not written by `bench report` (no line "
            "<!-- generated by") in err
    assert f"nothing was written to {out}. Remove them or choose another --out" in err
    assert files_of(out) == mine
    (out / "index.md").unlink()
    (out / f"{TASK}.md").unlink()
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    generated = set(files_of(out)) - {n for n in mine if "/" in n}
    assert {"index.md", f"{TASK}.md", f"plots/{TASK}-tradeoff.svg"} <= generated
    for name in generated:  # each carries the marker: the first line of a page, the second of a plot
        assert GENERATED_HEADER in (out / name).read_text(encoding="utf-8").splitlines()[:2]
    (results / TASK).rename(tmp_path / "moved-away")  # the task leaves the store: its generated files go, not mine
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    assert set(files_of(out)) == {"index.md", "plots/mine.svg", "plots/figures/fig1.svg"}
    assert {n: files_of(out)[n] for n in mine if "/" in n} == {n: d for n, d in mine.items() if "/" in n}


def test_bench_run_refuses_a_file_it_did_not_generate_in_out_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.run.driver as driver

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the leaderboard folder was checked")

    monkeypatch.setattr(driver, "build_graph", no_work)
    out = tmp_path / "site"
    out.mkdir()
    (out / f"{TASK}.md").write_text("my notes on the task\n")
    rc = main(["run", TASK, "original", "--seeds", "0", "--no-progress", "--results", str(tmp_path / "results"),
               "--out", str(out), "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"bench: error: {out / f'{TASK}.md'}: not written by `bench report`" in err
    assert f"Remove it or choose another --out" in err
    assert files_of(out) == {f"{TASK}.md": b"my notes on the task\n"}


# --------------------------------------------------------------------------- the user's own store


def test_a_users_first_bench_run_in_a_checkout_computes_into_runs_and_never_touches_the_published_store(
        registered: str, tmp_path: Path, reference_cache: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a checkout: its published store already holds the run
    plan = ["run", registered, "original", "--seeds", "0", "--no-progress", "--cache", str(reference_cache)]
    assert main([*plan, "--results", "results", "--out", "leaderboard"]) == 0
    published = {name: files_of(tmp_path / name) for name in ("results", "leaderboard")}
    capsys.readouterr()
    assert main(plan) == 0
    out = capsys.readouterr()
    assert "0 already stored, 1 to do" in out.err  # computed, not found among the published runs
    assert f"results:     {tmp_path / 'runs' / 'results'}" in out.out
    assert f"leaderboard: {tmp_path / 'runs' / 'leaderboard' / 'index.md'}" in out.out
    assert len(row_files(tmp_path / "runs" / "results")) == 2  # the run and its oracle
    assert main(["report"]) == 0 and f"index: {tmp_path / 'runs' / 'leaderboard' / 'index.md'}" in capsys.readouterr().out
    assert {name: files_of(tmp_path / name) for name in ("results", "leaderboard")} == published
