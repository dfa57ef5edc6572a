"""``bench perf``: how fast the harness is, against the machine's limit and the reference pipelines.

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
device, torch version, thread count, DataLoader workers, the 1-minute load average when it was
measured, and a UTC timestamp.

The table is written as Parquet (atomically: temporary file, then rename) to ``--out`` if it ends in
``.parquet``, else to ``<out>/perf-<UTC time>.parquet``; ``--out`` defaults to ``perf/`` beside the
results directory (``<results>/../perf``), never inside it, because every Parquet file under
``results/`` must be a result run.
"""
from __future__ import annotations

import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from bench.data import Split, TaskData, build_task_data, generator, to_float
from bench.tasks import ForgetRule, Recipe, Task, get_suite, get_task
from bench.env import resolve_device
from bench.train import make_optimizer, sync

DEFAULT_TASKS = ("digits-cnn-class", "fmnist-lenet-class")
#: The evaluation limit is the faster of predict_logits' default batches on CUDA and on the CPU.
EVAL_LIMIT_BATCHES = (1024, 256)
#: The training limit is the faster of the default (NCHW) and the channels-last memory format.
LIMIT_FORMATS = ("nchw", "channels_last")

PERF_SCHEMA = pa.schema([
    ("task", pa.string()),
    ("arch", pa.string()),
    ("measure", pa.string()),
    ("value", pa.float64()),        # wall-clock based
    ("cpu_value", pa.float64()),    # the same from CPU time (images/CPU-s, their ratio); NaN elsewhere
    ("unit", pa.string()),          # images/s, s, bytes, ratio, share
    ("images", pa.int64()),         # images processed (throughputs), runs stored (cached_rerun), else 0
    ("goal", pa.string()),          # ">= 0.9", "<= 0.1", or "" (no goal)
    ("meets_goal", pa.bool_()),     # null where there is no goal
    ("note", pa.string()),
    ("device", pa.string()),
    ("torch_version", pa.string()),
    ("threads", pa.int64()),
    ("workers", pa.int64()),
    ("repeats", pa.int64()),
    ("load_avg_1m", pa.float64()),
    ("timestamp", pa.string()),
])
PERF_COLUMNS = PERF_SCHEMA.names


# ------------------------------------------------------------------------------------ goals


@dataclass(frozen=True)
class Goal:
    """``value op target`` with ``op`` one of ``>=``, ``<=``; ``datasets`` limits where it applies
    (empty: every task)."""

    op: str
    target: float
    datasets: tuple[str, ...] = ()

    def applies(self, task: Task) -> bool:
        return not self.datasets or task.dataset in self.datasets

    def met(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value >= self.target if self.op == ">=" else value <= self.target

    def text(self) -> str:
        return f"{self.op} {self.target:g}"


GOALS: dict[str, Goal] = {
    "ratio_train_ours_limit": Goal(">=", 0.9),
    "ratio_eval_ours_limit": Goal(">=", 0.9),
    "ratio_train_ours_ref": Goal(">=", 1.5, ("fashion_mnist",)),
    "overhead_share": Goal("<=", 0.10, ("fashion_mnist",)),
}


@dataclass(frozen=True)
class PerfRow:
    """One measured number; the environment columns are added by :func:`perf_table`."""

    task: str
    arch: str
    measure: str
    value: float
    unit: str
    images: int = 0
    note: str = ""
    load_avg_1m: float = float("nan")
    cpu_value: float = float("nan")


def with_goal(row: PerfRow, task: Task | None) -> dict[str, Any]:
    goal = GOALS.get(row.measure)
    if goal is None or task is None or not goal.applies(task):
        return asdict(row) | {"goal": "", "meets_goal": None}
    return asdict(row) | {"goal": goal.text(), "meets_goal": goal.met(row.value)}


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN when the denominator is 0 or either side is NaN."""
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return float("nan")
    return numerator / denominator


# ------------------------------------------------------------------------------------ timings


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
    sync(device)
    return time.perf_counter(), cpu_seconds()


def stop_clock(images: int, start: tuple[float, float], device: torch.device) -> Timing:
    sync(device)
    return Timing(images, time.perf_counter() - start[0], cpu_seconds() - start[1])


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The batch sizes of one pass over ``n`` images (the last one partial), as in
    :func:`bench.data.batches` with ``drop_last=False``."""
    return [min(batch_size, n - start) for start in range(0, n, batch_size)]


def training_subset(split: Split, steps: int | None, batch_size: int, seed: int) -> Split:
    """All of ``split`` (``steps`` None), else ``min(steps · batch_size, len)`` images drawn at random."""
    if steps is None:
        return split
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    n = min(steps * batch_size, len(split))
    index = torch.randperm(len(split), generator=generator(seed, "perf", "subset"))[:n]
    return split.subset(index)


def limit_train(model: nn.Module, recipe: Recipe, x: torch.Tensor, y: torch.Tensor, sizes: Sequence[int],
                device: torch.device, *, channels_last: bool = False) -> Timing:
    """Model-only training throughput: forward, backward and optimizer step for each batch size in
    ``sizes`` on one fixed batch ``x`` (float images in [0, 1]) already on ``device``: no data
    handling at all. ``channels_last``: the model's weights (hence its activations) in NHWC."""
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), optimizer=recipe.optimizer, lr=recipe.lr,
                         weight_decay=recipe.weight_decay, momentum=recipe.momentum)
    if len(x) < max(sizes):
        raise ValueError(f"limit_train needs a batch of {max(sizes)} images, got {len(x)}")
    use_amp = recipe.amp and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    start = start_clock(device)
    for n in sizes:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = F.cross_entropy(model(x[:n]), y[:n])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return stop_clock(sum(sizes), start, device)


def ours_train(model: nn.Module, split: Split, recipe: Recipe, *, seed: int, device: torch.device) -> Timing:
    """One epoch of :func:`bench.train.train_epochs` over ``split`` with the task's recipe, timed
    around the whole call (optimizer set-up, shuffling, batching, the loop)."""
    from bench.train import train_epochs

    start = start_clock(device)
    log = train_epochs(model, split, epochs=1, batch_size=recipe.batch_size, lr=recipe.lr, seed=seed, device=device,
                       optimizer=recipe.optimizer, weight_decay=recipe.weight_decay, momentum=recipe.momentum,
                       schedule=recipe.schedule, augment=recipe.augment, amp=recipe.amp, purpose="perf")
    timing = stop_clock(len(split), start, device)
    if log.steps != len(batch_sizes(len(split), recipe.batch_size)):
        raise RuntimeError(f"train_epochs ran {log.steps} steps over {len(split)} images; expected one epoch")
    return timing


class ReferenceImages(torch.utils.data.Dataset):
    """A torchvision-style dataset, as the seeds' repositories use (``torchvision.datasets.MNIST``/
    ``FashionMNIST``/``CIFAR10``): uint8 arrays in memory, ``__getitem__`` makes a PIL image and
    applies the per-sample ``transform`` (``Compose([ToTensor(), Normalize(mean, std)])``)."""

    def __init__(self, split: Split, transform: Callable[[Any], torch.Tensor]) -> None:
        x = split.x.numpy()
        self.data = x[:, 0] if x.shape[1] == 1 else np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # [N,H,W] or [N,H,W,C]
        self.targets = split.y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img = Image.fromarray(self.data[index], mode="L" if self.data.ndim == 3 else "RGB")
        return self.transform(img), self.targets[index]


def reference_transform(mean: Sequence[float], std: Sequence[float]) -> Callable[[Any], torch.Tensor]:
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))])


def reference_train(model: nn.Module, split: Split, recipe: Recipe, *, mean: Sequence[float], std: Sequence[float],
                    workers: int, seed: int, device: torch.device) -> Timing:
    """One epoch through ``DataLoader(ReferenceImages(...), shuffle=True, num_workers=workers)``:
    normalization happens in the transform, so the model's own normalization layer is replaced
    by the identity; same batch size, optimizer and images as :func:`ours_train`, default (NCHW)
    memory format as in the seeds' code. The time includes starting the workers, as every epoch
    of the seeds' code does, and their CPU time."""
    model.normalize = nn.Identity()
    model.to(device).train()
    opt = make_optimizer(model.parameters(), optimizer=recipe.optimizer, lr=recipe.lr,
                         weight_decay=recipe.weight_decay, momentum=recipe.momentum)
    use_amp = recipe.amp and device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        ReferenceImages(split, reference_transform(mean, std)), batch_size=recipe.batch_size, shuffle=True,
        num_workers=workers, generator=generator(seed, "perf", "reference"), drop_last=False,
    )
    start = start_clock(device)
    images = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        images += len(y)
    # The exhausted iterator has joined its workers, so their CPU time is in RUSAGE_CHILDREN now.
    return stop_clock(images, start, device)


@torch.no_grad()
def limit_eval(model: nn.Module, x: torch.Tensor, n: int, batch_size: int, device: torch.device) -> Timing:
    """Model-only forward throughput (eval mode) over ``n`` images in batches of ``batch_size``, on
    one fixed batch ``x`` already on ``device``."""
    model.to(device).eval()
    if len(x) < min(batch_size, n):
        raise ValueError(f"limit_eval needs a batch of {min(batch_size, n)} images, got {len(x)}")
    start = start_clock(device)
    for size in batch_sizes(n, batch_size):
        model(x[:size])
    return stop_clock(n, start, device)


def ours_eval(model: nn.Module, td: TaskData, device: torch.device) -> Timing:
    """:func:`bench.group.split_logits` (every split a run is evaluated on)."""
    from bench.group import split_logits

    start = start_clock(device)
    out = split_logits(model, td, device)
    return stop_clock(sum(len(v) for v in out.values()), start, device)


def eval_images(td: TaskData) -> int:
    return len(td.forget) + len(td.retain) + len(td.test) + (len(td.forget_test) if td.forget_test is not None else 0)


# ------------------------------------------------------------------------------------ per task


def training_runs(init: Callable[[], nn.Module], split: Split, recipe: Recipe, *, mean: Sequence[float],
                  std: Sequence[float], worker_counts: Sequence[int], seed: int,
                  device: torch.device) -> dict[str, Callable[[], Timing]]:
    """The training measures over ``split``, each a fresh model from ``init``. The limit's fixed
    batch is the first images of ``split`` (real images: on LeNet, uniform random tensors train
    ~10% slower than Fashion-MNIST images, which would put the "limit" below the harness)."""
    sizes = batch_sizes(len(split), recipe.batch_size)
    x = to_float(split.x[:max(sizes)]).to(device)
    y = split.y[:max(sizes)].to(device)
    runs: dict[str, Callable[[], Timing]] = {
        f"train_limit_{fmt}": (lambda cl=(fmt == "channels_last"): limit_train(init(), recipe, x, y, sizes, device,
                                                                                channels_last=cl))
        for fmt in LIMIT_FORMATS
    }
    runs["train_ours"] = lambda: ours_train(init(), split, recipe, seed=seed, device=device)
    for w in worker_counts:
        runs[f"train_reference_w{w}"] = lambda w=w: reference_train(init(), split, recipe, mean=mean, std=std,
                                                                    workers=w, seed=seed, device=device)
    return runs


def eval_runs(init: Callable[[], nn.Module], td: TaskData, n: int, device: torch.device, *,
              ours: bool) -> dict[str, Callable[[], Timing]]:
    """The evaluation measures: the model-only limit at each batch size of :data:`EVAL_LIMIT_BATCHES`
    over ``n`` images, and (``ours``) :func:`ours_eval` over every split of ``td``."""
    k = min(max(EVAL_LIMIT_BATCHES), n)
    x = to_float(td.train.x[torch.arange(k) % len(td.train)]).to(device)  # repeats images if the split is small
    runs: dict[str, Callable[[], Timing]] = {
        f"eval_limit_b{b}": (lambda b=b: limit_eval(init(), x, n, b, device)) for b in EVAL_LIMIT_BATCHES
    }
    if ours:
        runs["eval_ours"] = lambda: ours_eval(init(), td, device)
    return runs


def best_variant(best: dict[str, Timing], prefix: str) -> tuple[str, Timing]:
    """The variant ``prefix*`` with the highest wall throughput; its CPU time is the smallest of all
    variants' (each is a way the same model could be run)."""
    names = [k for k in best if k.startswith(prefix)]
    winner = max(names, key=lambda k: best[k].images_per_s)
    cpu = min(best[k].cpu_seconds for k in names)
    return winner, Timing(best[winner].images, best[winner].seconds, cpu)


def measure_pipelines(task: Task, *, device: torch.device, steps: int | None, repeats: int, workers: int,
                      data_root: str | None, seed: int = 0, progress: Callable[[str], None] | None = None) -> list[PerfRow]:
    """Limit, ours and the reference pipelines (training), limit and ours (evaluation), and
    their ratios, for one task; see the module docstring."""
    from bench.references import dataset_facts, model_factory

    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    td = build_task_data(task, seed, data_root)
    recipe = task.recipe
    init = model_factory(td)
    _, mean, std = dataset_facts(td)
    subset = training_subset(td.train, steps, recipe.batch_size, seed)
    worker_counts = sorted({0, workers})
    n_eval = eval_images(td)

    # Warm-up, untimed: one batch of every training pipeline, one batch of every evaluation limit
    # (kernel selection, allocator, lazy imports, the first worker start).
    warm = subset.subset(torch.arange(min(recipe.batch_size, len(subset))))
    for fn in [*training_runs(init, warm, recipe, mean=mean, std=std, worker_counts=worker_counts, seed=seed,
                              device=device).values(),
               *eval_runs(init, td, min(max(EVAL_LIMIT_BATCHES), n_eval), device, ours=False).values()]:
        fn()

    runs = training_runs(init, subset, recipe, mean=mean, std=std, worker_counts=worker_counts, seed=seed, device=device)
    runs |= eval_runs(init, td, n_eval, device, ours=True)
    timings: dict[str, list[Timing]] = {name: [] for name in runs}
    loads: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(repeats):  # interleaved, so that a burst of other load hits every measure alike
        for name, fn in runs.items():
            loads[name].append(load_average())
            timings[name].append(fn())
            if progress is not None:
                t = timings[name][-1]
                progress(f"{task.name}: {name} {rep + 1}/{repeats}: {t.images_per_s:,.0f} images/s, "
                         f"{t.images_per_cpu_s:,.0f} images/CPU-s (load {loads[name][-1]:.1f})")
    best = {name: fastest(ts) for name, ts in timings.items()}
    for w in worker_counts:
        if best[f"train_reference_w{w}"].images != best["train_ours"].images:
            raise RuntimeError("the reference pipeline and ours processed different image counts")

    arch, note = task.arch, f"fastest of {repeats}"
    rows = [PerfRow(task.name, arch, name, t.images_per_s, "images/s", t.images, note, float(np.mean(loads[name])),
                    t.images_per_cpu_s) for name, t in best.items()]
    train_winner, best["train_limit"] = best_variant(best, "train_limit_")
    eval_winner, best["eval_limit"] = best_variant(best, "eval_limit_")
    ref_name = max((f"train_reference_w{w}" for w in worker_counts), key=lambda k: best[k].images_per_s)
    load = float(np.mean([v for vs in loads.values() for v in vs]))

    def derived(measure: str, t: Timing, note: str) -> PerfRow:
        return PerfRow(task.name, arch, measure, t.images_per_s, "images/s", t.images, note, load, t.images_per_cpu_s)

    def ratio_row(measure: str, a: str, b: str, note: str) -> PerfRow:
        return PerfRow(task.name, arch, measure, ratio(best[a].images_per_s, best[b].images_per_s), "ratio",
                       best[a].images, note, load, ratio(best[a].images_per_cpu_s, best[b].images_per_cpu_s))

    rows += [
        derived("train_limit", best["train_limit"], f"the faster of {', '.join(LIMIT_FORMATS)}: {train_winner}"),
        derived("eval_limit", best["eval_limit"], f"the faster of batch {', '.join(map(str, EVAL_LIMIT_BATCHES))}: "
                f"{eval_winner}"),
        ratio_row("ratio_train_ours_limit", "train_ours", "train_limit", "train_ours / train_limit"),
        ratio_row("ratio_eval_ours_limit", "eval_ours", "eval_limit", "eval_ours / eval_limit"),
        ratio_row("ratio_train_ours_ref", "train_ours", ref_name, f"train_ours / {ref_name} (the faster reference)"),
    ]
    return rows


# ------------------------------------------------------------------------------------ one method run


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
    """One method run as the runner does it, timed: the group set-up (splits, references from the
    cache — trained first if absent —, the oracle's logits, surrogate data), then the per-run
    path (:func:`bench.run.evaluate.run_method` and the atomic write of its rows). Returns seconds and
    this process's peak resident set."""
    from bench.data import surrogate_split
    from bench.env import default_cache_dir
    from bench.references import get_references, reference_key
    from bench.registry import get_method
    from bench.results import canonical_json, write_run
    from bench.group import split_logits
    from bench.run.evaluate import run_method
    from bench.run.plan import RunSpec

    dev = resolve_device(device)
    cache_dir = Path(cache) if cache else default_cache_dir()
    spec = get_method(method)
    start = time.perf_counter()
    td = build_task_data(task, seed, data_root)
    cached = all((cache_dir / f"{reference_key(k, td, dev)}.safetensors").exists() for k in ("original", "oracle"))
    if not cached:
        print(f"bench perf: references of {task.name} seed {seed} are not in {cache_dir}; training them first (not timed)",
              file=sys.stderr)
        get_references(td, device=dev, cache_dir=cache_dir)
        start = time.perf_counter()
        td = build_task_data(task, seed, data_root)
    refs = get_references(td, device=dev, cache_dir=cache_dir)
    oracle_forget = split_logits(refs.oracle.model, td, dev)["forget"]
    surrogate = surrogate_split(td, data_root) if "surrogate" in spec.uses else None
    setup = time.perf_counter() - start

    run = RunSpec(task, spec.name, spec.version, canonical_json(spec.resolve(task.name)), seed, dev.type)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-perf-run-") as results:
        start = time.perf_counter()
        rows = run_method(spec, run, td, refs, oracle_forget, dev, surrogate, timings=timings)
        write_run(rows, results)
        wall = time.perf_counter() - start
    if rows[0]["status"] != "ok":
        raise RuntimeError(f"{method} on {task.name} failed during bench perf:\n{rows[0]['error']}")
    (method_seconds,) = [r["value"] for r in rows if r["metric"] == "runtime_seconds"]
    return {"setup_seconds": setup, "run_wall_seconds": wall, "method_seconds": float(method_seconds),
            "eval_compute_seconds": timings["forward"], "eval_metrics_seconds": timings["metrics"],
            "peak_rss_bytes": peak_rss_bytes(), "references_were_cached": cached, "hyperparameters": run.hyperparameters}


def child_command(kind: str, payload: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "bench.perf", kind, json.dumps(payload)]


def run_child(kind: str, payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Run ``python -m bench.perf KIND PAYLOAD`` (a fresh interpreter); return its wall time and
    the JSON object it printed as its last line of stdout."""
    start = time.perf_counter()
    proc = subprocess.run(child_command(kind, payload), capture_output=True, text=True)
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


# ------------------------------------------------------------------------------------ cached re-run


def resolve_task_names(spec: str) -> list[str]:
    """A suite name, or task names separated by commas."""
    from bench.tasks import SUITES

    return list(get_suite(spec)) if spec in SUITES else [get_task(t).name for t in spec.split(",") if t]


def complete_methods(results: Path, tasks: Sequence[Task], seeds: Sequence[int], device_type: str) -> list[str]:
    """Registered methods whose every run of ``tasks`` × ``seeds`` (and the oracle rows) is stored."""
    from bench.registry import list_methods
    from bench.results import stored_runs
    from bench.run.plan import make_plan, oracle_run_id

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
    """Wall time of ``bench run TASKS METHODS --seeds ...`` in a fresh interpreter, on a copy of
    ``results`` that already holds every planned run. ``methods`` None: the methods ``results``
    holds completely, else ``original,finetune``. Missing runs are computed into the copy first
    (untimed; ``results`` itself is never written); the timed re-run must compute nothing."""
    import bench
    from bench.results import stored_runs

    if methods is None:
        methods = complete_methods(results, tasks, seeds, device.type) or ["original", "finetune"]
    with tempfile.TemporaryDirectory(prefix="bench-perf-rerun-") as tmp:
        store = Path(tmp) / "results"
        if results.is_dir():
            shutil.copytree(results, store)
        bench.run(list(tasks), list(methods), seeds, device=str(device), results=store, leaderboard=None, cache=cache,
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


def _child_rerun(payload: dict[str, Any]) -> dict[str, Any]:
    from bench.cli import main
    from bench.tasks import TASKS, register_task

    tasks = [task_from_json(d) for d in payload["tasks"]]
    for t in tasks:
        if t.name not in TASKS:  # a test's unregistered task
            register_task(t)
    argv = ["run", ",".join(t.name for t in tasks), ",".join(payload["methods"]),
            "--seeds", *map(str, payload["seeds"]), "--device", payload["device"], "--results", payload["results"],
            "--out", payload["leaderboard"], "--cache", payload["cache"], "--no-progress"]
    if payload["data_root"]:
        argv += ["--data-root", payload["data_root"]]
    rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"bench {' '.join(argv)} exited with {rc}")
    return {"rc": rc}


# ------------------------------------------------------------------------------------ the table


def perf_table(rows: Sequence[PerfRow], tasks: dict[str, Task], *, device: torch.device, threads: int, workers: int,
               repeats: int, timestamp: str) -> pd.DataFrame:
    """Rows plus goals and the environment columns, in :data:`PERF_SCHEMA` order."""
    label = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    records = [with_goal(r, tasks.get(r.task)) | {
        "device": label, "torch_version": torch.__version__, "threads": threads, "workers": workers,
        "repeats": repeats, "timestamp": timestamp,
    } for r in rows]
    table = pa.Table.from_pylist([{c: rec[c] for c in PERF_COLUMNS} for rec in records], schema=PERF_SCHEMA)
    return table.to_pandas()


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as Parquet with :data:`PERF_SCHEMA`, atomically (temporary file, then rename)."""
    from bench.results import write_table_atomic

    return write_table_atomic(pa.Table.from_pandas(df[PERF_COLUMNS], schema=PERF_SCHEMA, preserve_index=False), Path(path))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`; a loud error if it lacks the schema."""
    table = pq.read_table(path)
    missing = set(PERF_COLUMNS) - set(table.column_names)
    if missing:
        raise ValueError(f"{path} is not a bench perf table (missing columns {sorted(missing)})")
    return table.select(PERF_COLUMNS).cast(PERF_SCHEMA).to_pandas()


def output_path(out: str | Path | None, results: str | Path, timestamp: str) -> Path:
    """``out`` if it ends in .parquet; else ``out/perf-<timestamp>.parquet``, ``out`` defaulting to
    ``perf`` beside ``results``."""
    if out is not None and str(out).endswith(".parquet"):
        return Path(out)
    folder = Path(out) if out is not None else Path(results).resolve().parent / "perf"
    return folder / f"perf-{timestamp.replace(':', '').replace('-', '').replace('+0000', 'Z')}.parquet"


def format_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return "nan"
    if unit == "images/s":
        return f"{value:,.0f} img/s"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "bytes":
        return f"{value / 2**20:,.0f} MiB"
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit == "share":
        return f"{value:.1%}"
    return f"{value:g} {unit}"


def format_cpu_value(value: float, unit: str) -> str:
    if math.isnan(value):
        return ""
    if unit == "images/s":
        return f"{value:,.0f} img/CPU-s"
    return format_value(value, unit)


def format_table(df: pd.DataFrame) -> str:
    """A plain-text table: task, measure, value (wall), the same from CPU time, images, goal, met,
    load average, note."""
    header = ("task", "measure", "value", "from CPU time", "images", "goal", "met", "load", "note")
    lines = [header]
    for r in df.itertuples(index=False):
        met = "" if r.meets_goal is None or pd.isna(r.meets_goal) else ("yes" if r.meets_goal else "NO")
        lines.append((r.task, r.measure, format_value(r.value, r.unit), format_cpu_value(r.cpu_value, r.unit),
                      str(r.images) if r.images else "", r.goal, met, f"{r.load_avg_1m:.1f}", r.note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        out.append("  ".join(cell.rjust(w) if i in (2, 3) else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))) + "  " + line[-1])
    if len(df):
        first = df.iloc[0]
        out.append(f"device={first.device} torch={first.torch_version} threads={first.threads} "
                   f"workers={first.workers} repeats={first.repeats} at {first.timestamp}")
    return "\n".join(out)


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
    results: str | Path = "results",
    cache: str | Path | None = None,
    data_root: str | Path | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every measure of the module docstring for ``tasks``, then the cached re-run of ``rerun`` (a
    suite name, task names or Task objects; None skips it). Returns the table (not yet written)."""
    from bench.env import default_cache_dir

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
    return perf_table(rows, by_name, device=dev, threads=threads, workers=workers, repeats=repeats, timestamp=timestamp)


def _child_main(argv: Sequence[str]) -> int:
    """``python -m bench.perf run|rerun JSON``: the isolated halves of :func:`measure_run` and
    :func:`measure_cached_rerun`; prints one JSON object as the last line of stdout."""
    if len(argv) != 2 or argv[0] not in ("run", "rerun"):
        print("usage: python -m bench.perf run|rerun JSON (used by bench perf)", file=sys.stderr)
        return 2
    payload = json.loads(argv[1])
    torch.set_num_threads(int(payload["threads"]))
    if argv[0] == "run":
        out = one_run(task_from_json(payload["task"]), payload["method"], device=payload["device"],
                      cache=payload["cache"], data_root=payload["data_root"], seed=int(payload["seed"]))
    else:
        out = _child_rerun(payload)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
