"""The ``bench perf`` table: one measured number per row, the goals, the Parquet schema, the text table.

A :class:`PerfRow` is what a measure produces; :func:`perf_table` adds the goal of its measure
(:data:`GOALS`) and the environment columns (device label, torch version, threads, workers,
repeats, timestamp) in :data:`PERF_SCHEMA` order. The table is written as Parquet atomically
(:func:`write_table`), read back with its schema checked (:func:`read_table`), and printed as
plain text (:func:`format_table`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench.env import device_label
from bench.results import write_table_atomic
from bench.tasks import Task

PERF_SCHEMA = pa.schema([
    ("task", pa.string()),
    ("arch", pa.string()),
    ("measure", pa.string()),
    ("value", pa.float64()),        # wall-clock based
    ("cpu_value", pa.float64()),    # the same from CPU time (images/CPU-s, their ratio); NaN elsewhere
    ("unit", pa.string()),          # images/s, s, bytes, ratio, share
    ("images", pa.int64()),         # images processed (throughputs), runs stored (cached_rerun), forget examples (crossseed_*), else 0
    ("goal", pa.string()),          # ">= 0.9", "<= 0.1", or "" (no goal)
    ("meets_goal", pa.bool_()),     # null where there is no goal
    ("note", pa.string()),
    ("device", pa.string()),
    ("torch_version", pa.string()),
    ("threads", pa.int64()),
    ("workers", pa.int64()),
    ("repeats", pa.int64()),
    ("load_avg_1m", pa.float64()),
    ("timestamp", pa.string()),
])
PERF_COLUMNS = PERF_SCHEMA.names


@dataclass(frozen=True)
class Goal:
    """``value op target`` with ``op`` one of ``>=``, ``<=``; ``datasets`` limits where it applies
    (empty: every row, also those of no registered task, such as the synthetic cross-seed ones)."""

    op: str
    target: float
    datasets: tuple[str, ...] = ()

    def applies(self, task: Task | None) -> bool:
        return not self.datasets or (task is not None and task.dataset in self.datasets)

    def met(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value >= self.target if self.op == ">=" else value <= self.target

    def text(self) -> str:
        return f"{self.op} {self.target:g}"


#: Issue 20: every cross-seed metric of one (task, method), 6,000 examples × 16 seeds, within this
#: many seconds on 2 cores (:mod:`bench.perf.crossseed`, its ``crossseed_all`` row).
CROSSSEED_GOAL_SECONDS = 5.0

GOALS: dict[str, Goal] = {
    "ratio_train_ours_limit": Goal(">=", 0.9),
    "ratio_eval_ours_limit": Goal(">=", 0.9),
    "ratio_train_ours_ref": Goal(">=", 1.5, ("fashion_mnist",)),
    "overhead_share": Goal("<=", 0.10, ("fashion_mnist",)),
    "crossseed_all": Goal("<=", CROSSSEED_GOAL_SECONDS),
}


@dataclass(frozen=True)
class PerfRow:
    """One measured number; the environment columns are added by :func:`perf_table`."""

    task: str
    arch: str
    measure: str
    value: float
    unit: str
    images: int = 0
    note: str = ""
    load_avg_1m: float = float("nan")
    cpu_value: float = float("nan")


def with_goal(row: PerfRow, task: Task | None) -> dict[str, Any]:
    """``row`` as a dict plus ``goal`` (its text, "" where none applies) and ``meets_goal`` (None there)."""
    goal = GOALS.get(row.measure)
    if goal is None or not goal.applies(task):
        return asdict(row) | {"goal": "", "meets_goal": None}
    return asdict(row) | {"goal": goal.text(), "meets_goal": goal.met(row.value)}


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN when the denominator is 0 or either side is NaN."""
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return float("nan")
    return numerator / denominator


def perf_table(rows: Sequence[PerfRow], tasks: dict[str, Task], *, device: torch.device, threads: int, workers: int,
               repeats: int, timestamp: str) -> pd.DataFrame:
    """Rows plus goals and the environment columns, in :data:`PERF_SCHEMA` order. ``device`` is
    recorded as :func:`bench.env.device_label` writes it in result rows."""
    label = device_label(device)
    records = [with_goal(r, tasks.get(r.task)) | {
        "device": label, "torch_version": torch.__version__, "threads": threads, "workers": workers,
        "repeats": repeats, "timestamp": timestamp,
    } for r in rows]
    table = pa.Table.from_pylist([{c: rec[c] for c in PERF_COLUMNS} for rec in records], schema=PERF_SCHEMA)
    return table.to_pandas()


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as Parquet with :data:`PERF_SCHEMA`, atomically (temporary file, then rename)."""
    return write_table_atomic(pa.Table.from_pandas(df[PERF_COLUMNS], schema=PERF_SCHEMA, preserve_index=False), Path(path))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`; a loud error if it lacks the schema."""
    table = pq.read_table(path)
    missing = set(PERF_COLUMNS) - set(table.column_names)
    if missing:
        raise ValueError(f"{path} is not a bench perf table (missing columns {sorted(missing)})")
    return table.select(PERF_COLUMNS).cast(PERF_SCHEMA).to_pandas()


def output_path(out: str | Path | None, results: str | Path, timestamp: str) -> Path:
    """``out`` if it ends in .parquet; else ``out/perf-<timestamp>.parquet``, ``out`` defaulting to
    ``perf`` beside ``results``."""
    if out is not None and str(out).endswith(".parquet"):
        return Path(out)
    folder = Path(out) if out is not None else Path(results).resolve().parent / "perf"
    return folder / f"perf-{timestamp.replace(':', '').replace('-', '').replace('+0000', 'Z')}.parquet"


def format_value(value: float, unit: str) -> str:
    """``value`` for the text table: ``1,234 img/s``, ``0.25 s``, ``880 MiB``, ``1.50x``, ``12.5%``."""
    if math.isnan(value):
        return "nan"
    if unit == "images/s":
        return f"{value:,.0f} img/s"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "bytes":
        return f"{value / 2**20:,.0f} MiB"
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit == "share":
        return f"{value:.1%}"
    return f"{value:g} {unit}"


def format_cpu_value(value: float, unit: str) -> str:
    """The CPU-time column: ``1,234 img/CPU-s`` for throughputs, "" where there is none."""
    if math.isnan(value):
        return ""
    if unit == "images/s":
        return f"{value:,.0f} img/CPU-s"
    return format_value(value, unit)


def format_table(df: pd.DataFrame) -> str:
    """A plain-text table: task, measure, value (wall), the same from CPU time, images, goal, met,
    load average, note."""
    header = ("task", "measure", "value", "from CPU time", "images", "goal", "met", "load", "note")
    lines = [header]
    for r in df.itertuples(index=False):
        met = "" if r.meets_goal is None or pd.isna(r.meets_goal) else ("yes" if r.meets_goal else "NO")
        lines.append((r.task, r.measure, format_value(r.value, r.unit), format_cpu_value(r.cpu_value, r.unit),
                      str(r.images) if r.images else "", r.goal, met, f"{r.load_avg_1m:.1f}", r.note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        out.append("  ".join(cell.rjust(w) if i in (2, 3) else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))) + "  " + line[-1])
    if len(df):
        first = df.iloc[0]
        out.append(f"device={first.device} torch={first.torch_version} threads={first.threads} "
                   f"workers={first.workers} repeats={first.repeats} at {first.timestamp}")
    return "\n".join(out)
