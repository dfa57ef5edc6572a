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
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.env import default_cache_dir, resolve_device
from bench.files import USER_LEADERBOARD, USER_RESULTS
from bench.registry import list_methods
from bench.results import stored_runs
from bench.run.checks import check_inputs, check_outputs
from bench.run.estimate import PUBLISHED_RESULTS, Throughput, estimate_group, format_seconds, probe_throughput, runtime_ratios
from bench.run.executors import make_executor
from bench.run.jobs import Context, reference_jobs_for
from bench.run.plan import DEFAULT_SEEDS, Plan, RunSpec, groups_to_do, make_plan, oracle_run_id, runs_to_do
from bench.run.schedule import Graph, Schedule, Settings
from bench.splits import build_task_data
from bench.tasks import Task, get_suite


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

    check_outputs(settings.results_dir, settings.cache_dir, leaderboard)  # before any work
    plan = make_plan(task_list, method_list, seed_list, hp, dev.type)
    check_inputs(plan, settings.results_dir, settings.cache_dir, leaderboard, settings.data_root)
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
        from bench.examples import store_examples
        from bench.report import write_report
        from bench.results import read_store

        write_report(read_store(settings.results_dir), leaderboard, examples=store_examples(settings.results_dir))
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
