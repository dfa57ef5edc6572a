"""The signal gate on the committed results: a published task must separate the original from the
oracle beyond noise on its ranking metric and on the cross-seed ``ulira_accuracy``, or be shown
unranked with the reason on its page (:mod:`bench.report.signal`, :func:`bench.report.crossseed.attack_gate`).

The tasks that must pass are named here: the digits suite and the memorising Fashion-MNIST tasks
once published with the attack's seeds. The low-memorisation forget set is the designed negative
control: it must *fail* the gate (the original already is where the oracle is), and its page
must say it is not ranked.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.examples import store_examples
from bench.report.crossseed import MIN_SEEDS, attack_gate
from bench.report.select import TaskRows, check_rows, select_task_rows
from bench.report.signal import task_signal
from bench.report.stats import ranking_metric
from bench.results import ORACLE, read_store
from bench.tasks import SUITES

ROOT = Path(__file__).resolve().parent.parent
RESULTS, LEADERBOARD = ROOT / "results", ROOT / "leaderboard"
NEGATIVE_CONTROL = "fmnist-lenet-mem10k-lowmem"


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    if not RESULTS.is_dir():
        pytest.fail(f"no committed results at {RESULTS}: the gate is checked on the published store")
    return check_rows(read_store(RESULTS))


def oracle_seeds(selected: TaskRows) -> int:
    return selected.ok.loc[selected.ok["entry"] == ORACLE, "seed"].nunique()


def gated_tasks(rows: pd.DataFrame) -> list[str]:
    """Every digits task, and each memorising task (but the negative control) published on enough seeds."""
    published = [t for t in SUITES["memorising"] if t != NEGATIVE_CONTROL and t in set(rows["task"])]
    return list(SUITES["quick"]) + [t for t in published if oracle_seeds(select_task_rows(rows, t)) >= MIN_SEEDS]


def test_every_gated_task_separates_original_from_oracle(rows: pd.DataFrame) -> None:
    failures = []
    for task in gated_tasks(rows):
        selected = select_task_rows(rows, task)
        rank_by = ranking_metric(task)
        why = task_signal(selected.ok).unranked_why(rank_by)
        if why:
            failures.append(f"{task}: ranking metric `{rank_by}`: {why}")
        attack = attack_gate(selected, store_examples(RESULTS))
        if attack:
            failures.append(f"{task}: `ulira_accuracy`: {attack}")
    assert not failures, "published tasks failing the signal gate:\n" + "\n".join(failures)


def test_negative_control_fails_the_gate_and_its_page_says_so(rows: pd.DataFrame) -> None:
    if NEGATIVE_CONTROL not in set(rows["task"]):
        pytest.skip(f"{NEGATIVE_CONTROL} is not published yet")
    selected = select_task_rows(rows, NEGATIVE_CONTROL)
    if oracle_seeds(selected) < MIN_SEEDS:
        pytest.skip(f"{NEGATIVE_CONTROL} has fewer than {MIN_SEEDS} seeds published: the attack is not computed yet")
    attack = attack_gate(selected, store_examples(RESULTS))
    assert "does not separate" in attack, f"{NEGATIVE_CONTROL}: the negative control separates original from oracle on `ulira_accuracy`"
    page = (LEADERBOARD / f"{NEGATIVE_CONTROL}.md").read_text(encoding="utf-8")
    assert "Not ranked" in page
