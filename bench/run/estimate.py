"""How long a plan will take, before any work: a probe of this machine's throughput per task, the
seconds of each (task, seed) group (its references and its runs), and the ratios of method runtime
to the oracle's training time that stored runs provide (:func:`runtime_ratios`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from bench import mia, svc
from bench.data import TaskData
from bench.references import model_factory
from bench.registry import get_method
from bench.results import CorruptResults, canonical_json, read_store
from bench.run.plan import RunSpec
from bench.train import make_optimizer, sync, train_step


@dataclass(frozen=True)
class GroupEstimate:
    """Estimated seconds of one (task, seed) group: its two references (0 when cached; the oracle's
    includes its own evaluation when its rows are to be written) and its method runs (method +
    evaluation), by run id."""

    original: float
    oracle: float
    runs: dict[str, float]


@dataclass(frozen=True)
class Throughput:
    """What the estimate knows of this machine for one task (:func:`probe_throughput`)."""

    train: float  # images/s of a training step at the recipe's batch size
    forward: float  # images/s of evaluation forward passes (predict_logits' batch size)
    attacks: float  # wall seconds of one evaluation's SVC attacks at the task's split sizes


def seconds_per_step(step: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one ``step()``: after one untimed warm-up step, repeated for half a second
    (2 to 20 steps)."""
    step()
    sync(device)
    start, n = time.perf_counter(), 0
    while n < 2 or (n < 20 and time.perf_counter() - start < 0.5):
        step()
        sync(device)
        n += 1
    return max(time.perf_counter() - start, 1e-9) / n


def probe_throughput(td: TaskData, device: torch.device) -> Throughput:
    """Measure :class:`Throughput` for ``td``'s task: training steps (:func:`bench.train.train_step`)
    on random images of the task's shape at the recipe's batch size, in channels-last as
    :func:`bench.train.train_epochs` trains; forward batches at :func:`bench.train.predict_logits`'
    batch size (each timed by :func:`seconds_per_step`); and :func:`bench.svc.efficacy_seconds` at
    the task's split sizes (every feature, every draw). About a second on the CPU."""
    recipe = td.task.recipe
    model = model_factory(td)().to(device, memory_format=torch.channels_last).train()
    opt = make_optimizer(model.parameters(), optimizer=recipe.optimizer, lr=recipe.lr)
    x = torch.rand(recipe.batch_size, *td.dataset.image_shape, device=device)
    y = torch.randint(td.dataset.num_classes, (recipe.batch_size,), device=device)
    train = recipe.batch_size / seconds_per_step(lambda: train_step(model, opt, x, y), device)
    n_eval = 1024 if device.type == "cuda" else 256
    xe = torch.rand(n_eval, *td.dataset.image_shape, device=device)
    model.to(memory_format=torch.contiguous_format).eval()
    with torch.no_grad():
        forward = n_eval / seconds_per_step(lambda: model(xe), device)
    n_shadow = min(len(td.retain), len(td.test), mia.MAX_SHADOW)
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    attacks = svc.efficacy_seconds(max(n_shadow, 1), len(td.forget), features=len(mia.MIA_FEATURES),
                                   draws=mia.SHADOW_DRAWS, threads=threads)
    return Throughput(train=train, forward=forward, attacks=attacks)


#: Runtime / the oracle's training time of a run never stored anywhere (any other method: 0.25).
PRIOR_RATIOS = {"original": 0.0, "retrain": 1.0}


def estimate_group(td: TaskData, runs: Sequence[RunSpec], *, refs_cached: tuple[bool, bool], speed: Throughput,
                   ratios: dict[tuple[str, str, str], float], oracle_rows: bool = True,
                   setup_seconds: float = 0.0) -> GroupEstimate:
    """Seconds for a group.

    * reference training: epochs · |split| / ``speed.train`` (original: the train split; oracle: D_r);
    * evaluation of a model: one forward pass over every evaluated split / ``speed.forward`` plus
      the attacks (``speed.attacks``); the oracle's rows add one, and every group one more forward
      pass (the oracle's logits) and ``setup_seconds`` (data loading, measured by the caller);
    * a method: ``ratios[(task, method, hyperparameters)]`` (its runtime / the oracle's training
      time, from stored runs: :func:`runtime_ratios`) × the oracle's estimated training time;
      with no stored run of these hyperparameters, the ratio of the method's own setting for the
      task (else :data:`PRIOR_RATIOS`: ``original`` 0, ``retrain`` 1, a quarter for any other
      method) × :func:`epoch_scale`, so that ``--hp epochs=1000`` is estimated at 1000 epochs.
    """
    epochs = td.task.recipe.epochs
    original = 0.0 if refs_cached[0] else epochs * len(td.train) / speed.train
    oracle_train = epochs * len(td.retain) / speed.train
    images = len(td.forget) + len(td.retain) + len(td.test) + (len(td.forget_test) if td.forget_test is not None else 0)
    forward = images / speed.forward
    evaluation = forward + speed.attacks
    oracle = (0.0 if refs_cached[1] else oracle_train) + (evaluation if oracle_rows else 0.0) + forward + setup_seconds
    per_run = {}
    for r in runs:
        ratio = ratios.get((r.task.name, r.method, r.hyperparameters))
        if ratio is None:
            own, scale = epoch_scale(r)
            ratio = ratios.get((r.task.name, r.method, own), PRIOR_RATIOS.get(r.method, 0.25)) * scale
        per_run[r.run_id] = ratio * oracle_train + evaluation
    return GroupEstimate(original=original, oracle=oracle, runs=per_run)


def epoch_scale(run: RunSpec) -> tuple[str, float]:
    """The method's own hyperparameters for the run's task (canonical JSON) and the run's epochs
    over theirs (1 for a method without ``epochs``): runtime grows with the epochs trained."""
    own = get_method(run.method).resolve(run.task.name)
    epochs, base = run.hp.get("epochs"), own.get("epochs")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (epochs, base))
    return canonical_json(own), float(epochs) / base if numbers and base else 1.0


#: The default time limit of a run (``--timeout``): TIMEOUT_FACTOR × its estimated seconds, and
#: never under TIMEOUT_FLOOR seconds, since estimates from the prior can be several times off.
TIMEOUT_FACTOR = 10.0
TIMEOUT_FLOOR = 300.0


def run_limit(estimate: float, timeout: float | None) -> float | None:
    """A run's time limit in seconds: ``timeout`` when given (0: no limit), else the default
    from its ``estimate``."""
    if timeout is None:
        return max(TIMEOUT_FLOOR, TIMEOUT_FACTOR * estimate)
    return float(timeout) or None


#: Results published with the source tree; their runtimes seed the estimate of runs never made here.
PUBLISHED_RESULTS = Path(__file__).resolve().parents[2] / "results"


def runtime_ratios(*results_dirs: Path) -> dict[tuple[str, str, str], float]:
    """Median of runtime_seconds / the oracle's training seconds (= 1 / ``speedup``, a ratio of two
    times on one machine, so it carries over to another) per (task, method, hyperparameters), over
    the completed runs of each directory in turn; an earlier directory's value wins. A directory
    that is missing, empty or unreadable contributes nothing (an unreadable one is reported)."""
    ratios: dict[tuple[str, str, str], float] = {}
    for results_dir in results_dirs:
        if not results_dir.is_dir() or not any(results_dir.rglob("*.parquet")):
            continue
        try:
            df = read_store(results_dir)
        except CorruptResults as err:
            print(f"estimate: not using the runtimes stored in {results_dir}: {err}", file=sys.stderr)
            continue
        df = df[(df["metric"] == "speedup") & (df["status"] == "ok")]
        ratio = (1.0 / df["value"]).groupby([df["task"], df["method"], df["hyperparameters"]]).median()
        for key, value in ratio.items():
            ratios.setdefault(key, float(value))
    return ratios


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
