"""Statistics over seeds: per-seed values and gaps to the oracle, the composite scores, means,
standard deviations, confidence intervals, the ranking and the paired test between adjacent ranks.

With v_s the value of seed s and S the seeds that have a (finite) value:

* mean = (1/|S|) Σ_s v_s, std = sqrt(Σ_s (v_s − mean)² / (|S| − 1)) (only the mean when |S| = 1);
* for metrics whose goal is to match the oracle, the gap to the oracle of the *same seed*,
  averaged over seeds: Δ = (1/|S'|) Σ_{s∈S'} |v_s − o_s|, S' the seeds that have an oracle value o_s;
* the composite scores (:data:`bench.metrics.COMPOSITES`, each with its formula there), per seed
  from those gaps, then mean ± std over seeds;
* 95% confidence interval of a mean over n seeds (Student t, n − 1 degrees of freedom):
  mean ± h, h = t_{0.975, n−1} · s / √n (n/a for one seed);
* "within noise": two adjacent ranked entries a (above) and b are within noise when a two-sided
  paired t-test over the seeds S both have, on the per-seed values r_s of the ranking metric,
  does not reject equality at α = 0.05: d_s = r_{a,s} − r_{b,s}, t = mean(d) / (sd(d) / √|S|),
  p = 2 · (1 − F_{t, |S|−1}(|t|)); within noise when p ≥ 0.05, or when |S| < 2 (untestable). With
  sd(d) = 0, p = 1 when mean(d) = 0 and p = 0 otherwise. Pairing by seed removes the variation the
  two entries share (same split, same original, same oracle);
* "no better than doing nothing": the same test of each ranked entry against the original, and
  which forgetting metrics have signal on the task (and so enter its composites):
  :mod:`bench.report.signal`.

The pinned rows (:data:`bench.results.PINNED_METHODS`: the references original and oracle, and
``retrain``, the oracle's recipe run as a method) come first in that order and are not ranked;
the other entries are ranked by the task's ranking metric, n/a last, ties by label.
"""
from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pandas as pd
from scipy import stats

from bench.metrics import COMPOSITES, METRICS, metric_goal
from bench.report.paired import NOISE_ALPHA, paired_t_test
from bench.report.select import TaskRows, check_rows, distinct, select_task_rows
from bench.report.signal import TaskSignal, task_signal, versus_original
from bench.results import ORACLE, PINNED_METHODS
from bench.tasks import TASKS, Task

#: The ranking metric of a task that names none, and of a task not in the registry.
DEFAULT_RANKING_METRIC: str = next(f.default for f in fields(Task) if f.name == "primary_metric")
#: Confidence level of the intervals over seeds.
CONFIDENCE = 0.95


def ordered_metrics(names: set[str]) -> list[str]:
    """Registered metrics in registry order, then unregistered ones alphabetically."""
    registered = [m for m in METRICS.names() if m in names]
    return registered + sorted(names - set(registered))


def per_seed_table(ok: pd.DataFrame, signal: TaskSignal | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Per (entry, seed): the stored values, and the gaps |v_s − o_s| to the oracle's value of the
    same seed for oracle-goal metrics (NaN where the oracle has no value for that seed), with every
    composite score added to the gap table, computed from the inputs that have signal on the task
    (``signal``, default :func:`~bench.report.signal.task_signal` of ``ok``; NaN when none of its
    forgetting inputs has). Returns (values, gaps, metric names)."""
    signal = task_signal(ok) if signal is None else signal
    metrics = ordered_metrics(set(ok["metric"]))
    values = ok.pivot(index=["entry", "seed"], columns="metric", values="value").reindex(columns=metrics)
    values = values.sort_index()
    gaps = pd.DataFrame(index=values.index)
    oracle = values.xs(ORACLE, level="entry") if ORACLE in values.index.get_level_values("entry") else None
    seeds = values.index.get_level_values("seed")
    inputs = [m for _, c in COMPOSITES.items() for m in c.of]
    for m in metrics + [m for m in dict.fromkeys(inputs) if m not in metrics]:
        if metric_goal(m) != "oracle":
            continue
        if oracle is None or m not in values.columns:
            gaps[m] = np.nan
            continue
        target = oracle[m].reindex(seeds).to_numpy()
        gaps[m] = np.abs(values[m].to_numpy() - target)
    for name, composite in COMPOSITES.items():
        used = list(signal.inputs(name))
        gaps[name] = composite.fn(gaps[used].to_numpy(dtype="float64")) if used else np.nan
    return values, gaps, metrics


def seed_stats(series: pd.Series) -> tuple[float, float, int]:
    """(mean, sample std with ddof = 1, number of seeds) over the non-NaN values; std is NaN for
    fewer than two values or when a value is infinite, the mean NaN when there is no value."""
    v = series.to_numpy(dtype="float64")
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return math.nan, math.nan, 0
    mean = float(np.mean(v))
    std = float(np.std(v, ddof=1)) if len(v) >= 2 and np.isfinite(v).all() else math.nan
    return mean, std, len(v)


def ci_half_width(std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student-t confidence interval of a mean over n seeds:
    h = t_{(1+c)/2, n−1} · s / √n (``scipy.stats.t.ppf``); NaN for n < 2 or a NaN std."""
    if n < 2 or math.isnan(std):
        return math.nan
    return float(stats.t.ppf(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n))


def per_seed_ranking(values: pd.DataFrame, gaps: pd.DataFrame, rank_by: str) -> pd.Series:
    """The per-(entry, seed) values of the ranking metric: the per-seed composite or gap for a
    composite or oracle-goal metric, else the stored value."""
    if rank_by in gaps.columns:
        return gaps[rank_by]
    if rank_by in values.columns:
        return values[rank_by]
    return pd.Series(math.nan, index=values.index)


def ranking_metric(task: str) -> str:
    """The task's ranking metric (:data:`DEFAULT_RANKING_METRIC` for a task not in the registry)."""
    return TASKS.get(task).primary_metric if task in TASKS else DEFAULT_RANKING_METRIC


def aggregate(df: pd.DataFrame, task: str) -> pd.DataFrame:
    """The per-entry summary of ``task``: one row per table entry, in table order (pinned rows
    first, then ranked by the task's ranking metric, n/a last, ties by label).

    Columns: ``method``, ``method_version``, ``reference`` (bool: a pinned row, one of
    :data:`bench.results.PINNED_METHODS`), ``rank`` (1-based; <NA> for pinned rows and entries
    without a ranking value), ``seeds``, ``data_used``, ``surrogate``,
    ``hyperparameters``, ``ranking_value``; per stored metric m: ``m_mean``, ``m_std``,
    ``m_seeds``, ``m_ci``; per oracle-goal metric: ``m_gap`` (mean over seeds of |v_s − o_s|),
    ``m_gap_std``, ``m_gap_seeds``, ``m_gap_ci``; per composite score c: ``c_mean``, ``c_std``,
    ``c_seeds``, ``c_ci``. ``*_ci`` is the half-width of the 95% confidence interval of the mean
    (:func:`ci_half_width`); ``ranking_ci`` that of ``ranking_value``. Between adjacent ranked
    entries: ``p_vs_above`` and ``seeds_vs_above`` (:func:`paired_t_test` on the per-seed ranking
    values against the entry ranked just above) and ``within_noise`` (p ≥ 0.05 or untestable;
    <NA> for references, rank 1 and unranked entries). Against the original (doing nothing, see
    :mod:`bench.report.signal`): ``p_vs_original``, ``seeds_vs_original``, ``better_than_original``
    (the mean is on the better side) and ``beats_original`` (beyond noise and better; <NA> for
    pinned and unranked entries). A task whose ranking metric has no signal has no ranks.
    """
    return summarize(select_task_rows(check_rows(df), task))


def summarize(selected: TaskRows, signal: TaskSignal | None = None) -> pd.DataFrame:
    """:func:`aggregate` for already selected rows (``signal``: their
    :func:`~bench.report.signal.task_signal`, computed when not given)."""
    ok = selected.ok
    rank_by = ranking_metric(selected.task)
    rank_goal = metric_goal(rank_by)
    if rank_goal is None:
        raise ValueError(
            f"task {selected.task!r} ranks by {rank_by!r}, which is neither a registered metric nor a composite "
            f"score; valid: {sorted(METRICS.names() + COMPOSITES.names())} — fix primary_metric in bench/tasks.py"
        )
    if ok.empty:
        return pd.DataFrame(columns=["method", "reference", "rank", "seeds", "ranking_value"])
    signal = task_signal(ok) if signal is None else signal
    values, gaps, metrics = per_seed_table(ok, signal)
    records = [entry_record(entry, rows, values, gaps, metrics, rank_by) for entry, rows in ok.groupby("entry", sort=True)]
    if signal.unranked_why(rank_by):  # a composite is NaN already; a single metric without signal ranks nothing
        for rec in records:
            rec["ranking_value"] = rec["ranking_ci"] = math.nan

    sign = -1.0 if rank_goal == "max" else 1.0  # "min" and "oracle" (a gap) rank ascending

    def order(rec: dict) -> tuple:
        if rec["reference"]:
            return (0, PINNED_METHODS.index(rec["method"]), 0.0, rec["entry"])
        value = float(rec["ranking_value"])
        return (1, int(math.isnan(value)), 0.0 if math.isnan(value) else sign * value, rec["entry"])

    records.sort(key=order)
    per_seed = per_seed_ranking(values, gaps, rank_by)
    rank = 0
    above: str | None = None
    for rec in records:
        rec["p_vs_above"], rec["seeds_vs_above"], rec["within_noise"] = math.nan, 0, pd.NA
        rec["p_vs_original"], rec["seeds_vs_original"], rec["better_than_original"] = math.nan, 0, pd.NA
        rec["beats_original"] = pd.NA
        if rec["reference"] or math.isnan(float(rec["ranking_value"])):
            rec["rank"] = pd.NA
            continue
        rank += 1
        rec["rank"] = rank
        nothing = versus_original(per_seed, rec["entry"], higher_is_better=rank_goal == "max")
        rec["p_vs_original"], rec["seeds_vs_original"] = nothing.p, nothing.seeds
        rec["better_than_original"], rec["beats_original"] = nothing.better_mean, nothing.beats
        if above is not None:
            p, n = paired_t_test(per_seed.xs(above, level="entry"), per_seed.xs(rec["entry"], level="entry"))
            rec["p_vs_above"], rec["seeds_vs_above"] = p, n
            rec["within_noise"] = bool(math.isnan(p) or p >= NOISE_ALPHA)
        above = rec["entry"]
    table = pd.DataFrame.from_records(records).set_index("entry")
    table["rank"] = table["rank"].astype("Int64")
    for name in ("within_noise", "better_than_original", "beats_original"):
        table[name] = table[name].astype("boolean")
    return table


def entry_record(entry: str, rows: pd.DataFrame, values: pd.DataFrame, gaps: pd.DataFrame, metrics: list[str],
                 rank_by: str) -> dict[str, object]:
    """One entry's row of :func:`summarize` before ranking: what it is, and the statistics over
    seeds of each stored metric, gap and composite score."""
    record: dict[str, object] = {
        "entry": entry,
        "method": rows["method"].iloc[0],
        "method_version": int(rows["method_version"].iloc[0]),
        "reference": rows["method"].iloc[0] in PINNED_METHODS,  # pinned, not ranked
        "seeds": int(rows["seed"].nunique()),
        "data_used": " / ".join(sorted(set(rows["data_used"]))),
        "surrogate": " / ".join(distinct(rows["surrogate"])),
        "hyperparameters": tuple(sorted(set(rows["hyperparameters"]))),
    }
    for m in metrics:
        mean, std, n = seed_stats(values.loc[entry, m])
        record[f"{m}_mean"], record[f"{m}_std"], record[f"{m}_seeds"] = mean, std, n
        record[f"{m}_ci"] = ci_half_width(std, n)
    for g in gaps.columns:
        mean, std, n = seed_stats(gaps.loc[entry, g])
        if g in COMPOSITES:
            names = (f"{g}_mean", f"{g}_std", f"{g}_seeds", f"{g}_ci")
        else:
            names = (f"{g}_gap", f"{g}_gap_std", f"{g}_gap_seeds", f"{g}_gap_ci")
        record.update(zip(names, (mean, std, n, ci_half_width(std, n))))
    if metric_goal(rank_by) == "oracle" and rank_by not in COMPOSITES:  # ranked by the gap to the oracle
        value_key, ci_key = f"{rank_by}_gap", f"{rank_by}_gap_ci"
    else:
        value_key, ci_key = f"{rank_by}_mean", f"{rank_by}_ci"
    record["ranking_value"] = record.get(value_key, math.nan)
    record["ranking_ci"] = record.get(ci_key, math.nan)
    return record
