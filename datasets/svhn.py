"""SVHN (Netzer et al., 2011), cropped digits: 32×32 colour house-number digits, 10 classes, the
official 73,257 train / 26,032 test split (the "extra" set is not used), read from the MATLAB files
``train_32x32.mat`` and ``test_32x32.mat``.

Each file holds ``X``, uint8 ``[32, 32, 3, N]`` (height, width, channel, image), and ``y``,
``[N, 1]`` with values 1..10 where 10 stands for the digit 0. Images become ``[N, C, H, W]`` by
``X.transpose(3, 2, 0, 1)`` and labels become digits by ``y mod 10`` (10 → 0, 1..9 unchanged), so
class ``k`` is the digit ``k``.

Folders searched, in order: ``data_root/svhn``, ``data_root/SVHN``, ``data_root``, the same under
``$UNLEARNBENCH_DATA``. Verified: the file parses (``scipy.io.loadmat``, which runs no code), ``X``
and ``y`` have the shapes above with matching ``N`` and every label in 1..10; when ``N`` is the
official count, the file's md5 equals the official one (torchvision's ``SVHN.split_list``). With
``UNLEARNBENCH_DOWNLOAD=1`` (and only then) missing files are downloaded by torchvision.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.datasets import DataMissing, ImageDataset, register_dataset
from bench.datasets._idx import candidate_dirs, download_requested, download_root, md5_file, not_found_message, run_download

CLASSES = tuple(str(d) for d in range(10))
TITLE = "SVHN"
SUBDIRS = ("svhn", "SVHN")
#: split → (file, official md5 as published by torchvision.datasets.SVHN.split_list, official count)
FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", 73_257),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", 26_032),
}
URL = "http://ufldl.stanford.edu/housenumbers/"
HOW_TO_GET = (
    f"download {URL}train_32x32.mat and {URL}test_32x32.mat into DIR/svhn and pass --data-root DIR "
    "(or set UNLEARNBENCH_DATA=DIR)\n"
    "set UNLEARNBENCH_DOWNLOAD=1 and pass --data-root DIR: torchvision downloads them into DIR"
)


def _torchvision_download(root: Path) -> None:
    from torchvision.datasets import SVHN

    for split in FILES:
        SVHN(str(root), split=split, download=True)


DOWNLOAD = _torchvision_download


def locate_svhn(data_root: Path | None) -> Path:
    """The first searched folder holding both files; else DataMissing listing every folder searched."""
    searched: list[tuple[Path, str]] = []
    for directory in candidate_dirs(data_root, SUBDIRS):
        if not directory.is_dir():
            searched.append((directory, "no such folder"))
            continue
        lacking = [file for file, _, _ in FILES.values() if not (directory / file).is_file()]
        if not lacking:
            return directory
        searched.append((directory, "lacks " + ", ".join(lacking)))
    needs = " and ".join(file for file, _, _ in FILES.values())
    raise DataMissing(not_found_message(TITLE, needs, searched, HOW_TO_GET))


def read_svhn_mat(path: Path, official_md5: str, official_count: int, fix: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """``[N, 3, 32, 32]`` uint8 images, ``[N]`` int64 digit labels, and whether the md5 was checked."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except Exception as err:  # scipy raises MatReadError, OSError, ValueError, IndexError... on bad files
        raise DataMissing(
            f"{path} is truncated or corrupt: scipy.io.loadmat failed ({type(err).__name__}: {err}; "
            f"{path.stat().st_size:,} bytes on disk). {fix}"
        ) from err
    if "X" not in mat or "y" not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise DataMissing(f"{path} lacks the variables X and y of an SVHN file (has {present}). {fix}")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataMissing(f"{path}: X must be uint8 [32, 32, 3, N], got {x.dtype} {x.shape}. {fix}")
    n = x.shape[3]
    if y.size != n or (y.ndim == 2 and y.shape[1] != 1) or y.ndim > 2:
        raise DataMissing(f"{path}: y must be [N, 1] with N = {n:,} (the images in X), got {y.shape}. {fix}")
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataMissing(f"{path}: labels span {labels.min()}..{labels.max()}, expected 1..10 (10 = digit 0). {fix}")
    official = n == official_count
    if official and (found := md5_file(path)) != official_md5:
        raise DataMissing(
            f"{path} has the official {n:,} images but is not the official SVHN file: md5 {found}, "
            f"expected {official_md5} (corrupt or altered). {fix}"
        )
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    return images, labels % 10, official


@register_dataset("svhn", "SVHN cropped digits 32x32 colour, 73,257 train / 26,032 test, 10 classes (.mat files)")
def load_svhn(data_root: Path | None = None) -> ImageDataset:
    try:
        directory = locate_svhn(data_root)
    except DataMissing:
        if not download_requested():
            raise
        run_download(DOWNLOAD, download_root(data_root, TITLE), TITLE)
        directory = locate_svhn(data_root)

    fix = "Obtain it again:\n  - " + "\n  - ".join(HOW_TO_GET.splitlines())
    train_x, train_y, train_ok = read_svhn_mat(directory / FILES["train"][0], *FILES["train"][1:], fix)
    test_x, test_y, test_ok = read_svhn_mat(directory / FILES["test"][0], *FILES["test"][1:], fix)
    official = train_ok and test_ok
    check = "md5 verified against the official release" if official else "not the official size: shape and label checks only"
    return ImageDataset(
        name="svhn",
        train_x=torch.from_numpy(train_x),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(test_x),
        test_y=torch.from_numpy(test_y),
        classes=CLASSES,
        source=f"{directory} (MATLAB files; {check})",
    )
