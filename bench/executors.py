"""Where a plan's jobs execute: in-process (``local``), a local process pool (``processes``), or a
Ray cluster (``ray``). One interface; the runner's scheduler drives all three.

The plan is a graph. Reference jobs build the original (one per dataset / architecture / recipe /
validation split / seed, shared by the tasks that differ only in what they forget) and the oracle
(one per task and seed); each method run depends on its two references. No reference is built
twice: the graph has one job per reference key, and on one machine a lock on the cache entry
guards against concurrent ``bench run`` processes too. Workers *return* rows; the driver writes
them, so results need no shared filesystem. Reference weights go through the cache directory
(``--cache``, a shared path on a cluster) or, under Ray, travel through the object store.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from bench.data import TaskData
from bench.group import Group, ShippedReference, load_reference, prepare_group, split_logits
from bench.references import reference_key
from bench.registry import get_method
from bench.results import ORACLE, ORIGINAL, failed_row
from bench.splits import build_task_data
from bench.tasks import Task

EXECUTORS = ("local", "processes", "ray")


@dataclass(frozen=True)
class Context:
    """What every worker needs besides its job (picklable)."""

    device: str
    cache_dir: str
    data_root: str | None
    ship_weights: bool = False  # return reference weights with the job result (Ray's object store)


@dataclass(frozen=True)
class ReferenceJob:
    kind: str  # ORIGINAL or ORACLE
    task: Task
    seed: int
    key: str
    oracle_rows: bool  # the oracle job also computes the oracle's reference rows


@dataclass(frozen=True, eq=False)
class ReferenceResult:
    key: str
    kind: str
    seconds: float
    device: str
    trained_now: bool
    rows: tuple[dict, ...]
    state: dict[str, torch.Tensor] | None


# ---------------------------------------------------------------------------------------------
# Worker side (module-level functions: picklable for process pools and Ray)
# ---------------------------------------------------------------------------------------------


_GROUPS: "OrderedDict[tuple, Group]" = OrderedDict()
_MAX_GROUPS = 2  # a worker keeps the data and references of its last two (task, seed) groups


def build_reference(job: ReferenceJob, ctx: Context) -> ReferenceResult:
    """Load or train one reference (under the cache-entry lock); the oracle job also returns the
    oracle's reference rows."""
    from bench.runner import oracle_rows

    device = torch.device(ctx.device)
    td = build_task_data(job.task, job.seed, ctx.data_root)
    ref = load_reference(job.kind, td, device=device, cache_dir=Path(ctx.cache_dir))
    rows: tuple[dict, ...] = ()
    if job.oracle_rows:
        rows = tuple(oracle_rows(job.task, td, ref, split_logits(ref.model, td, device), device))
    state = {k: v.detach().cpu() for k, v in ref.model.state_dict().items()} if ctx.ship_weights else None
    return ReferenceResult(ref.key, job.kind, ref.train_seconds, ref.device, ref.trained_now, rows, state)


def group_state(task: Task, seed: int, ctx: Context, shipped: Sequence[ReferenceResult], needs_surrogate: bool) -> Group:
    """The group of (task, seed) (:func:`bench.group.prepare_group`), cached in this worker process."""
    key = (task, seed, ctx)
    if key in _GROUPS and (_GROUPS[key].surrogate is not None or not needs_surrogate):
        _GROUPS.move_to_end(key)
        return _GROUPS[key]
    weights = [ShippedReference(r.kind, r.key, r.seconds, r.device, r.state) for r in shipped if r.state is not None]
    state = prepare_group(task, seed, device=torch.device(ctx.device), cache_dir=Path(ctx.cache_dir),
                          data_root=ctx.data_root, needs_surrogate=needs_surrogate, shipped=weights)
    _GROUPS[key] = state
    while len(_GROUPS) > _MAX_GROUPS:
        _GROUPS.popitem(last=False)
    return state


def execute_run(run: Any, ctx: Context, *shipped: ReferenceResult) -> list[dict]:
    """One method run → its rows. Never raises for a failing method: the rows say "failed"."""
    from bench.runner import common_fields, run_method

    spec = get_method(run.method)
    device = torch.device(ctx.device)
    try:
        state = group_state(run.task, run.seed, ctx, shipped, "surrogate" in spec.uses)
    except Exception as err:  # noqa: BLE001 - recorded as a failed run
        common = common_fields(run.task, run.method, run.method_version, run.hyperparameters,
                               ",".join(spec.uses) or "none", run.seed, run.run_id, "", device)
        return [failed_row(common, err)]
    return run_method(spec, run, state.td, state.refs, state.oracle_logits["forget"], device, state.surrogate)


def init_worker(threads: int) -> None:
    """Process-pool initializer: limit each worker to its share of the CPU threads."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


# ---------------------------------------------------------------------------------------------
# Executors: submit(fn, args, deps) → handle; wait(handles) → finished handles; result(handle)
# ---------------------------------------------------------------------------------------------


class LocalExecutor:
    """Runs each job in this process, one at a time, when the scheduler waits for it (what tests
    and small suites use). A job runs only when :meth:`wait` is called, so the scheduler writes
    every finished run before the next one starts: Ctrl-C loses at most the run in progress, and
    the progress bar moves run by run."""

    name = "local"
    slots = 1

    def __init__(self) -> None:
        self._pending: dict[Future, tuple[Callable[..., Any], tuple, Sequence[Future]]] = {}

    def submit(self, fn: Callable[..., Any], args: tuple, deps: Sequence[Any] = ()) -> Future:
        future: Future = Future()
        self._pending[future] = (fn, args, deps)
        return future

    def wait(self, handles: Sequence[Future]) -> list[Future]:
        """The finished handles if there are any; else runs the first pending one and returns it."""
        done = [h for h in handles if h.done()]
        if done:
            return done
        for handle in handles:
            if handle in self._pending:
                fn, args, deps = self._pending.pop(handle)
                try:
                    handle.set_result(fn(*args, *[d.result() for d in deps]))
                except BaseException as err:  # noqa: BLE001 - delivered through the future, like a pool
                    if isinstance(err, KeyboardInterrupt):
                        raise
                    handle.set_exception(err)
                return [handle]
        return []

    def result(self, handle: Future) -> Any:
        return handle.result()

    def shutdown(self, cancel: bool = False) -> None:
        self._pending.clear()


class ProcessExecutor:
    """A local pool of ``jobs`` worker processes (spawned), each limited to cpu_count // jobs
    threads, so the workers share the cores instead of oversubscribing them."""

    name = "processes"

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {jobs}")
        self.slots = jobs
        threads = max(1, (os.cpu_count() or 1) // jobs)
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                        initializer=init_worker, initargs=(threads,))

    def submit(self, fn: Callable[..., Any], args: tuple, deps: Sequence[Future] = ()) -> Future:
        return self.pool.submit(fn, *args, *[d.result() for d in deps])

    def wait(self, handles: Sequence[Future]) -> list[Future]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Future) -> Any:
        return handle.result()

    def shutdown(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


class RayExecutor:
    """Each job is a Ray task asking for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs; a run
    task receives its references' object refs, so Ray orders the graph and ships the weights."""

    name = "ray"

    def __init__(self, address: str | None, cpus_per_run: float, gpus_per_run: float) -> None:
        try:
            import ray
        except ImportError:
            raise RuntimeError(
                "--executor ray needs Ray, an optional extra: pip install -e \".[ray]\" (or pip install 'ray>=2.9')"
            ) from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"OMP_NUM_THREADS": str(max(1, int(cpus_per_run)))}})
        resources = ray.cluster_resources()
        self.slots = max(1, int(resources.get("GPU" if gpus_per_run else "CPU", 1) // (gpus_per_run or cpus_per_run)))
        self.options = {"num_cpus": cpus_per_run, "num_gpus": gpus_per_run, "max_retries": 0}
        self.threads = max(1, int(cpus_per_run))
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], args: tuple, deps: Sequence[Any] = ()) -> Any:
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(_ray_entry).options(**self.options)
        return self._remote[fn].remote(fn, self.threads, *args, *deps)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        done, _ = self.ray.wait(list(handles), num_returns=1)
        return done

    def result(self, handle: Any) -> Any:
        return self.ray.get(handle)

    def shutdown(self, cancel: bool = False) -> None:
        pass  # the cluster (or the local Ray this process started) outlives one plan


def _ray_entry(fn: Callable[..., Any], threads: int, *args: Any) -> Any:
    torch.set_num_threads(threads)
    return fn(*args)


def make_executor(name: str, *, jobs: int = 2, address: str | None = None, cpus_per_run: float = 1.0,
                  gpus_per_run: float = 0.0):
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(jobs)
    if name == "ray":
        return RayExecutor(address, cpus_per_run, gpus_per_run)
    from bench.registry import unknown_message

    raise ValueError(unknown_message("executor", name, list(EXECUTORS)))


def reference_jobs_for(td: TaskData, device: torch.device, write_oracle_rows: bool) -> tuple[ReferenceJob, ReferenceJob]:
    """The (original, oracle) jobs of one (task, seed) group."""
    return (
        ReferenceJob(ORIGINAL, td.task, td.seed, reference_key(ORIGINAL, td, device), False),
        ReferenceJob(ORACLE, td.task, td.seed, reference_key(ORACLE, td, device), write_oracle_rows),
    )
