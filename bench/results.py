"""The results store: one Parquet file per run, long format, raw float64 values, append-only.

Layout: ``<results>/<task>/<method>/seed<seed>-<run_id>.parquet`` for a completed run and
``...-<run_id>.failed.parquet`` for a run that raised (one row carrying the error and traceback);
beside a completed run, ``...-<run_id>.examples.parquet`` holds its per-example values
(:mod:`bench.examples`; written first, so a rows file never lacks the values it was stored with).
Files are written to a temporary name and renamed, so an interrupted run leaves nothing behind.
A completed run is never overwritten except by an explicit ``--force``; a failure record is
replaced by the successful re-run of the same run id. Reading the store ignores nothing
silently: a file that cannot be read or does not have the schema is reported by name.
"""
from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench.env import device_label, environment, now
from bench.files import atomic_write

#: The two reference rows of every (task, seed): the model before unlearning (the do-nothing line
#: of every ranking) and the model retrained without the forget set (the target).
ORIGINAL = "original"
ORACLE = "oracle"
REFERENCE_METHODS: tuple[str, ...] = (ORIGINAL, ORACLE)
#: The oracle's recipe run as a method (``methods/retrain.py``): the oracle again, up to its own
#: run's randomness, so its gaps to the oracle are near 0 by construction. It is the target, not a
#: competitor: ranked, it would be named the best method of every task.
RETRAIN = "retrain"
#: The rows pinned above every ranking, in table order, never ranked → the role their label names.
PINNED_ROLES: dict[str, str] = {ORIGINAL: "reference", ORACLE: "reference", RETRAIN: "oracle's recipe"}
PINNED_METHODS: tuple[str, ...] = tuple(PINNED_ROLES)

SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("task", pa.string()),
    ("task_version", pa.int64()),
    ("method", pa.string()),
    ("method_version", pa.int64()),
    ("hyperparameters", pa.string()),
    ("data_used", pa.string()),
    ("surrogate", pa.string()),
    ("seed", pa.int64()),
    ("metric", pa.string()),
    ("value", pa.float64()),
    ("n", pa.int64()),
    ("split_hash", pa.string()),
    ("model_hash", pa.string()),
    ("reference_key", pa.string()),
    ("package_version", pa.string()),
    ("torch_version", pa.string()),
    ("git_commit", pa.string()),
    ("device", pa.string()),
    ("timestamp", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
])
COLUMNS = SCHEMA.names


@dataclass(frozen=True, eq=False)
class RunRecord:
    """What one run hands the store (:func:`write_run`): its rows and, for a completed run whose
    model has finite outputs, its per-example table (:mod:`bench.examples`)."""

    rows: list[dict]
    examples: pa.Table | None = None


class CorruptResults(RuntimeError):
    """One or more result files cannot be read; the message names them."""


class AlreadyStored(FileExistsError):
    """:func:`write_run` of a run whose completed file exists (``path``), without ``force``: the
    runner skips it (another ``bench run`` on the store finished it meanwhile)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already holds this run; pass force=True (--force) to redo it")
        self.path = path


class StoreNotWritable(RuntimeError):
    """A run could not be written (disk full, folder no longer writable); the message names the
    folder and says that nothing stored was changed."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=repr)


def make_run_id(task_identity: dict, task_version: int, method: str, method_version: int, hyperparameters: dict, seed: int,
                *, device_type: str = "cpu") -> str:
    """sha256 (20 hex) of the task (its full definition and version), the method and its version,
    the resolved hyperparameters, the seed and the device type (CPU and CUDA numbers differ)."""
    blob = canonical_json({
        "task": task_identity, "task_version": task_version, "method": method,
        "method_version": method_version, "hyperparameters": hyperparameters, "seed": seed,
        "device_type": device_type,
    })
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


EXAMPLES_SUFFIX = ".examples.parquet"


def run_path(results_dir: Path, task: str, method: str, seed: int, run_id: str, *, failed: bool) -> Path:
    suffix = ".failed.parquet" if failed else ".parquet"
    return Path(results_dir) / task / method / f"seed{seed}-{run_id}{suffix}"


def examples_file(rows_path: Path) -> Path:
    """The per-example file beside a completed run's rows file."""
    return rows_path.with_name(rows_path.name.removesuffix(".parquet") + EXAMPLES_SUFFIX)


def rows_file(examples_path: Path) -> Path:
    """The rows file of a per-example file (:func:`examples_file` inverted)."""
    return examples_path.with_name(examples_path.name.removesuffix(EXAMPLES_SUFFIX) + ".parquet")


def row_files(root: Path) -> list[Path]:
    """Every rows file (completed or failed run) under ``root``, sorted; per-example files are not."""
    return sorted(p for p in root.rglob("*.parquet") if not p.name.endswith(EXAMPLES_SUFFIX))


def stored_runs(results_dir: str | Path) -> dict[str, str]:
    """run_id → "ok" or "failed", from the file names (no file is opened)."""
    out: dict[str, str] = {}
    root = Path(results_dir)
    if not root.exists():
        return out
    for path in row_files(root):
        name = path.name
        failed = name.endswith(".failed.parquet")
        run_id = name.removesuffix(".failed.parquet" if failed else ".parquet").rsplit("-", 1)[-1]
        if out.get(run_id) != "ok":
            out[run_id] = "failed" if failed else "ok"
    return out


def stored_tasks(results_dir: str | Path) -> list[str]:
    """The tasks that have runs in the store (the first folder level of its layout), sorted."""
    root = Path(results_dir)
    return sorted({p.relative_to(root).parts[0] for p in row_files(root)}) if root.is_dir() else []


def write_run(rows: list[dict], results_dir: str | Path, *, force: bool = False, examples: pa.Table | None = None) -> Path:
    """Write one run's rows atomically; refuses to overwrite a completed run unless ``force``.
    ``examples``: a completed run's per-example table (:func:`bench.examples.example_table`),
    written first beside it; a re-run without one removes the stale file its run id had."""
    if not rows:
        raise ValueError("a run has at least one row")
    first = rows[0]
    if any(r["run_id"] != first["run_id"] for r in rows):
        raise ValueError("all rows of one file must share a run_id")
    failed = first["status"] != "ok"
    ok_path = run_path(Path(results_dir), first["task"], first["method"], first["seed"], first["run_id"], failed=False)
    failed_path = run_path(Path(results_dir), first["task"], first["method"], first["seed"], first["run_id"], failed=True)
    path = failed_path if failed else ok_path
    if ok_path.exists() and not force:
        raise AlreadyStored(ok_path)
    if examples is not None and failed:
        raise ValueError("a failed run has no per-example values")
    try:
        if examples is not None:
            write_table_atomic(examples, examples_file(ok_path))
        elif not failed and examples_file(ok_path).exists():
            examples_file(ok_path).unlink()
        write_table_atomic(pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows], schema=SCHEMA), path)
    except OSError as err:  # a full disk, a folder made read-only mid-run: the atomic write left nothing
        raise StoreNotWritable(
            f"cannot store run {first['task']} {first['method']} seed {first['seed']} in {results_dir}: "
            f"{err.strerror or err}; nothing stored was changed (this run left no file, the runs stored before "
            "are intact). Free space there or pass another --results, then run the same `bench run` again "
            "to do what is missing") from err
    if not failed and failed_path.exists():
        failed_path.unlink()  # the failure record is superseded by the successful re-run
    return path


def write_table_atomic(table: pa.Table, path: Path) -> Path:
    """Write ``table`` as Parquet through :func:`bench.files.atomic_write`: readers never see a
    partial file, an interruption leaves nothing behind, the file's mode follows the umask."""
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_store(results_dir: str | Path) -> pd.DataFrame:
    """Every row of every run under ``results_dir`` (sorted deterministically).

    Raises :class:`CorruptResults` naming every file that cannot be read or lacks the schema;
    raises FileNotFoundError when the directory does not exist.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results directory {root} does not exist; run `bench run` first or pass --results DIR")
    tables, bad = [], []
    for path in row_files(root):
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as err:
            bad.append(f"{path}: {err}")
            continue
        missing = set(COLUMNS) - set(table.column_names)
        if missing:
            bad.append(f"{path}: missing columns {sorted(missing)}")
            continue
        try:
            tables.append(table.select(COLUMNS).cast(SCHEMA))
        except (pa.ArrowException, ValueError) as err:
            bad.append(f"{path}: wrong column types ({err})")
    if bad:
        raise CorruptResults(
            "cannot read these result files (move them out of the results directory, or re-run those runs "
            "with --force):\n  " + "\n  ".join(bad)
        )
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=SCHEMA.field(c).type.to_pandas_dtype()) for c in COLUMNS})
    df = pa.concat_tables(tables).to_pandas()
    return df.sort_values(["task", "method", "seed", "run_id", "metric"], kind="stable").reset_index(drop=True)


def run_fields(*, run_id: str, task: str, task_version: int, method: str, method_version: int, hyperparameters: str,
               data_used: str, seed: int, device: torch.device, split_hash: str = "", reference_key: str = "",
               surrogate: str = "") -> dict[str, Any]:
    """The fields every row of one run shares (all but metric, value, n): status "ok" until
    :func:`failed_row` says otherwise; ``model_hash`` is filled in once the model exists."""
    return {
        "run_id": run_id, "task": task, "task_version": task_version, "method": method,
        "method_version": method_version, "hyperparameters": hyperparameters, "data_used": data_used,
        "surrogate": surrogate, "seed": seed, "split_hash": split_hash, "model_hash": "",
        "reference_key": reference_key, "device": device_label(device), "timestamp": now(), "status": "ok", "error": "",
        **environment(),
    }


def rows_for_run(common: dict, metrics: Iterable[tuple[str, float, int]]) -> list[dict]:
    """Long-format rows: the run's common fields plus one (metric, value, n) each."""
    return [common | {"metric": name, "value": float(value), "n": int(n)} for name, value, n in metrics]


def failed_metric_rows(common: dict, refused: dict[str, str]) -> list[dict]:
    """The rows of the metrics a completed run could not compute (metric → the reason): status
    "failed", value NaN, the reason as the error — no number is stored as if it were measured.
    They follow the run's ok rows in its file (the first row names the run's status)."""
    return [common | {"metric": name, "value": float("nan"), "n": 0, "status": "failed", "error": reason}
            for name, reason in refused.items()]


def failed_row(common: dict, err: BaseException) -> dict[str, Any]:
    """The one row of a failed run: its common fields, status "failed", and the error with its
    traceback (the reason a reader of the store sees)."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return common | {"status": "failed", "error": f"{type(err).__name__}: {err}\n{text}", "metric": "",
                     "value": float("nan"), "n": 0}
