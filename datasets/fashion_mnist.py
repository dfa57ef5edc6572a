"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 28×28 grayscale Zalando article images, 10 classes,
the official 60,000 train / 10,000 test split, read from the original IDX files.

Where the files are looked for, in order (first folder holding all four files wins):
``data_root/fashion-mnist``, ``data_root/FashionMNIST/raw`` (torchvision's layout), ``data_root``;
the same under ``$UNLEARNBENCH_DATA``; then ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist`` package). Each file may be plain or gzipped. What is verified is
described in :mod:`bench.datasets._idx`: header and length of every file, counts, label range, and
the md5 of the decompressed bytes of official-size files. With ``UNLEARNBENCH_DOWNLOAD=1`` (and only
then) missing files are downloaded by torchvision into ``DIR/FashionMNIST/raw``.
"""
from __future__ import annotations

from pathlib import Path

from bench.datasets import ImageDataset, register_dataset
from bench.datasets._idx import IdxRelease, load_idx_release

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: md5 of the *decompressed* official files (the upstream .gz files and Debian's recompressed ones
#: both decompress to these bytes).
RAW_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


def _torchvision_download(root: Path) -> None:
    from torchvision.datasets import FashionMNIST

    FashionMNIST(str(root), train=True, download=True)


RELEASE = IdxRelease(
    name="fashion_mnist",
    title="Fashion-MNIST",
    classes=CLASSES,
    subdirs=("fashion-mnist", "FashionMNIST/raw"),
    raw_md5=RAW_MD5,
    how_to_get=(
        "apt-get install dataset-fashion-mnist   (installs the IDX files in /usr/share/datasets/fashion-mnist/)\n"
        f"download the four .gz files from {URL} into DIR/fashion-mnist and pass --data-root DIR "
        "(or set UNLEARNBENCH_DATA=DIR)\n"
        "set UNLEARNBENCH_DOWNLOAD=1 and pass --data-root DIR: torchvision downloads them into DIR/FashionMNIST/raw"
    ),
    download=_torchvision_download,
    system_dirs=(DEBIAN_DIR,),
)


@register_dataset("fashion_mnist", "Fashion-MNIST 28x28 grayscale, 60,000 train / 10,000 test, 10 classes (IDX files)")
def load_fashion_mnist(data_root: Path | None = None) -> ImageDataset:
    return load_idx_release(RELEASE, data_root)
