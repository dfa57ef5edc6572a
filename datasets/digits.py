"""scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes), embedded with scikit-learn.

Pixel values 0..16 are mapped to uint8 by ``round(v * 255 / 16)``. scikit-learn ships no test
split, so we fix one: a stratified 20% of each class, chosen by a permutation with a constant
seed (``SPLIT_SEED``) that never changes with the run seed — every run is scored on the same
360 test images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.datasets import ImageDataset, register_dataset

SPLIT_SEED = 1797
TEST_FRACTION = 0.2


@register_dataset("digits", "scikit-learn 8x8 digits, 1,797 images, 10 classes (embedded, no download)")
def load_digits(data_root: Path | None = None) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    test_mask = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        test_mask[idx[: int(round(TEST_FRACTION * len(idx)))]] = True
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    train, test = torch.from_numpy(~test_mask), torch.from_numpy(test_mask)
    return ImageDataset(
        name="digits",
        train_x=x[train].contiguous(),
        train_y=y[train].contiguous(),
        test_x=x[test].contiguous(),
        test_y=y[test].contiguous(),
        classes=tuple(str(c) for c in range(10)),
        source="sklearn.datasets.load_digits",
    )
