"""Splits, the data views handed to methods, and batching.

For a task and seed the training images are split, in this order and deterministically:

1. **validation** D_v: a class-stratified ``val_fraction`` of the dataset's training images
   (seed stream ``"val"``). Never trained on by the original; open to every method for model
   selection and early stopping.
2. **forget** D_f: from the remaining training pool, every image of the forgotten classes, or a
   uniformly random ``fraction`` (seed stream ``"forget"``).
3. **retain** D_r: the pool minus D_f.

Test data D_t is the dataset's fixed test split; D_ft are its images of the forgotten classes.
A method sees only a :class:`MethodData`: the data it declared, the validation split, and what
the request itself says (the classes to forget, the task's recipe); undeclared data is ``None``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from bench.datasets import ImageDataset, load_dataset
from bench.tasks import Recipe, Task


def seed_stream(seed: int, *purpose: str) -> int:
    """A 63-bit seed derived from the run seed and a purpose, stable across machines."""
    text = "/".join([str(seed), *purpose]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def generator(seed: int, *purpose: str) -> torch.Generator:
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
    forget_kind: str
    recipe: Recipe
    seed: int
    init_model: Callable[[], nn.Module]


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images → float32 in [0, 1] (the models' input space)."""
    return x.float().div_(255.0)


def stratified_pick(y: torch.Tensor, fraction: float, g: torch.Generator) -> torch.Tensor:
    """Boolean mask selecting round(fraction·n_c) random images of every class c."""
    mask = torch.zeros(len(y), dtype=torch.bool)
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        k = int(round(fraction * len(idx)))
        mask[idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    return mask


def tensor_hash(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def build_task_data(task: Task, seed: int, data_root: str | None = None) -> TaskData:
    """Load the task's dataset and split it for ``seed`` (see the module docstring)."""
    ds = load_dataset(task.dataset, data_root)
    x, y = ds.train_x, ds.train_y
    val_mask = stratified_pick(y, task.val_fraction, generator(seed, "val"))
    pool = torch.nonzero(~val_mask).flatten()
    pool_y = y[pool]
    rule = task.forget
    if rule.kind == "classes":
        bad = [c for c in rule.classes if not 0 <= c < ds.num_classes]
        if bad:
            raise ValueError(f"task {task.name}: forget classes {bad} not in 0..{ds.num_classes - 1}")
        forget_mask = torch.isin(pool_y, torch.tensor(rule.classes))
    elif rule.kind == "random":
        forget_mask = torch.zeros(len(pool), dtype=torch.bool)
        k = int(round(rule.fraction * len(pool)))
        forget_mask[torch.randperm(len(pool), generator=generator(seed, "forget"))[:k]] = True
    else:
        raise ValueError(f"task {task.name}: forget rule {rule.kind!r} needs a dataset with identities")
    forget_idx, retain_idx = pool[forget_mask], pool[~forget_mask]
    val_idx = torch.nonzero(val_mask).flatten()
    if len(forget_idx) == 0 or len(retain_idx) == 0:
        raise ValueError(f"task {task.name}: seed {seed} gives an empty forget or retain set")

    forget_classes = tuple(rule.classes) if rule.kind == "classes" else ()
    test = Split("test", ds.test_x, ds.test_y)
    forget_test = None
    if forget_classes:
        forget_test = test.subset(torch.isin(ds.test_y, torch.tensor(forget_classes)), "forget_test")
    train_idx = torch.sort(pool).values
    return TaskData(
        task=task,
        seed=seed,
        dataset=ds,
        train=Split("train", x[train_idx], y[train_idx]),
        forget=Split("forget", x[forget_idx], y[forget_idx]),
        retain=Split("retain", x[retain_idx], y[retain_idx]),
        val=Split("val", x[val_idx], y[val_idx]),
        test=test,
        forget_test=forget_test,
        forget_classes=forget_classes,
        split_hash=tensor_hash(forget_idx, retain_idx, val_idx),
        val_hash=tensor_hash(val_idx),
    )


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
        mask = stratified_pick(td.retain.y, retain_fraction, generator(td.seed, "retain_fraction"))
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
