"""End to end on real Fashion-MNIST (Debian's dataset-fashion-mnist): one task, one seed.

Slow (trains LeNet twice on 54,000 images, a few minutes on 2 CPU cores); CI runs it after
installing the Debian package. Skipped, with the reason, where the files are absent.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import bench
from bench.datasets import DataMissing, load_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fashion_mnist_available() -> None:
    try:
        load_dataset("fashion_mnist")
    except DataMissing as err:
        pytest.skip(f"Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): {str(err).splitlines()[0]}")


def test_fmnist_class_removal_end_to_end(fashion_mnist_available: None, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    rows = bench.run("fmnist-lenet-class", ["original", "finetune"], seeds=[0], results=tmp_path / "results",
                     leaderboard=tmp_path / "lb", cache=tmp_path / "cache", progress=False)
    value = {(r["method"], r["metric"]): r["value"] for r in rows}
    assert all(r["status"] == "ok" for r in rows)
    assert value[("original", "test_accuracy")] >= 0.88  # the acceptance bar for the recipe
    assert value[("original", "forget_accuracy")] >= 0.85
    assert value[("oracle", "forget_accuracy")] <= 0.01  # the oracle never saw class 0
    assert value[("oracle", "forget_test_accuracy")] <= 0.01
    assert value[("finetune", "test_accuracy")] >= value[("original", "test_accuracy")] - 0.03
    page = (tmp_path / "lb" / "fmnist-lenet-class.md").read_text()
    assert "| ref | original (reference)" in page and "finetune" in page
