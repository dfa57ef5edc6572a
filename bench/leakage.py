"""The leakage audit: perceptual hashes, near-duplicate pairs, the audit's enforcement and
verification, and its report (``bench audit TASK``).

Datasets with ``leakage_audit`` (the face datasets) are audited by the splitter
(:func:`bench.splits.build_task_data`) between carving the validation split and choosing the
forget set, in the order training pool → validation → test. Duplicates are images whose
perceptual hashes (:func:`perceptual_hashes`) differ in at most :data:`HASH_MAX_DISTANCE` of 128
bits.

(a) A pool image that duplicates an earlier pool image of another person (any earlier image when
    the dataset has no identities) is dropped — in table order, the first copy is kept;
(b) a validation image that duplicates a pool image, or whose person has pool images, is dropped
    from D_v;
(c) a test image that duplicates a pool or validation image, or whose person is in either, is
    dropped from D_t.

The pool is de-duplicated *before* D_f is chosen, so D_f and D_r never share an image or
(identity forgetting being the only rule allowed on a dataset with identities) a person, and the
original's training set does not depend on the forget rule. The counts go into ``TaskData.audit``
(:func:`format_audit` renders them); the final splits are verified (:func:`verify_no_leakage`
raises on a violation).
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import torch

from bench.datasets import ImageDataset


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
    """Drop duplicates and shared people, pool → validation → test (rules (a)-(c) of the module docstring).

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


def format_audit(report: dict[str, Any]) -> str:
    """A few human-readable lines of a leakage-audit report, ``TaskData.audit`` (what ``bench audit TASK``
    prints): how the validation split was made, the forget rule, split sizes and people per split, and the
    images the splitter dropped."""
    sizes = report.get("sizes", {})
    lines = [f"leakage audit of {report.get('task')} (seed {report.get('seed')}, dataset {report.get('dataset')}):",
             f"  validation: {report.get('validation')}",
             f"  forget: {report.get('forget_rule')}",
             "  images: " + ", ".join(f"{k} {v}" for k, v in sizes.items())]
    if report.get("people"):
        lines.append("  people: " + ", ".join(f"{k} {v}" for k, v in report["people"].items() if v is not None))
    if not report.get("enforced"):
        lines.append("  not enforced: this dataset does not ask for the leakage audit")
        return "\n".join(lines)
    dup, ppl = report.get("duplicates_dropped", {}), report.get("people_dropped", {})
    lines.append(f"  perceptual duplicates dropped (later split; {report.get('duplicate_rule')}): "
                 + ", ".join(f"{k} {v}" for k, v in dup.items()))
    if report.get("identities"):
        lines.append("  images dropped for a person already in an earlier split: " + ", ".join(f"{k} {v}" for k, v in ppl.items()))
    else:
        lines.append("  people: not audited (the dataset carries no identities)")
    if "first_rows" in report:
        fr = report["first_rows"]
        lines.append(f"  first {fr['rows']} rows: {fr['forget_images_in_first_rows']} forgotten, "
                     f"{fr['added_to_complete_people']} more images added to complete their people, "
                     f"{fr['first_rows_not_forgotten']} dropped as duplicates")
    what = "no image and no person" if report.get("identities") else "no image"
    lines.append(f"  verified: {what} in two of forget / retain / validation / test")
    return "\n".join(lines)
