"""Worker processes that can be killed: each runs one job at a time, and the pool knows which job
each is running, so a job that outlives its time limit is stopped (its worker killed) and a worker
that dies (``os._exit``, an out-of-memory kill) fails only the job it was running. The pool then
starts a fresh worker and goes on with the other jobs.

Why not ``concurrent.futures.ProcessPoolExecutor``: a worker that dies breaks that pool for every
job, without saying which one killed it, and a job running in it cannot be stopped. Why not a
forked child per run: GNU OpenMP, which torch's CPU kernels use, hangs in a child forked after the
parent used its threads. So workers are spawned once and keep their data between jobs.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Future
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

import torch


class RunTimedOut(RuntimeError):
    """A job ran past its time limit; its worker was killed."""


class WorkerDied(RuntimeError):
    """The worker process running a job died (``os._exit``, a signal, an out-of-memory kill)."""


def init_worker(threads: int) -> None:
    """Limit a worker to its share of the CPU threads."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


STARTED = "started"


def serve(conn: Connection, threads: int) -> None:
    """A worker's loop: receive ``(fn, args)`` (unpickling imports what the job needs), say
    :data:`STARTED` (its time limit counts from here, so a fresh worker's imports do not), send back
    ``(True, value)`` or ``(False, error)``; ends when the pool closes its end. ``SystemExit`` is an
    error of the job, not of the worker."""
    init_worker(threads)
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:
            return
        conn.send(STARTED)
        try:
            outcome = (True, fn(*args))
        except (Exception, SystemExit) as err:  # noqa: BLE001 - delivered to the job's future
            outcome = (False, err)
        try:
            conn.send(outcome)
        except Exception as err:  # noqa: BLE001 - a value or error that does not pickle
            conn.send((False, RuntimeError(f"the job's {'value' if outcome[0] else 'error'} cannot be sent back: {err}")))


class Worker:
    """One spawned worker process and the job it is running (``None`` when idle)."""

    def __init__(self, threads: int) -> None:
        context = get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, threads), daemon=True)
        self.process.start()
        child.close()
        self.job: tuple[Future, float | None, float | None] | None = None  # (future, limit, deadline)

    def start(self, future: Future, fn: Callable[..., Any], args: tuple, limit: float | None) -> None:
        self.conn.send((fn, args))
        self.job = (future, limit, None)  # the deadline is set when the worker says it started

    def started(self) -> None:
        future, limit, _ = self.job
        self.job = (future, limit, None if limit is None else time.monotonic() + limit)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


class WorkerPool:
    """``size`` workers with ``threads`` CPU threads each. :meth:`submit` queues a job;
    :meth:`poll` hands queued jobs to idle workers and completes the futures of finished, dead
    and overdue ones. Futures complete only inside :meth:`poll`, in the caller's thread."""

    def __init__(self, size: int, threads: int) -> None:
        self.size, self.threads = size, threads
        self.workers: list[Worker] = []
        self.queue: list[tuple[Future, Callable[..., Any], tuple, float | None]] = []

    def submit(self, fn: Callable[..., Any], args: tuple, limit: float | None = None) -> Future:
        future: Future = Future()
        self.queue.append((future, fn, args, limit))
        return future

    def poll(self) -> None:
        """Start what can start, then wait until a running job finishes, dies or is overdue."""
        self.workers = [w for w in self.workers if w.process.is_alive() or w.job is not None]
        while self.queue and (len(self.workers) < self.size or any(w.job is None for w in self.workers)):
            idle = next((w for w in self.workers if w.job is None), None)
            if idle is None:
                idle = Worker(self.threads)
                self.workers.append(idle)
            future, fn, args, limit = self.queue.pop(0)
            idle.start(future, fn, args, limit)
        busy = [w for w in self.workers if w.job is not None]
        if not busy:
            return
        deadlines = [w.job[2] for w in busy if w.job[2] is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
        for worker in busy:
            future, limit, deadline = worker.job
            if worker.conn in ready:
                try:
                    message = worker.conn.recv()
                except EOFError:  # it died
                    pass
                else:
                    if message == STARTED:
                        worker.started()
                        continue
                    worker.job = None
                    ok, value = message
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                    continue
            if worker.process.sentinel in ready or worker.conn in ready:
                worker.stop()
                worker.job = None
                future.set_exception(WorkerDied(f"its worker process died (exit code {worker.process.exitcode})"))
            elif deadline is not None and time.monotonic() >= deadline:
                worker.stop()
                worker.job = None
                future.set_exception(RunTimedOut(f"exceeded its time limit of {limit:.0f} s (--timeout)"))

    def shutdown(self) -> None:
        for future, *_ in self.queue:
            future.cancel()
        self.queue.clear()
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
