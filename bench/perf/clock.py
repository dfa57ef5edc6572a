"""Clocks of ``bench perf``: wall and CPU time of a measure, the fastest of its repetitions, the load.

CPU time is user + system of this process and of the child processes it reaped meanwhile
(DataLoader workers), which a machine shared with other jobs disturbs far less than wall time.
Repetitions keep the minimum (timeit's rule: on a shared machine the minimum time is the one
least disturbed by other load).
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from bench.train import sync


@dataclass(frozen=True)
class Timing:
    """Images processed, wall seconds, and CPU seconds (this process plus the child processes it
    reaped meanwhile, i.e. DataLoader workers)."""

    images: int
    seconds: float
    cpu_seconds: float = float("nan")

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def images_per_cpu_s(self) -> float:
        return self.images / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")


def fastest(timings: Sequence[Timing]) -> Timing:
    """The smallest wall time and the smallest CPU time of repetitions that processed the same images."""
    if not timings:
        raise ValueError("no timings to choose from")
    if len({t.images for t in timings}) != 1:
        raise ValueError(f"repetitions processed different image counts: {[t.images for t in timings]}")
    return Timing(timings[0].images, min(t.seconds for t in timings), min(t.cpu_seconds for t in timings))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its reaped children."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def start_clock(device: torch.device) -> tuple[float, float]:
    """Wall and CPU seconds now, after the device's queued work."""
    sync(device)
    return time.perf_counter(), cpu_seconds()


def stop_clock(images: int, start: tuple[float, float], device: torch.device) -> Timing:
    """The :class:`Timing` of ``images`` since ``start`` (a :func:`start_clock`), after the device's queued work."""
    sync(device)
    return Timing(images, time.perf_counter() - start[0], cpu_seconds() - start[1])


def load_average() -> float:
    """The machine's 1-minute load average; NaN where the platform has none."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def interleaved(runs: dict[str, Callable[[], Timing]], repeats: int,
                report: Callable[[str, int, Timing, float], None] | None = None
                ) -> tuple[dict[str, Timing], dict[str, float]]:
    """Run every measure of ``runs`` once per repetition, ``repeats`` times, interleaved (a burst of
    other load hits every measure alike); return each one's :func:`fastest` timing and the mean
    load average seen at its starts. ``report(name, repetition, timing, load)`` after each call."""
    timings: dict[str, list[Timing]] = {name: [] for name in runs}
    loads: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(repeats):
        for name, fn in runs.items():
            loads[name].append(load_average())
            timings[name].append(fn())
            if report is not None:
                report(name, rep, timings[name][-1], loads[name][-1])
    return ({name: fastest(ts) for name, ts in timings.items()},
            {name: sum(ls) / len(ls) for name, ls in loads.items()})
