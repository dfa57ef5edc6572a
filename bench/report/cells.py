"""The text of leaderboard cells: fixed-decimal numbers, mean ± std, gaps, confidence intervals,
the noise and do-nothing verdicts, goal arrows, row labels, and markdown tables (tabulate's ``pipe`` format).

Formatting happens here and nowhere else: the numbers reach this module as raw floats.
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
from tabulate import tabulate

from bench.metrics import METRICS, metric_goal
from bench.report.paired import beyond_noise
from bench.results import PINNED_ROLES

#: Decimals per metric; every other metric and composite score is shown with 3.
DECIMALS: dict[str, int] = {"runtime_seconds": 2, "speedup": 1}
#: Units appended to a mean (speed-up is a ratio).
UNITS: dict[str, str] = {"speedup": "×"}


def fixed(x: float, decimals: int) -> str:
    """``x`` with a fixed number of decimals; ``n/a`` for NaN, ``∞`` for infinity, no ``-0.000``."""
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    text = f"{x:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0.0 else text


def decimals_of(metric: str) -> int:
    return DECIMALS.get(metric, 3)


def mean_std(metric: str, mean: float, std: float) -> str:
    """``mean ± std`` (runtime in seconds with 2 decimals, speedup ``12.3×`` with 1, others 3)."""
    d = decimals_of(metric)
    unit = UNITS.get(metric, "")
    if math.isnan(mean):
        return "n/a"
    head = fixed(mean, d) + (unit if math.isfinite(mean) else "")
    return head if math.isnan(std) else f"{head} ± {fixed(std, d)}"


def gap_cell(metric: str, gap: float, ci: float = math.nan) -> str:
    """``Δ gap ± h`` with h the half-width of its 95% confidence interval (only ``Δ gap`` for one seed)."""
    if math.isnan(gap):
        return "n/a"
    d = decimals_of(metric)
    return f"Δ {fixed(gap, d)}" if math.isnan(ci) else f"Δ {fixed(gap, d)} ± {fixed(ci, d)}"


def ci_cell(metric: str, ci: float) -> str:
    return "n/a" if math.isnan(ci) else f"± {fixed(ci, decimals_of(metric))}"


def p_text(p: float) -> str:
    """A p-value: ``p 0.042``, ``p < 0.001``."""
    return f"p {p:.3f}" if p >= 0.001 else "p < 0.001"


def untestable(n: int) -> str:
    return f"untestable ({n} shared seed{'s' if n != 1 else ''})"


def noise_cell(rec: pd.Series) -> str:
    """Against the entry ranked just above: ``≈ p 0.42`` within noise, ``p 0.013`` beyond it."""
    if pd.isna(rec["within_noise"]):
        return "–"
    n, p = int(rec["seeds_vs_above"]), float(rec["p_vs_above"])
    if math.isnan(p):
        return f"≈ {untestable(n)}"
    return f"≈ {p_text(p)}" if rec["within_noise"] else p_text(p)


#: The mark of an entry no better than doing nothing (the original) beyond noise.
NOTHING_MARK = "✗"


def nothing_cell(rec: pd.Series) -> str:
    """Against the original: ``p 0.003`` beats doing nothing; ``✗ p 0.42`` no better beyond noise,
    ``✗ p 0.003, worse`` worse beyond noise, ``✗ untestable (…)``; ``–`` for unranked entries."""
    if pd.isna(rec["beats_original"]):
        return "–"
    n, p = int(rec["seeds_vs_original"]), float(rec["p_vs_original"])
    if rec["beats_original"]:
        return p_text(p)
    if math.isnan(p):
        return f"{NOTHING_MARK} " + (untestable(n) if n else "untestable (no original run)")
    return f"{NOTHING_MARK} {p_text(p)}" + ("" if rec["better_than_original"] or not beyond_noise(p) else ", worse")


def value_cell(metric: str, rec: pd.Series) -> str:
    """``mean ± std`` of ``metric`` for the entry ``rec``; ``– (why)`` for a method the metric
    declares itself undefined for (:attr:`bench.metrics.Metric.undefined_for`)."""
    if metric in METRICS and rec["method"] in METRICS.get(metric).undefined_for:
        return f"– ({METRICS.get(metric).undefined_why})"
    return mean_std(metric, rec[f"{metric}_mean"], rec[f"{metric}_std"])


def arrow(metric: str) -> str:
    return {"max": " ↑", "min": " ↓"}.get(metric_goal(metric) or "", "")


def goal_words(metric: str) -> str:
    return {
        "max": "higher is better",
        "min": "lower is better",
        "oracle": "closest to the oracle is better",
        "none": "no goal: the spread of a measurement over its draws",
    }.get(metric_goal(metric) or "", "goal unknown")


def label_of(entry: str, rec: pd.Series) -> str:
    """The row label: a pinned row carries its role (:data:`bench.results.PINNED_ROLES`)."""
    return f"{entry} ({PINNED_ROLES[rec['method']]})" if rec["reference"] else entry


def rank_of(rec: pd.Series) -> str:
    if rec["reference"]:
        return "ref"
    return "–" if pd.isna(rec["rank"]) else str(int(rec["rank"]))


def and_list(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else list(names))


def data_text(value: str) -> str:
    return value.replace(",", ", ") if value else "—"


def date_of(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d")


def cell(text: object) -> str:
    """Markdown-table-safe text: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def md_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """A markdown table (tabulate's ``pipe`` format; cells taken as text, no number parsing); the
    columns whose index is in ``right`` are right-aligned, the others left-aligned."""
    align = ["right" if i in (right or set()) else "left" for i in range(len(headers))]
    return tabulate([[cell(c) for c in row] for row in rows], headers=[cell(h) for h in headers],
                    tablefmt="pipe", colalign=align, disable_numparse=True)
