"""The run measures of ``bench perf``: one method run, and a fully cached re-run, each in a fresh interpreter.

* :func:`measure_run`: the per-(task, seed) set-up (:func:`bench.group.prepare_group`) and one
  method run through the runner's per-run path (``run_method`` + writing its file), timed and
  split into the method, its evaluation's forward passes and its metrics; the process's peak
  resident set is that run's alone.
* :func:`measure_cached_rerun`: the wall time of :func:`bench.run` over a suite whose results are
  all stored already (interpreter start, imports and the leaderboard included).

Both halves that run in the child process are reached by ``python -m bench.perf KIND JSON``
(:mod:`bench.perf.__main__`), which calls the public Python API, never the CLI.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import torch

from bench.env import SOURCE_ROOT, default_cache_dir, resolve_device
from bench.group import Group, prepare_group
from bench.perf.clock import load_average
from bench.perf.table import PerfRow, ratio
from bench.registry import get_method, list_methods
from bench.results import canonical_json, stored_runs, write_run
from bench.tasks import SUITES, TASKS, ForgetRule, Recipe, Task, get_suite, get_task, register_task

# Every name bench perf takes from the runner, in one place. ``run`` is the public ``bench.run``.
from bench.run.driver import run
from bench.run.evaluate import run_method
from bench.run.plan import RunSpec, make_plan, oracle_run_id

#: How the child interpreter finds ``bench``: ``-P`` (Python 3.11+, "safe path") leaves the current
#: directory off ``sys.path``, so a ``bench/`` folder there cannot shadow the installed package the
#: parent runs; Python 3.10 lacks ``-P``, and ``-I`` (isolated mode, which also ignores PYTHON*
#: variables and the user site) is the option that does the same there.
SAFE_PATH = "-P" if sys.version_info >= (3, 11) else "-I"


def task_to_json(task: Task) -> dict[str, Any]:
    return asdict(task)


def task_from_json(d: dict[str, Any]) -> Task:
    """Inverse of :func:`task_to_json` (JSON turns tuples into lists)."""
    forget = dict(d["forget"], classes=tuple(d["forget"]["classes"]))
    return Task(**(d | {"forget": ForgetRule(**forget), "recipe": Recipe(**d["recipe"]), "tags": tuple(d["tags"])}))


def peak_rss_bytes() -> int:
    """Peak resident set of this process (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def one_run(task: Task, method: str, *, device: str, cache: str, data_root: str | None, seed: int = 0) -> dict[str, Any]:
    """One method run as the runner does it, timed: the group set-up (:func:`bench.group.prepare_group`:
    splits, references from the cache — trained first, untimed, if absent —, the oracle's logits,
    surrogate data), then the per-run path (``run_method`` and the atomic write of its rows).
    Returns seconds and this process's peak resident set."""
    dev = resolve_device(device)
    cache_dir = Path(cache) if cache else default_cache_dir()
    spec = get_method(method)

    def setup() -> tuple[float, Group]:
        start = time.perf_counter()
        group = prepare_group(task, seed, device=dev, cache_dir=cache_dir, data_root=data_root,
                              needs_surrogate="surrogate" in spec.uses)
        return time.perf_counter() - start, group

    setup_seconds, group = setup()
    cached = not (group.refs.original.trained_now or group.refs.oracle.trained_now)
    if not cached:
        print(f"bench perf: references of {task.name} seed {seed} were not in {cache_dir}; trained them first "
              "(not timed), timing the set-up again", file=sys.stderr)
        setup_seconds, group = setup()

    planned = RunSpec(task, spec.name, spec.version, canonical_json(spec.resolve(task.name)), seed, dev.type)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-perf-run-") as results:
        start = time.perf_counter()
        record = run_method(spec, planned, group.td, group.refs, group.oracle_logits["forget"], dev, group.surrogate,
                            timings=timings)
        write_run(record.rows, results, examples=record.examples)
        wall = time.perf_counter() - start
    rows = record.rows
    if rows[0]["status"] != "ok":
        raise RuntimeError(f"{method} on {task.name} failed during bench perf:\n{rows[0]['error']}")
    (method_seconds,) = [r["value"] for r in rows if r["metric"] == "runtime_seconds"]
    return {"setup_seconds": setup_seconds, "run_wall_seconds": wall, "method_seconds": float(method_seconds),
            "eval_compute_seconds": timings["forward"], "eval_metrics_seconds": timings["metrics"],
            "peak_rss_bytes": peak_rss_bytes(), "references_were_cached": cached,
            "hyperparameters": planned.hyperparameters}


def child_command(kind: str, payload: dict[str, Any]) -> list[str]:
    """``python -P -m bench.perf KIND JSON`` with this interpreter (see :data:`SAFE_PATH`)."""
    return [sys.executable, SAFE_PATH, "-m", "bench.perf", kind, json.dumps(payload)]


def child_environment() -> dict[str, str]:
    """This process's environment with ``PYTHONPATH`` led by the folder this process imported
    ``bench`` from. ``-P`` keeps the current directory off the child's path only where the
    interpreter adds it: an empty or relative ``PYTHONPATH`` entry (``export
    PYTHONPATH=$PYTHONPATH:/x`` with an empty one leaves a leading ``:``, which means ".") still
    puts it there, and a ``bench/`` folder in it would shadow the code the parent runs."""
    rest = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=str(SOURCE_ROOT) + (os.pathsep + rest if rest else ""))


def run_child(kind: str, payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Run ``python -m bench.perf KIND PAYLOAD`` (a fresh interpreter); return its wall time and
    the JSON object it printed as its last line of stdout."""
    start = time.perf_counter()
    proc = subprocess.run(child_command(kind, payload), capture_output=True, text=True, env=child_environment())
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"bench perf: the {kind} subprocess failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"bench perf: the {kind} subprocess printed nothing; stderr:\n{proc.stderr[-4000:]}")
    return seconds, json.loads(lines[-1])


def measure_run(task: Task, method: str, *, device: torch.device, threads: int, cache: str, data_root: str | None,
                seed: int = 0) -> list[PerfRow]:
    """Overhead share and peak memory of one method run, in a fresh interpreter (so that the peak
    resident set is that run's alone)."""
    payload = {"task": task_to_json(task), "method": method, "device": str(device), "threads": threads,
               "cache": cache, "data_root": data_root, "seed": seed}
    load = load_average()
    _, out = run_child("run", payload)
    wall, inside, model = out["run_wall_seconds"], out["method_seconds"], out["eval_compute_seconds"]
    note = f"{method} {out['hyperparameters']} seed {seed}"
    arch = task.arch
    return [
        PerfRow(task.name, arch, "group_setup", out["setup_seconds"], "s", 0,
                "splits, cached references, oracle logits" + ("" if out["references_were_cached"] else
                                                              " (references were trained first, untimed)"), load),
        PerfRow(task.name, arch, "run_wall", wall, "s", 0, note, load),
        PerfRow(task.name, arch, "run_method", inside, "s", 0, note, load),
        PerfRow(task.name, arch, "run_eval_compute", model, "s", 0, "the run's evaluation forward passes (split_logits)",
                load),
        PerfRow(task.name, arch, "run_eval_metrics", out["eval_metrics_seconds"], "s", 0,
                "the metrics from those logits (SVC attacks included)", load),
        PerfRow(task.name, arch, "outside_method_share", ratio(wall - inside, wall), "share", 0,
                "(run_wall - run_method) / run_wall", load),
        PerfRow(task.name, arch, "overhead_share", ratio(wall - inside - model, wall), "share", 0,
                "(run_wall - run_method - run_eval_compute) / run_wall", load),
        PerfRow(task.name, arch, "peak_rss", float(out["peak_rss_bytes"]), "bytes", 0,
                f"whole process of one {method} run (ru_maxrss)", load),
    ]


def resolve_task_names(spec: str) -> list[str]:
    """A suite name, or task names separated by commas."""
    return list(get_suite(spec)) if spec in SUITES else [get_task(t).name for t in spec.split(",") if t]


def complete_methods(results: Path, tasks: Sequence[Task], seeds: Sequence[int], device_type: str) -> list[str]:
    """Registered methods whose every run of ``tasks`` × ``seeds`` (and the oracle rows) is stored."""
    stored = stored_runs(results)
    if not stored:
        return []
    if any(stored.get(oracle_run_id(t, s, device_type)) != "ok" for t in tasks for s in seeds):
        return []
    out = []
    for name in list_methods():
        plan = make_plan(list(tasks), [name], seeds, None, device_type)
        if plan.runs and all(stored.get(r.run_id) == "ok" for r in plan.runs):
            out.append(name)
    return out


def measure_cached_rerun(tasks: Sequence[Task], *, label: str, methods: Sequence[str] | None, seeds: Sequence[int],
                         results: Path, device: torch.device, threads: int, cache: str, data_root: str | None) -> PerfRow:
    """Wall time of ``bench.run(TASKS, METHODS, seeds)`` in a fresh interpreter, on a copy of
    ``results`` that already holds every planned run. ``methods`` None: the methods ``results``
    holds completely, else ``original,finetune``. Missing runs are computed into the copy first
    (untimed; ``results`` itself is never written); the timed re-run must compute nothing."""
    if methods is None:
        methods = complete_methods(results, tasks, seeds, device.type) or ["original", "finetune"]
    with tempfile.TemporaryDirectory(prefix="bench-perf-rerun-") as tmp:
        store = Path(tmp) / "results"
        if results.is_dir():
            shutil.copytree(results, store)
        run(list(tasks), list(methods), seeds, device=str(device), results=store, leaderboard=None, cache=cache,
            data_root=data_root, progress=False)
        before = stored_runs(store)
        load = load_average()
        payload = {"tasks": [task_to_json(t) for t in tasks], "methods": list(methods), "seeds": list(seeds),
                   "device": str(device), "threads": threads, "results": str(store), "leaderboard": str(Path(tmp) / "lb"),
                   "cache": cache, "data_root": data_root}
        seconds, _ = run_child("rerun", payload)
        after = stored_runs(store)
        if after != before:
            changed = sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
            raise RuntimeError(f"the cached re-run computed runs {changed}; the results copy was not complete "
                               f"(are methods or tasks being edited while bench perf runs?)")
    runs = sum(1 for _ in before)
    return PerfRow(label, "", "cached_rerun", seconds, "s", runs,
                   f"`bench run` {len(tasks)} task(s) × {', '.join(methods)} × seeds {list(seeds)} with every run stored; "
                   "includes interpreter start, imports and the leaderboard", load)


def cached_rerun(payload: dict[str, Any]) -> dict[str, Any]:
    """The child half of :func:`measure_cached_rerun`: :func:`bench.run` over the stored suite, writing
    the leaderboard as ``bench run`` does; returns how many runs it computed (0 when all were stored)."""
    tasks = [task_from_json(d) for d in payload["tasks"]]
    for t in tasks:
        if t.name not in TASKS:  # a test's unregistered task
            register_task(t)
    rows = run([t.name for t in tasks], payload["methods"], payload["seeds"], device=payload["device"],
               results=payload["results"], leaderboard=payload["leaderboard"], cache=payload["cache"],
               data_root=payload["data_root"], progress=False)
    return {"computed": len({r["run_id"] for r in rows})}
