"""The leaderboard: markdown pages and SVG plots generated from the results store.

:func:`render_report` turns the long-format result rows (one row per run and metric, see
:mod:`bench.results`) into one page per task plus ``index.md`` and the plots; :func:`write_report`
writes them; :func:`leaderboard_diff` is ``bench report --check``. The pipeline, one module each:

* :mod:`~bench.report.select` — which rows a page reports (latest task and method versions, the
  latest run per seed, failed runs);
* :mod:`~bench.report.paired` — the paired t-test over seeds behind every "within noise";
* :mod:`~bench.report.signal` — which forgetting metrics separate the original from the oracle on a
  task (only those enter its composites) and whether an entry beats doing nothing;
* :mod:`~bench.report.stats` — per-seed values, gaps to the oracle of the same seed, the composite
  scores of :mod:`bench.metrics`, mean ± std, confidence intervals, ranks, the paired tests;
* :mod:`~bench.report.cells` — the text of every number and markdown tables (tabulate);
* :mod:`~bench.report.summary`, :mod:`~bench.report.pages` and :mod:`~bench.report.index` — the
  ranked table, the task pages and the index;
* :mod:`~bench.report.plots` — forgetting vs. utility and runtime plots (deterministic SVG);
* :mod:`~bench.report.build` — render, write, ``--check``.

Numbers that papers publish for a task's setting (:mod:`bench.claims`) are shown beside ours, labelled.
"""
from bench.report.build import (
    FileDiff, format_leaderboard_diff, generated_files, leaderboard_diff, refuse_foreign_files, render_report, report_names,
    write_report,
)
from bench.report.pages import GENERATED_HEADER
from bench.report.stats import aggregate

__all__ = [
    "GENERATED_HEADER", "FileDiff", "aggregate", "format_leaderboard_diff", "generated_files", "leaderboard_diff",
    "refuse_foreign_files", "render_report", "report_names", "write_report",
]
