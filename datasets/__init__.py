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

from bench.lookup import Registry


class DataMissing(FileNotFoundError):
    """A dataset's files are absent or corrupt; the message says how to obtain them."""


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A dataset in memory: ``train_x``/``test_x`` uint8 ``[N, C, H, W]``, labels int64 ``[N]``.

    ``mean``/``std`` are per-channel statistics of the training images in [0, 1], used by the
    model's first (normalization) layer. ``synthetic`` is True only for generated test data.

    Optional, for datasets that have them (the face datasets of :mod:`bench.datasets.faces`):

    * ``val_x``/``val_y``: a **fixed validation split** shipped with the dataset (MUFAC's
      validation table). When present the splitter uses it instead of carving one from the
      training images, and the task's ``val_fraction`` must be 0.
    * ``train_groups``/``val_groups``/``test_groups``: int64 ``[N]`` person identity of every
      image, an index into ``group_names`` (one id space across the splits, so the same person
      has the same id everywhere). Needed by identity forgetting and the person audit.
    * ``leakage_audit``: the splitter enforces the leakage audit (no person and no perceptually
      identical image in two of forget / retain / validation / test; see
      :func:`bench.splits.build_task_data`).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str
    synthetic: bool = False
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    train_groups: torch.Tensor | None = None
    val_groups: torch.Tensor | None = None
    test_groups: torch.Tensor | None = None
    group_names: tuple[str, ...] = ()
    leakage_audit: bool = False

    def __post_init__(self) -> None:
        if (self.val_x is None) != (self.val_y is None):
            raise ValueError(f"{self.name}: give both val_x and val_y, or neither")
        splits = [("train", self.train_x, self.train_y, self.train_groups), ("test", self.test_x, self.test_y, self.test_groups)]
        if self.val_x is not None:
            splits.append(("val", self.val_x, self.val_y, self.val_groups))
        elif self.val_groups is not None:
            raise ValueError(f"{self.name}: val_groups given without a fixed validation split (val_x, val_y)")
        if self.train_groups is not None and not self.group_names:
            raise ValueError(f"{self.name}: train_groups needs group_names (the name of every identity id)")
        for split, x, y, groups in splits:
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"{self.name} {split} images must be uint8 [N, C, H, W], got {x.dtype} {tuple(x.shape)}")
            if x.shape[1:] != self.train_x.shape[1:]:
                raise ValueError(f"{self.name} {split} images are {tuple(x.shape[1:])}, train images {tuple(self.train_x.shape[1:])}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name} {split} labels must be int64 [N] matching the images")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name} {split} labels outside 0..{len(self.classes) - 1}")
            if groups is not None:
                if groups.dtype != torch.int64 or groups.shape != (x.shape[0],):
                    raise ValueError(f"{self.name} {split} identity ids must be int64 [N] matching the images")
                if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= len(self.group_names)):
                    raise ValueError(f"{self.name} {split} identity ids outside 0..{len(self.group_names) - 1}")

    @property
    def has_fixed_val(self) -> bool:
        """True when the dataset ships its own validation split (``val_x``, ``val_y``)."""
        return self.val_x is not None

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
        """sha256 over images and labels: identifies the exact data a model was trained on.

        The optional fields (fixed validation split, identities, the leakage-audit flag) are
        hashed too, each only when present, so datasets without them keep their hash."""
        h = hashlib.sha256()
        for t in (self.train_x, self.train_y, self.test_x, self.test_y):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().tobytes())
        optional = {"val_x": self.val_x, "val_y": self.val_y, "train_groups": self.train_groups,
                    "val_groups": self.val_groups, "test_groups": self.test_groups}
        for key, t in optional.items():
            if t is not None:
                h.update(f"{key}{tuple(t.shape)}".encode())
                h.update(t.contiguous().numpy().tobytes())
        if self.group_names:
            h.update(("group_names:" + "\n".join(self.group_names)).encode())
        if self.leakage_audit:
            h.update(b"leakage_audit")
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
    """Load (once per process) the dataset ``name`` from ``data_root`` or its default location.

    A ``data_root`` that is not a folder is an error — the loaders would search on past it and
    silently use the system copy — unless ``UNLEARNBENCH_DOWNLOAD=1`` asks to download into it."""
    from bench.datasets._idx import download_requested

    _load_modules()
    spec = DATASETS.get(name)
    if data_root is not None and not Path(data_root).is_dir() and not download_requested():
        what = "is not a folder" if Path(data_root).exists() else "does not exist"
        raise DataMissing(f"--data-root {data_root} {what}; pass the folder that holds the dataset files, or leave "
                          "--data-root out to use the default locations")
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
