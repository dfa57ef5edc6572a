"""``bench perf`` (bench/perf/): table structure, Parquet round trip, ratio and goal arithmetic,
equal image counts across pipelines, and the command end to end on the SYNTHETIC task.

No test asserts a timing: the numbers depend on the machine and its load.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from bench.cli import main
from bench.env import CpuSetting, device_label, parse_device_label
from bench.perf import clock, crossseed, pipelines, runs, table
from bench.perf.clock import Timing
from bench.perf.table import GOALS, PERF_COLUMNS, PerfRow
from bench.references import dataset_facts, model_factory
from bench.splits import build_task_data
from bench.tasks import TASKS, Task, get_task

CPU = torch.device("cpu")


def rows_for(task: Task) -> list[PerfRow]:
    return [
        PerfRow(task.name, task.arch, "train_limit", 2000.0, "images/s", 640, "fastest of 2", 1.5, 2500.0),
        PerfRow(task.name, task.arch, "train_ours", 1900.0, "images/s", 640, "fastest of 2", 1.5, 2400.0),
        PerfRow(task.name, task.arch, "ratio_train_ours_limit", 0.95, "ratio", 640, "", 1.5),
        PerfRow(task.name, task.arch, "ratio_eval_ours_limit", 0.5, "ratio", 100, "", 1.5),
        PerfRow(task.name, task.arch, "ratio_train_ours_ref", 1.2, "ratio", 640, "", 1.5),
        PerfRow(task.name, task.arch, "overhead_share", 0.25, "share", 0, "", 1.5),
        PerfRow(task.name, task.arch, "peak_rss", float(3 * 2**20), "bytes", 0, "", 1.5),
    ]


# --------------------------------------------------------------------------- arithmetic


def test_ratio() -> None:
    assert table.ratio(3.0, 2.0) == 1.5
    assert math.isnan(table.ratio(1.0, 0.0))
    assert math.isnan(table.ratio(float("nan"), 2.0))


def test_timing_and_fastest() -> None:
    assert Timing(500, 0.25).images_per_s == 2000.0
    assert math.isnan(Timing(10, 0.0).images_per_s)
    assert Timing(500, 1.0, 0.5).images_per_cpu_s == 1000.0
    best = clock.fastest([Timing(100, 2.0, 0.4), Timing(100, 0.5, 0.6), Timing(100, 1.0, 0.5)])
    assert (best.images, best.seconds, best.cpu_seconds) == (100, 0.5, 0.4)
    with pytest.raises(ValueError, match="different image counts"):
        clock.fastest([Timing(100, 1.0), Timing(99, 1.0)])
    with pytest.raises(ValueError):
        clock.fastest([])


def test_goals_apply_where_the_issue_sets_them() -> None:
    fmnist, digits = get_task("fmnist-lenet-class"), get_task("digits-cnn-class")
    assert GOALS["ratio_train_ours_limit"].met(0.9) and not GOALS["ratio_train_ours_limit"].met(0.89)
    assert GOALS["overhead_share"].met(0.10) and not GOALS["overhead_share"].met(0.11)
    assert not GOALS["ratio_train_ours_ref"].met(float("nan"))
    by_measure = {r.measure: table.with_goal(r, fmnist) for r in rows_for(fmnist)}
    assert (by_measure["ratio_train_ours_limit"]["goal"], by_measure["ratio_train_ours_limit"]["meets_goal"]) == (">= 0.9", True)
    assert (by_measure["ratio_eval_ours_limit"]["goal"], by_measure["ratio_eval_ours_limit"]["meets_goal"]) == (">= 0.9", False)
    assert (by_measure["ratio_train_ours_ref"]["goal"], by_measure["ratio_train_ours_ref"]["meets_goal"]) == (">= 1.5", False)
    assert (by_measure["overhead_share"]["goal"], by_measure["overhead_share"]["meets_goal"]) == ("<= 0.1", False)
    assert by_measure["train_ours"]["goal"] == "" and by_measure["train_ours"]["meets_goal"] is None
    # The reference-pipeline and overhead goals are stated for Fashion-MNIST only.
    on_digits = {r.measure: table.with_goal(r, digits) for r in rows_for(digits)}
    assert on_digits["ratio_train_ours_ref"]["meets_goal"] is None
    assert on_digits["overhead_share"]["meets_goal"] is None
    assert on_digits["ratio_train_ours_limit"]["meets_goal"] is True


def test_batch_sizes_and_training_subset(synthetic_task: Task) -> None:
    assert pipelines.batch_sizes(130, 64) == [64, 64, 2]
    assert pipelines.batch_sizes(128, 64) == [64, 64]
    td = build_task_data(synthetic_task, 0)
    assert pipelines.training_subset(td.train, None, 32, 0) is td.train
    sub = pipelines.training_subset(td.train, 2, 32, 0)
    assert len(sub) == 64
    assert len(pipelines.training_subset(td.train, 10_000, 32, 0)) == len(td.train)
    again = pipelines.training_subset(td.train, 2, 32, 0)
    assert torch.equal(sub.x, again.x) and torch.equal(sub.y, again.y)
    with pytest.raises(ValueError, match="--steps"):
        pipelines.training_subset(td.train, 0, 32, 0)


# --------------------------------------------------------------------------- pipelines


def test_reference_dataset_feeds_the_same_normalized_images(synthetic_task: Task) -> None:
    td = build_task_data(synthetic_task, 0)
    _, mean, std = dataset_facts(td)
    ds = pipelines.ReferenceImages(td.train, pipelines.reference_transform(mean, std))
    assert len(ds) == len(td.train)
    model = model_factory(td)()
    for i in (0, 5, len(ds) - 1):
        x, y = ds[i]
        assert y == int(td.train.y[i])
        ours = model.normalize(td.train.x[i:i + 1].float() / 255.0)[0]
        torch.testing.assert_close(x, ours, atol=1e-5, rtol=1e-5)


def test_reference_and_ours_process_the_same_images(synthetic_task: Task) -> None:
    td = build_task_data(synthetic_task, 0)
    _, mean, std = dataset_facts(td)
    init, recipe = model_factory(td), synthetic_task.recipe
    sub = pipelines.training_subset(td.train, 3, recipe.batch_size, 0)
    sub = sub.subset(torch.arange(len(sub) - 5))  # a partial last batch
    runs = pipelines.training_runs(init, sub, recipe, mean=mean, std=std, worker_counts=[0, 1], seed=0, device=CPU)
    assert list(runs) == ["train_limit_nchw", "train_limit_channels_last", "train_ours", "train_reference_w0",
                          "train_reference_w1"]
    children_before = clock.cpu_seconds()
    timings = {name: fn() for name, fn in runs.items()}
    assert {name: t.images for name, t in timings.items()} == dict.fromkeys(runs, len(sub))
    assert all(t.seconds > 0 and t.cpu_seconds > 0 for t in timings.values())
    assert clock.cpu_seconds() > children_before
    n = pipelines.eval_images(td)
    evals = {name: fn() for name, fn in pipelines.eval_runs(init, td, n, CPU, ours=True).items()}
    assert list(evals) == [f"eval_limit_b{b}" for b in pipelines.EVAL_LIMIT_BATCHES] + ["eval_ours"]
    assert {t.images for t in evals.values()} == {n}


def test_reference_pipeline_counts_its_workers_cpu_time(synthetic_task: Task) -> None:
    import resource

    td = build_task_data(synthetic_task, 0)
    _, mean, std = dataset_facts(td)

    def children() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    before = children()
    pipelines.reference_train(model_factory(td)(), td.train, synthetic_task.recipe, mean=mean, std=std, workers=1, seed=0,
                         device=CPU)
    assert children() > before  # the worker was joined and its CPU time reaped before the clock stopped


def test_best_variant_takes_the_faster_and_the_least_cpu() -> None:
    best = {"train_limit_nchw": Timing(100, 2.0, 1.5), "train_limit_channels_last": Timing(100, 1.0, 1.8),
            "train_ours": Timing(100, 0.5, 0.5)}
    name, t = pipelines.best_variant(best, "train_limit_")
    assert name == "train_limit_channels_last"
    assert (t.images, t.seconds, t.cpu_seconds) == (100, 1.0, 1.5)


def test_limit_train_channels_last_keeps_the_model_equivalent(synthetic_task: Task) -> None:
    td = build_task_data(synthetic_task, 0)
    init, recipe = model_factory(td), synthetic_task.recipe
    x, y = td.train.x[:32].float() / 255, td.train.y[:32]
    a, b = init(), init()
    pipelines.limit_train(a, recipe, x, y, [32], CPU)
    pipelines.limit_train(b, recipe, x, y, [32], CPU, channels_last=True)
    assert b.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    for pa_, pb_ in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa_, pb_, atol=1e-5, rtol=1e-4)


def test_reference_pipeline_trains_the_model(synthetic_task: Task) -> None:
    td = build_task_data(synthetic_task, 0)
    _, mean, std = dataset_facts(td)
    model = model_factory(td)()
    before = [p.detach().clone() for p in model.parameters()]
    pipelines.reference_train(model, td.train, synthetic_task.recipe, mean=mean, std=std, workers=0, seed=0, device=CPU)
    assert isinstance(model.normalize, torch.nn.Identity)  # normalization moved into the transform
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# --------------------------------------------------------------------------- the table


def test_table_structure_and_parquet_round_trip(tmp_path: Path) -> None:
    fmnist = get_task("fmnist-lenet-class")
    df = table.perf_table(rows_for(fmnist), {fmnist.name: fmnist}, device=CPU, threads=2, workers=2, repeats=2,
                         timestamp="2026-01-02T03:04:05+00:00")
    assert list(df.columns) == PERF_COLUMNS
    assert len(df) == len(rows_for(fmnist))
    assert set(df["device"]) == {device_label(CPU)} and set(df["torch_version"]) == {torch.__version__}
    assert set(df["threads"]) == {2} and set(df["workers"]) == {2}
    path = table.output_path(tmp_path / "perf", tmp_path / "results", "2026-01-02T03:04:05+00:00")
    assert path == tmp_path / "perf" / "perf-20260102T030405Z.parquet"
    assert table.write_table(df, path) == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    back = table.read_table(path)
    pd.testing.assert_frame_equal(back, df)
    assert pq.read_schema(path).remove_metadata().equals(table.PERF_SCHEMA)
    text = table.format_table(df)
    assert "ratio_train_ours_ref" in text and "NO" in text and "3 MiB" in text and "25.0%" in text
    assert "2,400 img/CPU-s" in text


def test_output_path_rules(tmp_path: Path) -> None:
    stamp = "2026-01-02T03:04:05+00:00"
    assert table.output_path(tmp_path / "x.parquet", "results", stamp) == tmp_path / "x.parquet"
    assert table.output_path(None, tmp_path / "store" / "results", stamp) == tmp_path / "store" / "perf" / "perf-20260102T030405Z.parquet"


def test_read_table_rejects_other_parquet(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1]}), path)
    with pytest.raises(ValueError, match="not a bench perf table"):
        table.read_table(path)


def test_task_json_round_trip(synthetic_task: Task) -> None:
    import json

    for name in ("digits-cnn-multiclass", "fmnist-lenet-random10"):
        task = get_task(name)
        assert runs.task_from_json(json.loads(json.dumps(runs.task_to_json(task)))) == task
    assert runs.task_from_json(json.loads(json.dumps(runs.task_to_json(synthetic_task)))) == synthetic_task


# --------------------------------------------------------------------------- end to end


def test_child_imports_the_installed_bench_not_the_current_directory(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text('raise ImportError("the bench/ of the current directory")\n')
    monkeypatch.chdir(tmp_path)
    # An unknown kind: the installed child answers with its usage line and exit status 2.
    with pytest.raises(RuntimeError, match="exit 2") as err:
        runs.run_child("no-such-kind", {})
    assert "usage: python -m bench.perf" in str(err.value)
    assert "current directory" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cli_perf_cuda_without_gpu_fails_loudly(capsys: pytest.CaptureFixture) -> None:
    assert main(["perf", "--task", "digits-cnn-class", "--device", "cuda", "--rerun", "none"]) == 2
    assert "--device cpu" in capsys.readouterr().err


def test_cli_perf_end_to_end(synthetic_task: Task, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    TASKS.register(synthetic_task.name, synthetic_task)
    try:
        rc = main([
            "perf", "--task", synthetic_task.name, "--steps", "3", "--repeats", "2", "--threads", "1", "--workers", "1",
            "--method", "finetune", "--rerun", synthetic_task.name, "--rerun-methods", "original", "--rerun-seeds", "0",
            "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "perf"),
            "--crossseed", "none",  # its own test below
        ])
    finally:
        TASKS._entries.pop(synthetic_task.name, None)
    out = capsys.readouterr().out
    assert rc == 0
    (path,) = (tmp_path / "perf").glob("perf-*.parquet")
    assert f"perf table: {path.resolve()}" in out
    assert not (tmp_path / "results").exists()  # --results is only read (copied) for the re-run
    df = table.read_table(path)
    value = dict(zip(df["measure"], df["value"]))
    images = dict(zip(df["measure"], df["images"]))
    assert list(df["measure"]) == [
        "train_limit_nchw", "train_limit_channels_last", "train_ours", "train_reference_w0", "train_reference_w1",
        "eval_limit_b1024", "eval_limit_b256", "eval_ours", "train_limit", "eval_limit",
        "ratio_train_ours_limit", "ratio_eval_ours_limit", "ratio_train_ours_ref",
        "group_setup", "run_wall", "run_method", "run_eval_compute", "run_eval_metrics",
        "outside_method_share", "overhead_share", "peak_rss",
        "cached_rerun",
    ]
    cpu = dict(zip(df["measure"], df["cpu_value"]))
    # One synthetic task, 3 steps of the recipe's batch size: every training pipeline saw the same images.
    n_train = min(3 * synthetic_task.recipe.batch_size, len(build_task_data(synthetic_task, 0).train))
    train = [m for m in value if m.startswith("train_")]
    assert {images[m] for m in train} == {n_train}
    n_eval = pipelines.eval_images(build_task_data(synthetic_task, 0))
    assert {images[m] for m in value if m.startswith("eval_")} == {n_eval}
    assert value["train_limit"] == max(value["train_limit_nchw"], value["train_limit_channels_last"])
    assert cpu["train_limit"] == max(cpu["train_limit_nchw"], cpu["train_limit_channels_last"])
    assert value["eval_limit"] == max(value["eval_limit_b1024"], value["eval_limit_b256"])
    assert value["ratio_train_ours_limit"] == pytest.approx(value["train_ours"] / value["train_limit"])
    assert cpu["ratio_train_ours_limit"] == pytest.approx(cpu["train_ours"] / cpu["train_limit"])
    assert value["ratio_eval_ours_limit"] == pytest.approx(value["eval_ours"] / value["eval_limit"])
    faster_ref = max(value["train_reference_w0"], value["train_reference_w1"])
    assert value["ratio_train_ours_ref"] == pytest.approx(value["train_ours"] / faster_ref)
    assert all(cpu[m] > 0 for m in value if df.loc[df["measure"] == m, "unit"].item() == "images/s")
    assert all(math.isnan(cpu[m]) for m in ("run_wall", "overhead_share", "peak_rss", "cached_rerun"))
    assert df.loc[df["measure"] == "outside_method_share", "goal"].item() == ""
    assert value["outside_method_share"] == pytest.approx((value["run_wall"] - value["run_method"]) / value["run_wall"])
    assert value["overhead_share"] == pytest.approx(
        (value["run_wall"] - value["run_method"] - value["run_eval_compute"]) / value["run_wall"])
    assert 0 < value["run_method"] < value["run_wall"] and value["run_eval_compute"] > 0
    # The run's own forward passes and metrics, inside its wall time.
    assert 0 < value["run_eval_metrics"] < value["run_wall"] - value["run_method"] - value["run_eval_compute"]
    assert value["peak_rss"] > 0 and value["cached_rerun"] > 0
    assert images["cached_rerun"] == 2  # original + the oracle row of one seed
    assert (df["unit"] == "images/s").sum() == 10
    (label,) = set(df["device"])
    assert parse_device_label(label) == CpuSetting(1, torch.backends.cpu.get_cpu_capability())  # as result rows say it
    assert set(df["threads"]) == {1} and set(df["workers"]) == {1}
    assert set(df["torch_version"]) == {torch.__version__} and set(df["repeats"]) == {2}
    assert df["load_avg_1m"].notna().all()
    assert df.loc[df["measure"] == "ratio_train_ours_limit", "goal"].item() == ">= 0.9"
    assert df.loc[df["measure"] == "overhead_share", "meets_goal"].isna().all()  # the goal is for Fashion-MNIST
    assert (df["task"] == synthetic_task.name).all()


# --------------------------------------------------------------------------- cross-seed metrics

TINY = crossseed.CrossSeedSize(200, 6)  # 6: halves of 3, the fewest ulira fits leave-one-out


def test_crossseed_sizes_and_synthetic_populations() -> None:
    assert crossseed.parse_size("6000x16") == crossseed.CrossSeedSize() == crossseed.CrossSeedSize(6000, 16)
    assert TINY.label == "synthetic-phi-200x6"
    assert TINY.seeds_for("ulira_accuracy") == 6
    assert {TINY.seeds_for(m) for m in crossseed.NONPARAMETRIC} == {2 * crossseed.MIN_NONPARAMETRIC_MODELS}
    for bad in ("6000", "ax16", "6000x16x2"):
        with pytest.raises(ValueError, match="EXAMPLESxSEEDS"):
            crossseed.parse_size(bad)
    with pytest.raises(ValueError, match="at least 3 models"):  # halves of 2: ulira's own refusal, before any timing
        crossseed.CrossSeedSize(200, 4)
    with pytest.raises(ValueError, match="even number"):
        crossseed.CrossSeedSize(200, 7)
    pops = crossseed.synthetic_populations(200, 6, seed=1)
    assert list(pops) == ["oracle", "unlearned", "original"]
    assert all(v.shape == (6, 200) for v in pops.values())
    again = crossseed.synthetic_populations(200, 6, seed=1)
    assert all(np.array_equal(pops[k], again[k]) for k in pops)
    assert not np.array_equal(pops["oracle"], crossseed.synthetic_populations(200, 6, seed=2)["oracle"])


def test_crossseed_rows_and_goal() -> None:
    seen: list[str] = []
    rows = crossseed.measure_crossseed(TINY, repeats=2, progress=seen.append)
    metrics = list(crossseed.CROSS_SEED_METRICS.names())
    totals = [crossseed.TOTAL_MEASURE, crossseed.WITH_NONPARAMETRIC_MEASURE]
    assert [r.measure for r in rows] == [f"crossseed_{m}" for m in metrics] + totals
    assert len(seen) == 2 * len(metrics)  # every metric timed once per repetition
    assert {(r.task, r.unit, r.images) for r in rows} == {(TINY.label, "s", TINY.examples)}
    assert all(r.value > 0 and r.cpu_value > 0 for r in rows)
    by = {r.measure: r for r in rows}
    # the goal: the metrics computed at the measured seeds; the other total: every metric row
    at_size = [r.value for r in rows[:-2] if r.measure.removeprefix("crossseed_") not in crossseed.NONPARAMETRIC]
    assert by[crossseed.TOTAL_MEASURE].value == pytest.approx(sum(at_size))
    assert "(ulira_accuracy)" in by[crossseed.TOTAL_MEASURE].note
    assert by[crossseed.WITH_NONPARAMETRIC_MEASURE].value == pytest.approx(sum(r.value for r in rows[:-2]))
    for m in crossseed.NONPARAMETRIC:  # timed at the smallest N their definitions accept, and say so
        assert "64 seeds" in by[f"crossseed_{m}"].note and "smallest valid N" in by[f"crossseed_{m}"].note
    assert "6 seeds" in by["crossseed_ulira_accuracy"].note
    df = table.perf_table(rows, {}, device=CPU, threads=2, workers=2, repeats=2, timestamp="2026-01-02T03:04:05+00:00")
    goals = dict(zip(df["measure"], df["goal"]))
    assert goals.pop(crossseed.TOTAL_MEASURE) == f"<= {crossseed.GOAL_SECONDS:g}" and set(goals.values()) == {""}
    met = df.loc[df["measure"] == crossseed.TOTAL_MEASURE, "meets_goal"].item()
    assert met == (by[crossseed.TOTAL_MEASURE].value <= crossseed.GOAL_SECONDS)
    assert "synthetic-phi-200x6" in table.format_table(df)


def test_cli_perf_crossseed_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["perf", "--task", "none", "--rerun", "none", "--crossseed", "200x6", "--repeats", "1",
               "--out", str(tmp_path / "perf.parquet")])
    assert rc == 0
    df = table.read_table(tmp_path / "perf.parquet")
    assert set(df["task"]) == {"synthetic-phi-200x6"}
    assert list(df["measure"]) == [f"crossseed_{m}" for m in crossseed.CROSS_SEED_METRICS.names()] + [
        "crossseed_all", "crossseed_all_with_nonparametric"]
    assert "crossseed_all" in capsys.readouterr().out
    assert main(["perf", "--task", "none", "--rerun", "none", "--crossseed", "200by6"]) == 2
    assert "EXAMPLESxSEEDS" in capsys.readouterr().err
