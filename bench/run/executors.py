"""Where a plan's jobs execute: in this process (``local``), a local pool of worker processes
(``processes``) or a Ray cluster (``ray``). Every executor is an object with one interface
(:class:`Executor`); the driver never asks which one it has.

* ``submit(fn, args, deps, limit)`` → a handle: the job ``fn(*args, *results of deps)``, where
  ``deps`` are handles of earlier jobs. The executor resolves them itself: local and processes
  hold the job until its dependencies are done (a failed dependency fails the job with the same
  error); Ray hands the object refs to the task, so Ray orders the graph and ships the weights.
  A job with a ``limit`` (seconds) runs in a worker process that is killed when it runs longer
  (:mod:`bench.run.workers`): it fails with :class:`~bench.run.workers.RunTimedOut`, a job whose
  worker process died with :class:`~bench.run.workers.WorkerDied`, and the other jobs go on.
* ``wait(handles)`` → the finished ones (at least one); ``result(handle)`` → the job's value, or
  raises its error; a Ray job whose node or worker was lost raises :class:`LostWorker` (the plan
  goes on without it). ``ships_weights``: reference jobs return their weights, so workers need no
  shared cache. ``slots``: how many jobs run at once. ``shutdown(cancel)``.
"""
from __future__ import annotations

import os
from concurrent.futures import Future
from typing import Any, Callable, Protocol, Sequence

import torch

from bench.lookup import unknown_message
from bench.run.workers import WorkerPool

EXECUTORS = ("local", "processes", "ray")


class LostWorker(RuntimeError):
    """The worker (process, node) that ran a job died; ``cause`` is the backend's own error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


class Executor(Protocol):
    name: str
    slots: int
    ships_weights: bool

    def submit(self, fn: Callable[..., Any], args: tuple, deps: Sequence[Any] = (), limit: float | None = None) -> Any: ...

    def wait(self, handles: Sequence[Any]) -> list[Any]: ...

    def result(self, handle: Any) -> Any: ...

    def shutdown(self, cancel: bool = False) -> None: ...


def failed_dependency(deps: Sequence[Future]) -> BaseException | None:
    """The error of the first of ``deps`` (all done) that failed, if any."""
    return next((d.exception() for d in deps if d.exception() is not None), None)


class LocalExecutor:
    """Runs each job in this process, one at a time, when the driver waits for it (what tests and
    small suites use). A job runs only when :meth:`wait` is called, so the driver writes every
    finished run before the next one starts: Ctrl-C loses at most the run in progress, and the
    progress bar moves run by run. A job with a limit runs in one worker process (started on first
    use, replaced when killed), the others in this process."""

    name = "local"
    slots = 1
    ships_weights = False

    def __init__(self) -> None:
        self._pending: dict[Future, tuple[Callable[..., Any], tuple, Sequence[Future], float | None]] = {}
        self.worker = WorkerPool(1, torch.get_num_threads())  # this process's threads: the same numbers

    def submit(self, fn: Callable[..., Any], args: tuple, deps: Sequence[Future] = (), limit: float | None = None) -> Future:
        future: Future = Future()
        self._pending[future] = (fn, args, tuple(deps), limit)
        return future

    def wait(self, handles: Sequence[Future]) -> list[Future]:
        """The finished handles if there are any (a job whose dependency failed is finished, with
        that error); else runs the first pending one (its pending dependencies first) and returns it."""
        for handle in [h for h in handles if h in self._pending]:
            deps = self._pending[handle][2]
            if all(d.done() for d in deps) and failed_dependency(deps) is not None:
                handle.set_exception(failed_dependency(self._pending.pop(handle)[2]))
        done = [h for h in handles if h.done()]
        if done:
            return done
        for handle in handles:
            if handle in self._pending:
                self._execute(handle)
                return [handle]
        return []

    def _execute(self, handle: Future) -> None:
        fn, args, deps, limit = self._pending.pop(handle)
        for dep in deps:
            if dep in self._pending:
                self._execute(dep)
        if limit is not None and failed_dependency(deps) is None:
            job = self.worker.submit(fn, (*args, *[d.result() for d in deps]), limit)
            while not job.done():
                self.worker.poll()
            copy_outcome(job, handle)
            return
        try:
            handle.set_result(fn(*args, *[d.result() for d in deps]))
        except BaseException as err:  # noqa: BLE001 - delivered through the future, like a pool
            if isinstance(err, KeyboardInterrupt):
                raise
            handle.set_exception(err)

    def result(self, handle: Future) -> Any:
        return handle.result()

    def shutdown(self, cancel: bool = False) -> None:
        self._pending.clear()
        self.worker.shutdown()


class ProcessExecutor:
    """A local pool of ``jobs`` worker processes (spawned, :class:`bench.run.workers.WorkerPool`),
    each limited to cpu_count // jobs threads, so the workers share the cores instead of
    oversubscribing them. A job goes to the pool once its dependencies are done, in the order it
    was submitted."""

    name = "processes"
    ships_weights = False

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {jobs}")
        self.slots = jobs
        self.pool = WorkerPool(jobs, max(1, (os.cpu_count() or 1) // jobs))
        self._held: dict[Future, tuple[Callable[..., Any], tuple, Sequence[Future], float | None]] = {}

    def submit(self, fn: Callable[..., Any], args: tuple, deps: Sequence[Future] = (), limit: float | None = None) -> Future:
        handle: Future = Future()
        self._held[handle] = (fn, args, tuple(deps), limit)
        self._release()
        return handle

    def _release(self) -> None:
        """Hand the pool every held job whose dependencies are done (fail those with a failed one)."""
        for handle, (fn, args, deps, limit) in list(self._held.items()):
            if not all(d.done() for d in deps):
                continue
            del self._held[handle]
            error = failed_dependency(deps)
            if error is not None:
                handle.set_exception(error)
                continue
            job = self.pool.submit(fn, (*args, *[d.result() for d in deps]), limit)
            job.add_done_callback(lambda done, target=handle: copy_outcome(done, target))

    def wait(self, handles: Sequence[Future]) -> list[Future]:
        while True:
            self._release()
            done = [h for h in handles if h.done()]
            if done or not handles:
                return done
            self.pool.poll()

    def result(self, handle: Future) -> Any:
        return handle.result()

    def shutdown(self, cancel: bool = False) -> None:
        self._held.clear()
        self.pool.shutdown()


def copy_outcome(source: Future, target: Future) -> None:
    """Give ``target`` the result or the error of ``source`` (done)."""
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


class RayExecutor:
    """Each job is a Ray task asking for ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs; a job
    receives its dependencies' object refs, so Ray orders the graph and ships the weights."""

    name = "ray"
    ships_weights = True

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
        self.lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ActorDiedError)
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], args: tuple, deps: Sequence[Any] = (), limit: float | None = None) -> Any:
        """``limit`` is not enforced on Ray: stop a hanging task with ``ray job stop`` or the dashboard."""
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(_ray_entry).options(**self.options)
        return self._remote[fn].remote(fn, self.threads, *args, *deps)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        done, _ = self.ray.wait(list(handles), num_returns=1)
        return done

    def result(self, handle: Any) -> Any:
        try:
            return self.ray.get(handle)
        except self.lost as err:
            raise LostWorker(err) from err

    def shutdown(self, cancel: bool = False) -> None:
        pass  # the cluster (or the local Ray this process started) outlives one plan


def _ray_entry(fn: Callable[..., Any], threads: int, *args: Any) -> Any:
    torch.set_num_threads(threads)
    return fn(*args)


def make_executor(name: str, *, jobs: int = 2, address: str | None = None, cpus_per_run: float = 1.0,
                  gpus_per_run: float = 0.0) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "processes":
        return ProcessExecutor(jobs)
    if name == "ray":
        return RayExecutor(address, cpus_per_run, gpus_per_run)
    raise ValueError(unknown_message("executor", name, list(EXECUTORS)))
