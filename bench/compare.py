"""Two stores compared run by run: which numbers moved, and why they most likely did.

:func:`compare` matches the baseline's and the re-run's runs by (task, method, seed) — not by run
id, so that a changed default hyperparameter (which changes the run id) is still compared and
reported — and every metric but the timings must agree within its tolerance (default: exactly).
:func:`bench.check.check` re-runs a suite and calls it; :func:`format_check` is what
``bench check`` prints.

Likely cause. When numbers moved, the baseline and new rows of the run are compared field by
field: task version, method version, resolved hyperparameters, unlearnbench and torch versions,
data split hash, device, reference models, and the unlearned model's hash. What differs is named
("method version changed 1 → 2", "hyperparameters differ: lr 0.001 → 0.002", "torch 2.4.0 →
2.5.0"); when nothing does, the cause is nondeterminism or a code change that did not bump a
version — a bit-identical model (same ``model_hash``) with moved metrics points at the metric code.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

#: Metrics that are timings, never compared.
NOT_COMPARED: tuple[str, ...] = ("runtime_seconds", "speedup")
#: Default absolute tolerance per metric; every metric not listed (all of them) must match exactly.
DEFAULT_TOLERANCES: dict[str, float] = {}
#: Below this |Δ| (and with nothing else differing) a moved number is most likely floating-point
#: summation order (thread count), which the message then says.
FLOAT_ORDER_DELTA = 1e-3


Key = tuple[str, str, int]  # (task, method, seed)


@dataclass(frozen=True)
class Moved:
    """One metric of one run that differs from the baseline by more than its tolerance."""

    metric: str
    baseline: float  # NaN when only the new run has the metric
    new: float  # NaN when only the baseline has it
    tolerance: float
    note: str = ""  # "only in the baseline" / "only in the re-run"

    @property
    def delta(self) -> float:
        return self.new - self.baseline


@dataclass(frozen=True)
class RunDiff:
    """A (task, method, seed) whose metrics moved, with the fields that differ (likely causes)."""

    key: Key
    moved: tuple[Moved, ...]
    causes: tuple[str, ...]


@dataclass(frozen=True)
class CheckResult:
    """What :func:`compare` found. ``ok`` when nothing moved and no run is missing or failed."""

    compared: tuple[Key, ...]  # runs present on both sides and compared
    values_compared: int
    moved: tuple[RunDiff, ...]
    missing_in_rerun: tuple[Key, ...]  # in the baseline, not (successfully) re-run
    missing_in_baseline: tuple[Key, ...]  # re-run, not in the baseline
    failed_in_rerun: tuple[tuple[Key, str], ...]  # (key, first line of the error)
    tolerances: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # how the re-run was matched to the baseline (threads, ISA)

    @property
    def ok(self) -> bool:
        return not (self.moved or self.missing_in_rerun or self.missing_in_baseline or self.failed_in_rerun)

    def format(self) -> str:
        return format_check(self)


def latest_runs(df: pd.DataFrame, prefer: dict[Key, str] | None = None) -> dict[Key, pd.DataFrame]:
    """Per (task, method, seed), the rows of the one ok run to compare: the run with the run id
    in ``prefer`` when the store has it (the identical configuration), else the latest (highest
    task version, then method version, then timestamp)."""
    ok = df[df["status"] == "ok"].copy()
    if ok.empty:
        return {}
    ok["seed"] = ok["seed"].astype("int64")
    ok["_ts"] = pd.to_datetime(ok["timestamp"], utc=True, format="ISO8601")
    out: dict[Key, pd.DataFrame] = {}
    for (task, method, seed), rows in ok.groupby(["task", "method", "seed"], sort=True):
        key = (str(task), str(method), int(seed))
        run_id = (prefer or {}).get(key)
        if run_id is None or run_id not in set(rows["run_id"]):
            runs = rows.groupby("run_id").agg(tv=("task_version", "max"), mv=("method_version", "max"), ts=("_ts", "max"))
            run_id = runs.sort_values(["tv", "mv", "ts"], kind="mergesort").index[-1]
        out[key] = rows[rows["run_id"] == run_id].drop(columns="_ts").drop_duplicates("metric", keep="last")
    return out


def hp_changes(old: str, new: str) -> str:
    """``lr 0.001 → 0.002, epochs 5 → (absent)`` for two hyperparameter JSON strings."""
    try:
        a, b = json.loads(old or "{}"), json.loads(new or "{}")
    except json.JSONDecodeError:
        return f"{old} → {new}"
    parts = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "(absent)") != b.get(k, "(absent)"):
            parts.append(f"{k} {json.dumps(a[k]) if k in a else '(absent)'} → {json.dumps(b[k]) if k in b else '(absent)'}")
    return ", ".join(parts)


def likely_causes(base: pd.Series, new: pd.Series, moved: Sequence[Moved]) -> tuple[str, ...]:
    """What differs between the baseline row and the new row of one run (see the module docstring)."""
    causes = []
    if int(base["task_version"]) != int(new["task_version"]):
        causes.append(f"task version changed {int(base['task_version'])} → {int(new['task_version'])}")
    if int(base["method_version"]) != int(new["method_version"]):
        causes.append(f"method version changed {int(base['method_version'])} → {int(new['method_version'])}")
    changes = hp_changes(str(base["hyperparameters"]), str(new["hyperparameters"]))
    if changes:
        causes.append(f"hyperparameters differ: {changes}")
    for col, label in (("package_version", "unlearnbench"), ("torch_version", "torch"), ("device", "device")):
        if str(base[col]) != str(new[col]):
            causes.append(f"{label} {base[col] or '(unknown)'} → {new[col] or '(unknown)'}")
    if str(base["split_hash"]) != str(new["split_hash"]):
        causes.append("the data split changed (split_hash differs): dataset files or the split code")
    if str(base["reference_key"]) != str(new["reference_key"]):
        causes.append("the reference models differ (reference_key): their recipe, the cache format or the data")
    if not causes:
        same_model = str(base["model_hash"]) != "" and str(base["model_hash"]) == str(new["model_hash"])
        if same_model:
            causes.append("same versions, hyperparameters and a bit-identical unlearned model (same model_hash): "
                          "the metric computation changed without a version bump")
        else:
            git = ""
            if str(base["git_commit"]) and str(base["git_commit"]) != str(new["git_commit"]):
                git = (f"; the baseline was computed at git {base['git_commit']}, the re-run at "
                       f"{new['git_commit'] or '(unknown)'}: see `git diff {str(base['git_commit']).removesuffix('-dirty')} -- methods/ bench/`")
            causes.append(f"same versions and hyperparameters: nondeterminism or an unversioned code change{git}")
            tiny = [m for m in moved if not m.note and abs(m.delta) <= FLOAT_ORDER_DELTA]
            if tiny and len(tiny) == len(moved):
                causes.append(
                    f"every difference is tiny (|Δ| ≤ {FLOAT_ORDER_DELTA:g}), the mark of floating-point sums taken in "
                    "another order: a different number of CPU threads (torch's default is the core count) or "
                    "BLAS build; re-run with the baseline's thread count (OMP_NUM_THREADS) or pass --tolerance")
    return tuple(causes)


def values_equal(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= tol


def compare(baseline: pd.DataFrame, new: pd.DataFrame, *, tolerances: dict[str, float] | None = None) -> CheckResult:
    """Compare every metric of the new runs with the baseline, per (task, method, seed).

    Metrics in :data:`NOT_COMPARED` are skipped; a metric passes when |new − baseline| ≤ its
    tolerance (default :data:`DEFAULT_TOLERANCES`, else 0: exact), two NaNs being equal. A metric
    present on one side only counts as moved. Runs present on one side only, and runs that failed
    in the re-run, are reported."""
    tol = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    new_runs = latest_runs(new)
    base_runs = latest_runs(baseline, prefer={k: str(v["run_id"].iloc[0]) for k, v in new_runs.items()})
    failed_new = new[(new["status"] != "ok")]
    failures = []
    for (task, method, seed), rows in failed_new.groupby(["task", "method", "seed"], sort=True):
        key = (str(task), str(method), int(seed))
        if key not in new_runs:
            error = str(rows["error"].iloc[0])
            failures.append((key, next((ln.strip() for ln in error.splitlines() if ln.strip()), "(no error text)")))
    failed_keys = {k for k, _ in failures}

    moved_runs, compared, n_values = [], [], 0
    for key in sorted(set(base_runs) & set(new_runs)):
        b = base_runs[key].set_index("metric")
        n = new_runs[key].set_index("metric")
        moved = []
        for metric in sorted((set(b.index) | set(n.index)) - set(NOT_COMPARED)):
            t = tol.get(metric, 0.0)
            if metric not in n.index:
                moved.append(Moved(metric, float(b.loc[metric, "value"]), math.nan, t, "only in the baseline"))
                continue
            if metric not in b.index:
                moved.append(Moved(metric, math.nan, float(n.loc[metric, "value"]), t, "only in the re-run"))
                continue
            n_values += 1
            bv, nv = float(b.loc[metric, "value"]), float(n.loc[metric, "value"])
            if not values_equal(bv, nv, t):
                moved.append(Moved(metric, bv, nv, t))
        compared.append(key)
        if moved:
            moved_runs.append(RunDiff(key, tuple(moved), likely_causes(b.iloc[0], n.iloc[0], moved)))
    return CheckResult(
        compared=tuple(compared),
        values_compared=n_values,
        moved=tuple(moved_runs),
        missing_in_rerun=tuple(sorted(set(base_runs) - set(new_runs) - failed_keys)),
        missing_in_baseline=tuple(sorted(set(new_runs) - set(base_runs))),
        failed_in_rerun=tuple(failures),
        tolerances=tol,
    )


def number(x: float) -> str:
    return "(none)" if math.isnan(x) else f"{x:.6g}"


def format_check(result: CheckResult) -> str:
    """The report of :func:`compare`: a verdict line, then every moved number grouped by task and
    method with its likely cause, then missing and failed runs."""
    tol = ", ".join(f"{k}={v:g}" for k, v in sorted(result.tolerances.items())) or "none (every metric exact)"
    head = (f"compared {result.values_compared} number(s) in {len(result.compared)} run(s) with the baseline "
            f"(tolerances: {tol}; not compared: {', '.join(NOT_COMPARED)}, timings)")
    notes = "".join(f"\n  note: {n}" for n in result.notes)
    if result.ok:
        return f"bench check: OK — {head}: nothing moved.{notes}"
    n_moved = sum(len(r.moved) for r in result.moved)
    lines = [f"bench check: FAILED — {head}: {n_moved} number(s) moved in {len(result.moved)} run(s); "
             f"{len(result.missing_in_rerun)} run(s) missing in the re-run, {len(result.missing_in_baseline)} "
             f"missing in the baseline, {len(result.failed_in_rerun)} failed.{notes}"]
    groups: dict[tuple[str, str], list[RunDiff]] = {}
    for r in result.moved:
        groups.setdefault(r.key[:2], []).append(r)
    for (task, method), runs in groups.items():
        metrics = sorted({m.metric for r in runs for m in r.moved})
        seeds = ", ".join(str(r.key[2]) for r in runs)
        lines += ["", f"method {method} on task {task} (seed {seeds}): moved {', '.join(metrics)}"]
        causes = []
        for r in runs:
            causes += [c for c in r.causes if c not in causes]
        lines += [f"  likely cause: {c}" for c in causes]
        for r in runs:
            for m in r.moved:
                if m.note:
                    detail = f"{m.note} ({number(m.baseline if math.isnan(m.new) else m.new)})"
                else:
                    detail = f"{number(m.baseline)} → {number(m.new)} (Δ {m.delta:+.3g}, tolerance {m.tolerance:g})"
                lines.append(f"    seed {r.key[2]}  {m.metric}: {detail}")
    if result.failed_in_rerun:
        lines += ["", "failed in the re-run:"]
        lines += [f"  {t} · {m} · seed {s}: {err}" for (t, m, s), err in result.failed_in_rerun]
    if result.missing_in_rerun:
        lines += ["", "in the baseline but not re-run (method or task removed or renamed, or no longer applicable):"]
        lines += [f"  {t} · {m} · seed {s}" for t, m, s in result.missing_in_rerun]
    if result.missing_in_baseline:
        lines += ["", "re-run but not in the baseline (a new method or task, or a run that failed there: run it and "
                  "commit its results):"]
        lines += [f"  {t} · {m} · seed {s}" for t, m, s in result.missing_in_baseline]
    lines += ["", "A deliberate change bumps the method's or task's version, re-runs (`bench run`) and commits the new "
              "results; an unintended one is a regression to fix."]
    return "\n".join(lines)
