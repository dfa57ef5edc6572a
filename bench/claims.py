"""Numbers that papers publish for the settings of our tasks ("reported"), shown beside ours
("measured") on the task pages, in the manner of RobustBench's reported-vs-evaluated columns.

A :class:`Claim` is one published number: which of our tasks its setting matches, which of our
methods (registry name; ``oracle`` for a paper's "Retrain" row, ``original`` for its
pre-unlearning model), which of our metrics, the value **in our units** (fractions in [0, 1],
not percent; SalUn's UA = 1 − ``forget_accuracy``), the source (paper and table or figure) and a
note saying how the paper's setting or number differs from ours (recipe, conversion).

Rules for adding one:

* only where the paper reports a number for the same setting as a registered task (same dataset,
  architecture and forget rule; recipe differences go in ``note``);
* copy the number from the paper's own table or figure and name it in ``source``; a number that
  cannot be checked against the source text is not added;
* reported numbers are context, never used to rank: the leaderboard ranks by what it measured.

:data:`CLAIMS` is empty: the papers' tables (SalUn and Scissorhands on CIFAR-10 random 10%,
ResNet-18; the anti-samples paper on MNIST / Fashion-MNIST class removal) could not be checked
against a source text while this table was written, so none is copied from memory. Add each one
with its table number once read from the paper.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from bench.results import REFERENCE_METHODS
from bench.tasks import TASKS


@dataclass(frozen=True)
class Claim:
    """One number a paper reports for the setting of one of our tasks (value in our units)."""

    task: str
    method: str
    metric: str
    value: float
    source: str  # paper, venue/arXiv id, and the table or figure the number is read from
    note: str = ""  # how the paper's setting or number differs from ours (recipe, unit conversion)

    def __post_init__(self) -> None:
        for name in ("task", "method", "metric", "source"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"a claim needs a non-empty {name}: {self}")
        if not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise ValueError(f"a claim's value must be a finite number, got {self.value!r} in {self}")


#: The published numbers (see the module docstring for what may be added).
CLAIMS: tuple[Claim, ...] = ()


def claims_for(task: str, claims: Sequence[Claim] | None = None) -> tuple[Claim, ...]:
    """The claims of ``task`` (from ``claims``, default :data:`CLAIMS`), sorted by method,
    metric and source."""
    chosen = CLAIMS if claims is None else claims
    return tuple(sorted((c for c in chosen if c.task == task), key=lambda c: (c.method, c.metric, c.source)))


def validate_claims(claims: Sequence[Claim] | None = None) -> None:
    """Check that every claim names a registered task, a registered method (or a reference row), a
    registered metric or composite score, and is listed once; raises ValueError listing every
    problem."""
    from bench.metrics import COMPOSITES, METRICS
    from bench.registry import METHODS, load_methods

    load_methods()
    chosen = CLAIMS if claims is None else claims
    problems, seen = [], set()
    for c in chosen:
        if c.task not in TASKS:
            problems.append(f"{c}: unknown task {c.task!r} (see `bench ls tasks`)")
        if c.method not in METHODS and c.method not in REFERENCE_METHODS:
            problems.append(f"{c}: unknown method {c.method!r} (see `bench ls methods`; 'oracle' for a Retrain row)")
        if c.metric not in METRICS and c.metric not in COMPOSITES:
            problems.append(f"{c}: unknown metric {c.metric!r} (see `bench ls metrics`)")
        key = (c.task, c.method, c.metric, c.source)
        if key in seen:
            problems.append(f"{c}: listed twice for the same task, method, metric and source")
        seen.add(key)
    if problems:
        raise ValueError("invalid claims in bench/claims.py:\n  " + "\n  ".join(problems))
