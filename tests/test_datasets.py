"""The real-dataset loaders, on small files written in each dataset's real on-disk format.

IDX files (plain and gzipped) for MNIST / Fashion-MNIST, python pickles for CIFAR-10/100, MATLAB
files for SVHN. Every test calls the loader functions directly (or clears the load cache), with
``$UNLEARNBENCH_DATA``/``$UNLEARNBENCH_DOWNLOAD`` unset and Debian's folder taken out of the search,
so nothing depends on what the machine has installed — except the one test that reads the real
Fashion-MNIST when Debian's package is present.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.datasets as datasets_pkg
from bench.datasets import DataMissing, load_dataset
from bench.datasets import cifar, fashion_mnist, mnist, svhn

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNLEARNBENCH_DATA", raising=False)
    monkeypatch.delenv("UNLEARNBENCH_DOWNLOAD", raising=False)
    monkeypatch.setattr(fashion_mnist, "RELEASE", dataclasses.replace(fashion_mnist.RELEASE, system_dirs=()))
    datasets_pkg._CACHE.clear()
    yield
    datasets_pkg._CACHE.clear()


# --------------------------------------------------------------------------- writers of the real formats


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX: 0x00 0x00, type 0x08 (uint8), ndim, big-endian uint32 sizes, row-major bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = False) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (9 - np.arange(n_test, dtype=np.uint8)) % 10,
    }
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


def write_cifar10(folder: Path, per_batch: int = 3, protocol: int = pickle.DEFAULT_PROTOCOL) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for i, file in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        entry = {
            "batch_label": f"batch {i}",
            "data": RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": [int(v) for v in RNG.integers(0, 10, per_batch)],
            "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)],
        }
        (folder / file).write_bytes(pickle.dumps(entry, protocol=protocol))
        entries[file] = entry
    meta = {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return entries


def write_cifar100(folder: Path, n_train: int = 7, n_test: int = 5) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for file, n in (("train", n_train), ("test", n_test)):
        entry = {
            "data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": [int(v) for v in RNG.integers(0, 100, n)],
            "coarse_labels": [int(v) for v in RNG.integers(0, 20, n)],
        }
        (folder / file).write_bytes(pickle.dumps(entry))
        entries[file] = entry
    meta = {"fine_label_names": [f"fine{c}" for c in range(100)], "coarse_label_names": [f"coarse{c}" for c in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return entries


def write_svhn(folder: Path, n_train: int = 5, n_test: int = 4) -> dict[str, dict[str, np.ndarray]]:
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    mats = {}
    for file, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        mat = {
            "X": RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
            "y": (np.arange(n, dtype=np.uint8) % 10 + 1).reshape(n, 1),  # 1..10, 10 = digit 0
        }
        savemat(folder / file, mat)
        mats[file] = mat
    return mats


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("layout", ["fashion-mnist", "FashionMNIST/raw", "."])
def test_fashion_mnist_reads_idx_files(tmp_path: Path, gz: bool, layout: str) -> None:
    arrays = write_idx_set(tmp_path / layout, gz=gz)
    ds = fashion_mnist.load_fashion_mnist(tmp_path)
    assert ds.name == "fashion_mnist" and ds.classes == fashion_mnist.CLASSES and ds.num_classes == 10
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.shape == (6, 1, 28, 28)
    assert ds.test_x.shape == (4, 1, 28, 28)
    assert ds.train_y.dtype == torch.int64
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(ds.test_x[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert ds.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ds.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert str((tmp_path / layout).resolve()) in str(Path(ds.source.split(" (")[0]).resolve())
    assert "not the official size" in ds.source


def test_mnist_from_torchvision_layout_via_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = write_idx_set(tmp_path / "MNIST" / "raw", n_train=10, n_test=3, gz=True)
    monkeypatch.setenv("UNLEARNBENCH_DATA", str(tmp_path))
    ds = load_dataset("mnist")  # no data_root: found through $UNLEARNBENCH_DATA
    assert ds.classes == tuple("0123456789")
    assert ds.train_x.shape == (10, 1, 28, 28) and ds.test_x.shape == (3, 1, 28, 28)
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert ds.train_y.tolist() == list(range(10))


def test_data_root_comes_before_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx_set(tmp_path / "env" / "mnist", n_train=3)
    write_idx_set(tmp_path / "root" / "mnist", n_train=5)
    monkeypatch.setenv("UNLEARNBENCH_DATA", str(tmp_path / "env"))
    assert mnist.load_mnist(tmp_path / "root").train_x.shape[0] == 5
    assert mnist.load_mnist(None).train_x.shape[0] == 3


def test_truncated_idx_file_names_file_and_sizes(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=6)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataMissing) as err:
        fashion_mnist.load_fashion_mnist(tmp_path)
    msg = str(err.value)
    assert str(path) in msg and "truncated" in msg
    assert f"{16 + 6 * 28 * 28:,}" in msg and "1,000" in msg  # expected and actual size
    assert "apt-get install dataset-fashion-mnist" in msg


def test_truncated_gzip_is_data_missing(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataMissing, match="gzip") as err:
        mnist.load_mnist(tmp_path)
    assert str(path) in str(err.value) and "ossci-datasets" in str(err.value)


def test_gzip_member_holding_a_short_idx_payload(tmp_path: Path) -> None:
    write_idx_set(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(6, np.uint8))[:-2]))  # well-formed gzip, short payload
    with pytest.raises(DataMissing, match="after decompression") as err:
        mnist.load_mnist(tmp_path)
    assert "14" in str(err.value) and "12" in str(err.value)  # 8 + 6 expected, 12 found


def test_wrong_magic_number(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    # a label file where an image file belongs
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros(6, np.uint8)))
    with pytest.raises(DataMissing, match="magic number 2049"):
        mnist.load_mnist(tmp_path)


def test_label_out_of_range_and_count_mismatch(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.array([0, 1, 10, 2], np.uint8)))
    with pytest.raises(DataMissing, match="label 10, outside 0..9"):
        mnist.load_mnist(tmp_path)
    labels.write_bytes(idx_bytes(np.array([0, 1, 2], np.uint8)))
    with pytest.raises(DataMissing, match="4 images but .* 3 labels"):
        mnist.load_mnist(tmp_path)


def test_official_count_requires_official_md5(tmp_path: Path) -> None:
    """A test split with the official 10,000 images must be the official bytes."""
    write_idx_set(tmp_path, n_test=10_000)
    with pytest.raises(DataMissing, match="not the official Fashion-MNIST file") as err:
        fashion_mnist.load_fashion_mnist(tmp_path)
    assert fashion_mnist.RAW_MD5["t10k-images-idx3-ubyte"] in str(err.value)


def test_missing_folder_lists_every_searched_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(fashion_mnist, "RELEASE", dataclasses.replace(fashion_mnist.RELEASE, system_dirs=(system,)))
    monkeypatch.setenv("UNLEARNBENCH_DATA", str(tmp_path / "env"))
    root = tmp_path / "nowhere"
    with pytest.raises(DataMissing) as err:
        fashion_mnist.load_fashion_mnist(root)
    msg = str(err.value)
    env = tmp_path / "env"
    for searched in (root / "fashion-mnist", root / "FashionMNIST" / "raw", root, env / "fashion-mnist", env, system):
        assert f"  {searched}  (no such folder)" in msg
    assert msg.index(str(root / "fashion-mnist")) < msg.index(str(tmp_path / "env")) < msg.index(str(system))
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-root DIR" in msg
    assert "UNLEARNBENCH_DOWNLOAD=1" in msg


def test_no_search_root_at_all_says_so() -> None:
    with pytest.raises(DataMissing, match="--data-root DIR"):
        mnist.load_mnist(None)


def test_incomplete_folder_names_the_missing_files(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataMissing, match=r"mnist  \(lacks t10k-labels-idx1-ubyte\)"):
        mnist.load_mnist(tmp_path)


def test_download_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def fake_download(root: Path) -> None:  # stands in for torchvision: writes torchvision's layout
        calls.append(root)
        write_idx_set(root / "MNIST" / "raw", gz=True)

    monkeypatch.setattr(mnist, "RELEASE", dataclasses.replace(mnist.RELEASE, download=fake_download))
    with pytest.raises(DataMissing):
        mnist.load_mnist(tmp_path)
    assert calls == []
    monkeypatch.setenv("UNLEARNBENCH_DOWNLOAD", "1")
    ds = mnist.load_mnist(tmp_path)
    assert calls == [tmp_path] and ds.train_x.shape == (6, 1, 28, 28)


def test_failed_download_is_data_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(root: Path) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(mnist, "RELEASE", dataclasses.replace(mnist.RELEASE, download=offline))
    monkeypatch.setenv("UNLEARNBENCH_DOWNLOAD", "1")
    with pytest.raises(DataMissing, match="download into .* failed .*network unreachable"):
        mnist.load_mnist(tmp_path)


DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not DEBIAN_FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)"
)
def test_real_fashion_mnist_from_debian(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fashion_mnist, "RELEASE", dataclasses.replace(fashion_mnist.RELEASE, system_dirs=(DEBIAN_FMNIST,)))
    ds = fashion_mnist.load_fashion_mnist(None)
    assert ds.train_x.shape == (60_000, 1, 28, 28) and ds.test_x.shape == (10_000, 1, 28, 28)
    assert ds.num_classes == 10 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.train_y.bincount().tolist() == [6_000] * 10  # Fashion-MNIST is balanced
    assert ds.test_y.bincount().tolist() == [1_000] * 10
    assert "md5 verified" in ds.source


# --------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_reads_python_batches(tmp_path: Path, protocol: int) -> None:
    entries = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=3, protocol=protocol)
    ds = cifar.load_cifar10(tmp_path)
    assert ds.name == "cifar10" and ds.classes == tuple(f"class{c}" for c in range(10))
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.shape == (15, 3, 32, 32)
    assert ds.test_x.shape == (3, 3, 32, 32) and ds.test_y.dtype == torch.int64
    train_data = np.concatenate([entries[f"data_batch_{k}"]["data"] for k in range(1, 6)])
    # row layout: 1024 red, 1024 green, 1024 blue, each a row-major 32x32 plane
    assert np.array_equal(ds.train_x[4, 1].numpy(), train_data[4, 1024:2048].reshape(32, 32))
    assert np.array_equal(ds.train_x.reshape(15, -1).numpy(), train_data)
    assert ds.train_y.tolist() == sum((entries[f"data_batch_{k}"]["labels"] for k in range(1, 6)), [])
    assert ds.test_y.tolist() == entries["test_batch"]["labels"]
    assert "not the official size" in ds.source


def test_cifar100_uses_fine_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = write_cifar100(tmp_path / "cifar-100-python")
    monkeypatch.setenv("UNLEARNBENCH_DATA", str(tmp_path))
    ds = load_dataset("cifar100")
    assert ds.num_classes == 100 and ds.classes[37] == "fine37"
    assert ds.train_x.shape == (7, 3, 32, 32) and ds.test_x.shape == (5, 3, 32, 32)
    assert ds.train_y.tolist() == entries["train"]["fine_labels"]
    assert np.array_equal(ds.test_x.reshape(5, -1).numpy(), entries["test"]["data"])


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_forbidden_global_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    marker = tmp_path / "pwned"
    evil = {"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1, 2], "x": _Evil(marker)}
    (folder / "data_batch_3").write_bytes(pickle.dumps(evil))
    with pytest.raises(DataMissing, match=r"refused global \w+\.system") as err:
        cifar.load_cifar10(tmp_path)
    assert str(folder / "data_batch_3") in str(err.value)
    assert not marker.exists()


def test_pickle_with_forbidden_builtin_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    write_cifar100(folder)
    # pickle protocol 0 source calling builtins.eval: c<module>\n<name>\n then (args) R
    (folder / "meta").write_bytes(b"cbuiltins\neval\n(V1+1\ntR.")
    with pytest.raises(DataMissing, match="refused global builtins.eval"):
        cifar.load_cifar100(tmp_path)


def test_truncated_or_malformed_cifar_files(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    path = folder / "test_batch"
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataMissing, match="truncated or corrupt") as err:
        cifar.load_cifar10(tmp_path)
    assert str(path) in str(err.value) and "cifar-10-python.tar.gz" in str(err.value)
    path.write_bytes(pickle.dumps({"data": np.zeros((3, 1024), np.uint8), "labels": [0, 1, 2]}))
    with pytest.raises(DataMissing, match=r"uint8 \[N, 3072\]"):
        cifar.load_cifar10(tmp_path)
    path.write_bytes(pickle.dumps({"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1, 10]}))
    with pytest.raises(DataMissing, match="outside 0..9"):
        cifar.load_cifar10(tmp_path)


def test_cifar_official_count_requires_official_md5(tmp_path: Path) -> None:
    """A data file with the official 10,000 images must be the official bytes."""
    folder = tmp_path / "cifar-100-python"
    write_cifar100(folder)
    official_size = {"data": np.zeros((10_000, 3072), np.uint8), "fine_labels": [0] * 10_000}
    (folder / "test").write_bytes(pickle.dumps(official_size))
    with pytest.raises(DataMissing, match="not the official CIFAR-100 file") as err:
        cifar.load_cifar100(tmp_path)
    assert str(folder / "test") in str(err.value) and cifar.CIFAR100.test_files[0][1] in str(err.value)


def test_missing_cifar_lists_searched_paths_and_unextracted_archive(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not extracted")
    with pytest.raises(DataMissing) as err:
        cifar.load_cifar10(tmp_path)
    msg = str(err.value)
    assert f"  {tmp_path / 'cifar-10-batches-py'}  (no such folder)" in msg
    assert f"  {tmp_path}  (lacks data_batch_1" in msg and "cifar-10-python.tar.gz is here: extract it" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg and "--data-root DIR" in msg


# --------------------------------------------------------------------------- SVHN


def test_svhn_reads_mat_files_and_maps_ten_to_zero(tmp_path: Path) -> None:
    mats = write_svhn(tmp_path / "svhn", n_train=12, n_test=4)
    ds = svhn.load_svhn(tmp_path)
    assert ds.classes == tuple("0123456789")
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.shape == (12, 3, 32, 32)
    assert ds.test_x.shape == (4, 3, 32, 32)
    x = mats["train_32x32.mat"]["X"]  # [H, W, C, N]
    assert np.array_equal(ds.train_x[7, 2].numpy(), x[:, :, 2, 7])  # image 7, blue plane, [H, W]
    assert ds.train_x[3, 1, 5, 9].item() == x[5, 9, 1, 3]
    # file labels 1, 2, ..., 10, 1, 2: the digit 0 is stored as 10
    assert ds.train_y.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert ds.train_y.dtype == torch.int64


def test_svhn_truncated_and_bad_labels(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    path = tmp_path / "test_32x32.mat"
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataMissing, match="truncated or corrupt") as err:
        svhn.load_svhn(tmp_path)
    assert str(path) in str(err.value) and "test_32x32.mat" in str(err.value)

    from scipy.io import savemat

    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]], np.uint8)})
    with pytest.raises(DataMissing, match=r"expected 1..10"):
        svhn.load_svhn(tmp_path)
    savemat(path, {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [2], [3]], np.uint8)})
    with pytest.raises(DataMissing, match="y must be"):
        svhn.load_svhn(tmp_path)


def test_missing_svhn_lists_searched_paths(tmp_path: Path) -> None:
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "train_32x32.mat").write_bytes(b"")
    with pytest.raises(DataMissing) as err:
        svhn.load_svhn(tmp_path)
    msg = str(err.value)
    assert f"  {tmp_path / 'svhn'}  (lacks test_32x32.mat)" in msg
    assert f"  {tmp_path / 'SVHN'}  (no such folder)" in msg
    assert "http://ufldl.stanford.edu/housenumbers/test_32x32.mat" in msg


# --------------------------------------------------------------------------- registry and checksums


def test_all_real_datasets_registered() -> None:
    datasets_pkg._load_modules()
    names = set(datasets_pkg.DATASETS.names())
    assert {"fashion_mnist", "mnist", "cifar10", "cifar100", "svhn"} <= names


def test_checksums_match_torchvision() -> None:
    """Our recorded md5s are torchvision's, so a typo cannot pass an official file or fail one."""
    from torchvision.datasets import CIFAR10, CIFAR100, SVHN

    for ours, theirs in ((cifar.CIFAR10, CIFAR10), (cifar.CIFAR100, CIFAR100)):
        assert [[f, m] for f, m, _ in ours.train_files] == [list(e) for e in theirs.train_list]
        assert [[f, m] for f, m, _ in ours.test_files] == [list(e) for e in theirs.test_list]
        assert ours.meta_file == (theirs.meta["filename"], theirs.meta["md5"])
    for split, (file, md5, _) in svhn.FILES.items():
        assert SVHN.split_list[split][1:] == [file, md5]
