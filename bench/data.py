"""Task data, the data views handed to methods, and batching.

* :class:`Split`: images (uint8) and labels of one split; :class:`TaskData`: every split of one
  task and seed, the harness's view, made by :func:`bench.splits.build_task_data` (which says how
  the images are split).
* :class:`MethodData` (:func:`method_view`): what a method sees — the data it declared, the
  validation split, and what the request itself says (the classes to forget, the task's
  recipe); undeclared data is ``None``. :func:`private_copy` gives a method tensors of its own
  and :func:`changed_inputs` says whether it edited them. :func:`surrogate_split` makes the
  task's surrogate images.
* Seed streams (:func:`seed_stream`, :func:`generator`): every random choice draws from the run
  seed and a named purpose, stable across machines.
* :func:`batches` and :func:`to_float`: uint8 images → float32 batches in [0, 1], the models'
  input space.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from bench.datasets import ImageDataset
from bench.tasks import ForgetKind, Recipe, Task


def seed_stream(seed: int, *purpose: str) -> int:
    """A 63-bit seed derived from the run seed and a purpose, stable across machines."""
    text = "/".join([str(seed), *purpose]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def generator(seed: int, *purpose: str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`seed_stream` ``(seed, *purpose)``."""
    return torch.Generator().manual_seed(seed_stream(seed, *purpose))


@dataclass(frozen=True, eq=False)
class Split:
    """Images (uint8 ``[N, C, H, W]``) and labels (int64 ``[N]``) of one split."""

    name: str
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor, name: str | None = None) -> "Split":
        return Split(name or self.name, self.x[index], self.y[index])

    def with_labels(self, y: torch.Tensor) -> "Split":
        return Split(self.name, self.x, y)

    def floats(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """All images as float32 in [0, 1] on ``device``."""
        return to_float(self.x.to(device))


@dataclass(frozen=True, eq=False)
class TaskData:
    """Every split of one task and seed (the harness's view; methods get :class:`MethodData`)."""

    task: Task
    seed: int
    dataset: ImageDataset
    train: Split  # forget ∪ retain (what the original trains on)
    forget: Split
    retain: Split
    val: Split
    test: Split
    forget_test: Split | None  # test images of the removed classes (class removal only)
    forget_classes: tuple[int, ...]
    split_hash: str
    val_hash: str
    audit: dict[str, Any] = field(default_factory=dict)  # how the split was made; leakage-audit counts
    # per-example bookkeeping (bench.examples, bench.memorisation): the dataset's training index of
    # each forget image, in D_f's order, and of each train image (ascending, ``train``'s order); the
    # control sample's positions in ``test`` and their dataset test indices
    forget_index: torch.Tensor | None = None
    train_index: torch.Tensor | None = None
    control: torch.Tensor | None = None
    control_index: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class MethodData:
    """What a method is given. Undeclared data is ``None``: a retain-free method cannot peek.

    ``init_model`` builds the task's architecture with the seed's initial weights (what the
    oracle started from); ``recipe`` is the task's training recipe; ``forget_classes`` names the
    classes being removed (empty for random forgetting).
    """

    forget: Split | None
    retain: Split | None
    surrogate: Split | None
    val: Split
    num_classes: int
    forget_classes: tuple[int, ...]
    forget_kind: ForgetKind
    recipe: Recipe
    seed: int
    init_model: Callable[[], nn.Module]

def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images → float32 in [0, 1] (the models' input space)."""
    return x.float().div_(255.0)


def stratified_pick(y: torch.Tensor, fraction: float, g: torch.Generator, *, floor: bool = False) -> torch.Tensor:
    """Boolean mask selecting round(fraction·n_c) (⌊fraction·n_c⌋ with ``floor``) random images of every class c."""
    mask = torch.zeros(len(y), dtype=torch.bool)
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        k = int(fraction * len(idx)) if floor else int(round(fraction * len(idx)))
        mask[idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    return mask

def surrogate_split(td: TaskData, data_root: str | None = None) -> Split:
    """The task's surrogate images for this seed (labels −1: unlabeled)."""
    from bench.datasets.surrogate import make_surrogate

    task = td.task
    if task.surrogate is None:
        raise ValueError(f"task {task.name} names no surrogate data")
    x = make_surrogate(task.surrogate, td.dataset.image_shape, task.surrogate_size,
                       generator(td.seed, "surrogate"), Path(data_root) if data_root else None)
    return Split("surrogate", x, torch.full((len(x),), -1, dtype=torch.int64))


def method_view(
    td: TaskData,
    uses: tuple[str, ...],
    init_model: Callable[[], nn.Module],
    *,
    retain_fraction: float | None = None,
    surrogate: Split | None = None,
) -> MethodData:
    """The :class:`MethodData` for a method that declared ``uses``."""
    retain = None
    if "retain" in uses:
        retain = td.retain
    elif "retain_fraction" in uses:
        if retain_fraction is None or not 0.0 < retain_fraction <= 1.0:
            raise ValueError(f"retain_fraction must be in (0, 1], got {retain_fraction}")
        # ⌊fraction·n_c⌋ per class: the anti-samples reference's int(len · percent / 100)
        mask = stratified_pick(td.retain.y, retain_fraction, generator(td.seed, "retain_fraction"), floor=True)
        retain = td.retain.subset(mask)
    if "surrogate" in uses and surrogate is None:
        raise ValueError(f"task {td.task.name} names no surrogate data, which this method needs")
    return MethodData(
        forget=td.forget if "forget" in uses else None,
        retain=retain,
        surrogate=surrogate if "surrogate" in uses else None,
        val=td.val,
        num_classes=td.dataset.num_classes,
        forget_classes=td.forget_classes,
        forget_kind=td.task.forget.kind,
        recipe=td.task.recipe,
        seed=td.seed,
        init_model=init_model,
    )


def private_copy(view: MethodData) -> MethodData:
    """``view`` with its own copy of every split's tensors: the cached splits of a group serve
    every run of it, so a method editing its data in place (``data.retain.x.zero_()``) would
    otherwise change the numbers of every method after it."""
    copies = {f.name: Split(s.name, s.x.clone(), s.y.clone())
              for f in fields(view) if isinstance(s := getattr(view, f.name), Split)}
    return replace(view, **copies)


def changed_inputs(given: MethodData, source: MethodData) -> list[str]:
    """The tensors of ``given`` (a :func:`private_copy` of ``source``) that a method changed:
    ``["retain.x", ...]``, empty when it changed none. Its numbers are then not those of the data
    it declared, so the run is recorded as failed."""
    changed = []
    for f in fields(source):
        ours, theirs = getattr(source, f.name), getattr(given, f.name)
        if isinstance(ours, Split) and isinstance(theirs, Split):
            changed += [f"{f.name}.{t}" for t in ("x", "y") if not torch.equal(getattr(ours, t), getattr(theirs, t))]
    return changed


def batches(
    split: Split,
    batch_size: int,
    *,
    device: torch.device | str = "cpu",
    shuffle: bool = False,
    g: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches: x float32 in [0, 1] on ``device``, y int64 on ``device``.

    The uint8 images are moved to the device once; each batch is an index and a divide.
    """
    n = len(split)
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    x_dev, y_dev = split.x.to(device), split.y.to(device)
    order = order.to(device)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield to_float(x_dev[idx]), y_dev[idx]
