"""The leaderboard reporter, on result rows built by hand (no training, no files but tmp_path).

Tests of the page text render without plots (:func:`render`, faster); the plot tests render them."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scipy import stats

from bench.report import cells, plots
from bench.report.stats import paired_t_test
from bench.claims import CLAIMS, Claim, validate_claims
from bench.report import GENERATED_HEADER, aggregate, generated_files, render_report, write_report

CLASS_TASK = "digits-cnn-class"
RANDOM_TASK = "digits-cnn-random10"
SEEDS = (0, 1, 2)
ACC = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")

# Per-seed values, method → metric → [seed 0, seed 1, seed 2].
# finetune mirrors the oracle around its mean: the difference of the means is 0, yet every seed but
# the middle one is 0.2 away, so per-seed gaps rank it *behind* neggrad (a constant 0.01–0.03 off).
CLASS_VALUES: dict[str, dict[str, list[float]]] = {
    "oracle": {
        "forget_accuracy": [0.10, 0.20, 0.30], "retain_accuracy": [0.95, 0.96, 0.97],
        "test_accuracy": [0.90, 0.91, 0.92], "mia_efficacy": [0.50, 0.60, 0.70],
        "runtime_seconds": [10.0, 11.0, 12.0], "speedup": [1.0, 1.0, 1.0],
    },
    "original": {
        "forget_accuracy": [1.0, 1.0, 1.0], "retain_accuracy": [1.0, 1.0, 1.0],
        "test_accuracy": [0.93, 0.93, 0.93], "mia_efficacy": [0.0, 0.0, 0.0],
    },
    "finetune": {
        "forget_accuracy": [0.30, 0.20, 0.10], "retain_accuracy": [0.97, 0.96, 0.95],
        "test_accuracy": [0.92, 0.91, 0.90], "mia_efficacy": [0.70, 0.60, 0.50],
        "runtime_seconds": [1.0, 1.5, 2.0], "speedup": [10.0, 11.0 / 1.5, 6.0],
    },
    "neggrad": {  # seed 2 failed
        "forget_accuracy": [0.13, 0.23], "retain_accuracy": [0.94, 0.95],
        "test_accuracy": [0.89, 0.90], "mia_efficacy": [0.53, 0.63],
        "runtime_seconds": [0.5, 0.25], "speedup": [20.0, 44.0],
    },
}
RANDOM_VALUES: dict[str, dict[str, list[float]]] = {
    "oracle": {"forget_accuracy": [0.90, 0.92, 0.94], "retain_accuracy": [1.0, 1.0, 1.0],
               "test_accuracy": [0.90, 0.91, 0.92], "mia_efficacy": [0.20, 0.25, 0.30]},
    "original": {"forget_accuracy": [1.0, 1.0, 1.0], "retain_accuracy": [1.0, 1.0, 1.0],
                 "test_accuracy": [0.91, 0.92, 0.93], "mia_efficacy": [0.05, 0.06, 0.07]},
    "finetune": {"forget_accuracy": [0.91, 0.92, 0.93], "retain_accuracy": [0.99, 0.99, 0.99],
                 "test_accuracy": [0.90, 0.90, 0.90], "mia_efficacy": [0.21, 0.25, 0.29]},
    "neggrad": {"forget_accuracy": [0.70, 0.80, 0.85], "retain_accuracy": [0.96, 0.97, 0.98],
                "test_accuracy": [0.88, 0.89, 0.90], "mia_efficacy": [0.40, 0.41, 0.42]},
}
DATA_USED = {"oracle": "", "original": "", "finetune": "retain", "neggrad": "forget"}
ERROR = "RuntimeError: loss became NaN at step 12\nTraceback (most recent call last):\n  File x.py"


def row(task: str, method: str, seed: int, metric: str, value: float, **over) -> dict:
    base = {
        "run_id": f"{task}-{method}-{seed}-{over.get('method_version', 1)}-{over.get('hyperparameters', '{}')}",
        "task": task, "task_version": 1, "method": method, "method_version": 1,
        "hyperparameters": '{"lr": 0.01}' if method not in ("oracle", "original") else "{}",
        "data_used": DATA_USED.get(method, "forget,retain"), "surrogate": "", "seed": seed,
        "metric": metric, "value": value, "n": 100, "split_hash": f"split{seed}", "model_hash": "m",
        "reference_key": f"ref{seed}", "package_version": "0.1.0", "torch_version": "2.4.0",
        "git_commit": "abc123", "device": "cpu", "timestamp": f"2025-01-0{seed + 1}T12:00:00Z",
        "status": "ok", "error": "",
    }
    base.update(over)
    return base


def rows_of(task: str, values: dict[str, dict[str, list[float]]]) -> list[dict]:
    out = []
    for method, metrics in values.items():
        for metric, per_seed in metrics.items():
            out += [row(task, method, seed, metric, v) for seed, v in zip(SEEDS, per_seed)]
    return out


def failed_row(task: str, method: str, seed: int) -> dict:
    return row(task, method, seed, "", math.nan, status="failed", error=ERROR, n=0,
               timestamp="2025-03-04T08:00:00+00:00")


def store(extra: list[dict] | None = None) -> pd.DataFrame:
    rows = rows_of(CLASS_TASK, CLASS_VALUES) + rows_of(RANDOM_TASK, RANDOM_VALUES)
    rows.append(failed_row(CLASS_TASK, "neggrad", 2))
    return pd.DataFrame(rows + (extra or []))


def table_rows(page: str, heading: str) -> list[list[str]]:
    """The body rows (cells stripped) of the first table under ``## heading``."""
    lines = page.splitlines()
    start = lines.index(f"## {heading}")
    body = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            body.append([c.strip() for c in line.strip("|").split(" | ")])
    header, _, *data = body
    return [header] + data


def column(table: list[list[str]], name: str) -> list[str]:
    i = next(i for i, h in enumerate(table[0]) if h.split(" ")[0] == name)
    return [r[i] for r in table[1:]]


def hand_avg_gap(values: dict[str, dict[str, list[float]]], method: str) -> float:
    """SalUn's Avg. Gap by hand: per seed mean |v − oracle of that seed| over the four metrics."""
    per_seed = []
    for s in range(len(values[method]["forget_accuracy"])):
        per_seed.append(sum(abs(values[method][m][s] - values["oracle"][m][s]) for m in ACC) / 4)
    return sum(per_seed) / len(per_seed)


def render(df: pd.DataFrame, **kw) -> dict[str, str]:
    """The pages without plots (the page-text tests do not need them)."""
    return render_report(df, plots=False, **kw)


def test_every_page_says_it_is_generated():
    pages = render(store())
    assert set(pages) == {"index.md", f"{CLASS_TASK}.md", f"{RANDOM_TASK}.md"}
    with_plots = render_report(store())
    assert set(with_plots) == set(pages) | {f"plots/{CLASS_TASK}-tradeoff.svg", f"plots/{CLASS_TASK}-runtime.svg",
                                            f"plots/{RANDOM_TASK}-tradeoff.svg"}  # RANDOM_VALUES have no runtimes
    for text in pages.values():
        assert text.splitlines()[0] == GENERATED_HEADER
        assert text.endswith("\n") and not text.endswith("\n\n")


def test_reference_rows_are_pinned_first_and_labelled():
    page = render(store())[f"{CLASS_TASK}.md"]
    for heading in ("Summary", "All metrics", "Hyperparameters"):
        methods = column(table_rows(page, heading), "method")
        assert methods[:2] == ["original (reference)", "oracle (reference)"], heading
        assert set(methods[2:]) == {"finetune", "neggrad"}
    assert column(table_rows(page, "Summary"), "#")[:2] == ["ref", "ref"]


def test_ranking_by_per_seed_avg_gap_not_by_difference_of_means():
    expected = {m: hand_avg_gap(CLASS_VALUES, m) for m in ("finetune", "neggrad")}
    assert expected["neggrad"] < expected["finetune"]
    # the fixture is built so that gaps of the means would rank the other way round
    naive = {m: sum(abs(np.mean(CLASS_VALUES[m][k]) - np.mean(CLASS_VALUES["oracle"][k][: len(CLASS_VALUES[m][k])]))
                    for k in ACC) / 4 for m in expected}
    assert naive["finetune"] < naive["neggrad"]

    agg = aggregate(store(), CLASS_TASK)
    assert list(agg.index) == ["original", "oracle", "neggrad", "finetune"]
    assert agg.loc["neggrad", "rank"] == 1 and agg.loc["finetune", "rank"] == 2
    for m, value in expected.items():
        assert agg.loc[m, "avg_gap_mean"] == pytest.approx(value)
    assert agg.loc["oracle", "avg_gap_mean"] == 0.0

    summary = table_rows(render(store())[f"{CLASS_TASK}.md"], "Summary")
    assert column(summary, "method")[2:] == ["neggrad", "finetune"]
    assert column(summary, "#")[2:] == ["1", "2"]
    assert column(summary, "avg_gap")[3] == f"{expected['finetune']:.3f} ± {np.std([0.11, 0.0, 0.11], ddof=1):.3f}"


def test_tow_per_seed_by_hand():
    agg = aggregate(store(), CLASS_TASK)
    per_seed = [math.prod(1 - abs(CLASS_VALUES["finetune"][m][s] - CLASS_VALUES["oracle"][m][s]) for m in ACC[:3])
                for s in SEEDS]
    assert agg.loc["finetune", "tow_mean"] == pytest.approx(np.mean(per_seed))
    assert agg.loc["finetune", "tow_std"] == pytest.approx(np.std(per_seed, ddof=1))


def test_gap_is_taken_against_the_oracle_of_the_same_seed():
    agg = aggregate(store(), CLASS_TASK)
    fa = CLASS_VALUES["finetune"]["forget_accuracy"]
    assert np.mean(fa) == pytest.approx(np.mean(CLASS_VALUES["oracle"]["forget_accuracy"]))  # means agree
    assert agg.loc["finetune", "forget_accuracy_gap"] == pytest.approx((0.2 + 0.0 + 0.2) / 3)
    assert agg.loc["finetune", "forget_accuracy_mean"] == pytest.approx(0.2)
    # neggrad has seeds 0 and 1 only: compared with the oracle's seeds 0 and 1, not the oracle's mean
    assert agg.loc["neggrad", "forget_accuracy_gap"] == pytest.approx(0.03)
    assert agg.loc["neggrad", "seeds"] == 2

    metrics = table_rows(render(store())[f"{CLASS_TASK}.md"], "All metrics")
    header = metrics[0]
    finetune = next(r for r in metrics[1:] if r[0] == "finetune")
    # ± the 95% CI half-width of the mean gap over seeds (scipy's Student-t interval, by hand)
    gaps = [0.2, 0.0, 0.2]
    low, high = stats.t.interval(0.95, len(gaps) - 1, loc=np.mean(gaps), scale=stats.sem(gaps))
    assert finetune[header.index("Δ forget_accuracy ↓")] == f"Δ 0.133 ± {(high - low) / 2:.3f}"
    assert finetune[header.index("forget_accuracy")] == "0.200 ± 0.100"
    # goal "min"/"max" metrics have no gap column
    assert not any(h.startswith("Δ runtime_seconds") or h.startswith("Δ speedup") for h in header)


def test_number_formats():
    summary = table_rows(render(store())[f"{CLASS_TASK}.md"], "Summary")
    finetune = summary[[r[1] for r in summary].index("finetune")]
    assert finetune[summary[0].index("runtime_seconds ↓")] == "1.50 ± 0.50"
    assert finetune[summary[0].index("speedup ↑")] == f"{np.mean([10.0, 11 / 1.5, 6.0]):.1f}× ± {np.std([10.0, 11 / 1.5, 6.0], ddof=1):.1f}"
    assert finetune[summary[0].index("retain_accuracy")] == "0.960 ± 0.010"
    assert finetune[summary[0].index("data used")] == "retain"
    assert cells.fixed(-1e-9, 3) == "0.000" and cells.fixed(math.inf, 1) == "∞"
    assert cells.mean_std("test_accuracy", 0.5, math.nan) == "0.500"  # one seed: no ± part


def test_failed_run_is_listed_with_the_first_line_of_its_error():
    page = render(store())[f"{CLASS_TASK}.md"]
    failed = table_rows(page, "Failed runs")
    assert failed[1:] == [["neggrad", "1", "2", "`RuntimeError: loss became NaN at step 12`"]]
    assert "Traceback" not in page
    assert "## Failed runs\n\nNone." in render(store())[f"{RANDOM_TASK}.md"]


def test_failed_run_retried_successfully_is_not_listed():
    retry = [row(CLASS_TASK, "neggrad", 2, m, v, timestamp="2025-03-05T00:00:00Z")
             for m, v in (("forget_accuracy", 0.33), ("retain_accuracy", 0.96))]
    page = render(store(retry))[f"{CLASS_TASK}.md"]
    assert "## Failed runs\n\nNone." in page


def test_output_is_deterministic_and_independent_of_row_order():
    df = store()
    first = render(df)
    assert render(df) == first
    shuffled = df.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert not shuffled["run_id"].equals(df["run_id"])
    assert render(shuffled) == first
    assert render(shuffled[list(reversed(df.columns))]) == first


def test_write_report_writes_index_pages_and_plots(tmp_path):
    out = tmp_path / "leaderboard"
    out.mkdir()
    (out / "plot.png").write_bytes(b"not ours")
    paths = write_report(store(), out)
    pages = render_report(store())
    assert paths == [out / name for name in pages]
    assert paths[:3] == [out / "index.md", out / f"{CLASS_TASK}.md", out / f"{RANDOM_TASK}.md"]
    for path in paths:
        assert path.read_bytes() == pages[path.relative_to(out).as_posix()].encode("utf-8")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted([*pages, "plot.png"])
    assert (out / "plot.png").read_bytes() == b"not ours"
    write_report(store(), out)  # overwriting is fine
    assert (out / "index.md").read_text(encoding="utf-8") == pages["index.md"]


def test_write_report_removes_generated_files_it_no_longer_produces(tmp_path):
    out = tmp_path / "leaderboard"
    write_report(store(), out)
    assert (out / f"{RANDOM_TASK}.md").exists() and (out / "plots" / f"{RANDOM_TASK}-tradeoff.svg").exists()
    (out / "notes.md").write_text("# my notes, not generated\n", encoding="utf-8")
    write_report(store()[lambda d: d["task"] == CLASS_TASK], out)
    assert not (out / f"{RANDOM_TASK}.md").exists() and not (out / "plots" / f"{RANDOM_TASK}-tradeoff.svg").exists()
    assert (out / "notes.md").exists() and (out / f"{CLASS_TASK}.md").exists()
    assert generated_files(out) == sorted(["index.md", f"{CLASS_TASK}.md", f"plots/{CLASS_TASK}-runtime.svg",
                                                  f"plots/{CLASS_TASK}-tradeoff.svg"])


def test_index_lists_tasks_with_best_method_counts_and_latest_date():
    index = render(store())["index.md"]
    header, _, *rows = [[c.strip() for c in ln.strip("|").split(" | ")] for ln in index.splitlines() if ln.startswith("|")]
    assert [r[0] for r in rows] == [f"[{CLASS_TASK}]({CLASS_TASK}.md)", f"[{RANDOM_TASK}]({RANDOM_TASK}.md)"]
    cls = dict(zip(header, rows[0]))
    assert cls["best of them"] == f"neggrad ({hand_avg_gap(CLASS_VALUES, 'neggrad'):.3f})"
    assert cls["beat doing nothing"] == "2 of 2"
    assert cls["methods"] == "2" and cls["seeds"] == "3"
    assert cls["date"] == "2025-03-04"  # the failed run is the latest row of that task
    assert cls["ranking metric"] == "avg_gap ↓"
    assert "task v1" in cls["versions"] and "torch 2.4.0" in cls["versions"]
    assert cls["devices"] == "cpu"
    rnd = dict(zip(header, rows[1]))
    best = min(("finetune", "neggrad"), key=lambda m: hand_avg_gap(RANDOM_VALUES, m))
    assert rnd["best of them"].startswith(best + " (") and rnd["date"] == "2025-01-03"


def test_task_header_comes_from_the_registry():
    from bench.tasks import TASKS

    page = render(store())[f"{CLASS_TASK}.md"]
    task = TASKS.get(CLASS_TASK)
    assert task.description in page
    assert f"- **Forget:** {task.forget.describe()}" in page
    assert f"`{task.arch}`" in page and "- **Task version:** 1" in page
    assert "- **Devices:** cpu" in page


def test_unknown_task_falls_back_to_avg_gap():
    extra = rows_of("my-private-task", RANDOM_VALUES)
    pages = render(store(extra))
    page = pages["my-private-task.md"]
    assert page.splitlines()[0] == GENERATED_HEADER
    assert "Not a registered task" in page and "- **Ranking metric:** `avg_gap`" in page
    agg = aggregate(store(extra), "my-private-task")
    assert list(agg.index[2:]) == sorted(("finetune", "neggrad"), key=lambda m: hand_avg_gap(RANDOM_VALUES, m))
    assert "[my-private-task](my-private-task.md)" in pages["index.md"]


def test_unregistered_metric_is_shown_without_a_gap():
    extra = [row(CLASS_TASK, m, s, "my_score", 2.0 + s) for m in ("oracle", "finetune") for s in SEEDS]
    page = render(store(extra))[f"{CLASS_TASK}.md"]
    metrics = table_rows(page, "All metrics")
    assert "my_score" in metrics[0] and "Δ my_score ↓" not in metrics[0]
    assert column(metrics, "my_score")[column(metrics, "method").index("finetune")] == "3.000 ± 1.000"
    assert column(metrics, "my_score")[column(metrics, "method").index("neggrad")] == "n/a"


def test_seed_without_oracle_gives_na_and_a_note():
    df = store()
    df = df[~((df["task"] == CLASS_TASK) & (df["method"] == "oracle") & (df["seed"] == 2))]
    agg = aggregate(df, CLASS_TASK)
    # finetune's gap averages over seeds 0 and 1 only
    assert agg.loc["finetune", "forget_accuracy_gap"] == pytest.approx(0.1)
    assert agg.loc["finetune", "avg_gap_seeds"] == 2
    page = render(df)[f"{CLASS_TASK}.md"]
    assert "Seeds without an oracle run: 2." in page

    no_oracle = df[~((df["task"] == CLASS_TASK) & (df["method"] == "oracle"))]
    page = render(no_oracle)[f"{CLASS_TASK}.md"]
    summary = table_rows(page, "Summary")
    assert set(column(summary, "avg_gap")) == {"n/a"} and set(column(summary, "#")[1:]) == {"–"}
    assert "No oracle run" in page


def test_only_the_latest_versions_are_reported():
    old_method = [row(CLASS_TASK, "finetune", s, "forget_accuracy", 0.9, method_version=0) for s in SEEDS]
    old_task = [row(CLASS_TASK, "finetune", s, "forget_accuracy", 0.8, task_version=0) for s in SEEDS]
    df = store(old_method + old_task)
    agg = aggregate(df, CLASS_TASK)
    assert agg.loc["finetune", "forget_accuracy_mean"] == pytest.approx(0.2)
    assert agg.loc["finetune", "method_version"] == 1
    page = render(df)[f"{CLASS_TASK}.md"]
    assert "3 rows of older task versions (0) were left out." in page
    assert "3 rows of older versions of `finetune` (0) were left out." in page
    assert render(store()) != render(df)


def test_a_later_rerun_of_the_same_seed_supersedes_the_earlier_one():
    rerun = [row(CLASS_TASK, "finetune", 0, m, v, run_id="rerun", timestamp="2025-02-01T00:00:00Z")
             for m, v in (("forget_accuracy", 0.10), ("retain_accuracy", 0.95),
                          ("test_accuracy", 0.90), ("mia_efficacy", 0.50))]
    agg = aggregate(store(rerun), CLASS_TASK)
    assert agg.loc["finetune", "seeds"] == 3
    assert agg.loc["finetune", "forget_accuracy_gap"] == pytest.approx(0.2 / 3)
    assert "rows of runs superseded" in render(store(rerun))[f"{CLASS_TASK}.md"]


def test_several_hyperparameter_sets_are_separate_entries():
    extra = [row(CLASS_TASK, "finetune", s, m, v[s] + 0.05, hyperparameters='{"lr": 0.1}')
             for m, v in CLASS_VALUES["finetune"].items() for s in SEEDS]
    agg = aggregate(store(extra), CLASS_TASK)
    assert {"finetune #1", "finetune #2"} <= set(agg.index)
    hp = table_rows(render(store(extra))[f"{CLASS_TASK}.md"], "Hyperparameters")
    shown = dict(zip(column(hp, "method"), column(hp, "hyperparameters")))
    assert shown["finetune #1"] == '`{"lr": 0.01}`' and shown["finetune #2"] == '`{"lr": 0.1}`'


def test_max_goal_ranking_metric_ranks_descending(monkeypatch):
    extra = [row(CLASS_TASK, m, s, "nomus", v) for m, v in (("finetune", 0.7), ("neggrad", 0.6), ("oracle", 0.8))
             for s in SEEDS]
    import dataclasses

    from bench.tasks import TASKS

    monkeypatch.setitem(TASKS._entries, CLASS_TASK, dataclasses.replace(TASKS.get(CLASS_TASK), primary_metric="nomus"))
    agg = aggregate(store(extra), CLASS_TASK)
    assert list(agg.index) == ["original", "oracle", "finetune", "neggrad"]
    summary = table_rows(render(store(extra))[f"{CLASS_TASK}.md"], "Summary")
    assert summary[0][4] == "nomus ↑ (rank)" and column(summary, "nomus")[2] == "0.700 ± 0.000"


def test_rows_without_the_store_schema_are_refused():
    with pytest.raises(ValueError, match="lacks the columns"):
        render(store().drop(columns=["seed"]))
    bad = store()
    bad.loc[0, "status"] = "crashed"
    with pytest.raises(ValueError, match="unknown run status"):
        render(bad)


def test_empty_store_gives_an_index_only():
    pages = render(store().iloc[0:0])
    assert list(pages) == ["index.md"] and "No results yet" in pages["index.md"]


# ---------------------------------------------------------------------------------------------
# Confidence intervals and noise between ranks
# ---------------------------------------------------------------------------------------------


def test_confidence_intervals_match_scipy():
    agg = aggregate(store(), CLASS_TASK)
    for entry, metric, column in (("finetune", "avg_gap", "avg_gap_ci"), ("finetune", "forget_accuracy", "forget_accuracy_ci")):
        if metric == "avg_gap":
            per_seed = [sum(abs(CLASS_VALUES[entry][m][s] - CLASS_VALUES["oracle"][m][s]) for m in ACC) / 4 for s in SEEDS]
        else:
            per_seed = CLASS_VALUES[entry][metric]
        low, high = stats.t.interval(0.95, len(per_seed) - 1, loc=np.mean(per_seed), scale=stats.sem(per_seed))
        assert agg.loc[entry, column] == pytest.approx((high - low) / 2)
    assert agg.loc["finetune", "ranking_ci"] == agg.loc["finetune", "avg_gap_ci"]
    one_seed = store()[lambda d: d["seed"] == 0]
    assert math.isnan(aggregate(one_seed, CLASS_TASK).loc["finetune", "avg_gap_ci"])


def test_paired_test_between_adjacent_ranks_matches_scipy():
    agg = aggregate(store(), RANDOM_TASK)
    assert list(agg.index[2:]) == ["finetune", "neggrad"]
    per_seed = {m: [sum(abs(RANDOM_VALUES[m][k][s] - RANDOM_VALUES["oracle"][k][s]) for k in ACC) / 4 for s in SEEDS]
                for m in ("finetune", "neggrad")}
    expected = stats.ttest_rel(per_seed["finetune"], per_seed["neggrad"]).pvalue
    assert agg.loc["neggrad", "p_vs_above"] == pytest.approx(expected)
    assert agg.loc["neggrad", "seeds_vs_above"] == 3
    assert bool(agg.loc["neggrad", "within_noise"]) == (expected >= 0.05)
    assert pd.isna(agg.loc["finetune", "within_noise"]) and pd.isna(agg.loc["oracle", "within_noise"])


def test_paired_test_degenerate_cases():
    a = pd.Series([0.125, 0.25, 0.375], index=[0, 1, 2])  # exact binary fractions: exact differences
    assert paired_t_test(a, a) == (1.0, 3)  # identical on every seed
    assert paired_t_test(a + 0.5, a) == (0.0, 3)  # the same difference on every seed
    p, n = paired_t_test(a, pd.Series([0.5], index=[0]))
    assert math.isnan(p) and n == 1  # one shared seed: untestable
    b = pd.Series([0.15, 0.18, 0.4], index=[0, 1, 2])
    assert paired_t_test(a, b)[0] == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_noise_is_stated_on_the_task_page_and_the_index():
    pages = render(store())
    summary = table_rows(pages[f"{RANDOM_TASK}.md"], "Summary")
    agg = aggregate(store(), RANDOM_TASK)
    p = float(agg.loc["neggrad", "p_vs_above"])
    cell = f"p {p:.3f}" if p >= 0.001 else "p < 0.001"
    assert column(summary, "vs.") == ["–", "–", "–", cell if p < 0.05 else f"≈ {cell}"]
    assert column(summary, "95%") [2] == f"± {agg.loc['finetune', 'avg_gap_ci']:.3f}"
    # the class task: neggrad has seeds 0 and 1, finetune 0, 1 and 2 → paired over the two shared seeds
    class_agg = aggregate(store(), CLASS_TASK)
    assert class_agg.loc["finetune", "seeds_vs_above"] == 2

    index = pages["index.md"]
    assert "## Which rank differences are within noise" in index and "paired t-test" in index
    line = next(ln for ln in index.splitlines() if ln.startswith(f"- [{RANDOM_TASK}]"))
    sep = "≈" if p >= 0.05 else "›"
    ft, ng = agg.loc["finetune"], agg.loc["neggrad"]
    assert (f"1. finetune {ft['ranking_value']:.3f} ± {ft['ranking_ci']:.3f} {sep} "
            f"2. neggrad {ng['ranking_value']:.3f} ± {ng['ranking_ci']:.3f}") in line
    assert line.endswith(f"{int(p >= 0.05)} of 1 adjacent difference within noise; "
                         "1 of 2 beat doing nothing beyond noise.")


# ---------------------------------------------------------------------------------------------
# Reported (paper) beside measured
# ---------------------------------------------------------------------------------------------

FIXTURE_CLAIMS = (
    Claim(CLASS_TASK, "finetune", "forget_accuracy", 0.25, "Test paper 2099, Table 9", "fixture: recipe differs"),
    Claim(CLASS_TASK, "scar", "test_accuracy", 0.5, "Test paper 2099, Figure 2"),
    Claim(RANDOM_TASK, "finetune", "test_accuracy", 0.88, "Other paper, Table 1"),
)


def test_claims_are_shown_beside_the_measured_numbers_with_their_source():
    pages = render(store(), claims=FIXTURE_CLAIMS)
    table = table_rows(pages[f"{CLASS_TASK}.md"], "Reported in papers vs. measured here")
    assert table[0] == ["method", "metric", "reported (paper)", "measured here", "source", "note"]
    assert table[1] == ["finetune", "forget_accuracy", "0.250", "0.200 ± 0.100 (3 seeds)", "Test paper 2099, Table 9",
                        "fixture: recipe differs"]
    assert table[2] == ["scar", "test_accuracy", "0.500", "not measured here", "Test paper 2099, Figure 2", "—"]
    random_table = table_rows(pages[f"{RANDOM_TASK}.md"], "Reported in papers vs. measured here")
    assert [r[0] for r in random_table[1:]] == ["finetune"] and random_table[1][2] == "0.880"
    # no claims, no section
    assert "Reported in papers" not in render(store(), claims=())[f"{CLASS_TASK}.md"]


def test_published_claims_are_valid_and_bad_claims_are_refused():
    validate_claims(CLAIMS)  # the real table
    validate_claims(FIXTURE_CLAIMS)
    with pytest.raises(ValueError, match="(?s)unknown task 'cifar11-resnet18-class'.*unknown metric 'accuracy'"):
        validate_claims([Claim("cifar11-resnet18-class", "finetune", "accuracy", 0.9, "paper")])
    with pytest.raises(ValueError, match="unknown method 'no_such_method'"):
        validate_claims([Claim(CLASS_TASK, "no_such_method", "test_accuracy", 0.9, "paper")])
    with pytest.raises(ValueError, match="listed twice"):
        validate_claims([FIXTURE_CLAIMS[0], FIXTURE_CLAIMS[0]])
    with pytest.raises(ValueError, match="finite"):
        Claim(CLASS_TASK, "finetune", "test_accuracy", math.nan, "paper")
    with pytest.raises(ValueError, match="non-empty source"):
        Claim(CLASS_TASK, "finetune", "test_accuracy", 0.5, " ")


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def test_plots_are_deterministic_linked_and_free_of_dates():
    first = render_report(store())
    assert render_report(store()) == first
    shuffled = store().sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert render_report(shuffled) == first
    svgs = {k: v for k, v in first.items() if k.endswith(".svg")}
    for name, svg in svgs.items():
        assert svg.startswith("<?xml") and "</svg>" in svg
        assert "<dc:date>" not in svg and "Matplotlib" not in svg and "matplotlib.org" not in svg
        page = first[name.split("/")[1].rsplit("-", 1)[0] + ".md"]
        assert f"]({name})" in page  # linked from its task page
    assert "Δ forget_accuracy" in svgs[f"plots/{CLASS_TASK}-tradeoff.svg"]  # class removal: forget accuracy
    assert "Δ mia_efficacy" in svgs[f"plots/{RANDOM_TASK}-tradeoff.svg"]  # random forgetting: MIA
    assert "oracle training time" in svgs[f"plots/{CLASS_TASK}-runtime.svg"]
    # another result moves a point: the plot changes
    moved = store([row(CLASS_TASK, "finetune", 0, "test_accuracy", 0.5, run_id="late", timestamp="2025-05-01T00:00:00Z")])
    assert render_report(moved)[f"plots/{CLASS_TASK}-tradeoff.svg"] != svgs[f"plots/{CLASS_TASK}-tradeoff.svg"]


def test_plots_are_the_same_bytes_in_another_process(tmp_path):
    import hashlib
    import subprocess
    import sys
    from pathlib import Path

    df = store()
    df.to_parquet(tmp_path / "rows.parquet")
    code = ("import hashlib, json, sys, pandas as pd; from bench.report import render_report; "
            "pages = render_report(pd.read_parquet(sys.argv[1])); "
            "print(json.dumps({k: hashlib.sha256(v.encode()).hexdigest() for k, v in pages.items()}))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "rows.parquet")], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent, env={"PYTHONHASHSEED": "123",
                         "PATH": "/usr/bin:/bin", "MPLCONFIGDIR": str(tmp_path / "mpl")})
    import json

    here = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in render_report(df).items()}
    assert json.loads(out.stdout) == here


def test_no_plot_without_an_oracle():
    no_oracle = store()[lambda d: d["method"] != "oracle"]
    pages = render_report(no_oracle)
    assert f"plots/{CLASS_TASK}-tradeoff.svg" not in pages  # no gap to the oracle, no trade-off
    assert f"plots/{CLASS_TASK}-runtime.svg" in pages  # runtimes exist; no oracle line
    assert "oracle training time" not in pages[f"plots/{CLASS_TASK}-runtime.svg"]
    assert f"(plots/{CLASS_TASK}-tradeoff.svg)" not in pages[f"{CLASS_TASK}.md"]


def test_methods_that_do_not_apply_are_listed_with_their_reason():
    from bench.registry import METHODS, load_methods

    load_methods()
    pages = render(store())
    random_page, class_page = pages[f"{RANDOM_TASK}.md"], pages[f"{CLASS_TASK}.md"]
    class_only = [name for name, m in METHODS.items() if "random" not in m.applies_to]
    assert class_only  # anti-samples and SCAR's self-forget are class-removal methods
    section = random_page.split("## Not applicable", 1)[1].split("\n## ", 1)[0]
    for name in class_only:
        assert f"- `{name}`: {name} applies to {'/'.join(METHODS.get(name).applies_to)} forgetting only" in section
    assert "## Not applicable" not in class_page or all(
        f"`{name}`" not in class_page.split("## Not applicable", 1)[1] for name in class_only)


def test_the_originals_speedup_is_not_shown():
    extra = rows_of(CLASS_TASK, {"original": {"speedup": [1e6, 2e6, 3e6], "runtime_seconds": [1e-5, 1e-5, 1e-5]}})
    page = render(store(extra))[f"{CLASS_TASK}.md"]
    speedups = column(table_rows(page, "All metrics"), "speedup")
    methods = column(table_rows(page, "All metrics"), "method")
    assert speedups[methods.index("original (reference)")] == "– (no work)"
    assert speedups[methods.index("oracle (reference)")] == "1.0× ± 0.0"


def test_every_method_of_a_full_table_gets_its_own_colour() -> None:
    n = 18  # the registry has 14 methods; room to grow before a colour repeats
    colours = [plots.style_of(i, f"method{i}")["color"] for i in range(n)]
    assert len(set(colours)) == n
    reserved = {plots.style_of(0, "original")["color"], plots.style_of(0, "oracle")["color"]}
    assert not reserved & set(colours)
    import matplotlib.colors

    greys = [c for c in colours if len({round(v, 2) for v in matplotlib.colors.to_rgb(c)}) == 1]
    assert greys == []  # grey is the original's


def _points(rows: dict[str, tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame({"x": [v[0] for v in rows.values()], "y": [v[1] for v in rows.values()],
                         "xerr": 0.0, "yerr": 0.0}, index=list(rows))


def test_trade_off_zooms_on_entries_crowding_the_oracle() -> None:
    crowded = {"oracle": (0.92, 0.0), "a": (0.915, 0.0), "b": (0.921, 0.002), "c": (0.918, 0.0),
               "outlier": (0.12, 0.0), "original": (0.91, 0.9)}
    x0, x1, y0, y1 = plots.zoom_box(_points(crowded))
    for name in ("oracle", "a", "b", "c"):
        x, y = crowded[name]
        assert x0 < x < x1 and y0 < y < y1
    for name in ("outlier", "original"):
        x, y = crowded[name]
        assert not (x0 < x < x1 and y0 < y < y1)
    assert x1 - x0 < 0.02 and y1 - y0 < 0.01
    # too few entries near the oracle, everything near it, or no oracle: no zoom
    assert plots.zoom_box(_points({k: crowded[k] for k in ("oracle", "a", "b", "outlier", "original")})) is None
    assert plots.zoom_box(_points({k: crowded[k] for k in ("oracle", "a", "b", "c")})) is None
    assert plots.zoom_box(_points({k: v for k, v in crowded.items() if k != "oracle"})) is None


@pytest.mark.parametrize("direction", [math.inf, -math.inf])
def test_plot_bytes_do_not_depend_on_the_last_bit_of_the_log_axis(monkeypatch, direction) -> None:
    """numpy's log10 and power differ in the last bit between CPUs (AVX2 vs. AVX-512 kernels); the
    runtime plot's log axis must not carry that into the SVG (its clip-path ids hash the layout)."""
    import matplotlib.scale

    values = {method: dict(metrics) for method, metrics in CLASS_VALUES.items()}
    # runtimes for which the one-ulp nudge moved the clip-path ids of the plot before the fix
    values["oracle"]["runtime_seconds"] = [29.5, 47.1, 41.7]
    values["finetune"]["runtime_seconds"] = [0.3, 8.6, 0.6]
    values["neggrad"]["runtime_seconds"] = [7.4, 2.0]
    df = pd.DataFrame(rows_of(CLASS_TASK, values))
    before = {k: v for k, v in render_report(df).items() if k.endswith(".svg")}
    for cls in (matplotlib.scale.LogTransform, matplotlib.scale.InvertedLogTransform):
        def nudged(self, values, _f=cls.transform_non_affine):
            out = np.array(_f(self, values), dtype="float64")
            finite = np.isfinite(out)
            out[finite] = np.nextafter(out[finite], direction)  # one ulp off, as another CPU's kernels
            return out

        monkeypatch.setattr(cls, "transform_non_affine", nudged)
    after = {k: v for k, v in render_report(df).items() if k.endswith(".svg")}
    assert sorted(after) == sorted(before) and f"plots/{CLASS_TASK}-runtime.svg" in after
    assert [k for k in before if before[k] != after[k]] == []


TABLE_ROWS = [["a|b", "0.500 ± 0.010", "Δ 0.1"], ["multi\nline", "n/a", "≈ p 0.42"]]


def test_markdown_tables_are_aligned_escaped_and_padded() -> None:
    text = cells.md_table(["method", "tow ↑", "gap"], TABLE_ROWS, right={1})
    header, align, *body = text.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == ["method", "tow ↑", "gap"]
    assert [c.strip()[0] + c.strip()[-1] for c in align.strip("|").split("|")] == [":-", "-:", ":-"]
    assert "a\\|b" in body[0] and "multi line" in body[1] and "0.500 ± 0.010" in body[0]  # text, not parsed numbers
    assert len({len(line) for line in text.splitlines()}) == 1  # padded to equal widths


def test_markdown_tables_do_not_depend_on_wcwidth(monkeypatch) -> None:
    """tabulate measures cells with wcwidth when that (optional) package is installed; our symbols
    (± Δ ≈ ↑ ↓ – ×) are one column wide either way, so the leaderboard's bytes must not change."""
    pytest.importorskip("wcwidth")
    import tabulate

    monkeypatch.setattr(tabulate, "WIDE_CHARS_MODE", True)
    wide = cells.md_table(["method", "tow ↑", "gap"], TABLE_ROWS, right={1})
    monkeypatch.setattr(tabulate, "WIDE_CHARS_MODE", False)
    assert cells.md_table(["method", "tow ↑", "gap"], TABLE_ROWS, right={1}) == wide


def test_a_page_names_the_methods_it_does_not_yet_cover():
    """Registered methods without a run of their current version on the task are named, not left
    out silently: never run (salun is absent from the store) or run only at an older version
    (finetune is stored at version 1, below its registered version)."""
    from bench.registry import get_method

    finetune_version = get_method("finetune").version
    older = store()
    older.loc[older["method"] == "finetune", "method_version"] = finetune_version - 1
    notes_ = render(older)[f"{CLASS_TASK}.md"].split("## Notes", 1)[1]
    never = notes_.split("Registered but not yet run on this task: ", 1)[1].split("\n", 1)[0]
    assert "`salun`" in never and "`finetune`" not in never and "`neggrad`" not in never
    assert (f"`finetune`: the numbers shown are of version {finetune_version - 1}; the registered version is "
            f"{finetune_version}, not yet re-run on this task.") in notes_
    current = render(store())[f"{CLASS_TASK}.md"]
    assert "`finetune`: the numbers shown" not in current


def test_pages_do_not_depend_on_the_order_methods_were_registered(monkeypatch):
    """The method lists of a page (not applicable, not yet run) are by name: moving a helper
    between method modules changes which module imports which first, and must not change a
    generated page (a stale published page once failed CI for that reason alone)."""
    from bench.registry import METHODS, load_methods

    load_methods()
    before = render(store())
    monkeypatch.setattr(METHODS, "_entries", dict(reversed(list(METHODS._entries.items()))))
    assert render(store()) == before


def per_seed_avg_gap(values: dict[str, dict[str, list[float]]], method: str, inputs=ACC) -> list[float]:
    """Per seed, mean |v − oracle of that seed| over ``inputs`` (avg_gap by hand)."""
    return [sum(abs(values[method][m][s] - values["oracle"][m][s]) for m in inputs) / len(inputs)
            for s in range(len(values[method]["forget_accuracy"]))]


def index_rows(index: str) -> dict[str, dict[str, str]]:
    header, _, *rows = [[c.strip() for c in ln.strip("|").split(" | ")] for ln in index.splitlines() if ln.startswith("|")]
    return {r[0].split("]")[0].lstrip("["): dict(zip(header, r)) for r in rows}


def test_retrain_is_pinned_with_the_references_and_never_the_best_method():
    retrain = [row(CLASS_TASK, "retrain", s, m, v[s]) for m, v in CLASS_VALUES["oracle"].items() for s in SEEDS]
    df = store(retrain)
    agg = aggregate(df, CLASS_TASK)
    assert list(agg.index) == ["original", "oracle", "retrain", "neggrad", "finetune"]
    assert bool(agg.loc["retrain", "reference"]) and pd.isna(agg.loc["retrain", "rank"])
    assert agg.loc["retrain", "avg_gap_mean"] == 0.0  # it would rank first
    assert agg.loc["neggrad", "rank"] == 1
    pages = render(df)
    summary = table_rows(pages[f"{CLASS_TASK}.md"], "Summary")
    assert column(summary, "method")[:3] == ["original (reference)", "oracle (reference)", "retrain (oracle's recipe)"]
    assert column(summary, "#")[:3] == ["ref", "ref", "ref"]
    cls = index_rows(pages["index.md"])[CLASS_TASK]
    assert cls["best of them"].startswith("neggrad (") and cls["methods"] == "2"
    line = next(ln for ln in pages["index.md"].splitlines() if ln.startswith(f"- [{CLASS_TASK}]"))
    assert "retrain" not in line and "1. neggrad" in line


def test_an_entry_no_better_than_the_original_is_marked_and_a_clearly_better_one_is_not():
    copycat = [row(CLASS_TASK, "copycat", s, m, v[s]) for m, v in CLASS_VALUES["original"].items() for s in SEEDS]
    df = store(copycat)
    agg = aggregate(df, CLASS_TASK)
    assert agg.loc["copycat", "p_vs_original"] == 1.0 and agg.loc["copycat", "seeds_vs_original"] == 3
    assert not agg.loc["copycat", "beats_original"]
    # finetune: clearly better than doing nothing; the p-value is scipy's paired test on per-seed avg_gap
    expected = stats.ttest_rel(per_seed_avg_gap(CLASS_VALUES, "finetune"), per_seed_avg_gap(CLASS_VALUES, "original")).pvalue
    assert expected < 0.05
    assert agg.loc["finetune", "p_vs_original"] == pytest.approx(expected)
    assert bool(agg.loc["finetune", "beats_original"]) and bool(agg.loc["neggrad", "beats_original"])
    assert pd.isna(agg.loc["original", "beats_original"]) and pd.isna(agg.loc["oracle", "beats_original"])

    pages = render(df)
    summary = table_rows(pages[f"{CLASS_TASK}.md"], "Summary")
    i = summary[0].index("vs. doing nothing")
    verdict = {r[1]: r[i] for r in summary[1:]}
    assert verdict["copycat"] == "✗ p 1.000"
    assert verdict["finetune"] == f"p {expected:.3f}"
    assert verdict["original (reference)"] == "–"
    assert "no better than doing nothing" in pages[f"{CLASS_TASK}.md"]
    cls = index_rows(pages["index.md"])[CLASS_TASK]
    assert cls["beat doing nothing"] == "2 of 3" and cls["best of them"].startswith("neggrad (")
    line = next(ln for ln in pages["index.md"].splitlines() if ln.startswith(f"- [{CLASS_TASK}]"))
    copy_value = f"copycat {agg.loc['copycat', 'ranking_value']:.3f} ± {agg.loc['copycat', 'ranking_ci']:.3f} ✗"
    assert copy_value in line and "neggrad" in line and line.count("✗") == 1


def test_an_entry_of_a_task_with_only_worse_methods_names_no_best():
    values = {**RANDOM_VALUES, "finetune": RANDOM_VALUES["neggrad"]}  # both worse than doing nothing here
    pages = render(pd.DataFrame(rows_of(RANDOM_TASK, values)))
    rnd = index_rows(pages["index.md"])[RANDOM_TASK]
    assert rnd["beat doing nothing"] == "0 of 2" and rnd["best of them"] == "none"


def test_a_forgetting_metric_without_signal_leaves_the_composite_and_a_utility_metric_stays():
    from bench.metrics import METRICS

    assert METRICS.get("mia_efficacy").measures == "forgetting" and METRICS.get("retain_accuracy").measures == "utility"
    values = {**RANDOM_VALUES, "original": {**RANDOM_VALUES["original"], "mia_efficacy": RANDOM_VALUES["oracle"]["mia_efficacy"]}}
    # the original also equals the oracle on retain accuracy (1.0 on every seed): a utility metric, kept
    assert values["original"]["retain_accuracy"] == values["oracle"]["retain_accuracy"]
    df = pd.DataFrame(rows_of(RANDOM_TASK, values))
    agg = aggregate(df, RANDOM_TASK)
    kept = ("forget_accuracy", "retain_accuracy", "test_accuracy")
    for m in ("finetune", "neggrad"):
        assert agg.loc[m, "avg_gap_mean"] == pytest.approx(np.mean(per_seed_avg_gap(values, m, kept)))
        assert agg.loc[m, "avg_gap_mean"] != pytest.approx(np.mean(per_seed_avg_gap(values, m)))
        assert agg.loc[m, "mia_efficacy_gap"] == pytest.approx(np.mean(per_seed_avg_gap(values, m, ("mia_efficacy",))))
    page = render(df)[f"{RANDOM_TASK}.md"]
    signal = table_rows(page, "Signal")
    verdict = dict(zip(column(signal, "metric"), column(signal, "signal")))
    assert verdict == {"forget_accuracy": "yes", "mia_efficacy": "no signal on this task"}
    assert dict(zip(column(signal, "metric"), column(signal, "p")))["mia_efficacy"] == "p 1.000"
    assert ("`avg_gap` on this task combines `forget_accuracy`, `retain_accuracy` and `test_accuracy`; "
            "left out, no signal: `mia_efficacy`.") in page
    assert "Utility metrics (retain and test accuracy) always stay in" in page
    assert "Not ranked" not in page and list(agg["rank"].dropna()) == [1, 2]


def test_a_task_whose_forgetting_inputs_all_lack_signal_is_not_ranked_and_says_why():
    original = {**RANDOM_VALUES["original"], "forget_accuracy": RANDOM_VALUES["oracle"]["forget_accuracy"],
                "mia_efficacy": RANDOM_VALUES["oracle"]["mia_efficacy"]}
    df = pd.DataFrame(rows_of(RANDOM_TASK, {**RANDOM_VALUES, "original": original}))
    agg = aggregate(df, RANDOM_TASK)
    assert list(agg.index) == ["original", "oracle", "finetune", "neggrad"]  # shown, by name
    assert agg["rank"].isna().all() and agg["avg_gap_mean"].isna().all() and agg["tow_mean"].isna().all()
    assert agg["beats_original"].isna().all()
    pages = render(df)
    page = pages[f"{RANDOM_TASK}.md"]
    summary = table_rows(page, "Summary")
    assert column(summary, "method")[2:] == ["finetune", "neggrad"] and set(column(summary, "#")[2:]) == {"–"}
    assert "**Not ranked on this task:** none of the forgetting inputs of `avg_gap`" in page
    assert "- `avg_gap` is not computed on this task (n/a); left out, no signal:" in page
    rnd = index_rows(pages["index.md"])[RANDOM_TASK]
    assert rnd["beat doing nothing"] == "not ranked" and rnd["best of them"] == "— (no forgetting signal)"
    line = next(ln for ln in pages["index.md"].splitlines() if ln.startswith(f"- [{RANDOM_TASK}]"))
    assert "not ranked: none of the forgetting inputs" in line and "run the `original`" not in line

    # without an original run the signal is untestable: not ranked either, and the page says what to run
    no_original = pd.DataFrame(rows_of(RANDOM_TASK, {m: v for m, v in RANDOM_VALUES.items() if m != "original"}))
    assert aggregate(no_original, RANDOM_TASK)["rank"].isna().all()
    page = render(no_original)[f"{RANDOM_TASK}.md"]
    assert "untestable (0 shared seeds)" in page and "run the `original` method on the oracle's seeds" in page


def test_signal_intervals_match_scipy_and_agree_with_p():
    from bench.report.paired import split_half_differences, t_interval

    rng = np.random.default_rng(4)
    for shift in (0.0, 0.02, 0.3):
        d = rng.normal(shift, 0.05, size=7)
        i = t_interval(d)
        low, high = stats.t.interval(0.95, 6, loc=np.mean(d), scale=stats.sem(d))
        assert (i.mean, i.low, i.high, i.n) == (pytest.approx(np.mean(d)), pytest.approx(low), pytest.approx(high), 7)
        p = stats.ttest_1samp(d, 0.0).pvalue
        assert i.excludes_zero == (p < 0.05)
    one = t_interval(np.array([0.5]))
    assert one.mean == 0.5 and math.isnan(one.low) and math.isnan(t_interval(np.array([])).mean)
    # oracle halves by seed: values out of order, one NaN and an odd count (the last seed is dropped)
    oracle = pd.Series([0.4, 0.1, math.nan, 0.3, 0.2, 0.9], index=[4, 0, 2, 1, 3, 5])
    assert split_half_differences(oracle).tolist() == pytest.approx([0.1 - 0.2, 0.3 - 0.4])


def test_signal_table_shows_both_intervals_computed_by_hand():
    page = render(pd.DataFrame(rows_of(RANDOM_TASK, RANDOM_VALUES)))[f"{RANDOM_TASK}.md"]
    signal = table_rows(page, "Signal")
    by_metric = {r[0]: dict(zip(signal[0], r)) for r in signal[1:]}
    d = np.subtract(RANDOM_VALUES["original"]["mia_efficacy"], RANDOM_VALUES["oracle"]["mia_efficacy"])
    low, high = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert by_metric["mia_efficacy"]["original − oracle [95 % CI]"] == f"{d.mean():.3f} [{low:.3f}, {high:.3f}]"
    # three oracle seeds: one pair, seed 0 − seed 1, with no interval
    assert by_metric["mia_efficacy"]["oracle − oracle [95 % CI]"] == "-0.050"
    assert by_metric["forget_accuracy"]["oracle − oracle [95 % CI]"] == "-0.020"


def test_signal_table_warns_when_the_oracle_halves_differ_beyond_noise():
    oracle = {**RANDOM_VALUES["oracle"], "forget_accuracy": [0.90, 0.91, 0.92, 0.80, 0.81, 0.82]}
    values = {"oracle": oracle, "original": {"forget_accuracy": [1.0] * 6}}
    rows = [row(RANDOM_TASK, m, s, k, v) for m, ms in values.items() for k, vs in ms.items() if k == "forget_accuracy"
            for s, v in enumerate(vs)]
    page = render(pd.DataFrame(rows))[f"{RANDOM_TASK}.md"]
    header, forget = table_rows(page, "Signal")
    cells = dict(zip(header, forget))
    assert cells["oracle"] == "0.860" and cells["oracle − oracle [95 % CI]"] == "0.100 [0.100, 0.100]"
    assert cells["signal"] == "yes; oracle halves differ beyond noise: seeds not independent?"


def test_a_card_of_a_newer_registered_version_says_the_numbers_are_older():
    from bench.tasks import TASKS

    registered = TASKS.get(CLASS_TASK).version
    older = render(store())[f"{CLASS_TASK}.md"]  # the hand-made rows are task version 1
    assert registered > 1 and (f"- **Card:** of the registered version {registered}; the numbers on this page are "
                               "of version 1, which it may not describe") in older
    current = pd.DataFrame([dict(r, task_version=registered) for r in rows_of(CLASS_TASK, CLASS_VALUES)])
    assert "**Card:**" not in render(current)[f"{CLASS_TASK}.md"]
