"""Surrogate data: unlabeled out-of-distribution images for retain-free methods (SCAR).

A task names its surrogate source and size; the runner builds the images for the run's seed and
hands them to methods that declare ``surrogate``. Sources:

* ``photo_crops`` — random square crops of scikit-learn's two sample photographs
  (``load_sample_images``: china.jpg, flower.jpg, 427×640 RGB), side ``s ~ U[H, 8H]`` pixels,
  resized (antialiased bilinear) to the task's ``H × W`` and converted to grayscale (ITU-R 601
  luma) for 1-channel tasks. Real out-of-distribution images that ship with a dependency.
* ``gaussian_noise`` — pixels i.i.d. N(0.5, 0.25²) clipped to [0, 1] (the paper's noise
  surrogate, named as such).
* ``mnist`` — MNIST training digits resized to the task's shape (needs the MNIST files; see
  ``bench.datasets.mnist``), the out-of-distribution set for Fashion-MNIST.

Images are uint8 ``[N, C, H, W]``; labels are −1 (surrogate images are unlabeled).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.lookup import Registry

SurrogateFn = Callable[[tuple[int, int, int], int, torch.Generator, Path | None], torch.Tensor]
SURROGATES: Registry[SurrogateFn] = Registry("surrogate source")


def to_shape(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Float images [N, C', h, w] in [0, 1] → uint8 [N, C, H, W] (resize, luma or channel repeat)."""
    c, h, w = shape
    x = F.interpolate(images, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    if c == 1 and x.shape[1] == 3:
        x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    elif c == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def photo_crops(shape: tuple[int, int, int], n: int, g: torch.Generator, data_root: Path | None) -> torch.Tensor:
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255) for im in load_sample_images().images]
    _, h, _ = shape
    out = []
    for _ in range(n):
        photo = photos[int(torch.randint(len(photos), (1,), generator=g))]
        side = int(torch.randint(h, min(8 * h, *photo.shape[1:]) + 1, (1,), generator=g))
        top = int(torch.randint(photo.shape[1] - side + 1, (1,), generator=g))
        left = int(torch.randint(photo.shape[2] - side + 1, (1,), generator=g))
        out.append(to_shape(photo[None, :, top:top + side, left:left + side], shape))
    return torch.cat(out)


def gaussian_noise(shape: tuple[int, int, int], n: int, g: torch.Generator, data_root: Path | None) -> torch.Tensor:
    x = 0.5 + 0.25 * torch.randn(n, *shape, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def mnist_digits(shape: tuple[int, int, int], n: int, g: torch.Generator, data_root: Path | None) -> torch.Tensor:
    from bench.datasets import load_dataset

    ds = load_dataset("mnist", data_root)
    idx = torch.randperm(len(ds.train_y), generator=g)[:n]
    return to_shape(ds.train_x[idx].float().div(255), shape)


SURROGATES.register("photo_crops", photo_crops)
SURROGATES.register("gaussian_noise", gaussian_noise)
SURROGATES.register("mnist", mnist_digits)


def make_surrogate(name: str, shape: tuple[int, int, int], n: int, g: torch.Generator, data_root: Path | None = None) -> torch.Tensor:
    """``n`` surrogate images from source ``name`` as uint8 ``[n, *shape]``."""
    if n < 1:
        raise ValueError(f"surrogate size must be positive, got {n}")
    return SURROGATES.get(name)(shape, n, g, data_root)
