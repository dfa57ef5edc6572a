"""Shipped forget sets: fixed lists of training images, one JSON file each, with their hash.

A forget set file ``datasets/forgetsets/<name>.json`` (installed with the package) holds:

* ``indices``: the dataset's training indices of the images to forget, sorted ascending;
* ``index_sha256``: :func:`index_sha256` of them — sha256 of their decimal text joined by commas
  (``"12,507,..."``), so any language can check it;
* ``dataset``, ``made_by`` (the exact command that wrote it), and what the maker records of how
  it chose them (:mod:`bench.memorisation` records the estimator, its models and the scores).

A task names a file and its hash (``ForgetRule("examples", index_file=..., index_sha256=...)``);
:func:`load_forget_set` refuses a file whose indices do not hash to the task's, a file of another
dataset, and a missing or malformed file, each with what to do.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

import bench.datasets
from bench.files import atomic_write_text

#: Where the shipped forget-set files live (package data of ``bench.datasets``).
FORGETSET_DIR = Path(bench.datasets.__file__).resolve().parent / "forgetsets"


def index_sha256(indices: list[int]) -> str:
    """sha256 (hex) of the indices' decimal text joined by commas, in the order given."""
    return hashlib.sha256(",".join(str(int(i)) for i in indices).encode()).hexdigest()


def forget_set_path(name: str, folder: Path | None = None) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"forget set name {name!r} must be a plain file stem (letters, digits, '-')")
    return (folder or FORGETSET_DIR) / f"{name}.json"


def read_forget_set(name: str, folder: Path | None = None) -> dict[str, Any]:
    """The whole record of forget set ``name``, checked to be well formed."""
    path = forget_set_path(name, folder)
    if not path.is_file():
        raise FileNotFoundError(f"forget set {name}: no file {path}; it ships with the package — reinstall it "
                                "(`pip install -e .`), or make it with the command the task's card names")
    try:
        record = json.loads(path.read_text())
        indices = [int(i) for i in record["indices"]]
        stated = str(record["index_sha256"])
        dataset = str(record["dataset"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"forget set {name}: {path} is not a forget-set file ({err}); restore it from the repository") from None
    if indices != sorted(set(indices)) or not indices or indices[0] < 0:
        raise ValueError(f"forget set {name}: {path} must list distinct non-negative indices in ascending order; "
                         "restore it from the repository")
    if index_sha256(indices) != stated:
        raise ValueError(f"forget set {name}: {path}'s indices do not hash to the index_sha256 it states; the file was "
                         "edited — restore it from the repository")
    return record | {"indices": indices, "dataset": dataset}


def load_forget_set(name: str, expected_sha256: str, *, dataset: str, folder: Path | None = None) -> torch.Tensor:
    """The training indices of forget set ``name`` (int64, ascending), if they are those the task
    registered (``expected_sha256``) and of ``dataset``."""
    record = read_forget_set(name, folder)
    if record["index_sha256"] != expected_sha256:
        raise ValueError(f"forget set {name}: its indices hash to {record['index_sha256'][:12]}…, the task registered "
                         f"{expected_sha256[:12]}…; a changed forget set is a new task version — register its hash with a "
                         "version bump, or restore the file from the repository")
    if record["dataset"] != dataset:
        raise ValueError(f"forget set {name} lists images of {record['dataset']}, not of {dataset}")
    return torch.tensor(record["indices"], dtype=torch.int64)


def write_forget_set(name: str, indices: list[int], *, dataset: str, made_by: str, folder: Path | None = None,
                     **how: Any) -> Path:
    """Write forget set ``name`` (atomically), its hash computed here; ``how`` records how it was chosen."""
    indices = sorted(int(i) for i in indices)
    if len(set(indices)) != len(indices) or not indices:
        raise ValueError(f"forget set {name}: the indices must be distinct and at least one")
    record = {"name": name, "dataset": dataset, "made_by": made_by, "size": len(indices),
              "index_sha256": index_sha256(indices), **how, "indices": indices}
    path = forget_set_path(name, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(record, indent=1) + "\n")
