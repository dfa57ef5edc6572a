"""A run's rows: the method on a copy of the original, timed, then every metric of the model it
returns; the oracle's reference rows; and the fields every row of a run shares, for completed and
failed runs alike (:func:`common_fields`, the one place they are built).

What the timer covers is the method call alone: the data view (a private copy of every split it
holds) and the model copy are made before it, the forward passes, metrics and the check that the
method left its inputs unchanged after it.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Sequence

import torch
from torch import nn

from bench.data import Split, TaskData, changed_inputs, method_view, private_copy, seed_stream
from bench.examples import example_table
from bench.group import split_logits
from bench.metrics import Evaluation, SplitLogits, compute_metrics, refused_metrics
from bench.models import state_hash
from bench.references import Reference, References, model_factory
from bench.registry import MethodSpec, get_method
from bench.residue import ResidueInputs, relearn_sample
from bench.results import RunRecord, failed_metric_rows, failed_row, rows_for_run, run_fields
from bench.run.plan import RunSpec, oracle_run
from bench.tasks import Task
from bench.train import sync


def data_used(uses: Sequence[str]) -> str:
    """The ``data_used`` field: the method's declared data, comma-separated, or ``none``."""
    return ",".join(uses) or "none"


def common_fields(run: RunSpec, data: str, device: torch.device, *, split_hash: str = "", reference_key: str = "",
                  surrogate: str = "") -> dict[str, Any]:
    """The fields every row of ``run`` shares (:func:`bench.results.run_fields`), ``data`` being its
    ``data_used``; a run that failed before its data existed has no split hash nor reference key."""
    return run_fields(run_id=run.run_id, task=run.task.name, task_version=run.task.version, method=run.method,
                      method_version=run.method_version, hyperparameters=run.hyperparameters, data_used=data,
                      seed=run.seed, device=device, split_hash=split_hash, reference_key=reference_key,
                      surrogate=surrogate)


def failed_rows(run: RunSpec, err: BaseException, device: torch.device) -> RunRecord:
    """The one row of a run that failed before its method ran (its references or its set-up)."""
    return RunRecord([failed_row(common_fields(run, data_used(get_method(run.method).uses), device), err)])


Computed = tuple[dict[str, tuple[float, int]], dict[str, str]]  # metric → (value, n); metric → why it has none
Evaluated = tuple[Computed, dict[str, SplitLogits]]  # the metrics and the logits they came from


def residue_inputs(model: nn.Module, td: TaskData, device: torch.device) -> ResidueInputs | None:
    """What the residue metrics of ``model`` need (:mod:`bench.residue`); None but on class tasks."""
    if td.forget_test is None or len(td.forget_test) == 0:
        return None
    return ResidueInputs(model, td.val, td.forget_test, relearn_sample(td.forget, td.task.split_seed_for(td.seed)),
                         td.task.recipe, device)


def metrics_of(out: dict[str, SplitLogits], td: TaskData, oracle_forget: SplitLogits, *, runtime: float,
               oracle_seconds: float, residue: ResidueInputs | None = None) -> Computed:
    """Every metric from a model's logits per split (see :func:`bench.group.split_logits`) and,
    given ``residue``, from the model itself; and those it has no value for
    (:func:`bench.metrics.refused_metrics`), with the reason."""
    ev = Evaluation(
        forget=out["forget"], retain=out["retain"], test=out["test"], forget_test=out.get("forget_test"),
        oracle_forget=oracle_forget, forget_classes=td.forget_classes, seed=td.seed,
        runtime_seconds=runtime, oracle_seconds=oracle_seconds, residue=residue,
    )
    return compute_metrics(ev), refused_metrics(ev)


def metric_rows(common: dict[str, Any], computed: Computed) -> list[dict]:
    """A completed run's rows: one per metric computed, then one failed row per metric refused."""
    values, refused = computed
    return rows_for_run(common, [(k, v, n) for k, (v, n) in values.items()]) + failed_metric_rows(common, refused)


def model_metrics(model: nn.Module, td: TaskData, oracle_forget: SplitLogits, *, device: torch.device, runtime: float,
                  oracle_seconds: float, timings: dict[str, float] | None = None) -> Evaluated:
    """Every metric of ``model`` (see :func:`metrics_of`) and its logits per split. ``timings``,
    when given, receives the seconds of the forward passes (``"forward"``) and of the metrics
    computed from their logits (``"metrics"``): what ``bench perf`` splits a run's wall time by."""
    start = time.perf_counter()
    out = split_logits(model, td, device)  # on the CPU: the copy synchronises CUDA
    middle = time.perf_counter()
    computed = metrics_of(out, td, oracle_forget, runtime=runtime, oracle_seconds=oracle_seconds,
                          residue=residue_inputs(model, td, device))
    if timings is not None:
        timings |= {"forward": middle - start, "metrics": time.perf_counter() - middle}
    return computed, out


def run_method(spec: MethodSpec, run: RunSpec, td: TaskData, refs: References, oracle_forget: SplitLogits,
               device: torch.device, surrogate: Split | None = None, timings: dict[str, float] | None = None) -> RunRecord:
    """Execute one planned run and return its record: its rows (status "ok", or one "failed" row;
    a model whose outputs are not finite has its attacks' rows "failed", see :func:`metric_rows`)
    and its per-example values (:mod:`bench.examples`). ``timings``: see :func:`model_metrics`."""
    common = common_fields(run, data_used(spec.uses), device, split_hash=td.split_hash, reference_key=refs.oracle.key,
                           surrogate=(run.task.surrogate or "") if "surrogate" in spec.uses else "")
    try:
        hp = run.hp
        source = method_view(td, spec.uses, model_factory(td), retain_fraction=hp.get("retain_fraction"), surrogate=surrogate)
        data = private_copy(source)
        model = copy.deepcopy(refs.original.model).to(device)
        torch.manual_seed(seed_stream(run.seed, "method", spec.name))
        sync(device)
        start = time.perf_counter()
        result = spec.fn(model, data, device=device, **hp)
        sync(device)
        runtime = time.perf_counter() - start
        if not isinstance(result, nn.Module):
            raise TypeError(f"method {spec.name} returned {type(result).__name__}, not an nn.Module")
        edited = changed_inputs(data, source)
        if edited:
            raise RuntimeError(f"method {spec.name} changed the data it was given in place ({', '.join(edited)}); "
                               "a method must not edit its inputs: copy a tensor before changing it (x.clone())")
        computed, logits = model_metrics(result, td, oracle_forget, device=device, runtime=runtime,
                                         oracle_seconds=refs.oracle.train_seconds, timings=timings)
        common["model_hash"] = state_hash(result)
        return RunRecord(metric_rows(common, computed), example_table(common, td, logits))
    except Exception as err:  # noqa: BLE001 - a failing method is recorded and the suite goes on
        return RunRecord([failed_row(common, err)])
    except SystemExit as err:  # sys.exit() in a method ends the method, not the sweep
        exited = RuntimeError(f"method {spec.name} called sys.exit({err.code!r}); a method returns its model or raises")
        exited.__cause__ = err
        return RunRecord([failed_row(common, exited)])


def oracle_rows(task: Task, td: TaskData, oracle: Reference, oracle_logits: dict[str, SplitLogits], device: torch.device) -> RunRecord:
    """The reference run ``oracle`` of (task, seed): its metrics, runtime = its training time, and
    its per-example values."""
    common = common_fields(oracle_run(task, td.seed, device.type), "retain", device, split_hash=td.split_hash,
                           reference_key=oracle.key)
    common["model_hash"] = state_hash(oracle.model)
    rows = metric_rows(common, metrics_of(oracle_logits, td, oracle_logits["forget"], runtime=oracle.train_seconds,
                                          oracle_seconds=oracle.train_seconds,
                                          residue=residue_inputs(oracle.model, td, device)))
    return RunRecord(rows, example_table(common, td, oracle_logits))
