"""Synthetic image data for tests — named synthetic everywhere it appears.

Four classes of 8×8 grayscale images: each class is a fixed random prototype (constant seed)
plus per-image Gaussian noise, so a small CNN learns it in a few epochs yet members and
non-members are not identical. Never used by a published task.
"""
from __future__ import annotations

from pathlib import Path

import torch

from bench.datasets import ImageDataset, register_dataset

NUM_CLASSES = 4
PER_CLASS_TRAIN = 40
PER_CLASS_TEST = 10


@register_dataset("synthetic", "SYNTHETIC test data: 4 noisy 8x8 prototypes, 160 train / 40 test images")
def load_synthetic(data_root: Path | None = None) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    prototypes = torch.rand(NUM_CLASSES, 1, 8, 8, generator=g)

    def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
        x = prototypes[y] + 0.25 * torch.randn(len(y), 1, 8, 8, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    train_x, train_y = draw(PER_CLASS_TRAIN)
    test_x, test_y = draw(PER_CLASS_TEST)
    return ImageDataset(
        name="synthetic",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        classes=tuple(f"synthetic-{c}" for c in range(NUM_CLASSES)),
        source="generated (synthetic)",
        synthetic=True,
    )
