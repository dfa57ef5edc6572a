"""MNIST (LeCun, Bottou, Bengio & Haffner, 1998): 28×28 grayscale handwritten digits, 10 classes,
the official 60,000 train / 10,000 test split, read from the original IDX files.

Where the files are looked for, in order (first folder holding all four files wins):
``data_root/mnist``, ``data_root/MNIST/raw`` (torchvision's layout), ``data_root``; the same under
``$UNLEARNBENCH_DATA``. There is no Debian package. Each file may be plain or gzipped. What is
verified is described in :mod:`bench.datasets._idx`: header and length of every file, counts,
label range, and the md5 of the decompressed bytes of official-size files. With
``UNLEARNBENCH_DOWNLOAD=1`` (and only then) missing files are downloaded by torchvision into
``DIR/MNIST/raw``.
"""
from __future__ import annotations

from pathlib import Path

from bench.datasets import ImageDataset, register_dataset
from bench.datasets._idx import IdxRelease, load_idx_release

CLASSES = tuple(str(d) for d in range(10))
URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: md5 of the *decompressed* official files.
RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def _torchvision_download(root: Path) -> None:
    from torchvision.datasets import MNIST

    MNIST(str(root), train=True, download=True)


RELEASE = IdxRelease(
    name="mnist",
    title="MNIST",
    classes=CLASSES,
    subdirs=("mnist", "MNIST/raw"),
    raw_md5=RAW_MD5,
    how_to_get=(
        f"download the four .gz files from {URL} into DIR/mnist and pass --data-root DIR "
        "(or set UNLEARNBENCH_DATA=DIR)\n"
        "set UNLEARNBENCH_DOWNLOAD=1 and pass --data-root DIR: torchvision downloads them into DIR/MNIST/raw"
    ),
    download=_torchvision_download,
)


@register_dataset("mnist", "MNIST 28x28 handwritten digits, 60,000 train / 10,000 test, 10 classes (IDX files)")
def load_mnist(data_root: Path | None = None) -> ImageDataset:
    return load_idx_release(RELEASE, data_root)
