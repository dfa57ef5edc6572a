"""The per-(task, seed) set-up every run of a group shares: the task's data for that seed, its two
references (from the cache, trained now, or shipped by an executor), the oracle's logits on every
evaluated split, and — for retain-free methods — the surrogate images.

One home for it: the driver's workers, ``bench perf`` and the regression check all call
:func:`prepare_group`, so what a method sees and what it is compared with are built one way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from bench.data import Split, TaskData, surrogate_split
from bench.metrics import SplitLogits
from bench.references import Reference, References, load_or_train, model_factory, reference_split
from bench.results import ORACLE, ORIGINAL
from bench.splits import build_task_data
from bench.tasks import Task
from bench.train import predict_logits


@dataclass(frozen=True, eq=False)
class ShippedReference:
    """A reference's weights handed over by an executor (Ray's object store) instead of the cache."""

    kind: str  # ORIGINAL or ORACLE
    key: str
    seconds: float
    device: str
    state: dict[str, torch.Tensor]


@dataclass(frozen=True, eq=False)
class Group:
    td: TaskData
    refs: References
    oracle_logits: dict[str, SplitLogits]
    surrogate: Split | None


def split_logits(model: nn.Module, td: TaskData, device: torch.device) -> dict[str, SplitLogits]:
    """``model``'s logits on every evaluated split (forget, retain, test, and the removed classes'
    test images D_ft where the task has them), with the labels."""
    splits = {"forget": td.forget, "retain": td.retain, "test": td.test}
    if td.forget_test is not None:
        splits["forget_test"] = td.forget_test
    return {name: SplitLogits(predict_logits(model, s, device=device), s.y) for name, s in splits.items()}


def load_reference(kind: str, td: TaskData, *, device: torch.device, cache_dir: Path,
                   shipped: Sequence[ShippedReference] = ()) -> Reference:
    """The reference ``kind`` of ``td``: the shipped weights when an executor sent them, else the
    cache entry (trained now when missing, under the entry's lock)."""
    init = model_factory(td)
    for ref in shipped:
        if ref.kind == kind:
            model = init()
            model.load_state_dict(ref.state)
            return Reference(model.to(device), ref.key, ref.seconds, ref.device, trained_now=False)
    return load_or_train(kind, td, reference_split(kind, td), init, device=device, cache_dir=Path(cache_dir))


def prepare_group(task: Task, seed: int, *, device: torch.device, cache_dir: Path, data_root: str | None = None,
                  needs_surrogate: bool = False, shipped: Sequence[ShippedReference] = ()) -> Group:
    """Data, references, oracle logits and (``needs_surrogate``) surrogate images of (task, seed)."""
    td = build_task_data(task, seed, data_root)
    refs = References(original=load_reference(ORIGINAL, td, device=device, cache_dir=cache_dir, shipped=shipped),
                      oracle=load_reference(ORACLE, td, device=device, cache_dir=cache_dir, shipped=shipped))
    surrogate = surrogate_split(td, data_root) if needs_surrogate else None
    return Group(td, refs, split_logits(refs.oracle.model, td, device), surrogate)
