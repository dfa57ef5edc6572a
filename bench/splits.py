"""Forget rules → splits: :func:`build_task_data` splits a task's dataset for a seed.

For a task and seed the training images are split, in this order and deterministically:

1. **validation** D_v (:func:`carve_validation`): a class-stratified ``val_fraction`` of the
   dataset's training images (seed stream ``"val"``). Never trained on by the original; open to
   every method for model selection and early stopping.
2. **forget** D_f (:func:`forget_mask`, one branch per forget kind): from the remaining training
   pool, every image of the forgotten classes, or a uniformly random ``fraction`` (seed stream
   ``"forget"``).
3. **retain** D_r: the pool minus D_f.

Both draws use the task's split seed (``Task.split_seed_for``): the task's own ``split_seed``
when it has one (seeds by role: every model seed shares the split), else the model seed.

**Training subsets** (``Task.train_subset = n``, the memorising tasks): before step 1 a fixed
class-stratified round(n/N · N_c) images of each class c are drawn (seed stream ``"subset"`` of
the split seed) as the training pool, and the validation split is a class-stratified
``val_fraction · n`` of the held-out training images outside it (stream ``"val"``); the rest of
those held-out images is used by nothing. A small pool lets a CPU recipe memorise it.

Test data D_t is the dataset's fixed test split; D_ft are its images of the forgotten classes.
The **control** images (:func:`control_positions`) are a fixed sample of D_t, the same for every
seed and method: the held-out images whose per-example values are stored beside the forget
set's (:mod:`bench.examples`).

Face datasets (:mod:`bench.datasets.faces`) change three things:

* **Fixed validation.** A dataset that ships its own validation split (MUFAC's validation
  table; ``ImageDataset.val_x``) is used as D_v as it is, and the whole training table is the
  pool; the task must say ``val_fraction=0``.
* **Identities.** ``ForgetRule("identities", fraction=f)`` forgets every pool image of a seeded
  random (seed stream ``"forget"``) round(f · #people) of the pool's people;
  ``ForgetRule("identities", rows=n)`` the people of the first n training rows, whole (see
  :class:`bench.tasks.ForgetRule`). ``ForgetRule("random", fraction=f, seed=s)`` reproduces a
  reference code's fixed shuffle split (validation included).
* **Leakage audit** (datasets with ``leakage_audit``), enforced between steps 1 and 2 and
  verified on the result (:mod:`bench.leakage`). The counts are in ``TaskData.audit``.

A new forget kind is declared in :mod:`bench.tasks` (:data:`~bench.tasks.ForgetKind` and
:class:`~bench.tasks.ForgetRule`) and picks its images in :func:`forget_mask`.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

import torch

from bench.data import Split, TaskData, generator, stratified_pick
from bench.datasets import ImageDataset, load_dataset
from bench.forgetsets import load_forget_set
from bench.leakage import enforce_leakage_audit, verify_no_leakage
from bench.tasks import Task


def tensor_hash(*tensors: torch.Tensor) -> str:
    """sha256 (first 16 hex digits) of the tensors' shapes and bytes: the split and validation hashes."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def reference_shuffle(n: int, seed: int) -> torch.Tensor:
    """``random.seed(seed); random.shuffle(list(range(n)))`` as an int64 tensor: the order in which
    reference codes (DLFD's ``RAF_loader.py``) split ``ImageFolder`` indices."""
    indices = list(range(n))
    random.Random(seed).shuffle(indices)
    return torch.tensor(indices, dtype=torch.int64)


@dataclass(frozen=True, eq=False)
class Validation:
    """Step 1: the validation split (``idx`` into ``x``/``y``/``groups``) and the training pool
    (indices into the training images) that forget and retain are drawn from."""

    x: torch.Tensor
    y: torch.Tensor
    groups: torch.Tensor | None
    idx: torch.Tensor
    pool: torch.Tensor
    n_carved: int  # training images the validation split took (the fixed shuffle's ⌊val_fraction · n⌋)
    how: str


def carve_validation(task: Task, ds: ImageDataset, seed: int, order: torch.Tensor | None) -> Validation:
    """The dataset's fixed validation split, the first ``val_fraction`` of the fixed shuffle
    ``order``, or a class-stratified ``val_fraction`` (seed stream ``"val"``)."""
    x, y = ds.train_x, ds.train_y
    if task.train_subset:
        return carve_subset(task, ds)
    if ds.has_fixed_val:
        if task.val_fraction != 0.0:
            raise ValueError(f"task {task.name}: dataset {ds.name} ships a fixed validation split, which is used as "
                             f"it is; set the task's val_fraction=0.0 (it is {task.val_fraction})")
        return Validation(ds.val_x, ds.val_y, ds.val_groups, torch.arange(len(ds.val_y)), torch.arange(len(y)), 0,
                          f"fixed: the dataset's own validation split ({len(ds.val_y)} images)")
    if order is not None:
        n_val = int(len(y) * task.val_fraction)
        return Validation(x, y, ds.train_groups, torch.sort(order[:n_val]).values, torch.sort(order[n_val:]).values, n_val,
                          f"the first {task.val_fraction:.0%} of random.Random({task.forget.seed}).shuffle of the training indices")
    val_mask = stratified_pick(y, task.val_fraction, generator(task.split_seed_for(seed), "val"))
    return Validation(x, y, ds.train_groups, torch.nonzero(val_mask).flatten(), torch.nonzero(~val_mask).flatten(), 0,
                      f"carved: a class-stratified {task.val_fraction:.0%} of the training images (seed stream 'val')")


def carve_subset(task: Task, ds: ImageDataset) -> Validation:
    """A training subset's pool and its validation split from the held-out rest (module docstring)."""
    y, n = ds.train_y, task.train_subset
    if ds.has_fixed_val or ds.leakage_audit or task.forget.seed is not None:
        raise ValueError(f"task {task.name}: a training subset applies to a dataset without a fixed validation split "
                         f"or leakage audit, and to forget rules without a fixed shuffle; {ds.name} / {task.forget.describe()}")
    if not 0 < n < len(y):
        raise ValueError(f"task {task.name}: train_subset={n} must be below the {len(y)} training images of {ds.name}")
    in_subset = stratified_pick(y, n / len(y), generator(task.split_seed, "subset"))
    rest = torch.nonzero(~in_subset).flatten()
    val_share = task.val_fraction * int(in_subset.sum()) / len(rest)
    if not 0.0 < val_share <= 1.0:
        raise ValueError(f"task {task.name}: val_fraction={task.val_fraction} of the {n}-image subset must be > 0 and at most "
                         f"the {len(rest)} held-out training images")
    val_idx = rest[stratified_pick(y[rest], val_share, generator(task.split_seed, "val"))]
    return Validation(ds.train_x, y, ds.train_groups, torch.sort(val_idx).values, torch.nonzero(in_subset).flatten(), 0,
                      f"held out: a class-stratified {len(val_idx)} of the {len(rest)} training images outside the fixed "
                      f"{int(in_subset.sum())}-image training subset (seed streams 'subset', 'val')")


def forget_mask(task: Task, ds: ImageDataset, seed: int, pool: torch.Tensor, order: torch.Tensor | None, n_carved: int) -> torch.Tensor:
    """Step 2, one branch per forget kind: which images of ``pool`` (training indices) the rule forgets."""
    rule, y = task.forget, ds.train_y
    if rule.kind == "classes":
        bad = [c for c in rule.classes if not 0 <= c < ds.num_classes]
        if bad:
            raise ValueError(f"task {task.name}: forget classes {bad} not in 0..{ds.num_classes - 1}")
        return torch.isin(y[pool], torch.tensor(rule.classes))
    if rule.kind == "random" and order is not None:
        n_retain = int((len(y) - n_carved) * (1.0 - rule.fraction))
        return torch.isin(pool, order[n_carved + n_retain:])
    if rule.kind == "random":
        mask = torch.zeros(len(pool), dtype=torch.bool)
        k = int(round(rule.fraction * len(pool)))
        mask[torch.randperm(len(pool), generator=generator(task.split_seed_for(seed), "forget"))[:k]] = True
        return mask
    if rule.kind == "examples":
        listed = load_forget_set(rule.index_file, rule.index_sha256, dataset=ds.name)
        outside = int((~torch.isin(listed, pool)).sum())
        if outside:
            raise ValueError(f"task {task.name}: forget set {rule.index_file} lists {outside} of its {len(listed)} images outside "
                             f"the task's training pool ({len(pool)} images); it was made for another pool — remake it with "
                             "the command its file records, against this task's pool")
        return torch.isin(pool, listed)
    if rule.kind == "identities":
        if ds.train_groups is None:
            raise ValueError(f"task {task.name}: identity forgetting needs a dataset with a person identity per "
                             f"image; {ds.name} has none (use a face dataset: mufac)")
        pool_groups = ds.train_groups[pool]
        if rule.rows:
            if rule.rows >= len(y):
                raise ValueError(f"task {task.name}: the first {rule.rows} rows are the whole training table of "
                                 f"{ds.name} ({len(y)} rows); nothing would be retained")
            chosen = torch.unique(ds.train_groups[:rule.rows])
        else:
            people = torch.unique(pool_groups)
            k = max(1, int(round(rule.fraction * len(people))))
            if k >= len(people):
                raise ValueError(f"task {task.name}: forgetting {k} of the {len(people)} training people leaves nobody to retain")
            chosen = people[torch.randperm(len(people), generator=generator(task.split_seed_for(seed), "forget"))[:k]]
        return torch.isin(pool_groups, chosen)
    raise ValueError(f"task {task.name}: forget kind {rule.kind!r} has no rule for picking images in bench.splits.forget_mask")


#: How many test images the control sample holds (all of them when the test split is smaller).
CONTROL_SIZE = 1000


def control_positions(task: Task, n_test: int) -> torch.Tensor:
    """Positions in D_t of the control sample: :data:`CONTROL_SIZE` test images drawn without
    replacement by the seed stream ``"control"`` of the task's split seed (0 for a task without
    one), sorted; fixed per task, whatever the model seed."""
    seed = task.split_seed if task.split_seed is not None else 0
    if n_test <= CONTROL_SIZE:
        return torch.arange(n_test)
    return torch.sort(torch.randperm(n_test, generator=generator(seed, "control"))[:CONTROL_SIZE]).values


def check_not_empty(task: Task, ds: ImageDataset, val: Validation, val_idx: torch.Tensor, test_idx: torch.Tensor,
                    audit: dict[str, Any]) -> None:
    """A validation or test split that comes out empty is an error naming its actual cause: the
    dataset has none, ``val_fraction`` picks none, or the leakage audit dropped every image — as
    perceptual duplicates of earlier splits' images, or as images of people who also have training
    images (its counts say which; a single "shared people" message was wrong for copied images)."""
    for split, before, after in (("val", len(val.idx), val_idx), ("test", len(ds.test_y), test_idx)):
        if len(after):
            continue
        name = "validation" if split == "val" else "test"
        if before == 0:
            cause = (f"dataset {ds.name} has no {name} images" if split == "test" or ds.has_fixed_val else
                     f"val_fraction={task.val_fraction} of the {len(ds.train_y)} training images picks none")
            fix = "give the task a dataset with test images" if split == "test" else (
                "give the dataset validation images" if ds.has_fixed_val else "raise the task's val_fraction")
        else:
            dups, people = audit["duplicates_dropped"][split], audit["people_dropped"][split]
            earlier = "training images" if split == "val" else "training or validation images"
            cause = (f"the leakage audit dropped all {before} of its images: {dups} as perceptual duplicates "
                     f"({audit['duplicate_rule']}) of {earlier}, {people} because their person also has {earlier}")
            fixes = [f"remove the copies of {earlier} from the {name} images"] if dups else []
            if people:
                fixes.append(f"use a dataset whose {name} people are disjoint from those of its {earlier}")
            fix = " and ".join(fixes)
        raise ValueError(f"task {task.name}: the {name} split is empty: {cause}; {fix}")


def build_task_data(task: Task, seed: int, data_root: str | None = None) -> TaskData:
    """Load the task's dataset and split it for ``seed`` (see the module docstring)."""
    ds = load_dataset(task.dataset, data_root)
    x, y = ds.train_x, ds.train_y
    rule = task.forget
    order = reference_shuffle(len(y), rule.seed) if rule.kind == "random" and rule.seed is not None else None
    val = carve_validation(task, ds, seed, order)
    pool, val_idx, test_idx = val.pool, val.idx, torch.arange(len(ds.test_y))
    audit: dict[str, Any] = {"task": task.name, "seed": seed, "dataset": ds.name, "validation": val.how,
                             "forget_rule": rule.describe(), "enforced": ds.leakage_audit}
    if ds.leakage_audit and ds.train_groups is not None and rule.kind != "identities":
        raise ValueError(f"task {task.name}: dataset {ds.name} carries identities and its splits keep every person on "
                         f"one side; forgetting {rule.kind} would put people in both forget and retain — use "
                         "ForgetRule('identities', fraction=...) or ForgetRule('identities', rows=...)")
    if ds.leakage_audit:
        pool, val_idx, test_idx, counts = enforce_leakage_audit(ds, pool, val_idx, test_idx, val_from_train=not ds.has_fixed_val)
        audit.update(counts)
    check_not_empty(task, ds, val, val_idx, test_idx, audit)

    mask = forget_mask(task, ds, seed, pool, order, val.n_carved)
    forget_idx, retain_idx = pool[mask], pool[~mask]
    if len(forget_idx) == 0 or len(retain_idx) == 0:
        raise ValueError(f"task {task.name}: seed {seed} gives an empty forget or retain set")
    if rule.kind == "identities" and rule.rows:
        first = int((forget_idx < rule.rows).sum())
        audit["first_rows"] = {"rows": rule.rows, "forget_images_in_first_rows": first,
                               "added_to_complete_people": len(forget_idx) - first,
                               "first_rows_not_forgotten": rule.rows - first}
    if ds.leakage_audit:
        verify_no_leakage(ds, forget_idx, retain_idx, val_idx, test_idx, val_from_train=not ds.has_fixed_val)
    audit["sizes"] = {"forget": len(forget_idx), "retain": len(retain_idx), "val": len(val_idx), "test": len(test_idx)}
    if ds.train_groups is not None:
        audit["people"] = {
            "forget": len(torch.unique(ds.train_groups[forget_idx])),
            "retain": len(torch.unique(ds.train_groups[retain_idx])),
            "val": len(torch.unique(val.groups[val_idx])) if val.groups is not None else None,
            "test": len(torch.unique(ds.test_groups[test_idx])) if ds.test_groups is not None else None,
        }

    forget_classes = tuple(rule.classes) if rule.kind == "classes" else ()
    if len(test_idx) == len(ds.test_y):
        test = Split("test", ds.test_x, ds.test_y)
    else:
        test = Split("test", ds.test_x[test_idx], ds.test_y[test_idx])
    forget_test = None
    if forget_classes:
        forget_test = test.subset(torch.isin(test.y, torch.tensor(forget_classes)), "forget_test")
    train_idx = torch.sort(pool).values
    control = control_positions(task, len(test_idx))
    return TaskData(
        task=task,
        seed=seed,
        dataset=ds,
        train=Split("train", x[train_idx], y[train_idx]),
        forget=Split("forget", x[forget_idx], y[forget_idx]),
        retain=Split("retain", x[retain_idx], y[retain_idx]),
        val=Split("val", val.x[val_idx], val.y[val_idx]),
        test=test,
        forget_test=forget_test,
        forget_classes=forget_classes,
        split_hash=tensor_hash(forget_idx, retain_idx, val_idx),
        # the original trains on the pool: with the leakage audit the pool is de-duplicated, so its
        # indices join the validation split's in the hash that keys the cached original
        # (and so do a training subset's, which is not the whole training set less validation)
        val_hash=tensor_hash(val_idx, train_idx) if ds.leakage_audit or task.train_subset else tensor_hash(val_idx),
        audit=audit,
        forget_index=forget_idx,
        train_index=train_idx,
        control=control,
        control_index=test_idx[control],
    )
