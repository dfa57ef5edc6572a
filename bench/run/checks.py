"""What :func:`bench.run.driver.run` checks before any work, so that a user's mistake costs no
training and loses nothing: the folders it writes to (``--results``, ``--cache``, ``--out``), the
files of the user's where the leaderboard would go, the datasets of the plan and the content of the
reference cache. Each check raises an error saying what to do; the CLI prints it without a traceback.
"""
from __future__ import annotations

from pathlib import Path

from bench.datasets import load_dataset
from bench.files import check_writable_folder
from bench.references import check_cache
from bench.results import stored_tasks
from bench.run.plan import Plan


def check_outputs(results_dir: Path, cache_dir: Path, leaderboard: str | Path | None) -> None:
    """Every folder the run writes to is a folder (or can be created as one) this process can write
    in: a file or a read-only folder fails here, not after the work."""
    outputs = [(results_dir, "--results"), (cache_dir, "--cache")]
    for folder, option in outputs + ([(Path(leaderboard), "--out")] if leaderboard is not None else []):
        check_writable_folder(folder, option)


def check_inputs(plan: Plan, results_dir: Path, cache_dir: Path, leaderboard: str | Path | None,
                 data_root: str | None) -> None:
    """The planned runs can start and end: no file of the user's is in the leaderboard's way (its
    pages and plots of the planned and stored tasks), every dataset of the plan loads, and the
    reference cache is usable."""
    if leaderboard is not None:
        from bench.report import refuse_foreign_files, report_names

        refuse_foreign_files(leaderboard, report_names({r.task.name for r in plan.runs} | set(stored_tasks(results_dir))))
    for dataset in sorted({r.task.dataset for r in plan.runs}):
        load_dataset(dataset, data_root)
    check_cache(cache_dir)
