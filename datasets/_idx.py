"""The IDX reader behind the MNIST-format loaders, and the file search every file-based loader shares.

IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/), all integers big-endian::

    bytes 0-1   0x00 0x00
    byte  2     element type (0x08 = unsigned byte, the only type MNIST and Fashion-MNIST use)
    byte  3     number of dimensions d
    4 * d bytes the size of each dimension, uint32
    then        prod(sizes) elements, row-major

so the magic number ``int.from_bytes(bytes[0:4], "big")`` is 2051 for an image file (``[N, 28, 28]``)
and 2049 for a label file (``[N]``), and a well-formed file is exactly ``4 + 4 d + prod(sizes)``
bytes long after decompression. What :func:`load_idx_release` verifies, for each split:

- each file decompresses (``.gz``) or reads completely, its magic number is the expected one and
  its length equals the length its header announces (a truncated file names the file, the
  expected and the actual size, and how to obtain it again);
- images are ``N × 28 × 28``, labels ``N`` with the same ``N``, every label in ``0..9``;
- when ``N`` is the official count (60,000 train, 10,000 test), the md5 of the *decompressed* file
  equals the official one. The md5 is taken after decompression because redistributors recompress:
  Debian's ``dataset-fashion-mnist`` ``.gz`` files differ byte-wise from upstream's (and so fail
  torchvision's ``.gz`` checksums) while their contents are identical. Files with any other count
  (small test files, subsets) get the header checks only; the dataset's ``source`` says which.

Search order for a loader's files (:func:`candidate_dirs`): under ``data_root``, then under
``$UNLEARNBENCH_DATA``, each first in the dataset's own subfolders (``fashion-mnist``,
``FashionMNIST/raw``, ...) and then in the folder itself; then system folders such as Debian's
``/usr/share/datasets/fashion-mnist``. Nothing is downloaded unless ``UNLEARNBENCH_DOWNLOAD=1``.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from bench.datasets import DataMissing, ImageDataset

DATA_ENV = "UNLEARNBENCH_DATA"
DOWNLOAD_ENV = "UNLEARNBENCH_DOWNLOAD"

IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension
IMAGE_SIDE = 28
#: file prefix → number of images of the official release
OFFICIAL_COUNT = {"train": 60_000, "t10k": 10_000}
SPLIT_PREFIX = {"train": "train", "test": "t10k"}


# --------------------------------------------------------------------------- shared file search


def candidate_dirs(data_root: Path | None, subdirs: Sequence[str], system_dirs: Sequence[Path] = ()) -> list[Path]:
    """Folders to search, in order: ``data_root/<subdir>...``, ``data_root``, the same under
    ``$UNLEARNBENCH_DATA``, then ``system_dirs``. Duplicates are dropped, order kept."""
    roots = [Path(data_root)] if data_root is not None else []
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    dirs = [root / sub for root in roots for sub in (*subdirs, ".")]
    dirs += [Path(d) for d in system_dirs]
    seen: dict[str, Path] = {}
    for d in dirs:
        seen.setdefault(os.path.normpath(d), Path(os.path.normpath(d)))
    return list(seen.values())


def download_requested() -> bool:
    """True only when the user set ``UNLEARNBENCH_DOWNLOAD=1``: loaders never download implicitly."""
    return os.environ.get(DOWNLOAD_ENV, "") == "1"


def download_root(data_root: Path | None, title: str) -> Path:
    """Where an explicitly requested download goes: ``data_root``, else ``$UNLEARNBENCH_DATA``."""
    if data_root is not None:
        return Path(data_root)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    raise DataMissing(
        f"{title}: {DOWNLOAD_ENV}=1 asks for a download, but there is no folder to download into: "
        f"pass --data-root DIR or set {DATA_ENV}=DIR"
    )


def run_download(download: Callable[[Path], None], root: Path, title: str) -> None:
    """Call ``download(root)`` (torchvision's downloader), turning any failure into DataMissing."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        download(root)
    except Exception as err:  # network errors, checksum mismatches, disk full: all mean "no data"
        raise DataMissing(f"{title}: download into {root} failed ({type(err).__name__}: {err})") from err


def not_found_message(title: str, needs: str, searched: Sequence[tuple[Path, str]], how_to_get: str) -> str:
    """The DataMissing message: every folder searched, what it lacked, and what to do."""
    lines = [f"{title} not found. Each folder must contain {needs}."]
    if searched:
        lines.append("Searched, in order:")
        lines += [f"  {path}  ({why})" for path, why in searched]
    else:
        lines.append(f"No folder to search: neither a data root (--data-root DIR) nor ${DATA_ENV} was given.")
    lines.append("To fix, do one of:")
    lines += [f"  - {step}" for step in how_to_get.strip().splitlines()]
    return "\n".join(lines)


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- IDX reading


def find_idx_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` if present, else ``directory/stem.gz``, else None (plain first: no inflate)."""
    for path in (directory / stem, directory / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def read_idx_bytes(path: Path, fix: str) -> bytes:
    """The file's IDX bytes, gunzipped when the name ends in ``.gz``; a broken gzip is DataMissing."""
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DataMissing(
            f"{path} is truncated or corrupt: gzip could not decompress it ({err}; {len(raw):,} bytes on disk). {fix}"
        ) from err


def parse_idx(data: bytes, path: Path, magic: int, fix: str) -> np.ndarray:
    """Decode IDX ``data`` read from ``path``, checking its magic number and its length."""
    if len(data) < 4:
        raise DataMissing(f"{path} is truncated: {len(data)} bytes, not even an IDX header. {fix}")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataMissing(
            f"{path} is not an IDX {'image' if magic == IMAGES_MAGIC else 'label'} file: magic number {found} "
            f"(0x{found:08x}), expected {magic} (0x{magic:08x}). {fix}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataMissing(f"{path} is truncated: {len(data)} bytes, shorter than its {header}-byte header. {fix}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says (corrupt)"
        raise DataMissing(
            f"{path} is {what}: its header announces shape {shape}, i.e. {expected:,} bytes"
            f"{' after decompression' if path.suffix == '.gz' else ''}, but it holds {len(data):,}. {fix}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


# --------------------------------------------------------------------------- one MNIST-format release


@dataclass(frozen=True)
class IdxRelease:
    """An MNIST-format dataset: where to look for its four IDX files and how to check them.

    ``raw_md5`` maps each file name (without ``.gz``) to the md5 of its decompressed official bytes.
    ``download`` is torchvision's downloader, called only when ``UNLEARNBENCH_DOWNLOAD=1``.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    subdirs: tuple[str, ...]
    raw_md5: dict[str, str]
    how_to_get: str
    download: Callable[[Path], None] | None = None
    system_dirs: tuple[Path, ...] = field(default=())

    @property
    def files(self) -> tuple[str, ...]:
        kinds = ("images-idx3-ubyte", "labels-idx1-ubyte")
        return tuple(f"{SPLIT_PREFIX[s]}-{kind}" for s in ("train", "test") for kind in kinds)


def locate_idx_release(release: IdxRelease, data_root: Path | None) -> tuple[Path, dict[str, Path]]:
    """The first searched folder holding all four files, and their paths; else DataMissing."""
    searched: list[tuple[Path, str]] = []
    for directory in candidate_dirs(data_root, release.subdirs, release.system_dirs):
        if not directory.is_dir():
            searched.append((directory, "no such folder"))
            continue
        found = {stem: find_idx_file(directory, stem) for stem in release.files}
        lacking = [stem for stem, path in found.items() if path is None]
        if not lacking:
            return directory, {stem: path for stem, path in found.items() if path is not None}
        searched.append((directory, "lacks " + ", ".join(lacking)))
    needs = ", ".join(release.files) + " (each plain or .gz)"
    raise DataMissing(not_found_message(release.title, needs, searched, release.how_to_get))


def load_idx_release(release: IdxRelease, data_root: Path | None) -> ImageDataset:
    """Load ``release`` from the first folder that has it (downloading first only on request)."""
    try:
        directory, paths = locate_idx_release(release, data_root)
    except DataMissing:
        if not (download_requested() and release.download is not None):
            raise
        run_download(release.download, download_root(data_root, release.title), release.title)
        directory, paths = locate_idx_release(release, data_root)

    fix = "Obtain it again:\n  - " + "\n  - ".join(release.how_to_get.strip().splitlines())
    arrays: dict[str, np.ndarray] = {}
    verified: list[bool] = []
    for split in ("train", "test"):
        prefix = SPLIT_PREFIX[split]
        images_stem, labels_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        images_bytes = read_idx_bytes(paths[images_stem], fix)
        labels_bytes = read_idx_bytes(paths[labels_stem], fix)
        images = parse_idx(images_bytes, paths[images_stem], IMAGES_MAGIC, fix)
        labels = parse_idx(labels_bytes, paths[labels_stem], LABELS_MAGIC, fix)
        if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataMissing(
                f"{paths[images_stem]} holds images of shape {images.shape[1:]}, expected (28, 28). {fix}"
            )
        if labels.shape[0] != images.shape[0]:
            raise DataMissing(
                f"{directory}: {paths[images_stem].name} holds {images.shape[0]:,} images but "
                f"{paths[labels_stem].name} holds {labels.shape[0]:,} labels. {fix}"
            )
        if labels.size and int(labels.max()) >= len(release.classes):
            raise DataMissing(
                f"{paths[labels_stem]} has label {int(labels.max())}, outside 0..{len(release.classes) - 1}. {fix}"
            )
        official = images.shape[0] == OFFICIAL_COUNT[prefix]
        if official:
            for stem, data in ((images_stem, images_bytes), (labels_stem, labels_bytes)):
                md5 = hashlib.md5(data).hexdigest()
                if md5 != release.raw_md5[stem]:
                    raise DataMissing(
                        f"{paths[stem]} has the official {images.shape[0]:,} entries but is not the official "
                        f"{release.title} file: md5 of its decompressed bytes is {md5}, expected "
                        f"{release.raw_md5[stem]} (corrupt, altered, or another dataset's file: MNIST and "
                        f"Fashion-MNIST use the same file names). {fix}"
                    )
        verified.append(official)
        arrays[f"{split}_x"] = images[:, None]
        arrays[f"{split}_y"] = labels.astype(np.int64)

    check = (
        "md5 verified against the official release" if all(verified)
        else "not the official size: header, count and label checks only"
    )
    return ImageDataset(
        name=release.name,
        train_x=torch.from_numpy(arrays["train_x"].copy()),
        train_y=torch.from_numpy(arrays["train_y"]),
        test_x=torch.from_numpy(arrays["test_x"].copy()),
        test_y=torch.from_numpy(arrays["test_y"]),
        classes=release.classes,
        source=f"{directory} (IDX files; {check})",
    )
