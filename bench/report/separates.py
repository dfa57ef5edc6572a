"""``bench signal TASK``: does the task separate the original (which forgot nothing) from the
oracle (which never saw the forget set)? The same two sections its leaderboard page shows —
the per-run forgetting metrics (:mod:`bench.report.signal`: original − oracle and oracle − oracle
with 95 % intervals, the paired p, the verdict) and the cross-seed per-example attack's floor,
signal and control (:mod:`bench.report.crossseed`) — from the stored runs of the chosen seeds,
without the methods: a task designer asks it before any method is run.

Only the store is read; nothing is trained. Seeds that lack the original's or the oracle's runs
are an error that names the ``bench run`` that stores them.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import pandas as pd

from bench.report.crossseed import ExamplesOf, crossseed_section
from bench.report.select import TaskRows, check_rows, select_task_rows
from bench.report.signal import signal_section, task_signal
from bench.report.stats import ranking_metric
from bench.results import ORACLE, ORIGINAL


def seeds_of(selected: TaskRows, entry: str) -> set[int]:
    return {int(s) for s in selected.ok.loc[selected.ok["entry"] == entry, "seed"]}


def signal_rows(df: pd.DataFrame, task: str, seeds: Sequence[int] | None, results: str) -> TaskRows:
    """The task's selected rows (as its page counts them), cut to ``seeds`` (default: every seed the
    original and the oracle both have). Raises ValueError, naming the ``bench run`` to do, when a
    chosen seed lacks the original's or the oracle's runs, or fewer than two seeds are shared."""
    selected = select_task_rows(check_rows(df), task)
    have = {entry: seeds_of(selected, entry) for entry in (ORIGINAL, ORACLE)}
    wanted = sorted(set(seeds)) if seeds is not None else sorted(have[ORIGINAL] & have[ORACLE])
    missing = sorted(set(wanted) - (have[ORIGINAL] & have[ORACLE]))
    if missing or len(wanted) < 2:
        need = " ".join(str(s) for s in (missing or sorted(set(wanted) | {0, 1})))
        got = f"lacks the original's or the oracle's runs of seeds {missing}" if missing else \
            f"has the original and the oracle on {len(wanted)} seed(s) of {task}; the paired test needs two or more"
        raise ValueError(f"the store {results} {got}: run `bench run {task} original --seeds {need} --results {results}` "
                         "(it stores the oracle's rows of each seed too), then ask again")
    ok = selected.ok[selected.ok["seed"].isin(wanted)].reset_index(drop=True)
    return replace(selected, ok=ok)


def signal_report(df: pd.DataFrame, task: str, seeds: Sequence[int] | None, *, results: str,
                  examples_of: ExamplesOf | None = None) -> str:
    """The text ``bench signal`` prints (markdown, as on the task's page)."""
    selected = signal_rows(df, task, seeds, results)
    used = sorted(int(s) for s in set(selected.ok["seed"]))
    lines = [f"# Signal of {task} (v{selected.version}): original vs oracle over seeds {' '.join(map(str, used))}", ""]
    lines += signal_section(task_signal(selected.ok), ranking_metric(task))
    lines += crossseed_section(selected, examples_of, entries=False)
    return "\n".join(lines).rstrip("\n") + "\n"
