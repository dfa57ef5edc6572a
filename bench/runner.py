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
from bench.references import REFERENCE_VERSION, References, default_cache_dir, get_references, model_factory, reference_key
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
    device_type: str = "cpu"

    @property
    def run_id(self) -> str:
        return make_run_id(self.task.identity(), self.task.version, self.method, self.method_version,
                           json.loads(self.hyperparameters), self.seed, device_type=self.device_type)

    @property
    def hp(self) -> dict[str, Any]:
        return json.loads(self.hyperparameters)


@dataclass(frozen=True)
class Plan:
    runs: tuple[RunSpec, ...]
    not_applicable: tuple[tuple[str, str, str], ...]  # (task, method, reason)


def overrides_for(spec: MethodSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides that concern ``spec``: ``name=value`` for every method having ``name``, and
    ``method.name=value`` for that method only."""
    out = {}
    for key, value in overrides.items():
        method_name, dot, name = key.rpartition(".")
        if dot and method_name == spec.name:
            out[name] = value
        elif not dot and key in spec.defaults:
            out[key] = value
    return out


def check_overrides(specs: Sequence[MethodSpec], overrides: dict[str, Any], task_name: str) -> None:
    """Every override must concern some planned method, with a valid value (errors before any work)."""
    if len(specs) == 1:
        specs[0].resolve(task_name, {k.removeprefix(f"{specs[0].name}."): v for k, v in overrides.items()})
        return
    for key in overrides:
        if not any(overrides_for(spec, {key: None}) for spec in specs):
            valid = sorted({f"{s.name}.{k}" for s in specs for k in s.defaults})
            raise ValueError(f"--hp {key}: no planned method has this hyperparameter; scope it as METHOD.NAME, "
                             f"one of: {', '.join(valid) or '(none)'}")
    for spec in specs:
        spec.resolve(task_name, overrides_for(spec, overrides))


def make_plan(tasks: Sequence[str | Task], methods: Sequence[str], seeds: Sequence[int], overrides: dict[str, Any] | None = None,
              device_type: str = "cpu") -> Plan:
    """Resolve names and hyperparameters for every task × method × seed (errors before any work).

    ``overrides`` (``--hp``): ``name=value`` applies to every planned method with that
    hyperparameter, ``method.name=value`` to one method. A method whose paper setting does not
    cover a task's forget rule (e.g. a class-removal-only method on random forgetting) is listed as
    not applicable, with the reason, rather than run.
    """
    if not seeds:
        raise ValueError("no seeds given")
    task_objs = [get_task(t) for t in tasks]
    specs = [get_method(m) for m in methods]
    overrides = dict(overrides or {})
    if overrides:
        check_overrides(specs, overrides, task_objs[0].name if task_objs else "")
    runs, skipped = [], []
    for task in task_objs:
        for spec in specs:
            if task.forget.kind not in spec.applies_to:
                skipped.append((task.name, spec.name, f"{spec.name} applies to {'/'.join(spec.applies_to)} forgetting only"))
                continue
            if "surrogate" in spec.uses and task.surrogate is None:
                skipped.append((task.name, spec.name, f"{spec.name} needs surrogate data and {task.name} names none"))
                continue
            hp = spec.resolve(task.name, overrides_for(spec, overrides))
            for seed in seeds:
                runs.append(RunSpec(task, spec.name, spec.version, canonical_json(hp), int(seed), device_type))
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


def oracle_run_id(task: Task, seed: int, device_type: str = "cpu") -> str:
    return make_run_id(task.identity(), task.version, ORACLE, REFERENCE_VERSION, {}, seed, device_type=device_type)


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
    run_id = oracle_run_id(task, td.seed, device.type)
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

@dataclass(frozen=True)
class GroupEstimate:
    """Estimated seconds of one (task, seed) group: references to train, method runs, evaluation."""

    references: float
    runs: dict[str, float]  # run_id → seconds (method + evaluation)

    @property
    def total(self) -> float:
        return self.references + sum(self.runs.values())


def probe_images_per_second(td: TaskData, device: torch.device) -> float:
    """Training throughput of the task's architecture: 3 timed steps (after one warm-up step) on
    random images of the task's shape and recipe batch size."""
    from bench.train import make_optimizer

    recipe = td.task.recipe
    model = model_factory(td)().to(device).train()
    opt = make_optimizer(model.parameters(), optimizer=recipe.optimizer, lr=recipe.lr)
    x = torch.rand(recipe.batch_size, *td.dataset.image_shape, device=device)
    y = torch.randint(td.dataset.num_classes, (recipe.batch_size,), device=device)
    for step in range(4):
        if step == 1:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 3 * recipe.batch_size / max(time.perf_counter() - start, 1e-9)


def estimate_group(td: TaskData, runs: Sequence[RunSpec], *, refs_cached: tuple[bool, bool], ips: float,
                   known: dict[tuple[str, str], float]) -> GroupEstimate:
    """Seconds for a group: reference training = epochs · |split| / throughput; a method run = its
    median stored runtime on this task when known (else ``retrain`` = the oracle's training, and a
    quarter of it for any other method, a rough prior); evaluation = one forward pass over every
    split (a third of a training step per image) plus a second for the attacks."""
    epochs = td.task.recipe.epochs
    original = 0.0 if refs_cached[0] else epochs * len(td.train) / ips
    oracle = epochs * len(td.retain) / ips
    evaluation = (len(td.forget) + len(td.retain) + len(td.test)) / (3 * ips) + 1.0
    per_run = {}
    for r in runs:
        prior = oracle if r.method == "retrain" else 0.25 * oracle
        per_run[r.run_id] = known.get((r.task.name, r.method), prior) + evaluation
    return GroupEstimate(references=original + (0.0 if refs_cached[1] else oracle), runs=per_run)


def known_runtimes(results_dir: Path) -> dict[tuple[str, str], float]:
    """Median stored runtime_seconds per (task, method), read from the store's completed runs."""
    if not results_dir.is_dir() or not any(results_dir.rglob("*.parquet")):
        return {}
    from bench.results import read_store

    df = read_store(results_dir)
    df = df[(df["metric"] == "runtime_seconds") & (df["status"] == "ok")]
    return {k: float(v) for k, v in df.groupby(["task", "method"])["value"].median().items()}


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


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

    plan = make_plan(task_list, method_list, seeds, hp, dev.type)
    for task in {r.task.dataset for r in plan.runs}:
        load_dataset(task, data_root)  # missing data fails here, loudly, before any work
    for task_name, method_name, reason in plan.not_applicable:
        print(f"not applicable: {method_name} on {task_name}: {reason}", file=sys.stderr)
    stored = stored_runs(results_dir)
    todo = [r for r in plan.runs if force or stored.get(r.run_id) != "ok"]
    groups: dict[tuple[str, int], list[RunSpec]] = {}
    for r in todo:
        groups.setdefault((r.task.name, r.seed), []).append(r)
    for r in plan.runs:  # a group whose runs are all stored may still lack its oracle row
        if stored.get(oracle_run_id(r.task, r.seed, dev.type)) != "ok":
            groups.setdefault((r.task.name, r.seed), [])
    task_by_name = {r.task.name: r.task for r in plan.runs}
    data_root_str = str(data_root) if data_root else None

    estimates: dict[tuple[str, int], GroupEstimate] = {}
    if groups:
        known = known_runtimes(results_dir)
        throughput: dict[str, float] = {}
        for (task_name, seed), runs in groups.items():
            td = build_task_data(task_by_name[task_name], seed, data_root_str)
            if task_name not in throughput:
                throughput[task_name] = probe_images_per_second(td, dev)
            cached = tuple((cache_dir / f"{reference_key(k, td, dev)}.safetensors").exists() for k in ("original", "oracle"))
            estimates[(task_name, seed)] = estimate_group(td, runs, refs_cached=cached, ips=throughput[task_name], known=known)
    total = sum(e.total for e in estimates.values())
    n_refs = sum(1 for e in estimates.values() if e.references > 0)
    print(f"plan: {len(plan.runs)} run(s), {len(plan.runs) - len(todo)} already stored, {len(todo)} to do"
          + (f"; references to train for {n_refs} task/seed group(s)" if n_refs else "")
          + (f"; estimated {format_seconds(total)} on {dev}" if todo or n_refs else ""), file=sys.stderr)

    written: list[dict] = []
    # The bar advances by each finished unit's *estimated* seconds, so its fraction is the share of
    # the estimated work done and tqdm's rate turns what is left into an honest time remaining.
    bar = tqdm(total=total, unit="s(est)", disable=not progress or not groups, dynamic_ncols=True,
               file=sys.stderr, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} est-s [{elapsed}<{remaining}] {postfix}")
    done = 0
    try:
        for (task_name, seed), runs in groups.items():
            task, est = task_by_name[task_name], estimates[(task_name, seed)]
            bar.set_postfix_str(f"runs {done}/{len(todo)}")
            try:
                td = build_task_data(task, seed, data_root_str)
                refs = get_references(td, device=dev, cache_dir=cache_dir,
                                      on_train=lambda kind: bar.set_description(f"{task_name} s{seed}: training {kind}"))
                oracle_logits = logits_of(refs.oracle.model, td, dev)
                needs_surrogate = any("surrogate" in get_method(r.method).uses for r in runs)
                surrogate = surrogate_split(td, data_root_str) if needs_surrogate else None
            except Exception as err:  # noqa: BLE001 - the group fails as a whole, the suite goes on
                for r in runs:
                    spec = get_method(r.method)
                    common = common_fields(task, r.method, r.method_version, r.hyperparameters, ",".join(spec.uses) or "none", r.seed, r.run_id, "", dev)
                    written += write_rows([failed_row(common, err)], results_dir, force)
                bar.write(f"error: references for {task_name} seed {seed} failed: {err}")
                bar.update(est.total)
                done += len(runs)
                continue
            bar.update(est.references)
            if stored.get(oracle_run_id(task, seed, dev.type)) != "ok" or force:
                written += write_rows(oracle_rows(task, td, refs, oracle_logits, dev), results_dir, True)
            for r in runs:
                bar.set_description(f"{task_name} · {r.method} · seed {seed}")
                rows = run_method(get_method(r.method), r, td, refs, oracle_logits["forget"], dev, surrogate)
                written += write_rows(rows, results_dir, force)
                if rows[0]["status"] != "ok":
                    bar.write(f"failed: {task_name} {r.method} seed {seed}: {rows[0]['error'].splitlines()[0]}")
                done += 1
                bar.set_postfix_str(f"runs {done}/{len(todo)}")
                bar.update(est.runs[r.run_id])
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
