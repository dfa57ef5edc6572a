"""One execution of a plan's job graph (:class:`Schedule`) under the options of one call of
:func:`bench.run.driver.run` (:class:`Settings`): every job submitted at once, each finished job's
rows written as it arrives, failed and lost jobs recorded, the progress bar kept honest.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from bench.registry import get_method, importable
from bench.results import AlreadyStored, RunRecord, write_run
from bench.run.estimate import run_limit
from bench.run.evaluate import failed_rows
from bench.run.executors import Executor, LostWorker
from bench.run.jobs import Context, ReferenceJob, build_reference, execute_run
from bench.run.plan import RunSpec

@dataclass(frozen=True)
class Settings:
    """Where a call of :func:`run` reads and writes, and how it executes (its options, resolved)."""

    device: torch.device
    results_dir: Path
    cache_dir: Path
    data_root: str | None
    force: bool
    progress: bool
    executor: str
    jobs: int
    address: str | None
    cpus_per_run: float
    gpus_per_run: float
    timeout: float | None = None  # seconds per run; None: the default from its estimate; 0: no limit


@dataclass(frozen=True, eq=False)
class Graph:
    """The jobs of a plan: one per reference key, then the runs that depend on two of them, each
    with its estimated seconds; ``to_train``: the keys of the references not in the cache."""

    ref_jobs: dict[str, ReferenceJob] = field(default_factory=dict)
    ref_seconds: dict[str, float] = field(default_factory=dict)
    run_refs: dict[str, tuple[str, str]] = field(default_factory=dict)
    run_seconds: dict[str, float] = field(default_factory=dict)
    to_train: set[str] = field(default_factory=set)

    @property
    def total_seconds(self) -> float:
        return sum(self.ref_seconds.values()) + sum(self.run_seconds.values())


class Schedule:
    """One execution of a graph: every job is submitted at once (a run with the handles of its two
    references, which the executor resolves), then the driver writes each finished job's rows.
    The bar advances by each finished job's *estimated* seconds, so its fraction is the share of
    the estimated work done and its time left is honest."""

    def __init__(self, pool: Executor, ctx: Context, graph: Graph, todo: Sequence[RunSpec], settings: Settings,
                 bar: Any) -> None:
        self.pool, self.graph, self.todo, self.settings, self.bar = pool, graph, todo, settings, bar
        self.written: list[dict] = []
        self.counts = {"done": 0, "failed": 0, "lost": 0}
        self.refs_ok: set[str] = set()
        ref_handles = {key: pool.submit(build_reference, (job, ctx)) for key, job in graph.ref_jobs.items()}
        self.handles: dict[Any, tuple[str, Any]] = {h: ("ref", key) for key, h in ref_handles.items()}
        in_process = sorted({p.method for p in todo if not importable(get_method(p.method))})
        if in_process and settings.timeout != 0:
            print(f"note: {', '.join(in_process)} registered in this process only, so they run here without a "
                  "time limit; define a method in a module named in $UNLEARNBENCH_PLUGINS to have one", file=sys.stderr)
        for planned in todo:
            deps = [ref_handles[key] for key in graph.run_refs[planned.run_id]]
            limit = None if planned.method in in_process else run_limit(graph.run_seconds[planned.run_id], settings.timeout)
            self.handles[pool.submit(execute_run, (planned, ctx), deps, limit)] = ("run", planned)

    def drive(self) -> list[dict]:
        """Wait for the jobs until none is left; return the rows written. Raises when runs were
        lost with their workers (the completed ones are stored)."""
        while self.handles:
            self.show_status()
            for handle in self.pool.wait(list(self.handles)):
                kind, item = self.handles.pop(handle)
                self.finish(kind, item, handle)
        if self.counts["lost"]:
            raise RuntimeError(f"{self.counts['lost']} run(s) were lost with their workers; completed runs are "
                               "stored — run the same `bench run` again to do what is missing")
        return self.written

    def finish(self, kind: str, item: Any, handle: Any) -> None:
        """Take a finished job's value: write its rows, advance the bar."""
        try:
            value = self.pool.result(handle)
        except LostWorker as err:
            self.lost(kind, item, err)
            return
        except Exception as err:  # noqa: BLE001 - a reference that failed, or a run whose reference did
            self.failed(kind, item, err)
            return
        if kind == "ref":
            self.refs_ok.add(item)
            if value.record is not None:
                self.store(value.record)
            self.bar.update(self.graph.ref_seconds[item])
        else:
            self.record(item, value)
            self.bar.update(self.graph.run_seconds[item.run_id])
        self.show_status()

    def lost(self, kind: str, item: Any, err: LostWorker) -> None:
        """A job whose Ray worker or node was lost: the plan goes on without it."""
        if kind == "run":
            self.counts["lost"] += 1
        self.bar.write(f"lost worker: {item if kind == 'ref' else item.run_id}: {err.cause}")

    def failed(self, kind: str, item: Any, err: Exception) -> None:
        if kind == "ref":
            self.bar.write(f"error: reference {item} failed: {err}")
            self.bar.update(self.graph.ref_seconds[item])
        else:
            self.record(item, failed_rows(item, err, self.settings.device))
            self.bar.update(self.graph.run_seconds[item.run_id])

    def record(self, planned: RunSpec, record: RunRecord) -> None:
        if not self.store(record):
            self.counts["done"] += 1  # done by another `bench run`
            return
        rows = record.rows
        ok = rows[0]["status"] == "ok"
        self.counts["done" if ok else "failed"] += 1
        if not ok:
            self.bar.write(f"failed: {planned.task.name} {planned.method} seed {planned.seed}: "
                           f"{rows[0]['error'].splitlines()[0]}")
        refused = [r for r in rows if ok and r["status"] != "ok"]
        if refused:
            self.bar.write(f"not computed: {', '.join(r['metric'] for r in refused)} of {planned.task.name} "
                           f"{planned.method} seed {planned.seed}: {refused[0]['error']}")

    def store(self, record: RunRecord) -> bool:
        """Write one run's record; False for a run another ``bench run`` on the store completed
        meanwhile: that one is kept as it is, said in one line, and the plan goes on."""
        rows = record.rows
        first = rows[0]
        try:
            write_run(rows, self.settings.results_dir, force=self.settings.force, examples=record.examples)
        except AlreadyStored as err:
            self.bar.write(f"skipped: {first['task']} {first['method']} seed {first['seed']}: another `bench run` "
                           f"stored it meanwhile ({err.path})")
            return False
        self.written += rows
        return True

    def show_status(self) -> None:
        """The bar's postfix; a run counts as running once its references are done (capped by the
        executor's slots)."""
        ready = [item for kind, item in self.handles.values()
                 if kind == "run" and set(self.graph.run_refs[item.run_id]) <= self.refs_ok]
        running = min(self.pool.slots, len(ready))
        left = len(self.todo) - self.counts["done"] - self.counts["failed"] - self.counts["lost"]
        self.bar.set_postfix_str(f"done {self.counts['done']} · running {running} · failed {self.counts['failed']} "
                                 f"· left {left - running}")
