"""Data sources, one file each, registered by name.

A loader returns an :class:`ImageDataset`: uint8 image tensors ``[N, C, H, W]`` held in memory
(normalization happens inside the model, so the input pipeline is an index and a divide), int64
labels, and the dataset's fixed train/test split. Loaders verify what they read and raise
:class:`DataMissing` with the exact command or path that fixes a missing or corrupt file.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bench.registry import Registry


class DataMissing(FileNotFoundError):
    """A dataset's files are absent or corrupt; the message says how to obtain them."""


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A dataset in memory: ``train_x``/``test_x`` uint8 ``[N, C, H, W]``, labels int64 ``[N]``.

    ``mean``/``std`` are per-channel statistics of the training images in [0, 1], used by the
    model's first (normalization) layer. ``synthetic`` is True only for generated test data.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str
    synthetic: bool = False

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"{self.name} {split} images must be uint8 [N, C, H, W], got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name} {split} labels must be int64 [N] matching the images")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name} {split} labels outside 0..{len(self.classes) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        x = self.train_x.double().div_(255.0)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)

    def content_hash(self) -> str:
        """sha256 over images and labels: identifies the exact data a model was trained on."""
        h = hashlib.sha256()
        for t in (self.train_x, self.train_y, self.test_x, self.test_y):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    load: Callable[[Path | None], ImageDataset]
    description: str


DATASETS: Registry[DatasetSpec] = Registry("dataset")
_CACHE: dict[tuple[str, str], ImageDataset] = {}


def register_dataset(name: str, description: str) -> Callable[[Callable[[Path | None], ImageDataset]], Callable[[Path | None], ImageDataset]]:
    def wrap(fn: Callable[[Path | None], ImageDataset]) -> Callable[[Path | None], ImageDataset]:
        DATASETS.register(name, DatasetSpec(name, fn, description))
        return fn

    return wrap


def load_dataset(name: str, data_root: str | Path | None = None) -> ImageDataset:
    """Load (once per process) the dataset ``name`` from ``data_root`` or its default location."""
    _load_modules()
    spec = DATASETS.get(name)
    key = (name, str(data_root or ""))
    if key not in _CACHE:
        _CACHE[key] = spec.load(Path(data_root) if data_root else None)
    return _CACHE[key]


def _load_modules() -> None:
    import importlib
    import pkgutil

    import bench.datasets as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"bench.datasets.{info.name}")
