"""The leaderboard's ``index.md``: one row per task (its ranking metric, how many ranked methods
beat doing nothing beyond noise and the best of them, counts, date, versions, devices), then per
task the ranked methods in order with ``≈`` between adjacent ranks whose difference is within
noise (:func:`bench.report.paired.paired_t_test`) and ``›`` between those beyond it. The pinned
rows (references and ``retrain``, the oracle's recipe) are never a task's best method.
"""
from __future__ import annotations

import math

import pandas as pd

from bench.report.cells import NOTHING_MARK, arrow, date_of, decimals_of, fixed, md_table
from bench.report.pages import GENERATED_HEADER
from bench.report.select import TaskRows
from bench.report.signal import TaskSignal
from bench.report.stats import ranking_metric
from bench.results import PINNED_ROLES, RETRAIN
from bench.tasks import TASKS


def ranked_entries(table: pd.DataFrame) -> pd.DataFrame:
    """The entries of a summary that have a rank (no references, no n/a), in rank order."""
    return table[~table["reference"] & table["rank"].notna()] if len(table) else table


def beating_nothing(table: pd.DataFrame) -> pd.DataFrame:
    """The ranked entries that beat doing nothing beyond noise, in rank order."""
    ranked = ranked_entries(table)
    return ranked[ranked["beats_original"].fillna(False).astype(bool)] if len(ranked) else ranked


def index_row(selected: TaskRows, table: pd.DataFrame, signal: TaskSignal) -> list[str]:
    task = TASKS.get(selected.task) if selected.task in TASKS else None
    rank_by = ranking_metric(selected.task)
    ranked, beaters = ranked_entries(table), beating_nothing(table)
    if signal.unranked_why(rank_by):
        count, best = "not ranked", "— (no forgetting signal)"
    elif len(ranked):
        count = f"{len(beaters)} of {len(ranked)}"
        best = "none" if beaters.empty else \
            f"{beaters.index[0]} ({fixed(float(beaters.iloc[0]['ranking_value']), decimals_of(rank_by))})"
    else:
        count, best = "—", "—"
    methods = int((~table["reference"]).sum()) if len(table) else 0
    seeds = int(selected.ok["seed"].nunique())
    versions = [f"task v{selected.version}"]
    versions += [f"unlearnbench {', '.join(selected.package_versions)}"] if selected.package_versions else []
    versions += [f"torch {', '.join(selected.torch_versions)}"] if selected.torch_versions else []
    return [
        f"[{selected.task}]({selected.task}.md)",
        task.description if task is not None else "(not a registered task)",
        f"{rank_by}{arrow(rank_by)}",
        count,
        best,
        str(methods),
        str(seeds),
        date_of(selected.latest),
        " · ".join(versions),
        ", ".join(selected.devices) or "—",
    ]


def noise_line(selected: TaskRows, table: pd.DataFrame, signal: TaskSignal) -> str:
    """``- [task](task.md): 1. a 0.012 ± 0.004 ≈ 2. b 0.015 ± 0.006 › 3. c ✗ …`` (see render_index)."""
    rank_by = ranking_metric(selected.task)
    d = decimals_of(rank_by)
    ranked = ranked_entries(table)
    head = f"- [{selected.task}]({selected.task}.md) (`{rank_by}`{arrow(rank_by)}): "
    why = signal.unranked_why(rank_by)
    if why:
        return head + f"not ranked: {why}."
    if ranked.empty:
        return head + "no ranked method."
    parts: list[str] = []
    for entry, rec in ranked.iterrows():
        if parts:
            parts.append("≈" if bool(rec["within_noise"]) else "›")
        ci = float(rec["ranking_ci"])
        value = fixed(float(rec["ranking_value"]), d) + ("" if math.isnan(ci) else f" ± {fixed(ci, d)}")
        mark = "" if bool(rec["beats_original"]) else f" {NOTHING_MARK}"
        parts.append(f"{int(rec['rank'])}. {entry} {value}{mark}")
    within = int(ranked["within_noise"].fillna(False).sum())
    untestable = int((ranked["within_noise"].fillna(False) & ranked["p_vs_above"].isna()).sum())
    pairs = max(len(ranked) - 1, 0)
    tail = f" — {within} of {pairs} adjacent difference{'s' if pairs != 1 else ''} within noise"
    if untestable:
        tail += f" ({untestable} untestable: fewer than two shared seeds)"
    beaters = len(beating_nothing(table))
    tail += f"; {beaters} of {len(ranked)} beat doing nothing beyond noise"
    return head + " ".join(parts) + tail + "."


def render_index(selections: list[TaskRows], tables: list[pd.DataFrame], signals: list[TaskSignal]) -> str:
    lines = [
        GENERATED_HEADER,
        "# unlearnbench leaderboard",
        "",
        "One page per task. Each page pins the reference models (original and oracle) and "
        f"`{RETRAIN}` ({PINNED_ROLES[RETRAIN]}: a reference, not a competitor) first and ranks the unlearning "
        "methods by the task's ranking metric; gaps are measured against the oracle retrained on the retain set "
        "with the same seed, and a composite score combines only the forgetting metrics that separate the "
        "original from the oracle on the task (its page's Signal section). The original is the do-nothing line: "
        "beat doing nothing counts the ranked methods whose ranking value is better than the original's beyond "
        "noise (two-sided paired t-test over seeds, p < 0.05), and best of them names the best-ranked of those "
        "(none when no method beats doing nothing).",
        "",
    ]
    if not selections:
        lines += ["No results yet: run `bench run` and then `bench report`."]
    else:
        headers = ["task", "description", "ranking metric", "beat doing nothing", "best of them", "methods", "seeds",
                   "date", "versions", "devices"]
        rows = [index_row(s, t, g) for s, t, g in zip(selections, tables, signals)]
        lines.append(md_table(headers, rows, right={5, 6}))
        lines += [
            "",
            "## Which rank differences are within noise",
            "",
            "Per task, the ranked methods in order, each with its ranking value: mean over seeds ± the half-width "
            "of its 95% confidence interval (Student t, n − 1 degrees of freedom). Between two adjacent ranks, "
            "`≈` means the difference is within noise: a two-sided paired t-test over the seeds both share, on "
            "the per-seed values of the ranking metric, gives p ≥ 0.05 (or they share fewer than two seeds, "
            "so it cannot be tested); `›` means it is beyond noise (p < 0.05). Pairing by seed compares two "
            "methods on the same split, original and oracle. With few seeds the test has little power: "
            "≈ says the seeds cannot tell the two apart, not that they are equal. "
            f"{NOTHING_MARK} marks a method no better than doing nothing beyond noise.",
            "",
        ]
        lines += [noise_line(s, t, g) for s, t, g in zip(selections, tables, signals)]
    return "\n".join(lines).rstrip("\n") + "\n"
