"""Which stored rows a task page reports: validation and canonical order of the store's rows, then
per task the latest task version, per method its latest method version, per (entry, seed) the
latest run; what was left out is counted so that the page can say so.

An *entry* is a table row: a method, or ``method #k`` when the store holds several resolved
hyperparameter sets for one non-reference method (k over the sorted hyperparameter JSON). When one
seed has several ok runs of the same entry (a rerun after a package upgrade, say), the run with the
latest timestamp counts and the others are superseded. A failed run whose run id also has ok rows
was retried successfully and is not listed as failed.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.results import COLUMNS, REFERENCE_METHODS

#: The run statuses of the store.
STATUSES: tuple[str, ...] = ("ok", "failed")


@dataclass(frozen=True, eq=False)
class TaskRows:
    """The rows of one task that its page reports, and what was left out.

    ``ok`` holds the counted metric rows, ``failed`` one row per failed run; both carry an extra
    ``entry`` column (the table row label) and a parsed ``ts`` timestamp.
    """

    task: str
    version: int
    ok: pd.DataFrame
    failed: pd.DataFrame
    older_task_rows: int
    older_task_versions: tuple[int, ...]
    older_method_rows: dict[str, tuple[int, tuple[int, ...]]]  # method → (rows, versions left out)
    superseded_rows: int
    latest: pd.Timestamp
    devices: tuple[str, ...]
    package_versions: tuple[str, ...]
    torch_versions: tuple[str, ...]


def check_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Validate the store's rows and return them in a canonical order (every column sorted),
    with a parsed UTC timestamp ``ts``, so that every later step is independent of row order."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"the results table lacks the columns {missing}; the reporter needs the store schema "
            f"({', '.join(COLUMNS)}) — load the store with bench.results rather than building rows by hand"
        )
    bad = sorted(set(df["status"]) - set(STATUSES))
    if bad:
        raise ValueError(f"unknown run status {bad} in the results; valid statuses: {list(STATUSES)}")
    nameless = df[(df["status"] == "ok") & (df["metric"] == "")]
    if len(nameless):
        raise ValueError(
            f"{len(nameless)} ok rows have an empty metric name (run ids {sorted(set(nameless['run_id']))[:3]}); "
            "only failed runs may have an empty metric — repair or remove those rows in results/"
        )
    rows = df.loc[:, list(COLUMNS)].copy()
    try:
        rows["ts"] = pd.to_datetime(rows["timestamp"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as err:
        raise ValueError(f"a result timestamp is not ISO 8601 ({err}); timestamps are written as UTC ISO 8601") from None
    for name in ("task_version", "method_version", "seed"):
        rows[name] = rows[name].astype("int64")
    rows["value"] = rows["value"].astype("float64")
    rows = rows.sort_values(list(COLUMNS), kind="mergesort", na_position="last")
    return rows.reset_index(drop=True)


def select_task_rows(rows: pd.DataFrame, task: str) -> TaskRows:
    """The rows of ``task`` that its page reports (``rows`` as returned by :func:`check_rows`)."""
    present = sorted(set(rows["task"]))
    rows = rows[rows["task"] == task]
    if rows.empty:
        raise ValueError(f"the results hold no rows of task {task!r}; tasks present: {present}")
    version = int(rows["task_version"].max())
    older = rows[rows["task_version"] < version]
    rows = rows[rows["task_version"] == version]

    latest_method = rows.groupby("method")["method_version"].transform("max")
    older_methods = rows[rows["method_version"] < latest_method]
    older_method_rows = {
        method: (len(group), tuple(sorted(int(v) for v in set(group["method_version"]))))
        for method, group in older_methods.groupby("method", sort=True)
    }
    rows = rows[rows["method_version"] == latest_method].copy()
    rows["entry"] = entry_labels(rows)

    ok = rows[rows["status"] == "ok"]
    before = len(ok)
    ok = ok.sort_values(["ts", "run_id"], kind="mergesort").drop_duplicates(["run_id", "metric"], keep="last")
    run_ts = ok.groupby("run_id")["ts"].max().rename("run_ts")
    runs = ok[["run_id", "entry", "seed"]].drop_duplicates().join(run_ts, on="run_id")
    runs = runs.sort_values(["entry", "seed", "run_ts", "run_id"], kind="mergesort")
    kept_runs = set(runs.drop_duplicates(["entry", "seed"], keep="last")["run_id"])
    ok = ok[ok["run_id"].isin(kept_runs)]
    ok = ok.sort_values(["entry", "seed", "metric"], kind="mergesort").reset_index(drop=True)

    failed = rows[(rows["status"] == "failed") & ~rows["run_id"].isin(set(rows.loc[rows["status"] == "ok", "run_id"]))]
    failed = failed.drop_duplicates("run_id").sort_values(["entry", "seed", "run_id"], kind="mergesort")

    return TaskRows(
        task=task,
        version=version,
        ok=ok,
        failed=failed.reset_index(drop=True),
        older_task_rows=len(older),
        older_task_versions=tuple(sorted(int(v) for v in set(older["task_version"]))),
        older_method_rows=older_method_rows,
        superseded_rows=before - len(ok),
        latest=rows["ts"].max(),
        devices=distinct(rows["device"]),
        package_versions=distinct(rows["package_version"]),
        torch_versions=distinct(rows["torch_version"]),
    )


def entry_labels(rows: pd.DataFrame) -> pd.Series:
    """Table row labels: the method name, or ``method #k`` (k over the sorted hyperparameter JSON)
    when a non-reference method has several hyperparameter sets. References are one row each."""
    labels = rows["method"].copy()
    for method, group in rows.groupby("method", sort=True):
        settings = sorted(set(group["hyperparameters"]))
        if method in REFERENCE_METHODS or len(settings) == 1:
            continue
        number = {hp: i + 1 for i, hp in enumerate(settings)}
        labels.loc[group.index] = [f"{method} #{number[hp]}" for hp in group["hyperparameters"]]
    return labels


def distinct(values: pd.Series) -> tuple[str, ...]:
    """The distinct non-empty strings of ``values``, sorted."""
    return tuple(sorted(v for v in set(values) if v != ""))
