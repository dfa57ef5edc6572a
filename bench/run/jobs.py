"""What a worker does: the two kinds of job of a plan's graph and the functions that execute them.

The plan is a graph. Reference jobs build the original (one per dataset / architecture / recipe /
validation split / seed, shared by the tasks that differ only in what they forget) and the oracle
(one per task and seed); each method run depends on its two references. No reference is built
twice: the graph has one job per reference key, and on one machine a lock on the cache entry
guards against concurrent ``bench run`` processes too. Workers *return* rows; the driver writes
them, so results need no shared filesystem. Reference weights go through the cache directory
(``--cache``, a shared path on a cluster) or, when the executor ships them
(:attr:`Context.ship_weights`), with the reference job's result.

The job functions are module-level so that process pools and Ray can pickle them.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from bench.data import TaskData
from bench.group import Group, ShippedReference, load_reference, prepare_group, split_logits
from bench.references import reference_key
from bench.registry import get_method
from bench.results import ORACLE, ORIGINAL, RunRecord
from bench.run.evaluate import failed_rows, oracle_rows, run_method
from bench.run.plan import RunSpec
from bench.splits import build_task_data
from bench.tasks import Task


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
    record: RunRecord | None  # the oracle's reference run, when the job computes it
    state: dict[str, torch.Tensor] | None


def reference_jobs_for(td: TaskData, device: torch.device, write_oracle_rows: bool) -> tuple[ReferenceJob, ReferenceJob]:
    """The (original, oracle) jobs of one (task, seed) group."""
    return (
        ReferenceJob(ORIGINAL, td.task, td.seed, reference_key(ORIGINAL, td, device), False),
        ReferenceJob(ORACLE, td.task, td.seed, reference_key(ORACLE, td, device), write_oracle_rows),
    )


def build_reference(job: ReferenceJob, ctx: Context) -> ReferenceResult:
    """Load or train one reference (under the cache-entry lock); the oracle job also returns the
    oracle's reference rows."""
    device = torch.device(ctx.device)
    td = build_task_data(job.task, job.seed, ctx.data_root)
    ref = load_reference(job.kind, td, device=device, cache_dir=Path(ctx.cache_dir))
    record = oracle_rows(job.task, td, ref, split_logits(ref.model, td, device), device) if job.oracle_rows else None
    state = {k: v.detach().cpu() for k, v in ref.model.state_dict().items()} if ctx.ship_weights else None
    return ReferenceResult(ref.key, job.kind, ref.train_seconds, ref.device, ref.trained_now, record, state)


_GROUPS: "OrderedDict[tuple, Group]" = OrderedDict()
_MAX_GROUPS = 2  # a worker keeps the data and references of its last two (task, seed) groups


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


def execute_run(run: RunSpec, ctx: Context, *shipped: ReferenceResult) -> RunRecord:
    """One method run → its record. Never raises for a failing method: the rows say "failed"."""
    spec = get_method(run.method)
    device = torch.device(ctx.device)
    try:
        state = group_state(run.task, run.seed, ctx, shipped, "surrogate" in spec.uses)
    except Exception as err:  # noqa: BLE001 - recorded as a failed run
        return failed_rows(run, err, device)
    return run_method(spec, run, state.td, state.refs, state.oracle_logits["forget"], device, state.surrogate)
