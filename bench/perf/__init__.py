"""``bench perf``: how fast the harness is, against the machine's limit and the reference pipelines.

The package: :mod:`~bench.perf.pipelines` (training and evaluation throughput),
:mod:`~bench.perf.crossseed` (the cross-seed metrics on synthetic per-example values),
:mod:`~bench.perf.runs` (one method run and a cached re-run, each in a fresh interpreter started by
:mod:`bench.perf.__main__`), :mod:`~bench.perf.table` (rows, goals, the Parquet table and its text),
:mod:`~bench.perf.clock` (wall and CPU time); :func:`run_perf` here runs them all. It calls the
public Python API (``bench.run``, the runner's per-run path), never the CLI.

A benchmark whose own overhead is unknown cannot claim a method's runtime. For each task this
module measures, on one device and thread count, and writes one long-format table:

=============================  ========  ========================================================
measure                        unit      what
=============================  ========  ========================================================
``train_limit_nchw``           images/s  model-only forward + backward + optimizer step on one
                                         fixed batch of the task's images already on the device
                                         (the task's architecture, batch size, optimizer; AMP on
                                         CUDA where the recipe allows), default memory format
``train_limit_channels_last``  images/s  the same with the model in channels-last (NHWC) format
``train_limit``                images/s  the faster of the two: the machine's limit for the model
``train_ours``                 images/s  :func:`bench.train.train_epochs` on the task's real
                                         training images: same model, batch size, optimizer,
                                         images
``train_reference_wK``         images/s  the same training through a torchvision-style
                                         ``Dataset`` of PIL images with per-sample
                                         ``Compose([ToTensor(), Normalize(mean, std)])`` and a
                                         ``DataLoader`` with K workers (K = 0 and ``--workers``):
                                         what the seeds' repositories do
``eval_limit_bB``              images/s  model-only forward (eval mode) in batches of B (1024:
                                         ``predict_logits``' CUDA batch; 256: its CPU batch)
``eval_limit``                 images/s  the faster of those
``eval_ours``                  images/s  :func:`bench.group.split_logits`: logits of every split
``ratio_train_ours_limit``     ratio     train_ours / train_limit                 (goal >= 0.9)
``ratio_eval_ours_limit``      ratio     eval_ours / eval_limit                   (goal >= 0.9)
``ratio_train_ours_ref``       ratio     train_ours / the faster reference pipeline (goal >= 1.5
                                         on Fashion-MNIST tasks)
``run_wall``                   s         one method run through the runner's per-run path
                                         (:func:`bench.run.evaluate.run_method` + writing its file)
``run_method``                 s         the method's own ``runtime_seconds`` inside that run
``group_setup``                s         per (task, seed) work shared by all methods of a suite:
                                         splits, cached references, the oracle's logits
``run_eval_compute``           s         the model compute of that run's evaluation: its
                                         ``split_logits`` forward passes over every split
``run_eval_metrics``           s         the metrics computed from those logits (accuracies,
                                         the SVC membership attacks, ...): part of the overhead
``outside_method_share``       share     (run_wall − run_method) / run_wall: everything but the
                                         method, evaluation forward passes included
``overhead_share``             share     (run_wall − run_method − run_eval_compute) / run_wall:
                                         what is outside the method and model compute (data
                                         handling, metrics, bookkeeping; the issue's definition,
                                         goal <= 0.10 on Fashion-MNIST)
``peak_rss``                   bytes     peak resident set of that run's process (a fresh
                                         interpreter: imports, data, references, method,
                                         evaluation)
``cached_rerun``               s         wall time of ``bench run`` (a fresh interpreter) over a
                                         suite whose results are all stored already (task
                                         column: the suite)
``crossseed_<metric>``         s         :func:`bench.crossseed.halves` of one cross-seed metric
                                         on synthetic φ (task column ``synthetic-phi-SxN``):
                                         :mod:`bench.perf.crossseed`
``crossseed_all``              s         their sum over the metrics computed at the measured
                                         seeds (16: ``ulira_accuracy``)            (goal <= 5)
``crossseed_all_with_nonp...`` s         the sum over every row, the non-parametric metrics at
                                         their smallest valid seeds (64)
=============================  ========  ========================================================

``value`` is computed from wall-clock time; ``cpu_value`` is the same throughput or ratio computed
from CPU time (user + system, of this process and of the DataLoader workers it reaped), which a
machine shared with other jobs disturbs far less than wall time. With ``--threads`` above 1 on a
loaded machine the CPU time includes OpenMP threads spinning while they wait for each other.
Goals are judged on ``value``.

Throughputs count the same images: the training measures all process the same
``steps · batch_size`` images (the last batch may be partial), one epoch of the task's training
split by default; ``images`` records the count. Every throughput is the fastest of ``repeats``
interleaved repetitions (timeit's rule: on a shared machine the minimum time is the one least
disturbed by other load); each repetition starts from the same fresh model. Each row records the
device (as :func:`bench.env.device_label` writes it in result rows), torch version, thread count, DataLoader workers, the 1-minute load average when it was
measured, and a UTC timestamp.

The table is written as Parquet (atomically: temporary file, then rename) to ``--out`` if it ends in
``.parquet``, else to ``<out>/perf-<UTC time>.parquet``; ``--out`` defaults to ``perf/`` beside the
results directory (``<results>/../perf``), never inside it, because every Parquet file under
``results/`` must be a result run.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from bench.env import default_cache_dir, resolve_device
from bench.files import USER_RESULTS
from bench.perf.clock import load_average
from bench.perf.crossseed import CrossSeedSize, measure_crossseed
from bench.perf.pipelines import measure_pipelines
from bench.perf.runs import measure_cached_rerun, measure_run, resolve_task_names
from bench.perf.table import PerfRow, perf_table
from bench.tasks import Task, get_task

DEFAULT_TASKS = ("digits-cnn-class", "fmnist-lenet-class")


def run_perf(
    tasks: Sequence[str | Task] = DEFAULT_TASKS,
    *,
    device: str = "cpu",
    threads: int | None = None,
    workers: int | None = None,
    steps: int | None = None,
    repeats: int = 3,
    method: str = "finetune",
    rerun: Sequence[str | Task] | str | None = "quick",
    rerun_methods: Sequence[str] | None = None,
    rerun_seeds: Sequence[int] = (0, 1, 2),
    crossseed: CrossSeedSize | None = CrossSeedSize(),
    results: str | Path = USER_RESULTS,
    cache: str | Path | None = None,
    data_root: str | Path | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every measure of the module docstring for ``tasks``, then the cached re-run of ``rerun`` (a
    suite name, task names or Task objects; None skips it), then the cross-seed metrics at
    ``crossseed``'s size (None skips them). Returns the table (not yet written:
    :func:`bench.perf.table.write_table`)."""
    dev = resolve_device(device)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    workers = (os.cpu_count() or 1) if workers is None else workers
    cache_str = str(cache) if cache else str(default_cache_dir())
    root = str(data_root) if data_root else None
    say = progress or (lambda _msg: None)
    task_objs = [get_task(t) for t in tasks]
    timestamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows: list[PerfRow] = []
    for task in task_objs:
        say(f"{task.name}: training and evaluation pipelines (load {load_average():.1f})")
        rows += measure_pipelines(task, device=dev, steps=steps, repeats=repeats, workers=workers, data_root=root, seed=seed,
                                  progress=progress)
        say(f"{task.name}: one {method} run through the runner (load {load_average():.1f})")
        rows += measure_run(task, method, device=dev, threads=threads, cache=cache_str, data_root=root, seed=seed)
    by_name = {t.name: t for t in task_objs}
    if rerun is not None:
        if isinstance(rerun, str):
            label, rerun_tasks = rerun, [get_task(t) for t in resolve_task_names(rerun)]
        else:
            rerun_tasks = [get_task(t) for t in rerun]
            label = ",".join(t.name for t in rerun_tasks)
        say(f"cached re-run of {label} (load {load_average():.1f})")
        rows.append(measure_cached_rerun(rerun_tasks, label=label, methods=rerun_methods, seeds=list(rerun_seeds),
                                         results=Path(results), device=dev, threads=threads, cache=cache_str,
                                         data_root=root))
    if crossseed is not None:
        say(f"cross-seed metrics on {crossseed.label} (load {load_average():.1f})")
        rows += measure_crossseed(crossseed, repeats=repeats, seed=seed, progress=progress)
    return perf_table(rows, by_name, device=dev, threads=threads, workers=workers, repeats=repeats, timestamp=timestamp)
