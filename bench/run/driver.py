"""The public entry point :func:`run`: plan task × method × seed, estimate it, execute its graph on
an executor and write every returned row to the results store, then regenerate the leaderboard.

For each (task, seed) the workers split the data, get the references (cached), predict the
oracle's logits once, then for every planned method: copy the original, hand the method the data
it declared (timed, nothing else inside the timer), predict logits once per split, compute every
metric (:mod:`bench.run.evaluate`). The oracle itself is stored as the reference run ``oracle`` of
each (task, seed). Runs already stored are skipped (``force`` redoes them); a method that raises
is stored as a failed run with its traceback and the suite goes on; so is one that runs past its
time limit, exits or kills its worker process (:mod:`bench.run.workers`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from bench.datasets import load_dataset
from bench.env import default_cache_dir, resolve_device
from bench.files import USER_LEADERBOARD, USER_RESULTS, check_writable_folder
from bench.references import check_cache
from bench.registry import get_method, importable, list_methods
from bench.results import AlreadyStored, stored_runs, stored_tasks, write_run
from bench.run.estimate import (PUBLISHED_RESULTS, Throughput, estimate_group, format_seconds, probe_throughput,
                                run_limit, runtime_ratios)
from bench.run.evaluate import failed_rows
from bench.run.executors import Executor, LostWorker, make_executor
from bench.run.jobs import Context, ReferenceJob, build_reference, execute_run, reference_jobs_for
from bench.run.plan import DEFAULT_SEEDS, Plan, RunSpec, groups_to_do, make_plan, oracle_run_id, runs_to_do
from bench.splits import build_task_data
from bench.tasks import Task, get_suite


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


def run(
    tasks: Sequence[str | Task] | str | None = None,
    methods: Sequence[str] | str | None = None,
    seeds: Iterable[int] = DEFAULT_SEEDS,
    *,
    suite: str | None = None,
    hp: dict[str, Any] | None = None,
    device: str = "cpu",
    results: str | Path = USER_RESULTS,
    leaderboard: str | Path | None = USER_LEADERBOARD,
    cache: str | Path | None = None,
    data_root: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    executor: str = "local",
    jobs: int = 2,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    dry_run: bool = False,
    timeout: float | None = None,
) -> list[dict]:
    """Run task × method × seed, store the rows, regenerate the leaderboard; return the new rows.

    ``tasks`` and ``methods`` default to the ``suite`` (``"quick"``: the digits tasks) and to every
    registered method. ``results`` and ``leaderboard`` default to the user's own store under ``runs/``
    (:data:`bench.files.USER_RESULTS`). Runs already in ``results`` are skipped unless ``force``. ``executor``:
    ``local`` (in this process), ``processes`` (``jobs`` workers) or ``ray`` (``address`` of a
    cluster, else a local Ray; each run asks for ``cpus_per_run`` / ``gpus_per_run``). ``dry_run``:
    print the plan and its estimate, then stop (nothing is trained, run or written). ``timeout``:
    seconds a method run may take before it is stopped and stored as failed (default: ten times
    its estimate, at least 300 s; ``0``: no limit, and the local executor runs the method in this
    process, where a debugger can follow it). A limited run executes in a worker process that can
    be killed, so a method that hangs, exits or kills its process fails alone.
    """
    if timeout is not None and not (timeout >= 0 and timeout != float("inf")):
        raise ValueError(f"--timeout must be a number of seconds >= 0 (0: no limit), got {timeout}")
    task_list = [tasks] if isinstance(tasks, (str, Task)) else list(tasks) if tasks else list(get_suite("quick" if suite is None else suite))
    method_list = [methods] if isinstance(methods, str) else list(methods) if methods else list_methods()
    seed_list = list(seeds)  # checked (integers in range, duplicates merged) by make_plan
    dev = resolve_device(device)
    settings = Settings(dev, Path(results), Path(cache) if cache else default_cache_dir(),
                        str(data_root) if data_root else None, force, progress, executor, jobs, address,
                        cpus_per_run, gpus_per_run, timeout)

    outputs = [(settings.results_dir, "--results"), (settings.cache_dir, "--cache")]
    for folder, option in outputs + ([(Path(leaderboard), "--out")] if leaderboard is not None else []):
        check_writable_folder(folder, option)  # a file or a read-only folder fails here, before any work
    plan = make_plan(task_list, method_list, seed_list, hp, dev.type)
    if leaderboard is not None:  # a file of the user's in the leaderboard's way fails here, not after the work
        from bench.report import refuse_foreign_files, report_names

        refuse_foreign_files(leaderboard, report_names({r.task.name for r in plan.runs} | set(stored_tasks(results))))
    for dataset in sorted({r.task.dataset for r in plan.runs}):
        load_dataset(dataset, data_root)  # missing data fails here, loudly, before any work
    check_cache(settings.cache_dir)  # so does a cache whose content no reference can use
    for task_name, method_name, reason in plan.not_applicable:
        print(f"not applicable: {method_name} on {task_name}: {reason}", file=sys.stderr)
    stored = stored_runs(settings.results_dir)
    todo = runs_to_do(plan, stored, force=force)
    groups = groups_to_do(plan, todo, stored, dev.type)
    graph = build_graph(groups, stored, settings)
    print_plan(plan, todo, graph, settings, estimated=bool(groups))
    written: list[dict] = []
    if dry_run:
        return written
    if groups:
        written = execute(graph, todo, settings)
    if leaderboard is not None:
        from bench.report import write_report
        from bench.results import read_store

        write_report(read_store(settings.results_dir), leaderboard)
    return written


def build_graph(groups: dict[tuple[Task, int], list[RunSpec]], stored: dict[str, str], settings: Settings) -> Graph:
    """The reference jobs and run dependencies of ``groups``, with the estimate of each job
    (:mod:`bench.run.estimate`; the machine is probed once per task)."""
    graph = Graph()
    if not groups:
        return graph
    ratios = runtime_ratios(settings.results_dir, PUBLISHED_RESULTS)
    throughput: dict[str, Throughput] = {}
    for (task, seed), runs in groups.items():
        start = time.perf_counter()
        td = build_task_data(task, seed, settings.data_root)
        setup = time.perf_counter() - start
        if task.name not in throughput:
            throughput[task.name] = probe_throughput(td, settings.device)
        write_oracle = settings.force or stored.get(oracle_run_id(task, seed, settings.device.type)) != "ok"
        original_job, oracle_job = reference_jobs_for(td, settings.device, write_oracle)
        cached = tuple((settings.cache_dir / f"{j.key}.safetensors").exists() for j in (original_job, oracle_job))
        graph.to_train.update(j.key for j, c in zip((original_job, oracle_job), cached) if not c)
        est = estimate_group(td, runs, refs_cached=cached, speed=throughput[task.name], ratios=ratios,
                             oracle_rows=write_oracle, setup_seconds=setup)
        graph.ref_jobs.setdefault(original_job.key, original_job)
        graph.ref_jobs[oracle_job.key] = oracle_job
        graph.ref_seconds.setdefault(original_job.key, est.original)
        graph.ref_seconds[oracle_job.key] = est.oracle
        for planned in runs:
            graph.run_refs[planned.run_id] = (original_job.key, oracle_job.key)
            graph.run_seconds[planned.run_id] = est.runs[planned.run_id]
    return graph


def print_plan(plan: Plan, todo: Sequence[RunSpec], graph: Graph, settings: Settings, *, estimated: bool) -> None:
    """The plan's one line on stderr: runs stored and to do, references to train, the estimate."""
    n_train = len(graph.to_train)
    print(f"plan: {len(plan.runs)} run(s), {len(plan.runs) - len(todo)} already stored, {len(todo)} to do"
          + (f"; {n_train} reference model(s) to train" if n_train else "")
          + (f"; estimated {format_seconds(graph.total_seconds)} on {settings.device} ({settings.executor}): "
             f"references and set-up {format_seconds(sum(graph.ref_seconds.values()))}, "
             f"runs {format_seconds(sum(graph.run_seconds.values()))}"
             if estimated else ""), file=sys.stderr)


def execute(graph: Graph, todo: Sequence[RunSpec], settings: Settings) -> list[dict]:
    """Execute ``graph`` on the executor ``settings`` names, behind a progress bar; return the rows
    written. Ctrl-C, or a run that cannot be stored, cancels what has not started (completed runs are
    stored) and re-raises."""
    from tqdm.auto import tqdm

    pool = make_executor(settings.executor, jobs=settings.jobs, address=settings.address,
                         cpus_per_run=settings.cpus_per_run, gpus_per_run=settings.gpus_per_run)
    ctx = Context(str(settings.device), str(settings.cache_dir), settings.data_root, ship_weights=pool.ships_weights)
    bar = tqdm(total=graph.total_seconds, disable=not settings.progress, dynamic_ncols=True, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} est-s [{elapsed}<{remaining}] {postfix}")
    try:
        written = Schedule(pool, ctx, graph, todo, settings, bar).drive()
    except BaseException:  # Ctrl-C, or a write that failed (a full disk): what has not started is cancelled
        pool.shutdown(cancel=True)
        raise
    finally:
        bar.close()
    pool.shutdown()
    return written


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
        for planned in todo:
            deps = [ref_handles[key] for key in graph.run_refs[planned.run_id]]
            limit = run_limit(graph.run_seconds[planned.run_id], settings.timeout)
            if limit is not None and not importable(get_method(planned.method)):
                print(f"note: {planned.method} is registered in this process only, so it runs here without a "
                      "time limit; define it in a module named in $UNLEARNBENCH_PLUGINS to have one",
                      file=sys.stderr)
                limit = None
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
            if value.rows:
                self.store(list(value.rows))
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

    def record(self, planned: RunSpec, rows: list[dict]) -> None:
        if not self.store(rows):
            self.counts["done"] += 1  # done by another `bench run`
            return
        ok = rows[0]["status"] == "ok"
        self.counts["done" if ok else "failed"] += 1
        if not ok:
            self.bar.write(f"failed: {planned.task.name} {planned.method} seed {planned.seed}: "
                           f"{rows[0]['error'].splitlines()[0]}")
        refused = [r for r in rows if ok and r["status"] != "ok"]
        if refused:
            self.bar.write(f"not computed: {', '.join(r['metric'] for r in refused)} of {planned.task.name} "
                           f"{planned.method} seed {planned.seed}: {refused[0]['error']}")

    def store(self, rows: list[dict]) -> bool:
        """Write one run's rows; False for a run another ``bench run`` on the store completed
        meanwhile: that one is kept as it is, said in one line, and the plan goes on."""
        first = rows[0]
        try:
            write_run(rows, self.settings.results_dir, force=self.settings.force)
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
