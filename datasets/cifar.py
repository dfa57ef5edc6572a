"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009): 32×32 colour images, the official 50,000 train /
10,000 test split, read from the "python version" pickles.

On disk (as extracted from ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``)::

    cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta

Each data file is a pickled dict with ``data`` (uint8 ``[N, 3072]``: 1024 red, 1024 green, 1024
blue values of a row-major 32×32 image, so ``data.reshape(N, 3, 32, 32)`` is ``[N, C, H, W]``) and
``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100, the 100-class labels used here). The meta file
holds the class names (``label_names`` / ``fine_label_names``).

No pickled code is executed: files are read by :class:`SafeUnpickler`, which resolves only the
globals numpy needs to rebuild arrays and raises on anything else (``os.system``, ``eval``, ...).

Folders searched, in order: ``data_root/<batch folder>``, ``data_root``, the same under
``$UNLEARNBENCH_DATA``. Verified: every file unpickles; ``data`` is uint8 ``[N, 3072]`` with ``N``
labels in range; the meta file has one name per class; and when a data file holds the official
number of images (10,000 per CIFAR-10 batch; 50,000 / 10,000 for CIFAR-100's train / test), its
md5 equals the official one (torchvision's ``CIFAR10.train_list`` / ``test_list``), and when every
data file does, so does the meta file's. With ``UNLEARNBENCH_DOWNLOAD=1`` (and only then)
missing files are downloaded and extracted by torchvision.
"""
from __future__ import annotations

import codecs
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bench.datasets import DataMissing, ImageDataset, register_dataset
from bench.datasets._idx import candidate_dirs, download_requested, download_root, md5_file, not_found_message, run_download


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may name: numpy's array/scalar reconstructors (under their
    numpy 1 and numpy 2 module names) and ``_codecs.encode``, which protocol-2 pickles use for bytes."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = numeric._frombuffer
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle names a global outside :data:`SafeUnpickler.ALLOWED`."""


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, strings, numbers and numpy arrays."""

    ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(
                f"refused global {module}.{name}: only numpy array reconstruction is allowed"
            ) from None


def safe_unpickle(path: Path, fix: str) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler` (``latin1`` decodes Python 2 strings)."""
    raw = path.read_bytes()
    try:
        return SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except ForbiddenGlobal as err:
        raise DataMissing(
            f"{path}: {err}. An official CIFAR file names no other global; this one is not trustworthy. {fix}"
        ) from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError, KeyError) as err:
        raise DataMissing(
            f"{path} is truncated or corrupt ({type(err).__name__}: {err}; {len(raw):,} bytes on disk). {fix}"
        ) from err


@dataclass(frozen=True)
class CifarRelease:
    """One CIFAR release: file names with their official md5 and image counts, and label keys."""

    name: str
    title: str
    folder: str
    archive: str
    url: str
    train_files: tuple[tuple[str, str, int], ...]  # (file, md5, official number of images)
    test_files: tuple[tuple[str, str, int], ...]
    meta_file: tuple[str, str]  # (file, md5)
    label_key: str
    names_key: str
    num_classes: int
    download: Callable[[Path], None] | None = None

    @property
    def how_to_get(self) -> str:
        return (
            f"download {self.url}, extract it with `tar xzf {self.archive} -C DIR` (giving DIR/{self.folder}) "
            "and pass --data-root DIR (or set UNLEARNBENCH_DATA=DIR)\n"
            f"set UNLEARNBENCH_DOWNLOAD=1 and pass --data-root DIR: torchvision downloads and extracts it into DIR/{self.folder}"
        )

    @property
    def all_files(self) -> tuple[str, ...]:
        return tuple(f for f, _, _ in self.train_files + self.test_files) + (self.meta_file[0],)


def _download_cifar10(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    CIFAR10(str(root), train=True, download=True)


def _download_cifar100(root: Path) -> None:
    from torchvision.datasets import CIFAR100

    CIFAR100(str(root), train=True, download=True)


# md5s as published by torchvision.datasets.CIFAR10 / CIFAR100 (train_list, test_list, meta).
CIFAR10 = CifarRelease(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    train_files=(
        ("data_batch_1", "c99cafc152244af753f735de768cd75f", 10_000),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", 10_000),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751", 10_000),
        ("data_batch_4", "634d18415352ddfa80567beed471001a", 10_000),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", 10_000),
    ),
    test_files=(("test_batch", "40351d587109b95175f43aff81a1287e", 10_000),),
    meta_file=("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    label_key="labels",
    names_key="label_names",
    num_classes=10,
    download=_download_cifar10,
)

CIFAR100 = CifarRelease(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    train_files=(("train", "16019d7e3df5f24257cddd939b257f8d", 50_000),),
    test_files=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc", 10_000),),
    meta_file=("meta", "7973b15100ade9c7d40fb424638fde48"),
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
    download=_download_cifar100,
)


def locate_cifar(release: CifarRelease, data_root: Path | None) -> Path:
    """The first searched folder holding every file of ``release``; else DataMissing."""
    searched: list[tuple[Path, str]] = []
    for directory in candidate_dirs(data_root, (release.folder,)):
        if not directory.is_dir():
            searched.append((directory, "no such folder"))
            continue
        lacking = [f for f in release.all_files if not (directory / f).is_file()]
        if not lacking:
            return directory
        note = f"; {release.archive} is here: extract it" if (directory / release.archive).is_file() else ""
        searched.append((directory, "lacks " + ", ".join(lacking) + note))
    raise DataMissing(not_found_message(release.title, ", ".join(release.all_files), searched, release.how_to_get))


def _read_batch(path: Path, release: CifarRelease, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 3, 32, 32]`` uint8 images and ``[N]`` int64 labels of one data file."""
    entry = safe_unpickle(path, fix)
    if not isinstance(entry, dict) or "data" not in entry or release.label_key not in entry:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise DataMissing(
            f"{path} is not a {release.title} data file: expected a dict with 'data' and "
            f"'{release.label_key}', got {keys}. {fix}"
        )
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataMissing(f"{path}: 'data' must be uint8 [N, 3072], got {got}. {fix}")
    labels = np.asarray(entry[release.label_key], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DataMissing(f"{path}: {data.shape[0]:,} images but {release.label_key} has shape {labels.shape}. {fix}")
    if labels.size and (labels.min() < 0 or labels.max() >= release.num_classes):
        raise DataMissing(f"{path}: labels span {labels.min()}..{labels.max()}, outside 0..{release.num_classes - 1}. {fix}")
    return data.reshape(-1, 3, 32, 32), labels


def _check_md5(path: Path, md5: str, title: str, fix: str) -> None:
    found = md5_file(path)
    if found != md5:
        raise DataMissing(
            f"{path} has the official number of images (or belongs to a release that does) but is not "
            f"the official {title} file: md5 {found}, expected {md5} (corrupt or altered). {fix}"
        )


def load_cifar(release: CifarRelease, data_root: Path | None) -> ImageDataset:
    """Load ``release`` from the first folder that has it (downloading first only on request)."""
    try:
        directory = locate_cifar(release, data_root)
    except DataMissing:
        if not (download_requested() and release.download is not None):
            raise
        run_download(release.download, download_root(data_root, release.title), release.title)
        directory = locate_cifar(release, data_root)

    fix = "Obtain it again:\n  - " + "\n  - ".join(release.how_to_get.splitlines())
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    official = True
    for split, files in (("train", release.train_files), ("test", release.test_files)):
        parts = []
        for file, md5, count in files:
            x, y = _read_batch(directory / file, release, fix)
            if x.shape[0] == count:  # the official number of images: must be the official bytes
                _check_md5(directory / file, md5, release.title, fix)
            else:
                official = False
            parts.append((x, y))
        splits[split] = (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))

    meta_path = directory / release.meta_file[0]
    meta = safe_unpickle(meta_path, fix)
    names = meta.get(release.names_key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != release.num_classes:
        raise DataMissing(f"{meta_path}: expected '{release.names_key}' with {release.num_classes} class names. {fix}")
    classes = tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)

    if official:  # a complete official release: its meta file must be the official one too
        _check_md5(meta_path, release.meta_file[1], release.title, fix)
    check = "md5 verified against the official release" if official else "not the official size: shape and label checks only"
    return ImageDataset(
        name=release.name,
        train_x=torch.from_numpy(np.ascontiguousarray(splits["train"][0])),
        train_y=torch.from_numpy(splits["train"][1]),
        test_x=torch.from_numpy(np.ascontiguousarray(splits["test"][0])),
        test_y=torch.from_numpy(splits["test"][1]),
        classes=classes,
        source=f"{directory} (python pickles; {check})",
    )


@register_dataset("cifar10", "CIFAR-10 32x32 colour, 50,000 train / 10,000 test, 10 classes (python pickles)")
def load_cifar10(data_root: Path | None = None) -> ImageDataset:
    return load_cifar(CIFAR10, data_root)


@register_dataset("cifar100", "CIFAR-100 32x32 colour, 50,000 train / 10,000 test, 100 fine classes (python pickles)")
def load_cifar100(data_root: Path | None = None) -> ImageDataset:
    return load_cifar(CIFAR100, data_root)
