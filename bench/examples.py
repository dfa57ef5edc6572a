"""Per-example values of a run, stored beside its rows: φ of every forget image and control image.

The cross-seed attacks (:mod:`bench.crossseed`) compare, example by example, a method's models
over N model seeds with the oracles'. They need, per run, one number per forget example; this
module builds and stores it.

For the model a run returns (and for the oracle's reference run), per image:

    φ = log p_y − log Σ_{k≠y} p_k            (:func:`bench.crossseed.phi`, from the logits)

over the forget set D_f (``split = "forget"``, ``index`` = the image's index in the dataset's
training images) and over the task's control sample of test images (``split = "control"``,
``index`` = its index in the dataset's test images; :func:`bench.splits.control_positions`),
which no model trained on: there original and oracle should be indistinguishable, so an attack
that "separates" them on the control images is measuring noise.

File: ``<results>/<task>/<method>/seed<seed>-<run_id>.examples.parquet``, long format, one row per
(split, image), float64 φ, stored raw (the layout is :mod:`bench.results`'). :func:`bench.results.write_run` writes it first and the
run's rows file second, both atomically: a run is stored when its rows file exists, and a rows
file whose run has per-example values always has them on disk. A model with non-finite outputs
has no φ: its run stores no per-example file (its attacks' rows say why).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.crossseed import phi
from bench.data import TaskData
from bench.metrics import SplitLogits
from bench.results import EXAMPLES_SUFFIX, CorruptResults, rows_file

FORGET, CONTROL = "forget", "control"

EXAMPLE_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("task", pa.string()),
    ("task_version", pa.int64()),
    ("method", pa.string()),
    ("method_version", pa.int64()),
    ("seed", pa.int64()),
    ("split", pa.string()),
    ("index", pa.int64()),
    ("label", pa.int64()),
    ("phi", pa.float64()),
])
EXAMPLE_COLUMNS = EXAMPLE_SCHEMA.names


def example_table(common: dict, td: TaskData, logits: dict[str, SplitLogits]) -> pa.Table | None:
    """The per-example table of one run (``common``: its shared fields, :func:`bench.results.run_fields`)
    from its model's logits per split (:func:`bench.group.split_logits`); None when the logits are
    not all finite (φ is undefined) or the task data has no per-example bookkeeping."""
    if td.forget_index is None or td.control is None or td.control_index is None:
        return None
    forget, test = logits["forget"], logits["test"]
    control_logits, control_labels = test.logits[td.control], test.labels[td.control]
    if not (bool(forget.logits.isfinite().all()) and bool(control_logits.isfinite().all())):
        return None
    parts = [(FORGET, td.forget_index, forget.labels, phi(forget.logits, forget.labels)),
             (CONTROL, td.control_index, control_labels, phi(control_logits, control_labels))]
    n = sum(len(p[1]) for p in parts)
    columns = {
        "run_id": [common["run_id"]] * n, "task": [common["task"]] * n, "task_version": [common["task_version"]] * n,
        "method": [common["method"]] * n, "method_version": [common["method_version"]] * n, "seed": [common["seed"]] * n,
        "split": np.concatenate([np.full(len(p[1]), p[0], dtype=object) for p in parts]),
        "index": np.concatenate([p[1].numpy().astype(np.int64) for p in parts]),
        "label": np.concatenate([p[2].numpy().astype(np.int64) for p in parts]),
        "phi": np.concatenate([p[3] for p in parts]),
    }
    return pa.Table.from_pydict(columns, schema=EXAMPLE_SCHEMA)


def read_examples(results_dir: str | Path, task: str) -> pd.DataFrame:
    """Every per-example row of ``task`` in the store (sorted). A file that cannot be read or lacks
    the schema raises :class:`bench.results.CorruptResults` naming it; a per-example file whose run
    has no rows file (left by an interrupted write) is not a stored run and is left out."""
    root = Path(results_dir) / task
    tables, bad = [], []
    for path in sorted(root.rglob(f"*{EXAMPLES_SUFFIX}")) if root.is_dir() else []:
        if not rows_file(path).exists():
            continue
        try:
            table = pq.read_table(path)
            tables.append(table.select(EXAMPLE_COLUMNS).cast(EXAMPLE_SCHEMA))
        except (pa.ArrowException, OSError, KeyError, ValueError) as err:
            bad.append(f"{path}: {err}")
    if bad:
        raise CorruptResults("cannot read these per-example files (move them out of the results directory, or re-run "
                             "those runs with --force):\n  " + "\n  ".join(bad))
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=EXAMPLE_SCHEMA.field(c).type.to_pandas_dtype()) for c in EXAMPLE_COLUMNS})
    df = pa.concat_tables(tables).to_pandas()
    return df.sort_values(["method", "seed", "run_id", "split", "index"], kind="stable").reset_index(drop=True)


def store_examples(results_dir: str | Path) -> Callable[[str], pd.DataFrame]:
    """task → its per-example rows in ``results_dir`` (:func:`read_examples`), read when asked."""
    return functools.partial(read_examples, results_dir)


def phi_matrix(examples: pd.DataFrame, run_ids: dict[int, str], split: str = FORGET) -> tuple[np.ndarray, np.ndarray]:
    """φ as ``[seeds, examples]`` (row i = the run of the i-th seed of ``run_ids``, seed → run id, in
    the order given) and the example indices, for ``split``. Every run must hold the same examples."""
    rows, index = [], None
    for seed, run_id in run_ids.items():
        part = examples[(examples["run_id"] == run_id) & (examples["split"] == split)]
        ids = part["index"].to_numpy()
        if index is None:
            index = ids
        elif not np.array_equal(ids, index):
            raise ValueError(f"run {run_id} (seed {seed}) holds other {split} examples than the first seed's: "
                             "the task's split is not fixed across seeds (seeds by role need a split_seed)")
        rows.append(part["phi"].to_numpy())
    if index is None:
        return np.empty((0, 0)), np.empty(0, dtype=np.int64)
    return np.stack(rows), index
