"""The "Summary" table of a task page: the pinned rows (references and the oracle's recipe), then
the entries ranked by the task's ranking metric with its confidence interval, the paired test
against the entry ranked above and against doing nothing (:mod:`bench.report.signal`), the
composite scores and :data:`SUMMARY_METRICS`.
"""
from __future__ import annotations

import math

import pandas as pd

from bench.metrics import COMPOSITES, metric_goal
from bench.report.cells import (
    NOTHING_MARK, arrow, ci_cell, data_text, gap_cell, label_of, md_table, mean_std, noise_cell, nothing_cell, rank_of,
    value_cell,
)
from bench.report.signal import TaskSignal
from bench.results import PINNED_ROLES, RETRAIN

#: Stored metrics shown in the summary table (when present), after the composite scores.
SUMMARY_METRICS: tuple[str, ...] = (
    "forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy", "runtime_seconds", "speedup",
)


def summary_section(table: pd.DataFrame, metrics: list[str], rank_by: str, signal: TaskSignal) -> list[str]:
    """The ranked table: the ranking metric (when not a composite), its CI and the two noise
    verdicts, the composite scores, then :data:`SUMMARY_METRICS`; a task whose ranking metric has
    no signal (``signal``) is shown without ranks, with the reason."""
    if table.empty:
        return ["## Summary", "", "No successful runs.", ""]
    extra = [rank_by] if rank_by not in COMPOSITES else []
    shown = [m for m in SUMMARY_METRICS if m in metrics and m not in extra]
    ranked = extra + COMPOSITES.names()
    headers = ["#", "method", "seeds", "data used"]
    for m in ranked:
        headers.append(f"{m}{arrow(m)}" + (" (rank)" if m == rank_by else ""))
        if m == rank_by:
            headers += ["95% CI", "vs. rank above", "vs. doing nothing"]
    headers += [f"{m}{arrow(m)}" for m in shown]
    rows = []
    for entry, rec in table.iterrows():
        row = [rank_of(rec), label_of(entry, rec), str(rec["seeds"]), data_text(rec["data_used"])]
        for m in ranked:
            if m in COMPOSITES:
                row.append(mean_std(m, rec[f"{m}_mean"], rec[f"{m}_std"]))
            elif metric_goal(m) == "oracle":
                row.append(gap_cell(m, rec.get(f"{m}_gap", math.nan)))
            else:
                row.append(mean_std(m, rec.get(f"{m}_mean", math.nan), rec.get(f"{m}_std", math.nan)))
            if m == rank_by:
                row += [ci_cell(m, float(rec["ranking_ci"])), noise_cell(rec), nothing_cell(rec)]
        row += [value_cell(m, rec) for m in shown]
        rows.append(row)
    formulas = "; ".join(f"{c.name} = {c.formula}" for _, c in COMPOSITES.items())
    every = "both" if len(COMPOSITES) == 2 else "each"
    why = signal.unranked_why(rank_by)
    lines = ["## Summary", ""]
    if why:
        lines += [f"**Not ranked on this task:** {why} (see Signal below). The entries are listed by name.", ""]
    return lines + [
        md_table(headers, rows, right=set(range(2, len(headers))) - {3}), "",
        "Mean ± sample standard deviation over seeds. Pinned first and not ranked: the references (original: "
        "trained on all data, the do-nothing line; oracle: retrained from scratch on the retain set) and "
        f"`{RETRAIN}` ({PINNED_ROLES[RETRAIN]}: the oracle's training recipe run as a method, so its gaps are near "
        f"0 by construction; it is the target, not a competitor). {formulas}; {every} computed per seed against "
        "the oracle of the same seed, from the inputs that have signal on this task (see Signal). "
        "↑ higher is better, ↓ lower is better.",
        "",
        f"95% CI: half-width h of the 95% confidence interval of the mean of `{rank_by}` over seeds, "
        "h = t(0.975, n − 1) · s / √n (Student t, n seeds, s their standard deviation); n/a with one seed. "
        "vs. rank above: two-sided paired t-test, over the seeds both entries share, of the per-seed "
        f"`{rank_by}` of this entry against the entry ranked just above; ≈ marks a difference within "
        "noise (p ≥ 0.05, or fewer than two shared seeds), a bare p-value one beyond it. "
        "vs. doing nothing: the same test against the original, which forgot nothing; a bare p-value means "
        f"the entry beats doing nothing beyond noise (p < 0.05, its mean better), {NOTHING_MARK} marks an entry "
        "no better than doing nothing (p ≥ 0.05, untestable, or beyond noise but worse).",
        "",
    ]
