"""Seeds by role and per-example values: one forget set for every model seed of a task with a
split seed; φ of every forget and control image stored beside each run's rows, atomically and
readably; the task page's cross-seed attacks read from them (on SYNTHETIC tasks)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.special
import torch

import bench
from bench.crossseed import phi
from bench.examples import CONTROL, EXAMPLE_COLUMNS, FORGET, phi_matrix, read_examples, store_examples
from bench.report import render_report
from bench.report.crossseed import reading
from bench.crossseed import Estimate
from bench.results import CorruptResults, examples_file, read_store, rows_file, stored_runs
from bench.splits import CONTROL_SIZE, build_task_data, control_positions
from bench.tasks import TASKS, Task

SEEDS = list(range(6))


@pytest.fixture(scope="module")
def fixed_task(synthetic_random_task: Task) -> Task:
    return dataclasses.replace(synthetic_random_task, name="synthetic-cnn-random-fixed", split_seed=3)


@pytest.fixture(scope="module")
def stored(fixed_task: Task, reference_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("examples-run")
    bench.run(fixed_task, ["original", "finetune"], seeds=SEEDS, cache=reference_cache, progress=False,
              results=root / "results", leaderboard=None)
    return root / "results"


# --------------------------------------------------------------------------- seeds by role

def test_split_seed_fixes_forget_and_validation_across_model_seeds(fixed_task: Task) -> None:
    a, b = build_task_data(fixed_task, 0), build_task_data(fixed_task, 5)
    assert torch.equal(a.forget_index, b.forget_index) and a.split_hash == b.split_hash and a.val_hash == b.val_hash
    other = build_task_data(dataclasses.replace(fixed_task, split_seed=4), 0)
    assert not torch.equal(other.forget_index, a.forget_index)


def test_without_split_seed_each_model_seed_draws_its_own_split(synthetic_random_task: Task) -> None:
    a, b = build_task_data(synthetic_random_task, 0), build_task_data(synthetic_random_task, 1)
    assert not torch.equal(a.forget_index, b.forget_index)
    assert not synthetic_random_task.fixed_split and "cross-seed attacks do not apply" in synthetic_random_task.describe_seeds()


def test_split_seed_joins_the_identity_only_when_set(synthetic_random_task: Task, fixed_task: Task) -> None:
    assert "split_seed" not in synthetic_random_task.identity()  # run ids of the tasks without one are unchanged
    assert fixed_task.identity()["split_seed"] == 3
    with pytest.raises(ValueError, match="split_seed must be >= 0"):
        dataclasses.replace(fixed_task, split_seed=-1)


def test_published_cpu_tasks_have_seeds_by_role() -> None:
    from bench.tasks import SUITES

    for name in SUITES["quick"] + SUITES["fmnist"]:
        assert TASKS.get(name).fixed_split and TASKS.get(name).version >= 2, name


def test_forget_index_names_the_training_images_of_the_forget_split(fixed_task: Task) -> None:
    td = build_task_data(fixed_task, 1)
    assert torch.equal(td.dataset.train_x[td.forget_index], td.forget.x)
    assert torch.equal(td.dataset.test_x[td.control_index], td.test.x[td.control])


def test_control_sample_is_fixed_and_capped(fixed_task: Task) -> None:
    small = control_positions(fixed_task, 40)
    assert torch.equal(small, torch.arange(40))
    big = control_positions(fixed_task, 5000)
    assert len(big) == CONTROL_SIZE and len(set(big.tolist())) == CONTROL_SIZE
    assert torch.equal(big, control_positions(fixed_task, 5000)) and torch.equal(big, torch.sort(big).values)


# --------------------------------------------------------------------------- storage

def test_every_run_stores_phi_of_its_forget_and_control_images(stored: Path, fixed_task: Task) -> None:
    examples = read_examples(stored, fixed_task.name)
    rows = read_store(stored)
    ok_runs = set(rows.loc[rows["status"] == "ok", "run_id"])
    assert set(examples["run_id"]) == ok_runs  # original, oracle and finetune of every seed
    assert set(examples["method"]) == {"original", "oracle", "finetune"} and list(examples.columns) == EXAMPLE_COLUMNS
    td = build_task_data(fixed_task, 0)
    one = examples[examples["run_id"] == examples["run_id"].iloc[0]]
    assert one.loc[one["split"] == FORGET, "index"].tolist() == td.forget_index.tolist()
    assert one.loc[one["split"] == CONTROL, "index"].tolist() == td.control_index.tolist()
    assert np.isfinite(examples["phi"]).all()


def test_stored_phi_is_the_logit_scaled_confidence_of_the_model(stored: Path, fixed_task: Task, reference_cache: Path) -> None:
    from bench.references import get_references
    from bench.train import predict_logits

    td = build_task_data(fixed_task, 2)
    oracle = get_references(td, device=torch.device("cpu"), cache_dir=reference_cache).oracle.model
    logits = predict_logits(oracle, td.forget, device="cpu").double()
    p = torch.softmax(logits, 1).numpy()
    y = td.forget.y.numpy()
    others = 1.0 - p[np.arange(len(y)), y]
    expected = np.log(p[np.arange(len(y)), y]) - np.log(others)  # the definition, through probabilities
    examples = read_examples(stored, fixed_task.name)
    got = examples[(examples["method"] == "oracle") & (examples["seed"] == 2) & (examples["split"] == FORGET)]["phi"]
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert scipy.special.logsumexp([0.0]) == 0.0  # scipy is the independent reference of bench.crossseed.phi's tests


def test_the_rows_store_ignores_per_example_files(stored: Path) -> None:
    runs = stored_runs(stored)
    assert all(not run_id.endswith(".examples") for run_id in runs) and set(runs.values()) == {"ok"}
    assert read_store(stored)["run_id"].nunique() == len(runs)


def test_per_example_file_without_its_rows_is_not_a_stored_run(stored: Path, fixed_task: Task, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(stored, copy)
    victim = next(copy.rglob("*.examples.parquet"))
    rows_file(victim).unlink()  # an interrupted write: the values landed, the rows did not
    examples = read_examples(copy, fixed_task.name)
    assert victim.name.split("-")[-1].split(".")[0] not in set(examples["run_id"])


def test_corrupt_per_example_file_is_named(stored: Path, fixed_task: Task, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(stored, copy)
    victim = next(copy.rglob("*.examples.parquet"))
    victim.write_bytes(b"not parquet")
    with pytest.raises(CorruptResults, match=victim.name):
        read_examples(copy, fixed_task.name)


def test_write_run_refuses_values_for_a_failed_run(tmp_path: Path) -> None:
    from bench.results import write_run
    from tests.test_results import failed_rows

    table = pa.table({c: [] for c in EXAMPLE_COLUMNS})
    with pytest.raises(ValueError, match="failed run has no per-example values"):
        write_run(failed_rows(), tmp_path, examples=table)
    assert not list(tmp_path.rglob("*"))


def test_a_rerun_without_values_removes_the_stale_file(tmp_path: Path) -> None:
    from bench.results import write_run
    from tests.test_results import ok_rows

    path = write_run(ok_rows(), tmp_path)
    examples_file(path).write_bytes(b"stale")
    write_run(ok_rows(), tmp_path, force=True)
    assert not examples_file(path).exists()


def test_phi_matrix_refuses_runs_on_different_examples() -> None:
    frame = pd.DataFrame({"run_id": ["a", "a", "b", "b"], "split": FORGET, "index": [1, 2, 1, 3], "phi": [0.1, 0.2, 0.3, 0.4]})
    with pytest.raises(ValueError, match="not fixed across seeds"):
        phi_matrix(frame, {0: "a", 1: "b"})
    matrix, index = phi_matrix(frame[frame["run_id"] == "a"], {0: "a"})
    assert matrix.shape == (1, 2) and index.tolist() == [1, 2]
    assert phi(np.array([[0.0, 0.0]]), np.array([0]))[0] == 0.0


# --------------------------------------------------------------------------- the page

def test_task_page_shows_the_attack_with_floor_signal_and_control(stored: Path, fixed_task: Task) -> None:
    TASKS._entries[fixed_task.name] = fixed_task  # the page reads the task's card from the registry
    try:
        page = render_report(read_store(stored), plots=False, examples=store_examples(stored))[f"{fixed_task.name}.md"]
    finally:
        TASKS._entries.pop(fixed_task.name)
    section = page.split("## Per-example attacks across seeds", 1)[1]
    assert "split halves over 6 seeds (3 models per population; variances pooled" in section
    for line in ("**Floor** (oracles vs oracles)", "**Signal** (original vs oracles)", "**Control**"):
        assert line in section
    assert "| `finetune` |" in section and "| `original` |" not in section  # the original is the signal line


def test_bench_signal_prints_the_pages_signal_tables_without_the_methods(
        stored: Path, fixed_task: Task, capsys: pytest.CaptureFixture) -> None:
    from bench.cli import main

    TASKS._entries[fixed_task.name] = fixed_task
    try:
        assert main(["signal", fixed_task.name, "--results", str(stored)]) == 0
        out = capsys.readouterr().out
        page = render_report(read_store(stored), plots=False, examples=store_examples(stored))[f"{fixed_task.name}.md"]
        assert out.startswith(f"# Signal of {fixed_task.name} (v{fixed_task.version}): original vs oracle over seeds 0 1 2 3 4 5")
        signal = out.split("## Signal", 1)[1].split("## Per-example", 1)[0]
        assert signal.strip() in page  # the page's table, word for word
        assert "**Floor** (oracles vs oracles)" in out and "**Signal** (original vs oracles)" in out
        assert "| `finetune` |" not in out and "finetune" not in signal
        # a subset of seeds: the same table over those seeds only
        assert main(["signal", fixed_task.name, "--results", str(stored), "--seeds", "0", "1", "2"]) == 0
        three = capsys.readouterr().out
        assert "over seeds 0 1 2\n" in three and "|       3 |" in three and "needs 6" in three
        # a seed without the references: refused before any work, naming the run to do
        assert main(["signal", fixed_task.name, "--results", str(stored), "--seeds", "0", "7"]) == 2
        err = capsys.readouterr().err
        assert f"bench run {fixed_task.name} original --seeds 7 --results {stored}" in err
        assert main(["signal", fixed_task.name, "--results", str(stored), "--seeds", "4"]) == 2
        assert "the paired test needs two or more" in capsys.readouterr().err
    finally:
        TASKS._entries.pop(fixed_task.name)
    assert main(["signal", "no-such-task", "--results", str(stored)]) == 2
    assert "tasks present" in capsys.readouterr().err


def test_page_without_values_has_no_section(stored: Path) -> None:
    page = render_report(read_store(stored), plots=False)
    assert all("Per-example attacks" not in text for text in page.values())


def test_legacy_task_page_says_why_it_has_no_attack(synthetic_random_task: Task, reference_cache: Path, tmp_path: Path) -> None:
    bench.run(synthetic_random_task, ["original"], seeds=[0, 1], cache=reference_cache, progress=False,
              results=tmp_path / "results", leaderboard=None)
    TASKS._entries[synthetic_random_task.name] = synthetic_random_task
    try:
        page = render_report(read_store(tmp_path / "results"), plots=False,
                             examples=store_examples(tmp_path / "results"))[f"{synthetic_random_task.name}.md"]
    finally:
        TASKS._entries.pop(synthetic_random_task.name)
    assert "each seed of this task draws its own forget set" in page


@pytest.mark.parametrize("floor, original, expected", [
    (Estimate(0.0, -0.01, 0.02), Estimate(-0.1, -0.2, -0.05), "at the floor"),
    (Estimate(0.05, 0.02, 0.08), Estimate(-0.04, -0.06, -0.01), "closer to the oracle than doing nothing"),
    (Estimate(0.08, 0.05, 0.10), Estimate(0.0, -0.02, 0.02), "no better than doing nothing"),
])
def test_reading_of_an_entry(floor: Estimate, original: Estimate, expected: str) -> None:
    assert reading(floor, original).startswith(expected)


# --------------------------------------------------------------------------- the signal gate

def test_signal_gate_follows_the_attack_and_unranks_a_task_it_cannot_test(stored: Path, fixed_task: Task) -> None:
    from bench.report.crossseed import attack_gate
    from bench.report.select import check_rows, select_task_rows

    TASKS._entries[fixed_task.name] = fixed_task
    try:
        rows = read_store(stored)
        page = render_report(rows, plots=False, examples=store_examples(stored))[f"{fixed_task.name}.md"]
        gate = attack_gate(select_task_rows(check_rows(rows), fixed_task.name), store_examples(stored))
        separates = "the task separates original from oracle on this attack" in page
        assert (gate == "") == separates
        if not separates:
            assert "`ulira_accuracy` does not separate the original from the oracle beyond noise" in gate
            assert f"- **Not ranked:** {gate}." in page
        three = rows[rows["seed"] < 3]
        small = attack_gate(select_task_rows(check_rows(three), fixed_task.name), store_examples(stored))
        assert small.startswith("the signal gate needs `ulira_accuracy` to separate the original from the oracle, and it "
                                "is not computed here: 2 seeds have") and "the attack needs 6" in small
        # without per-example values the gate is not applied (and the page has no attack section)
        assert attack_gate(select_task_rows(check_rows(three), fixed_task.name), None) == ""
    finally:
        TASKS._entries.pop(fixed_task.name)


def test_a_task_failing_the_gate_is_not_ranked_whatever_its_ranking_metric_says() -> None:
    from bench.report.paired import Interval
    from bench.report.signal import MetricSignal, TaskSignal

    gap = Interval(0.1, 0.05, 0.15, 8)
    present = MetricSignal("forget_accuracy", 0.99, 0.88, 0.001, 8, gap, Interval(0.0, -0.02, 0.02, 4))
    assert TaskSignal((present,)).unranked_why("avg_gap") == ""
    failing = TaskSignal((present,), attack="`ulira_accuracy` does not separate ...")
    assert failing.unranked_why("avg_gap") == failing.attack == failing.unranked_why("forget_accuracy")
