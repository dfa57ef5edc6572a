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
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from bench.datasets import load_dataset
from bench.data import Split, TaskData, method_view, seed_stream
from bench.group import split_logits
from bench.metrics import Evaluation, SplitLogits, compute_metrics
from bench.models import state_hash
from bench.env import default_cache_dir, resolve_device
from bench.references import REFERENCE_VERSION, Reference, References, model_factory
from bench.registry import MethodSpec, get_method, list_methods
from bench.results import ORACLE, canonical_json, failed_row, make_run_id, rows_for_run, run_fields, stored_runs, write_run
from bench.splits import build_task_data
from bench.tasks import Task, get_suite, get_task
from bench.train import make_optimizer, predict_logits, sync

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
            reason = spec.not_applicable(task)
            if reason is not None:
                skipped.append((task.name, spec.name, reason))
                continue
            hp = spec.resolve(task.name, overrides_for(spec, overrides))
            for seed in seeds:
                runs.append(RunSpec(task, spec.name, spec.version, canonical_json(hp), int(seed), device_type))
    return Plan(tuple(runs), tuple(skipped))


def metrics_of(out: dict[str, SplitLogits], td: TaskData, oracle_forget: SplitLogits, *, runtime: float,
               oracle_seconds: float) -> dict[str, tuple[float, int]]:
    """Every metric from a model's logits per split (see :func:`bench.group.split_logits`)."""
    ev = Evaluation(
        forget=out["forget"], retain=out["retain"], test=out["test"], forget_test=out.get("forget_test"),
        oracle_forget=oracle_forget, forget_classes=td.forget_classes, seed=td.seed,
        runtime_seconds=runtime, oracle_seconds=oracle_seconds,
    )
    return compute_metrics(ev)


def evaluate(model: nn.Module, td: TaskData, oracle_forget: SplitLogits, *, device: torch.device, runtime: float,
             oracle_seconds: float, timings: dict[str, float] | None = None) -> dict[str, tuple[float, int]]:
    """Every metric of ``model``. ``timings``, when given, receives the seconds of the forward
    passes (``"forward"``) and of the metrics computed from their logits (``"metrics"``): what
    ``bench perf`` splits a run's wall time by."""
    start = time.perf_counter()
    out = split_logits(model, td, device)  # on the CPU: the copy synchronises CUDA
    middle = time.perf_counter()
    values = metrics_of(out, td, oracle_forget, runtime=runtime, oracle_seconds=oracle_seconds)
    if timings is not None:
        timings |= {"forward": middle - start, "metrics": time.perf_counter() - middle}
    return values


def common_fields(task: Task, method: str, method_version: int, hp_json: str, data_used: str, seed: int, run_id: str, td_split_hash: str, device: torch.device) -> dict[str, Any]:
    return run_fields(run_id=run_id, task=task.name, task_version=task.version, method=method,
                      method_version=method_version, hyperparameters=hp_json, data_used=data_used, seed=seed,
                      split_hash=td_split_hash, device=device)


def oracle_run_id(task: Task, seed: int, device_type: str = "cpu") -> str:
    return make_run_id(task.identity(), task.version, ORACLE, REFERENCE_VERSION, {}, seed, device_type=device_type)


def run_method(spec: MethodSpec, run: RunSpec, td: TaskData, refs: References, oracle_forget: SplitLogits,
               device: torch.device, surrogate: Split | None = None, timings: dict[str, float] | None = None) -> list[dict]:
    """Execute one planned run and return its rows (status "ok", or one "failed" row).
    ``timings``: see :func:`evaluate`."""
    common = common_fields(run.task, spec.name, spec.version, run.hyperparameters, ",".join(spec.uses) or "none",
                           run.seed, run.run_id, td.split_hash, device)
    common["reference_key"] = refs.oracle.key
    common["surrogate"] = (run.task.surrogate or "") if "surrogate" in spec.uses else ""
    try:
        hp = run.hp
        data = method_view(td, spec.uses, model_factory(td), retain_fraction=hp.get("retain_fraction"), surrogate=surrogate)
        model = copy.deepcopy(refs.original.model).to(device)
        torch.manual_seed(seed_stream(run.seed, "method", spec.name))
        sync(device)
        start = time.perf_counter()
        result = spec.fn(model, data, device=device, **hp)
        sync(device)
        runtime = time.perf_counter() - start
        if not isinstance(result, nn.Module):
            raise TypeError(f"method {spec.name} returned {type(result).__name__}, not an nn.Module")
        values = evaluate(result, td, oracle_forget, device=device, runtime=runtime,
                          oracle_seconds=refs.oracle.train_seconds, timings=timings)
        common["model_hash"] = state_hash(result)
        return rows_for_run(common, [(k, v, n) for k, (v, n) in values.items()])
    except Exception as err:  # noqa: BLE001 - a failing method is recorded and the suite goes on
        return [failed_row(common, err)]


def oracle_rows(task: Task, td: TaskData, oracle: Reference, oracle_logits: dict[str, SplitLogits], device: torch.device) -> list[dict]:
    """The reference run ``oracle`` of (task, seed): its metrics, runtime = its training time."""
    run_id = oracle_run_id(task, td.seed, device.type)
    common = common_fields(task, ORACLE, REFERENCE_VERSION, "{}", "retain", td.seed, run_id, td.split_hash, device)
    common["reference_key"] = oracle.key
    common["model_hash"] = state_hash(oracle.model)
    values = metrics_of(oracle_logits, td, oracle_logits["forget"], runtime=oracle.train_seconds,
                        oracle_seconds=oracle.train_seconds)
    return rows_for_run(common, [(k, v, n) for k, (v, n) in values.items()])


@dataclass(frozen=True)
class GroupEstimate:
    """Estimated seconds of one (task, seed) group: its two references (0 when cached; the oracle's
    includes its own evaluation when its rows are to be written) and its method runs (method +
    evaluation), by run id."""

    original: float
    oracle: float
    runs: dict[str, float]


@dataclass(frozen=True)
class Throughput:
    """What the estimate knows of this machine for one task (:func:`probe_throughput`)."""

    train: float  # images/s of a training step at the recipe's batch size
    forward: float  # images/s of evaluation forward passes (predict_logits' batch size)
    attacks: float  # wall seconds of one evaluation's SVC attacks at the task's split sizes


def probe_throughput(td: TaskData, device: torch.device) -> Throughput:
    """Measure :class:`Throughput` for ``td``'s task: training steps on random images of the task's
    shape at the recipe's batch size, in channels-last as :func:`bench.train.train_epochs` trains;
    forward batches at :func:`bench.train.predict_logits`' batch size; each after one untimed
    warm-up step, repeated for half a second (2 to 20 steps); and
    :func:`bench.mia.efficacy_seconds` at the task's split sizes. About a second on the CPU."""
    from bench import mia

    def seconds_per_step(step: Any) -> float:
        step()
        sync(device)
        start, n = time.perf_counter(), 0
        while n < 2 or (n < 20 and time.perf_counter() - start < 0.5):
            step()
            sync(device)
            n += 1
        return max(time.perf_counter() - start, 1e-9) / n

    recipe = td.task.recipe
    model = model_factory(td)().to(device, memory_format=torch.channels_last).train()
    opt = make_optimizer(model.parameters(), optimizer=recipe.optimizer, lr=recipe.lr)
    x = torch.rand(recipe.batch_size, *td.dataset.image_shape, device=device)
    y = torch.randint(td.dataset.num_classes, (recipe.batch_size,), device=device)

    def train_step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    train = recipe.batch_size / seconds_per_step(train_step)
    n_eval = 1024 if device.type == "cuda" else 256
    xe = torch.rand(n_eval, *td.dataset.image_shape, device=device)
    model.to(memory_format=torch.contiguous_format).eval()
    with torch.no_grad():
        forward = n_eval / seconds_per_step(lambda: model(xe))
    n_shadow = min(len(td.retain), len(td.test), mia.MAX_SHADOW)
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    attacks = mia.efficacy_seconds(max(n_shadow, 1), len(td.forget), threads=threads)
    return Throughput(train=train, forward=forward, attacks=attacks)


#: Runtime / the oracle's training time of a run never stored anywhere (any other method: 0.25).
PRIOR_RATIOS = {"original": 0.0, "retrain": 1.0}


def estimate_group(td: TaskData, runs: Sequence[RunSpec], *, refs_cached: tuple[bool, bool], speed: Throughput,
                   ratios: dict[tuple[str, str, str], float], oracle_rows: bool = True,
                   setup_seconds: float = 0.0) -> GroupEstimate:
    """Seconds for a group.

    * reference training: epochs · |split| / ``speed.train`` (original: the train split; oracle: D_r);
    * evaluation of a model: one forward pass over every evaluated split / ``speed.forward`` plus
      the attacks (``speed.attacks``); the oracle's rows add one, and every group one more forward
      pass (the oracle's logits) and ``setup_seconds`` (data loading, measured by the caller);
    * a method: ``ratios[(task, method, hyperparameters)]`` (its runtime / the oracle's training
      time, from stored runs: :func:`runtime_ratios`) × the oracle's estimated training time;
      with no stored run, :data:`PRIOR_RATIOS` (``original`` 0, ``retrain`` 1) and a quarter of the
      oracle's time for any other method.
    """
    epochs = td.task.recipe.epochs
    original = 0.0 if refs_cached[0] else epochs * len(td.train) / speed.train
    oracle_train = epochs * len(td.retain) / speed.train
    images = len(td.forget) + len(td.retain) + len(td.test) + (len(td.forget_test) if td.forget_test is not None else 0)
    forward = images / speed.forward
    evaluation = forward + speed.attacks
    oracle = (0.0 if refs_cached[1] else oracle_train) + (evaluation if oracle_rows else 0.0) + forward + setup_seconds
    per_run = {}
    for r in runs:
        ratio = ratios.get((r.task.name, r.method, r.hyperparameters), PRIOR_RATIOS.get(r.method, 0.25))
        per_run[r.run_id] = ratio * oracle_train + evaluation
    return GroupEstimate(original=original, oracle=oracle, runs=per_run)


#: Results published with the source tree; their runtimes seed the estimate of runs never made here.
PUBLISHED_RESULTS = Path(__file__).resolve().parent.parent / "results"


def runtime_ratios(*results_dirs: Path) -> dict[tuple[str, str, str], float]:
    """Median of runtime_seconds / the oracle's training seconds (= 1 / ``speedup``, a ratio of two
    times on one machine, so it carries over to another) per (task, method, hyperparameters), over
    the completed runs of each directory in turn; an earlier directory's value wins. A directory
    that is missing, empty or unreadable contributes nothing (an unreadable one is reported)."""
    from bench.results import CorruptResults, read_store

    ratios: dict[tuple[str, str, str], float] = {}
    for results_dir in results_dirs:
        if not results_dir.is_dir() or not any(results_dir.rglob("*.parquet")):
            continue
        try:
            df = read_store(results_dir)
        except CorruptResults as err:
            print(f"estimate: not using the runtimes stored in {results_dir}: {err}", file=sys.stderr)
            continue
        df = df[(df["metric"] == "speedup") & (df["status"] == "ok")]
        ratio = (1.0 / df["value"]).groupby([df["task"], df["method"], df["hyperparameters"]]).median()
        for key, value in ratio.items():
            ratios.setdefault(key, float(value))
    return ratios


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
    executor: str = "local",
    jobs: int = 2,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    dry_run: bool = False,
) -> list[dict]:
    """Run task × method × seed, store the rows, regenerate the leaderboard; return the new rows.

    ``tasks`` and ``methods`` default to the ``suite`` (``"quick"``: the digits tasks) and to every
    registered method. Runs already in ``results`` are skipped unless ``force``. ``executor``:
    ``local`` (in this process), ``processes`` (``jobs`` workers) or ``ray`` (``address`` of a
    cluster, else a local Ray; each run asks for ``cpus_per_run`` / ``gpus_per_run``). ``dry_run``:
    print the plan and its estimate, then stop (nothing is trained, run or written).
    """
    from tqdm.auto import tqdm

    from bench.executors import Context, build_reference, execute_run, make_executor, reference_jobs_for

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
    data_root_str = str(data_root) if data_root else None

    plan = make_plan(task_list, method_list, seeds, hp, dev.type)
    for dataset in sorted({r.task.dataset for r in plan.runs}):
        load_dataset(dataset, data_root)  # missing data fails here, loudly, before any work
    for task_name, method_name, reason in plan.not_applicable:
        print(f"not applicable: {method_name} on {task_name}: {reason}", file=sys.stderr)
    stored = stored_runs(results_dir)
    todo = [r for r in plan.runs if force or stored.get(r.run_id) != "ok"]
    groups: dict[tuple[Task, int], list[RunSpec]] = {}
    for r in todo:
        groups.setdefault((r.task, r.seed), []).append(r)
    for r in plan.runs:  # a group whose runs are all stored may still lack its oracle row
        if stored.get(oracle_run_id(r.task, r.seed, dev.type)) != "ok":
            groups.setdefault((r.task, r.seed), [])

    # The graph: one job per reference key, then the runs that depend on them.
    ref_jobs: dict[str, Any] = {}
    ref_seconds: dict[str, float] = {}
    run_refs: dict[str, tuple[str, str]] = {}
    run_seconds: dict[str, float] = {}
    to_train: set[str] = set()  # keys of the references not in the cache
    if groups:
        ratios = runtime_ratios(results_dir, PUBLISHED_RESULTS)
        throughput: dict[str, Throughput] = {}
        for (task, seed), runs in groups.items():
            start = time.perf_counter()
            td = build_task_data(task, seed, data_root_str)
            setup = time.perf_counter() - start
            if task.name not in throughput:
                throughput[task.name] = probe_throughput(td, dev)
            write_oracle = force or stored.get(oracle_run_id(task, seed, dev.type)) != "ok"
            original_job, oracle_job = reference_jobs_for(td, dev, write_oracle)
            cached = tuple((cache_dir / f"{j.key}.safetensors").exists() for j in (original_job, oracle_job))
            to_train |= {j.key for j, c in zip((original_job, oracle_job), cached) if not c}
            est = estimate_group(td, runs, refs_cached=cached, speed=throughput[task.name], ratios=ratios,
                                 oracle_rows=write_oracle, setup_seconds=setup)
            ref_jobs.setdefault(original_job.key, original_job)
            ref_jobs[oracle_job.key] = oracle_job
            ref_seconds.setdefault(original_job.key, est.original)
            ref_seconds[oracle_job.key] = est.oracle
            for r in runs:
                run_refs[r.run_id] = (original_job.key, oracle_job.key)
                run_seconds[r.run_id] = est.runs[r.run_id]
    total = sum(ref_seconds.values()) + sum(run_seconds.values())
    n_train = len(to_train)
    print(f"plan: {len(plan.runs)} run(s), {len(plan.runs) - len(todo)} already stored, {len(todo)} to do"
          + (f"; {n_train} reference model(s) to train" if n_train else "")
          + (f"; estimated {format_seconds(total)} on {dev} ({executor}): references and set-up "
             f"{format_seconds(sum(ref_seconds.values()))}, runs {format_seconds(sum(run_seconds.values()))}"
             if groups else ""), file=sys.stderr)

    written: list[dict] = []
    if dry_run:
        return written
    if groups:
        ctx = Context(str(dev), str(cache_dir), data_root_str, ship_weights=executor == "ray")
        pool = make_executor(executor, jobs=jobs, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
        bar = tqdm(total=total, disable=not progress, dynamic_ncols=True, file=sys.stderr,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} est-s [{elapsed}<{remaining}] {postfix}")
        try:
            written = schedule(pool, ctx, ref_jobs, todo, run_refs, ref_seconds, run_seconds, results_dir, force, bar,
                               build_reference, execute_run)
        except KeyboardInterrupt:
            pool.shutdown(cancel=True)
            raise
        finally:
            bar.close()
        pool.shutdown()
    if leaderboard is not None:
        from bench.report import write_report
        from bench.results import read_store

        write_report(read_store(results_dir), leaderboard)
    return written


LOST_WORKER_ERRORS = ("BrokenProcessPool", "WorkerCrashedError", "NodeDiedError", "ActorDiedError")


def schedule(pool: Any, ctx: Any, ref_jobs: dict[str, Any], todo: Sequence[RunSpec], run_refs: dict[str, tuple[str, str]],
             ref_seconds: dict[str, float], run_seconds: dict[str, float], results_dir: Path, force: bool, bar: Any,
             build_reference: Any, execute_run: Any) -> list[dict]:
    """Drive the graph on ``pool``: references first, each run once both of its references are
    done (under Ray, runs are handed over at once with their references as dependencies); the
    driver writes every returned row. The bar advances by each finished job's *estimated* seconds,
    so its fraction is the share of the estimated work done and its time left is honest."""
    written: list[dict] = []
    ref_handles = {key: pool.submit(build_reference, (job, ctx)) for key, job in ref_jobs.items()}
    handles: dict[Any, tuple[str, Any]] = {h: ("ref", key) for key, h in ref_handles.items()}
    ref_done: dict[str, BaseException | None] = {}
    waiting = list(todo)
    counts = {"done": 0, "failed": 0, "lost": 0}

    def status() -> None:
        running = min(pool.slots, sum(1 for kind, _ in handles.values() if kind == "run"))
        left = len(todo) - counts["done"] - counts["failed"] - counts["lost"]
        bar.set_postfix_str(f"done {counts['done']} · running {running} · failed {counts['failed']} · left {left - running}")

    def record(run: RunSpec, rows: list[dict]) -> None:
        nonlocal written
        written += write_rows(rows, results_dir, force)
        ok = rows[0]["status"] == "ok"
        counts["done" if ok else "failed"] += 1
        if not ok:
            bar.write(f"failed: {run.task.name} {run.method} seed {run.seed}: {rows[0]['error'].splitlines()[0]}")

    while waiting or handles:
        still_waiting = []
        for run in waiting:
            keys = run_refs[run.run_id]
            errors = [ref_done[k] for k in keys if k in ref_done and ref_done[k] is not None]
            if errors:
                spec = get_method(run.method)
                common = common_fields(run.task, run.method, run.method_version, run.hyperparameters,
                                       ",".join(spec.uses) or "none", run.seed, run.run_id, "", torch.device(ctx.device))
                record(run, [failed_row(common, errors[0])])
                bar.update(run_seconds[run.run_id])
            elif pool.name == "ray" or all(k in ref_done for k in keys):
                handle = pool.submit(execute_run, (run, ctx), [ref_handles[k] for k in keys])
                handles[handle] = ("run", run)
            else:
                still_waiting.append(run)
        waiting = still_waiting
        status()
        if not handles:
            continue
        for handle in pool.wait(list(handles)):
            kind, item = handles.pop(handle)
            try:
                value = pool.result(handle)
            except Exception as err:  # noqa: BLE001 - classified below
                if type(err).__name__ in LOST_WORKER_ERRORS:
                    if kind == "ref":
                        ref_done[item] = err
                    else:
                        counts["lost"] += 1
                    if pool.name == "processes":
                        raise RuntimeError(f"a worker process died ({type(err).__name__}: {err}); completed runs are "
                                           "stored — run the same `bench run` again to do what is missing") from err
                    bar.write(f"lost worker: {item if kind == 'ref' else item.run_id}: {err}")
                    continue
                if kind == "ref":
                    ref_done[item] = err
                    bar.write(f"error: reference {item} failed: {err}")
                    bar.update(ref_seconds[item])
                else:
                    spec = get_method(item.method)
                    common = common_fields(item.task, item.method, item.method_version, item.hyperparameters,
                                           ",".join(spec.uses) or "none", item.seed, item.run_id, "", torch.device(ctx.device))
                    record(item, [failed_row(common, err)])
                    bar.update(run_seconds[item.run_id])
                continue
            if kind == "ref":
                ref_done[item] = None
                if value.rows:
                    written += write_rows(list(value.rows), results_dir, True)
                bar.update(ref_seconds[item])
            else:
                record(item, value)
                bar.update(run_seconds[item.run_id])
            status()
    if counts["lost"]:
        raise RuntimeError(f"{counts['lost']} run(s) were lost with their workers; completed runs are stored — "
                           "run the same `bench run` again to do what is missing")
    return written


def write_rows(rows: list[dict], results_dir: Path, force: bool) -> list[dict]:
    write_run(rows, results_dir, force=force or rows[0]["status"] != "ok")
    return rows
