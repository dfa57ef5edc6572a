"""Plan and execute runs: task × method × seed → rows in the results store.

For each (task, seed) the runner splits the data, gets the references (cached), predicts the
oracle's logits once, then for every planned method: copies the original, hands the method the
data it declared (timed, nothing else inside the timer), predicts logits once per split, computes
every metric, and writes the run's rows atomically. The oracle itself is stored as the reference
run ``oracle`` of each (task, seed). Runs already stored are skipped (``force`` redoes them); a
method that raises is stored as a failed run with its traceback and the suite goes on.
"""
from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from bench.datasets import load_dataset
from bench.data import Split, TaskData, build_task_data, method_view, seed_stream, surrogate_split
from bench.metrics import Evaluation, SplitLogits, compute_metrics
from bench.models import state_hash
from bench.references import REFERENCE_VERSION, References, default_cache_dir, get_references, model_factory
from bench.registry import MethodSpec, get_method, list_methods
from bench.results import canonical_json, make_run_id, rows_for_run, stored_runs, write_run
from bench.tasks import Task, get_suite, get_task
from bench.train import predict_logits, resolve_device

ORACLE = "oracle"
DEFAULT_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class RunSpec:
    """One planned run: a task, a method with its resolved hyperparameters, a seed."""

    task: Task
    method: str
    method_version: int
    hyperparameters: str  # canonical JSON of the resolved hyperparameters
    seed: int

    @property
    def run_id(self) -> str:
        return make_run_id(self.task.identity(), self.task.version, self.method, self.method_version,
                           json.loads(self.hyperparameters), self.seed)

    @property
    def hp(self) -> dict[str, Any]:
        return json.loads(self.hyperparameters)


@dataclass(frozen=True)
class Plan:
    runs: tuple[RunSpec, ...]
    not_applicable: tuple[tuple[str, str, str], ...]  # (task, method, reason)


def make_plan(tasks: Sequence[str | Task], methods: Sequence[str], seeds: Sequence[int], overrides: dict[str, Any] | None = None) -> Plan:
    """Resolve names and hyperparameters for every task × method × seed (errors before any work).

    A method whose paper setting does not cover a task's forget rule (e.g. a class-removal-only
    method on random forgetting) is listed as not applicable, with the reason, rather than run.
    """
    if not seeds:
        raise ValueError("no seeds given")
    task_objs = [get_task(t) for t in tasks]
    specs = [get_method(m) for m in methods]
    if overrides:
        for spec in specs:
            spec.resolve(task_objs[0].name if task_objs else "", overrides)  # fail early on a bad --hp
    runs, skipped = [], []
    for task in task_objs:
        for spec in specs:
            if task.forget.kind not in spec.applies_to:
                skipped.append((task.name, spec.name, f"{spec.name} applies to {'/'.join(spec.applies_to)} forgetting only"))
                continue
            if "surrogate" in spec.uses and task.surrogate is None:
                skipped.append((task.name, spec.name, f"{spec.name} needs surrogate data and {task.name} names none"))
                continue
            hp = spec.resolve(task.name, overrides)
            for seed in seeds:
                runs.append(RunSpec(task, spec.name, spec.version, canonical_json(hp), int(seed)))
    return Plan(tuple(runs), tuple(skipped))


@functools.cache
def environment() -> dict[str, str]:
    """Versions stored with every row."""
    try:
        package = metadata.version("unlearnbench")
    except metadata.PackageNotFoundError:
        package = "unknown"
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit = f"{commit}-dirty" if commit and dirty else commit
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"package_version": package, "torch_version": torch.__version__, "git_commit": commit}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def logits_of(model: nn.Module, td: TaskData, device: torch.device) -> dict[str, SplitLogits]:
    splits = {"forget": td.forget, "retain": td.retain, "test": td.test}
    if td.forget_test is not None:
        splits["forget_test"] = td.forget_test
    return {name: SplitLogits(predict_logits(model, s, device=device), s.y) for name, s in splits.items()}


def evaluate(model: nn.Module, td: TaskData, oracle_forget: SplitLogits, *, device: torch.device, runtime: float, oracle_seconds: float) -> dict[str, tuple[float, int]]:
    out = logits_of(model, td, device)
    ev = Evaluation(
        forget=out["forget"], retain=out["retain"], test=out["test"], forget_test=out.get("forget_test"),
        oracle_forget=oracle_forget, forget_classes=td.forget_classes, seed=td.seed,
        runtime_seconds=runtime, oracle_seconds=oracle_seconds,
    )
    return compute_metrics(ev)


def common_fields(task: Task, method: str, method_version: int, hp_json: str, data_used: str, seed: int, run_id: str, td_split_hash: str, device: torch.device) -> dict[str, Any]:
    return {
        "run_id": run_id, "task": task.name, "task_version": task.version, "method": method,
        "method_version": method_version, "hyperparameters": hp_json, "data_used": data_used,
        "surrogate": "", "seed": seed, "split_hash": td_split_hash, "model_hash": "",
        "reference_key": "", "device": str(device), "timestamp": now(), "status": "ok", "error": "",
        **environment(),
    }


def failed_row(common: dict[str, Any], err: BaseException) -> dict[str, Any]:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return common | {"status": "failed", "error": f"{type(err).__name__}: {err}\n{text}", "metric": "", "value": float("nan"), "n": 0}


def oracle_run_id(task: Task, seed: int) -> str:
    return make_run_id(task.identity(), task.version, ORACLE, REFERENCE_VERSION, {}, seed)


def run_method(spec: MethodSpec, run: RunSpec, td: TaskData, refs: References, oracle_forget: SplitLogits, device: torch.device, surrogate: Split | None = None) -> list[dict]:
    """Execute one planned run and return its rows (status "ok", or one "failed" row)."""
    common = common_fields(run.task, spec.name, spec.version, run.hyperparameters, ",".join(spec.uses) or "none",
                           run.seed, run.run_id, td.split_hash, device)
    common["reference_key"] = refs.oracle.key
    common["surrogate"] = run.task.surrogate or "" if "surrogate" in spec.uses else ""
    try:
        hp = run.hp
        data = method_view(td, spec.uses, model_factory(td), retain_fraction=hp.get("retain_fraction"), surrogate=surrogate)
        model = copy.deepcopy(refs.original.model).to(device)
        torch.manual_seed(seed_stream(run.seed, "method", spec.name))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = spec.fn(model, data, device=device, **hp)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        runtime = time.perf_counter() - start
        if not isinstance(result, nn.Module):
            raise TypeError(f"method {spec.name} returned {type(result).__name__}, not an nn.Module")
        values = evaluate(result, td, oracle_forget, device=device, runtime=runtime, oracle_seconds=refs.oracle.train_seconds)
        common["model_hash"] = state_hash(result)
        return rows_for_run(common, [(k, v, n) for k, (v, n) in values.items()])
    except Exception as err:  # noqa: BLE001 - a failing method is recorded and the suite goes on
        return [failed_row(common, err)]


def oracle_rows(task: Task, td: TaskData, refs: References, oracle_logits: dict[str, SplitLogits], device: torch.device) -> list[dict]:
    run_id = oracle_run_id(task, td.seed)
    common = common_fields(task, ORACLE, REFERENCE_VERSION, "{}", "retain", td.seed, run_id, td.split_hash, device)
    common["reference_key"] = refs.oracle.key
    common["model_hash"] = state_hash(refs.oracle.model)
    ev = Evaluation(
        forget=oracle_logits["forget"], retain=oracle_logits["retain"], test=oracle_logits["test"],
        forget_test=oracle_logits.get("forget_test"), oracle_forget=oracle_logits["forget"],
        forget_classes=td.forget_classes, seed=td.seed, runtime_seconds=refs.oracle.train_seconds,
        oracle_seconds=refs.oracle.train_seconds,
    )
    return rows_for_run(common, [(k, v, n) for k, (v, n) in compute_metrics(ev).items()])


def run(
    tasks: Sequence[str | Task] | str | None = None,
    methods: Sequence[str] | str | None = None,
    seeds: Iterable[int] = DEFAULT_SEEDS,
    *,
    suite: str | None = None,
    hp: dict[str, Any] | None = None,
    device: str = "cpu",
    results: str | Path = "results",
    leaderboard: str | Path | None = "leaderboard",
    cache: str | Path | None = None,
    data_root: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Run task × method × seed, store the rows, regenerate the leaderboard; return the new rows.

    ``tasks`` and ``methods`` default to the ``suite`` (``"quick"``: the digits tasks) and to every
    registered method. Runs already in ``results`` are skipped unless ``force``.
    """
    from tqdm.auto import tqdm

    if isinstance(tasks, (str, Task)):
        tasks = [tasks]
    if isinstance(methods, str):
        methods = [methods]
    task_list = list(tasks) if tasks else list(get_suite(suite or "quick"))
    method_list = list(methods) if methods else list_methods()
    seeds = [int(s) for s in seeds]
    dev = resolve_device(device)
    cache_dir = Path(cache) if cache else default_cache_dir()
    results_dir = Path(results)

    plan = make_plan(task_list, method_list, seeds, hp)
    for task in {r.task.dataset for r in plan.runs}:
        load_dataset(task, data_root)  # missing data fails here, loudly, before any work
    for task_name, method_name, reason in plan.not_applicable:
        print(f"not applicable: {method_name} on {task_name}: {reason}", file=sys.stderr)
    stored = stored_runs(results_dir)
    todo = [r for r in plan.runs if force or stored.get(r.run_id) != "ok"]
    groups: dict[tuple[str, int], list[RunSpec]] = {}
    for r in todo:
        groups.setdefault((r.task.name, r.seed), []).append(r)
    oracle_missing = {(r.task.name, r.seed) for r in plan.runs if stored.get(oracle_run_id(r.task, r.seed)) != "ok"}
    for key in oracle_missing:
        groups.setdefault(key, [])
    task_by_name = {get_task(t).name: get_task(t) for t in task_list}

    written: list[dict] = []
    bar = tqdm(total=len(todo), unit="run", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    bar.set_description(f"{len(plan.runs) - len(todo)} stored, {len(todo)} to do")
    try:
        for (task_name, seed), runs in groups.items():
            task = task_by_name[task_name]
            try:
                td = build_task_data(task, seed, str(data_root) if data_root else None)
                refs = get_references(td, device=dev, cache_dir=cache_dir,
                                      on_train=lambda kind: bar.set_description(f"{task_name} s{seed}: training {kind}"))
                oracle_logits = logits_of(refs.oracle.model, td, dev)
                needs_surrogate = any("surrogate" in get_method(r.method).uses for r in runs)
                surrogate = surrogate_split(td, str(data_root) if data_root else None) if needs_surrogate else None
            except Exception as err:  # noqa: BLE001 - the group fails as a whole, the suite goes on
                for r in runs:
                    spec = get_method(r.method)
                    common = common_fields(task, r.method, r.method_version, r.hyperparameters, ",".join(spec.uses) or "none", r.seed, r.run_id, "", dev)
                    written += write_rows([failed_row(common, err)], results_dir, force)
                    bar.update(1)
                print(f"error: references for {task_name} seed {seed} failed: {err}", file=sys.stderr)
                continue
            if (task_name, seed) in oracle_missing or force:
                written += write_rows(oracle_rows(task, td, refs, oracle_logits, dev), results_dir, True)
            for r in runs:
                bar.set_description(f"{task_name} · {r.method} · seed {seed}")
                rows = run_method(get_method(r.method), r, td, refs, oracle_logits["forget"], dev, surrogate)
                written += write_rows(rows, results_dir, force)
                if rows[0]["status"] != "ok":
                    bar.write(f"failed: {task_name} {r.method} seed {seed}: {rows[0]['error'].splitlines()[0]}")
                bar.update(1)
    finally:
        bar.close()
    if leaderboard is not None:
        from bench.report import write_report
        from bench.results import read_store

        write_report(read_store(results_dir), leaderboard)
    return written


def write_rows(rows: list[dict], results_dir: Path, force: bool) -> list[dict]:
    write_run(rows, results_dir, force=force or rows[0]["status"] != "ok")
    return rows
