"""The leaderboard's ``index.md``: one row per task (its ranking metric, best method, counts,
date, versions, devices), then per task the ranked methods in order with ``≈`` between adjacent
ranks whose difference is within noise (:func:`bench.report.stats.paired_t_test`) and ``›``
between those beyond it.
"""
from __future__ import annotations

import math

import pandas as pd

from bench.report.cells import arrow, date_of, decimals_of, fixed, md_table
from bench.report.pages import GENERATED_HEADER
from bench.report.select import TaskRows
from bench.report.stats import ranking_metric
from bench.tasks import TASKS


def ranked_entries(table: pd.DataFrame) -> pd.DataFrame:
    """The entries of a summary that have a rank (no references, no n/a), in rank order."""
    return table[~table["reference"] & table["rank"].notna()] if len(table) else table


def index_row(selected: TaskRows, table: pd.DataFrame) -> list[str]:
    task = TASKS.get(selected.task) if selected.task in TASKS else None
    rank_by = ranking_metric(selected.task)
    ranked = ranked_entries(table)
    if len(ranked):
        best_entry = ranked.index[0]
        best = f"{best_entry} ({fixed(float(ranked.iloc[0]['ranking_value']), decimals_of(rank_by))})"
    else:
        best = "—"
    methods = int((~table["reference"]).sum()) if len(table) else 0
    seeds = int(selected.ok["seed"].nunique())
    versions = [f"task v{selected.version}"]
    versions += [f"unlearnbench {', '.join(selected.package_versions)}"] if selected.package_versions else []
    versions += [f"torch {', '.join(selected.torch_versions)}"] if selected.torch_versions else []
    return [
        f"[{selected.task}]({selected.task}.md)",
        task.description if task is not None else "(not a registered task)",
        f"{rank_by}{arrow(rank_by)}",
        best,
        str(methods),
        str(seeds),
        date_of(selected.latest),
        " · ".join(versions),
        ", ".join(selected.devices) or "—",
    ]


def noise_line(selected: TaskRows, table: pd.DataFrame) -> str:
    """``- [task](task.md): 1. a 0.012 ± 0.004 ≈ 2. b 0.015 ± 0.006 › 3. c …`` (see render_index)."""
    rank_by = ranking_metric(selected.task)
    d = decimals_of(rank_by)
    ranked = ranked_entries(table)
    head = f"- [{selected.task}]({selected.task}.md) (`{rank_by}`{arrow(rank_by)}): "
    if ranked.empty:
        return head + "no ranked method."
    parts: list[str] = []
    for entry, rec in ranked.iterrows():
        if parts:
            parts.append("≈" if bool(rec["within_noise"]) else "›")
        ci = float(rec["ranking_ci"])
        value = fixed(float(rec["ranking_value"]), d) + ("" if math.isnan(ci) else f" ± {fixed(ci, d)}")
        parts.append(f"{int(rec['rank'])}. {entry} {value}")
    within = int(ranked["within_noise"].fillna(False).sum())
    untestable = int((ranked["within_noise"].fillna(False) & ranked["p_vs_above"].isna()).sum())
    pairs = max(len(ranked) - 1, 0)
    tail = f" — {within} of {pairs} adjacent difference{'s' if pairs != 1 else ''} within noise"
    if untestable:
        tail += f" ({untestable} untestable: fewer than two shared seeds)"
    return head + " ".join(parts) + tail + "."


def render_index(selections: list[TaskRows], tables: list[pd.DataFrame]) -> str:
    lines = [
        GENERATED_HEADER,
        "# unlearnbench leaderboard",
        "",
        "One page per task. Each page pins the reference models (original and oracle) first and ranks "
        "the unlearning methods by the task's ranking metric; gaps are measured against the oracle "
        "retrained on the retain set with the same seed. Best method excludes the references.",
        "",
    ]
    if not selections:
        lines += ["No results yet: run `bench run` and then `bench report`."]
    else:
        headers = ["task", "description", "ranking metric", "best method", "methods", "seeds", "date",
                   "versions", "devices"]
        lines.append(md_table(headers, [index_row(s, t) for s, t in zip(selections, tables)], right={4, 5}))
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
            "≈ says the seeds cannot tell the two apart, not that they are equal.",
            "",
        ]
        lines += [noise_line(s, t) for s, t in zip(selections, tables)]
    return "\n".join(lines).rstrip("\n") + "\n"
