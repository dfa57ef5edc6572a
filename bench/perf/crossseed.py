"""The cross-seed measure of ``bench perf``: how long :func:`bench.crossseed.halves` takes per metric.

Issue 20 asks that every cross-seed metric of a (task, method) — its value, the noise floor and
the task's signal, with bootstrap CIs — compute for a 6,000-example forget set over 16 seeds in
under :data:`GOAL_SECONDS` on 2 cores. Real φ of that size would need 16 × 3 trained models, so
the populations here are synthetic (seeded numpy, named ``synthetic-phi-…`` in the table):
per-example means shared by all three populations, the unlearned and original populations shifted
from the oracle's by :data:`SYNTHETIC_SHIFTS`, unit Gaussian noise per model. The metrics' cost
depends on the shapes and hardly on the values, so synthetic φ time them as real φ would.

``ulira_accuracy`` is timed at the issue's seeds; ``eps_quality`` and ``klom_p95`` are refused
below :data:`bench.crossseed.MIN_NONPARAMETRIC_MODELS` models per population, so they are timed at
the smallest valid size, twice that (each half holds the minimum), and their rows say so. The
goal row :data:`TOTAL_MEASURE` sums the metrics a (task, method) of the measured size has — at
16 seeds ``ulira_accuracy`` alone, as its page shows no other —, and
:data:`WITH_NONPARAMETRIC_MEASURE` every row, with no goal. Each measure
is one :func:`~bench.crossseed.halves` call with its default bootstrap (the three populations,
both swaps, the CIs); repetitions are interleaved and the fastest kept, as the other measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from bench.crossseed import CROSS_SEED_METRICS, MIN_NONPARAMETRIC_MODELS, halves
from bench.perf.clock import Timing, interleaved, start_clock, stop_clock
from bench.perf.table import CROSSSEED_GOAL_SECONDS as GOAL_SECONDS, PerfRow

#: The measure whose row carries :data:`GOAL_SECONDS` (in :data:`bench.perf.table.GOALS`): the sum over the metrics.
TOTAL_MEASURE = "crossseed_all"
#: The sum over every row, the non-parametric ones at their larger N included (no goal: no task of
#: the issue's size has those metrics).
WITH_NONPARAMETRIC_MEASURE = "crossseed_all_with_nonparametric"
#: How far each population's φ sits from the oracle's, in units of the per-model noise: a method
#: that forgot most of it and an original that did not, so that no statistic sits at an edge case.
SYNTHETIC_SHIFTS = {"unlearned": 0.25, "original": 1.0}
#: Spread of the per-example means (φ of different images differ far more than across seeds).
EXAMPLE_SPREAD = 2.0
#: Metrics refused below MIN_NONPARAMETRIC_MODELS per population: timed at the smallest valid N.
NONPARAMETRIC = ("eps_quality", "klom_p95")
CPU = torch.device("cpu")


@dataclass(frozen=True)
class CrossSeedSize:
    """The forget set and model seeds per population of the measure (issue 20: 6,000 × 16)."""

    examples: int = 6000
    seeds: int = 16

    def __post_init__(self) -> None:
        """Fail before any timing: ``halves`` itself judges the seeds on one example of zeros."""
        if self.examples < 1:
            raise ValueError(f"the cross-seed measure needs at least one example, got {self.examples}")
        for metric in CROSS_SEED_METRICS.names():
            if metric not in NONPARAMETRIC:
                halves(metric, np.zeros((self.seeds, 1)), {}, n_boot=1)

    @property
    def label(self) -> str:
        return f"synthetic-phi-{self.examples}x{self.seeds}"

    def seeds_for(self, metric: str) -> int:
        """The seeds ``metric`` is timed at: the issue's, or the smallest its definition accepts."""
        return max(self.seeds, 2 * MIN_NONPARAMETRIC_MODELS) if metric in NONPARAMETRIC else self.seeds


def parse_size(text: str) -> CrossSeedSize:
    """``"6000x16"`` → :class:`CrossSeedSize` (what ``bench perf --crossseed`` takes)."""
    try:
        examples, seeds = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--crossseed takes EXAMPLESxSEEDS (e.g. 6000x16) or none, got {text!r}") from None
    return CrossSeedSize(examples, seeds)


def synthetic_populations(examples: int, seeds: int, seed: int = 0) -> dict[str, np.ndarray]:
    """φ ``[seeds, examples]`` of the oracle, unlearned and original populations (see the module)."""
    rng = np.random.default_rng([seed, examples, seeds])
    means = rng.normal(0.0, EXAMPLE_SPREAD, examples)
    shifts = {"oracle": 0.0} | SYNTHETIC_SHIFTS
    return {name: means + shift + rng.standard_normal((seeds, examples)) for name, shift in shifts.items()}


def metric_runs(size: CrossSeedSize, seed: int = 0) -> dict[str, Callable[[], Timing]]:
    """One timed :func:`~bench.crossseed.halves` per registered cross-seed metric, keyed by measure
    name; populations are drawn before the clock starts. ``Timing.images``: the examples."""
    runs: dict[str, Callable[[], Timing]] = {}
    for metric in CROSS_SEED_METRICS.names():
        pops = synthetic_populations(size.examples, size.seeds_for(metric), seed)
        oracle, others = pops.pop("oracle"), pops

        def timed(metric: str = metric, oracle: np.ndarray = oracle, others: dict = others) -> Timing:
            start = start_clock(CPU)
            halves(metric, oracle, others)
            return stop_clock(size.examples, start, CPU)

        runs[f"crossseed_{metric}"] = timed
    return runs


def measure_crossseed(size: CrossSeedSize = CrossSeedSize(), *, repeats: int, seed: int = 0,
                      progress: Callable[[str], None] | None = None) -> list[PerfRow]:
    """A row per cross-seed metric (seconds of its :func:`~bench.crossseed.halves`, fastest of
    ``repeats`` interleaved), :data:`TOTAL_MEASURE`, the sum of those computed at ``size`` (the
    issue's goal), and :data:`WITH_NONPARAMETRIC_MEASURE`, the sum of all."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    runs = metric_runs(size, seed)
    report = None if progress is None else (
        lambda name, rep, t, load: progress(f"{size.label}: {name} {rep + 1}/{repeats}: {t.seconds:.2f} s (load {load:.1f})"))
    best, loads = interleaved(runs, repeats, report)
    rows = []
    for name, t in best.items():
        n = size.seeds_for(name.removeprefix("crossseed_"))
        why = f"; its smallest valid N ({MIN_NONPARAMETRIC_MODELS} per half)" if n != size.seeds else ""
        rows.append(PerfRow(size.label, "", name, t.seconds, "s", t.images,
                            f"halves over {n} seeds per population{why}, fastest of {repeats}",
                            loads[name], t.cpu_seconds))
    load = float(np.mean(list(loads.values())))  # every measure ran `repeats` times: the mean of all starts
    here = {k: t for k, t in best.items() if size.seeds_for(k.removeprefix("crossseed_")) == size.seeds}
    names = ", ".join(k.removeprefix("crossseed_") for k in here)
    rows.append(PerfRow(size.label, "", TOTAL_MEASURE, sum(t.seconds for t in here.values()), "s", size.examples,
                        f"sum of the metrics a (task, method) has at {size.seeds} seeds ({names}); issue 20 asks "
                        f"<= {GOAL_SECONDS:g} s at {CrossSeedSize().label}", load,
                        sum(t.cpu_seconds for t in here.values())))
    rows.append(PerfRow(size.label, "", WITH_NONPARAMETRIC_MEASURE, sum(t.seconds for t in best.values()), "s",
                        size.examples, "sum of every crossseed_* row, the non-parametric ones at their own N", load,
                        sum(t.cpu_seconds for t in best.values())))
    return rows
