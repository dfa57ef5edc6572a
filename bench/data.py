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

Face datasets (:mod:`bench.datasets.faces`) change three things:

* **Fixed validation.** A dataset that ships its own validation split (MUFAC's validation
  table; ``ImageDataset.val_x``) is used as D_v as it is, and the whole training table is the
  pool; the task must say ``val_fraction=0``.
* **Identities.** ``ForgetRule("identities", fraction=f)`` forgets every pool image of a seeded
  random (seed stream ``"forget"``) round(f · #people) of the pool's people;
  ``ForgetRule("identities", rows=n)`` the people of the first n training rows, whole (see
  :class:`bench.tasks.ForgetRule`). ``ForgetRule("random", fraction=f, seed=s)`` reproduces a
  reference code's fixed shuffle split (validation included).
* **Leakage audit** (datasets with ``leakage_audit``), enforced between steps 1 and 2, in the
  order training pool → validation → test. Duplicates are images whose perceptual hashes
  (:func:`perceptual_hashes`) differ in at most :data:`HASH_MAX_DISTANCE` of 128 bits. (a) A pool
  image that duplicates an earlier pool image of another person (any earlier image when the
  dataset has no identities) is dropped — in table order, the first copy is kept; (b) a
  validation image that duplicates a pool image, or whose person has pool images, is dropped from
  D_v; (c) a test image that duplicates a pool or validation image, or whose person is in either,
  is dropped from D_t. The pool is de-duplicated *before* D_f is chosen, so D_f and D_r never
  share an image or (identity forgetting being the only rule allowed on a dataset with
  identities) a person, and the original's training set does not depend on the forget rule. The
  counts are in ``TaskData.audit``; the result is verified (a violation raises).
"""
from __future__ import annotations

import hashlib
import random
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
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
    audit: dict[str, Any] = field(default_factory=dict)  # how the split was made; leakage-audit counts


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


def stratified_pick(y: torch.Tensor, fraction: float, g: torch.Generator, *, floor: bool = False) -> torch.Tensor:
    """Boolean mask selecting round(fraction·n_c) (⌊fraction·n_c⌋ with ``floor``) random images of every class c."""
    mask = torch.zeros(len(y), dtype=torch.bool)
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        k = int(fraction * len(idx)) if floor else int(round(fraction * len(idx)))
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
    rule = task.forget
    fixed_shuffle = rule.kind == "random" and rule.seed is not None
    order = reference_shuffle(len(y), rule.seed) if fixed_shuffle else None
    n_val = 0
    if ds.has_fixed_val:
        if task.val_fraction != 0.0:
            raise ValueError(f"task {task.name}: dataset {ds.name} ships a fixed validation split, which is used as "
                             f"it is; set the task's val_fraction=0.0 (it is {task.val_fraction})")
        val_x, val_y, val_groups = ds.val_x, ds.val_y, ds.val_groups
        val_idx = torch.arange(len(val_y))
        pool = torch.arange(len(y))
        validation = f"fixed: the dataset's own validation split ({len(val_y)} images)"
    elif order is not None:
        val_x, val_y, val_groups = x, y, ds.train_groups
        n_val = int(len(y) * task.val_fraction)
        val_idx = torch.sort(order[:n_val]).values
        pool = torch.sort(order[n_val:]).values
        validation = f"the first {task.val_fraction:.0%} of random.Random({rule.seed}).shuffle of the training indices"
    else:
        val_x, val_y, val_groups = x, y, ds.train_groups
        val_mask = stratified_pick(y, task.val_fraction, generator(seed, "val"))
        val_idx = torch.nonzero(val_mask).flatten()
        pool = torch.nonzero(~val_mask).flatten()
        validation = f"carved: a class-stratified {task.val_fraction:.0%} of the training images (seed stream 'val')"
    test_idx = torch.arange(len(ds.test_y))
    audit: dict[str, Any] = {"task": task.name, "seed": seed, "dataset": ds.name, "validation": validation,
                             "forget_rule": rule.describe(), "enforced": ds.leakage_audit}
    if ds.leakage_audit and ds.train_groups is not None and rule.kind != "identities":
        raise ValueError(f"task {task.name}: dataset {ds.name} carries identities and its splits keep every person on "
                         f"one side; forgetting {rule.kind} would put people in both forget and retain — use "
                         "ForgetRule('identities', fraction=...) or ForgetRule('identities', rows=...)")
    if ds.leakage_audit:
        pool, val_idx, test_idx, counts = enforce_leakage_audit(ds, pool, val_idx, test_idx, val_from_train=not ds.has_fixed_val)
        audit.update(counts)
        if len(val_idx) == 0 or len(test_idx) == 0:
            raise ValueError(f"task {task.name}: the leakage audit leaves an empty validation or test split ({counts}); "
                             "every validation/test person also has training images — use a dataset whose "
                             "validation and test people are disjoint from its training people")

    pool_y = y[pool]
    if rule.kind == "classes":
        bad = [c for c in rule.classes if not 0 <= c < ds.num_classes]
        if bad:
            raise ValueError(f"task {task.name}: forget classes {bad} not in 0..{ds.num_classes - 1}")
        forget_mask = torch.isin(pool_y, torch.tensor(rule.classes))
    elif rule.kind == "random" and order is not None:
        n_retain = int((len(y) - n_val) * (1.0 - rule.fraction))
        forget_mask = torch.isin(pool, order[n_val + n_retain:])
    elif rule.kind == "random":
        forget_mask = torch.zeros(len(pool), dtype=torch.bool)
        k = int(round(rule.fraction * len(pool)))
        forget_mask[torch.randperm(len(pool), generator=generator(seed, "forget"))[:k]] = True
    else:
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
            chosen = people[torch.randperm(len(people), generator=generator(seed, "forget"))[:k]]
        forget_mask = torch.isin(pool_groups, chosen)
    forget_idx, retain_idx = pool[forget_mask], pool[~forget_mask]
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
            "val": len(torch.unique(val_groups[val_idx])) if val_groups is not None else None,
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
    return TaskData(
        task=task,
        seed=seed,
        dataset=ds,
        train=Split("train", x[train_idx], y[train_idx]),
        forget=Split("forget", x[forget_idx], y[forget_idx]),
        retain=Split("retain", x[retain_idx], y[retain_idx]),
        val=Split("val", val_x[val_idx], val_y[val_idx]),
        test=test,
        forget_test=forget_test,
        forget_classes=forget_classes,
        split_hash=tensor_hash(forget_idx, retain_idx, val_idx),
        # the original trains on the pool: with the leakage audit the pool is de-duplicated, so its
        # indices join the validation split's in the hash that keys the cached original
        val_hash=tensor_hash(val_idx, train_idx) if ds.leakage_audit else tensor_hash(val_idx),
        audit=audit,
    )


def reference_shuffle(n: int, seed: int) -> torch.Tensor:
    """``random.seed(seed); random.shuffle(list(range(n)))`` as an int64 tensor: the order in which
    reference codes (DLFD's ``RAF_loader.py``) split ``ImageFolder`` indices."""
    indices = list(range(n))
    random.Random(seed).shuffle(indices)
    return torch.tensor(indices, dtype=torch.int64)


# ---------------------------------------------------------------------------------------------
# Leakage audit (datasets with ``leakage_audit``: the face datasets)
# ---------------------------------------------------------------------------------------------


def _bins(size: int, out: int) -> list[tuple[int, int]]:
    """Adaptive-pooling bins: [⌊i·size/out⌋, ⌈(i+1)·size/out⌉) for i = 0 … out − 1."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


#: Differences of block means up to this many gray levels are ties (hash bit 0), so flat areas
#: (backgrounds, saturated skin) do not flip bits under re-encoding noise.
HASH_TIE_LEVELS = 2


def perceptual_hashes(x: torch.Tensor, chunk: int = 256) -> np.ndarray:
    """128-bit perceptual hash of every image: uint8 ``[N, 16]`` = dHash (8 bytes) ‖ aHash (8 bytes).

    In exact integer arithmetic (so the same images give the same bits on every machine):
    gray g = 299·R + 587·G + 114·B (PIL's "L" luma, ×1000; 1000·v for 1-channel images);
    m_b = S_b / |b|, S_b = Σ_{p ∈ b} g_p, the mean over the bins b of adaptive average pooling;
    τ = 1000 · :data:`HASH_TIE_LEVELS` (differences up to τ are ties, bit 0).

    * dHash: 8 rows × 9 columns of bins; bit (r, c), c < 8, is 1 iff m_{r,c+1} − m_{r,c} > τ
      (brightness gradient along each row), i.e. S_{r,c+1}·|b_{r,c}| − S_{r,c}·|b_{r,c+1}| > τ·|b_{r,c}|·|b_{r,c+1}|.
    * aHash: 8 × 8 bins; bit (r, c) is 1 iff m_{r,c} − ḡ > τ, ḡ the image mean, i.e.
      S_{r,c}·HW − (Σ_p g_p)·|b_{r,c}| > τ·|b_{r,c}|·HW.

    Bits row-major, packed with ``numpy.packbits``. Two images are **duplicates** when both hashes
    are equal: the same photo decoded again, re-encoded or resized agrees, different photos almost
    never do (a blank image hashes like every other blank image).
    """
    n, c, h, w = x.shape
    tau = 1000 * HASH_TIE_LEVELS
    rows8, cols9, cols8 = _bins(h, 8), _bins(w, 9), _bins(w, 8)
    d_cnt = torch.tensor([[(r1 - r0) * (c1 - c0) for c0, c1 in cols9] for r0, r1 in rows8], dtype=torch.int64)
    a_cnt = torch.tensor([[(r1 - r0) * (c1 - c0) for c0, c1 in cols8] for r0, r1 in rows8], dtype=torch.int64)
    r_lo, r_hi = (torch.tensor(v) for v in zip(*rows8))

    def bin_sums(rows: torch.Tensor, cols: list[tuple[int, int]]) -> torch.Tensor:
        """[B, 8, W] row-bin sums → [B, 8, len(cols)] bin sums, by a cumulative sum along W."""
        cum = torch.nn.functional.pad(rows.cumsum(2), (1, 0))
        lo, hi = (torch.tensor(v) for v in zip(*cols))
        return cum[:, :, hi] - cum[:, :, lo]

    out = np.zeros((n, 16), dtype=np.uint8)
    for start in range(0, n, chunk):
        xb = x[start:start + chunk].to(torch.int64)
        if c == 3:
            g = 299 * xb[:, 0] + 587 * xb[:, 1] + 114 * xb[:, 2]
        else:
            g = 1000 * xb[:, 0]
        cum_h = torch.nn.functional.pad(g.cumsum(1), (0, 0, 1, 0))
        rows = cum_h[:, r_hi] - cum_h[:, r_lo]  # [B, 8, W]: sums over each row bin
        total = cum_h[:, -1].sum(1)
        d = bin_sums(rows, cols9)
        d_bits = d[:, :, 1:] * d_cnt[:, :-1] - d[:, :, :-1] * d_cnt[:, 1:] > tau * d_cnt[:, :-1] * d_cnt[:, 1:]
        a = bin_sums(rows, cols8)
        a_bits = a * (h * w) - total[:, None, None] * a_cnt > tau * a_cnt * (h * w)
        bits = torch.cat([d_bits.reshape(len(xb), 64), a_bits.reshape(len(xb), 64)], 1).numpy()
        out[start:start + len(xb)] = np.packbits(bits, axis=1)
    return out


#: Two images are duplicates when their 128-bit hashes differ in at most this many bits: a photo
#: re-encoded (JPEG quality 50-95) or resized and back stays within 5 bits on the face-like test
#: images; different photos differ in dozens.
HASH_MAX_DISTANCE = 6


def hash_words(x: torch.Tensor) -> np.ndarray:
    """:func:`perceptual_hashes` as two uint64 words per image, ``[N, 2]``."""
    return np.ascontiguousarray(perceptual_hashes(x)).view(np.uint64).reshape(len(x), 2)


def near_pairs(a: np.ndarray, b: np.ndarray | None = None, *, max_distance: int = HASH_MAX_DISTANCE, chunk: int = 512) -> np.ndarray:
    """Index pairs ``[P, 2]`` (i into ``a``, j into ``b``) whose hashes (:func:`hash_words`) differ in
    at most ``max_distance`` bits (Hamming distance). With ``b`` None: pairs within ``a``, i < j."""
    same = b is None
    b = a if b is None else b
    out = []
    for start in range(0, len(a), chunk):
        block = a[start:start + chunk]
        dist = np.bitwise_count(block[:, None, 0] ^ b[None, :, 0]) + np.bitwise_count(block[:, None, 1] ^ b[None, :, 1])
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        if same:
            keep = i < j
            i, j = i[keep], j[keep]
        out.append(np.stack([i, j], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


_NEAR: "weakref.WeakKeyDictionary[ImageDataset, dict[str, np.ndarray]]" = weakref.WeakKeyDictionary()


def dataset_near_pairs(ds: ImageDataset) -> dict[str, np.ndarray]:
    """Near-duplicate pairs of a dataset, computed once per dataset (see :func:`near_pairs`):
    ``train`` (within the training images), ``test-train``, and with a fixed validation split
    ``val-train`` and ``test-val`` (first index into the first split named)."""
    if ds not in _NEAR:
        train, test = hash_words(ds.train_x), hash_words(ds.test_x)
        pairs = {"train": near_pairs(train), "test-train": near_pairs(test, train)}
        if ds.val_x is not None:
            val = hash_words(ds.val_x)
            pairs["val-train"] = near_pairs(val, train)
            pairs["test-val"] = near_pairs(test, val)
        _NEAR[ds] = pairs
    return _NEAR[ds]


def _neighbours(pairs: np.ndarray, symmetric: bool) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, j in pairs.tolist():
        out.setdefault(i, []).append(j)
        if symmetric:
            out.setdefault(j, []).append(i)
    return out


def enforce_leakage_audit(
    ds: ImageDataset, pool: torch.Tensor, val_idx: torch.Tensor, test_idx: torch.Tensor, *, val_from_train: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Drop duplicates and shared people, pool → validation → test (see the module docstring).

    Duplicates are pairs within :data:`HASH_MAX_DISTANCE` bits (:func:`near_pairs`). In the pool,
    in table order, an image near an earlier kept image is dropped — unless both are of the same
    person (identity splits keep a person on one side, so that is no leakage). ``val_idx`` indexes
    the training images when ``val_from_train`` (a carved validation split), else the dataset's
    fixed validation split. Returns the kept pool, validation and test indices (sorted) and the
    counts: ``duplicates_dropped`` and ``people_dropped`` (images) per split.
    """
    pairs = dataset_near_pairs(ds)
    groups = ds.train_groups
    val_groups = ds.train_groups if val_from_train else ds.val_groups
    dup = {"train": 0, "val": 0, "test": 0}
    people_dropped = {"val": 0, "test": 0}

    in_pool = np.zeros(len(ds.train_y), dtype=bool)
    in_pool[pool.numpy()] = True
    earlier: dict[int, list[int]] = {}
    group_of = groups.numpy() if groups is not None else None
    for i, j in pairs["train"].tolist():  # i < j
        if in_pool[i] and in_pool[j] and (group_of is None or group_of[i] != group_of[j]):
            earlier.setdefault(j, []).append(i)
    kept_pool = np.zeros(len(ds.train_y), dtype=bool)
    for j in np.flatnonzero(in_pool).tolist():
        if any(kept_pool[i] for i in earlier.get(j, ())):
            dup["train"] += 1
        else:
            kept_pool[j] = True
    people = set(groups[torch.from_numpy(np.flatnonzero(kept_pool))].tolist()) if groups is not None else set()

    val_near = _neighbours(pairs["train"], symmetric=True) if val_from_train else _neighbours(pairs["val-train"], symmetric=False)
    keep_val = []
    for v in torch.sort(val_idx).values.tolist():
        if any(kept_pool[i] for i in val_near.get(v, ())):
            dup["val"] += 1
        elif val_groups is not None and int(val_groups[v]) in people:
            people_dropped["val"] += 1
        else:
            keep_val.append(v)
    if val_groups is not None:
        people.update(val_groups[keep_val].tolist())
    kept_val = set(keep_val)

    test_train = _neighbours(pairs["test-train"], symmetric=False)
    test_val = test_train if val_from_train else _neighbours(pairs["test-val"], symmetric=False)
    keep_test = []
    for t in test_idx.tolist():
        if any(kept_pool[i] for i in test_train.get(t, ())) or any(v in kept_val for v in test_val.get(t, ())):
            dup["test"] += 1
        elif ds.test_groups is not None and int(ds.test_groups[t]) in people:
            people_dropped["test"] += 1
        else:
            keep_test.append(t)
    as_tensor = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    counts = {"duplicate_rule": f"128-bit dHash+aHash within {HASH_MAX_DISTANCE} bits",
              "duplicates_dropped": dup, "people_dropped": people_dropped, "identities": groups is not None}
    return as_tensor(np.flatnonzero(kept_pool).tolist()), as_tensor(keep_val), as_tensor(keep_test), counts


def verify_no_leakage(
    ds: ImageDataset, forget_idx: torch.Tensor, retain_idx: torch.Tensor, val_idx: torch.Tensor, test_idx: torch.Tensor,
    *, val_from_train: bool,
) -> None:
    """Raise if a near-duplicate pair or a person is shared by two of forget / retain / validation / test."""
    pairs = dataset_near_pairs(ds)
    train_of = np.full(len(ds.train_y), "", dtype=object)
    train_of[forget_idx.numpy()] = "forget"
    train_of[retain_idx.numpy()] = "retain"
    val_of = set(val_idx.tolist())
    test_of = set(test_idx.tolist())
    if val_from_train:
        train_of[val_idx.numpy()] = "val"
    crossing = [(train_of[i], train_of[j]) for i, j in pairs["train"].tolist() if train_of[i] and train_of[j] and train_of[i] != train_of[j]]
    crossing += [("test", train_of[i]) for t, i in pairs["test-train"].tolist() if t in test_of and train_of[i]]
    if not val_from_train:
        crossing += [("val", train_of[i]) for v, i in pairs["val-train"].tolist() if v in val_of and train_of[i]]
        crossing += [("test", "val") for t, v in pairs["test-val"].tolist() if t in test_of and v in val_of]
    if crossing:
        raise RuntimeError(f"leakage audit failed: {len(crossing)} near-duplicate pair(s) across splits, e.g. {crossing[0]}")
    val_groups = ds.train_groups if val_from_train else ds.val_groups
    people = {
        "forget": (ds.train_groups, forget_idx), "retain": (ds.train_groups, retain_idx),
        "val": (val_groups, val_idx), "test": (ds.test_groups, test_idx),
    }
    sets = {k: set(g[i].tolist()) for k, (g, i) in people.items() if g is not None}
    names = list(sets)
    for a_i, a in enumerate(names):
        for b in names[a_i + 1:]:
            if sets[a] & sets[b]:
                raise RuntimeError(f"leakage audit failed: {len(sets[a] & sets[b])} person(s) in both {a} and {b}")


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
