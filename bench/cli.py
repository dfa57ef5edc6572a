"""The ``bench`` command: run, ls, audit, report, signal, memorisation, check, perf. One module of ~380 lines (over the ~300 guideline; its commands are due modules of their own): the
parser, the argument types that refuse a user's mistake before any work, and the commands they feed."""
from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path
from typing import Sequence

from bench.files import USER_LEADERBOARD, USER_RESULTS
from bench.lookup import UnknownName


def parse_hp(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--hp expects name=value, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def split_names(text: str | None, what: str) -> list[str] | None:
    """``"a,b"`` → ``["a", "b"]``; ``None`` (not given) → ``None``, the default. An empty name
    (``""``, ``","``, ``"a,,b"``) is an error: dropping it silently ran the whole default suite."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise ValueError(f"empty {what} name in {text!r}: give one or more names separated by commas")
    return names


def positive_int(text: str) -> int:
    """argparse type of a count that must be ≥ 1 (``--threads 0`` was ignored silently)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type of an amount that must be a finite number ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def stray_run_arguments(args: argparse.Namespace, extra: list[str]) -> str | None:
    """Why ``bench run TASK m1 m2`` is refused, naming the fix (argparse said only "unrecognized
    arguments"); ``None`` when ``extra`` is not stray names of ``bench run``."""
    stray = [e for e in extra if not e.startswith("-")]
    if args.command != "run" or not stray or len(stray) != len(extra):
        return None
    got = ", ".join(repr(e) for e in stray)
    return (f"bench run takes one task argument and one method argument, got also {got}; separate several names "
            f"with commas, no spaces: bench run {args.task or 'TASK'} {','.join([args.method or 'METHOD', *stray])}")


def cmd_run(args: argparse.Namespace) -> int:
    from bench.run.driver import run

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    task, method = args.task, args.method
    if args.suite and task and not method:  # `bench run --suite fmnist finetune`: the one name is a method
        task, method = None, task
    start = time.perf_counter()
    rows = run(
        split_names(task, "task"), split_names(method, "method"), args.seeds, suite=args.suite,
        hp=parse_hp(args.hp), device=args.device, results=args.results, leaderboard=args.out,
        cache=args.cache, data_root=args.data_root, force=args.force, progress=not args.no_progress,
        executor=args.executor, jobs=args.jobs, address=args.address, cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run, dry_run=args.dry_run, timeout=args.timeout,
    )
    if args.dry_run:
        return 0
    runs = {r["run_id"]: r["status"] for r in rows}
    failed = sum(1 for s in runs.values() if s != "ok")
    print(f"{len(runs)} run(s) computed ({failed} failed) in {time.perf_counter() - start:.1f} s")
    print(f"results:     {Path(args.results).resolve()}")
    print(f"leaderboard: {(Path(args.out) / 'index.md').resolve()}")
    return 1 if failed else 0


def cmd_ls(args: argparse.Namespace) -> int:
    if args.what == "tasks":
        from bench.tasks import SUITES, TASKS

        for name, t in TASKS.items():
            print(f"{name}  (v{t.version})\n    {t.description}")
            print(f"    dataset={t.dataset} arch={t.arch} forget={t.forget.describe()} "
                  f"ranking={t.primary_metric} surrogate={t.surrogate or '-'}")
        print("suites: " + "; ".join(f"{k} = {', '.join(v)}" for k, v in SUITES.items()))
    elif args.what == "methods":
        from bench.registry import METHODS, load_methods

        load_methods()
        for name, m in METHODS.items():
            hps = ", ".join(f"{k}={v!r}" for k, v in m.defaults.items()) or "(none)"
            print(f"{name}  (v{m.version})\n    {m.description}")
            print(f"    data: {', '.join(m.uses) or 'none'}; applies to: {', '.join(m.applies_to)}")
            print(textwrap.fill(f"hyperparameters: {hps}", width=100, initial_indent="    ", subsequent_indent="      "))
            for task, values in m.tuned.items():
                print(f"    tuned for {task}: {values}")
            print(f"    paper: {m.paper}")
    else:
        from bench.metrics import COMPOSITES, METRICS

        for name, metric in METRICS.items():
            print(f"{name:<22} goal={metric.goal:<7} {metric.description}")
        for name, comp in COMPOSITES.items():
            print(f"{name:<22} goal={comp.goal:<7} {comp.description} (derived by the reporter)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from bench.leakage import format_audit
    from bench.splits import build_task_data
    from bench.tasks import get_task

    task = get_task(args.task)
    for seed in args.seeds:
        print(format_audit(build_task_data(task, seed, args.data_root).audit))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.examples import store_examples
    from bench.report import write_report
    from bench.results import read_store

    if args.check:  # regenerate in memory, compare with the files on disk, write nothing
        from bench.report import format_leaderboard_diff, leaderboard_diff

        diffs = leaderboard_diff(read_store(args.results), args.out, examples=store_examples(args.results))
        print(format_leaderboard_diff(diffs, args.results, args.out), file=sys.stderr if diffs else sys.stdout)
        return 1 if diffs else 0
    paths = write_report(read_store(args.results), args.out, examples=store_examples(args.results))
    print(f"wrote {len(paths)} file(s); index: {(Path(args.out) / 'index.md').resolve()}")
    return 0


def cmd_signal(args: argparse.Namespace) -> int:
    """`bench signal`: original vs oracle and oracle vs oracle per metric (see bench/report/separates.py)."""
    from bench.examples import store_examples
    from bench.report.separates import signal_report
    from bench.results import read_store

    print(signal_report(read_store(args.results), args.task, args.seeds, results=str(args.results),
                        examples_of=store_examples(args.results)), end="")
    return 0


def cmd_memorisation(args: argparse.Namespace) -> int:
    """`bench memorisation`: memorisation scores and the two stratified forget sets (see bench/memorisation.py)."""
    import torch

    from bench.memorisation import make_forget_sets

    torch.set_num_threads(args.threads)
    paths = make_forget_sets(args.task, models=args.models, size=args.size, name=args.name, device=args.device,
                             data_root=args.data_root, folder=Path(args.out) if args.out else None,
                             progress=lambda msg: print(f"bench memorisation: {msg}", file=sys.stderr))
    print("\n".join(f"wrote {p}" for p in paths))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """`bench check`: re-run a suite and compare every metric with a baseline (see bench/check.py)."""
    from bench.check import check, parse_tolerances

    result = check(
        args.baseline, split_names(args.tasks, "task"), split_names(args.methods, "method"), args.seeds,
        tolerances=parse_tolerances(args.tolerance), hp=parse_hp(args.hp), results=args.results,
        cache=args.cache, data_root=args.data_root, device=args.device, suite=args.suite,
        executor=args.executor, jobs=args.jobs, threads=args.threads,
    )
    print(result.format(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def cmd_perf(args: argparse.Namespace) -> int:
    """`bench perf`: the harness against the machine's limit and the reference pipelines (see bench/perf/)."""
    from bench.perf import run_perf
    from bench.perf.crossseed import CrossSeedSize, parse_size
    from bench.perf.table import format_table, output_path, write_table

    rerun = None if args.rerun == "none" else args.rerun
    crossseed = (CrossSeedSize() if args.crossseed is None else None if args.crossseed == "none"
                 else parse_size(args.crossseed))  # a bad size: ValueError, printed by main as `bench: error:`
    df = run_perf(
        [] if args.task == ["none"] else args.task, crossseed=crossseed, device=args.device, threads=args.threads,
        workers=args.workers, steps=args.steps, repeats=args.repeats, method=args.method, rerun=rerun, rerun_methods=split_names(args.rerun_methods, "method"),
        rerun_seeds=args.rerun_seeds, results=args.results, cache=args.cache, data_root=args.data_root,
        progress=lambda msg: print(f"bench perf: {msg}", file=sys.stderr),
    )
    print(format_table(df))
    path = write_table(df, output_path(args.out, args.results, str(df["timestamp"].iloc[0])))
    print(f"perf table: {path.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="unlearnbench: machine-unlearning benchmark")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run task × method × seed and store the results",
                       description="With no arguments: the default suite (digits), every registered method, seeds 0 1 2.")
    p.add_argument("task", nargs="?", help="task name, or several separated by commas (default: the suite); "
                   "with --suite, a single name is taken as the method")
    p.add_argument("method", nargs="?", help="method name, or several separated by commas (default: all registered)")
    p.add_argument("--suite", default=None, help="named suite of tasks (default: quick)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hp", nargs="*", default=[], metavar="NAME=VALUE", help="hyperparameter overrides")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--results", default=USER_RESULTS, help=f"results directory (default ./{USER_RESULTS}, your own; "
                   "the published store of a checkout is results/)")
    p.add_argument("--out", default=USER_LEADERBOARD, help=f"leaderboard directory (default ./{USER_LEADERBOARD}; "
                   "the published one is leaderboard/)")
    p.add_argument("--cache", default=None, help="reference-model cache (default $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench)")
    p.add_argument("--data-root", default=None, help="where dataset files live")
    p.add_argument("--force", action="store_true", help="redo runs that are already stored")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its time estimate; run and write nothing")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for this process (default: torch's default); recorded in each row's device")
    p.add_argument("--executor", choices=["local", "processes", "ray"], default="local",
                   help="local: in this process (default); processes: a local pool of --jobs workers; "
                        "ray: Ray tasks on --address (or a local Ray)")
    p.add_argument("--jobs", type=positive_int, default=2, help="workers of --executor processes (default 2)")
    p.add_argument("--address", default=None, help="Ray cluster address for --executor ray (default: start a local Ray)")
    p.add_argument("--cpus-per-run", type=non_negative_float, default=1.0, help="CPUs each Ray task asks for (default 1)")
    p.add_argument("--gpus-per-run", type=non_negative_float, default=0.0, help="GPUs each Ray task asks for (default 0)")
    p.add_argument("--timeout", type=non_negative_float, default=None, metavar="SECONDS",
                   help="stop a method run after SECONDS and store it as failed (default: 10 × its estimated time, "
                        "at least 300 s; 0: no limit, the local executor then runs methods in this process). A "
                        "limited run executes in a worker process, so a method that hangs, exits or kills its "
                        "process fails alone and the sweep goes on (not enforced on --executor ray)")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("ls", help="list tasks, methods or metrics")
    p.add_argument("what", choices=["tasks", "methods", "metrics"])
    p.set_defaults(fn=cmd_ls)

    p = sub.add_parser("audit", help="leakage audit of a face task's splits (people and duplicate images)")
    p.add_argument("task")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--data-root", default=None)
    p.set_defaults(fn=cmd_audit)

    p = sub.add_parser("report", help="write the leaderboard markdown from the results store")
    p.add_argument("--results", default=USER_RESULTS, help=f"results directory (default ./{USER_RESULTS}; publish "
                   "with --results results --out leaderboard)")
    p.add_argument("--out", default=USER_LEADERBOARD, help=f"leaderboard directory (default ./{USER_LEADERBOARD})")
    p.add_argument("--check", action="store_true", help="write nothing: regenerate in memory and exit 1 with a diff "
                   "when --out is stale, edited by hand, or lacks or has extra generated files")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("signal", help="does a task separate the original from the oracle? per metric, with CIs",
                       description="Per forgetting metric of TASK: the original's and the oracle's means, original − "
                       "oracle and oracle − oracle (split halves of the oracle's seeds) with 95%% intervals, the paired "
                       "p, and whether the task separates them; then the cross-seed attack's floor, signal and control. "
                       "The table of the task's leaderboard page, from the stored runs; nothing is trained.")
    p.add_argument("task")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="model seeds to compare (default: every seed with both the original's and the oracle's runs)")
    p.add_argument("--results", default=USER_RESULTS, help=f"results directory (default ./{USER_RESULTS}; the "
                   "published store is results/)")
    p.set_defaults(fn=cmd_signal)

    p = sub.add_parser("memorisation", help="memorisation scores of a task's training pool and its high/low forget sets",
                       description="Train --models models of TASK's recipe, each on a random half of its training pool, "
                       "score every image by Feldman & Zhang's estimator (correct when trained on it minus when not), and "
                       "write NAME.scores.json, NAME-high.json (the --size most memorised) and NAME-low.json (--size never "
                       "needing memory) to --out. Never overwrites a file.")
    p.add_argument("task")
    p.add_argument("--models", type=positive_int, default=32, help="models trained on random halves (default 32)")
    p.add_argument("--size", type=positive_int, required=True, help="images in each forget set")
    p.add_argument("--name", required=True, help="file stem of the forget sets (e.g. fmnist-mem10k)")
    p.add_argument("--out", default=None, help="folder (default: the package's datasets/forgetsets, which ships them)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--data-root", default=None, help="where dataset files live")
    p.set_defaults(fn=cmd_memorisation)

    p = sub.add_parser("check", help="re-run a suite and compare every metric with a baseline (regression check)",
                       description="Re-runs the digits suite (or --tasks/--methods/--seeds) into a temporary results "
                       "folder and compares every metric with the baseline per task, method and seed: exact by "
                       "default (CPU runs are deterministic), --tolerance METRIC=ABS to loosen one; runtime_seconds "
                       "and speedup are timings and never compared. Exits 1 listing what moved, by how much, and the "
                       "likely cause (versions, hyperparameters).")
    p.add_argument("--baseline", required=True, help="results directory (e.g. results/) or a .parquet file of result rows")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: the --suite)")
    p.add_argument("--methods", default=None, help="comma-separated method names (default: every registered method)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--suite", default="quick", help="suite re-run when --tasks is not given (default quick: digits)")
    p.add_argument("--tolerance", nargs="*", default=[], metavar="METRIC=ABS",
                   help="absolute tolerance of a metric (default: exact for every metric)")
    p.add_argument("--hp", nargs="*", default=[], metavar="NAME=VALUE", help="hyperparameter overrides for the re-run")
    p.add_argument("--results", default=None, help="where the re-run's results go (default: a temporary folder)")
    p.add_argument("--cache", default=None, help="reference-model cache (default $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench)")
    p.add_argument("--data-root", default=None, help="where dataset files live")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu; the published baseline is CPU)")
    p.add_argument("--executor", choices=["local", "processes"], default="local",
                   help="as in `bench run`; processes gives each worker cores/--jobs CPU threads, which must match "
                        "the baseline's for exact numbers")
    p.add_argument("--jobs", type=positive_int, default=2, help="workers of --executor processes (default 2)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads of a local re-run (default: the baseline's, from its rows' device)")
    p.set_defaults(fn=cmd_check)

    p = sub.add_parser("perf", help="measure the harness against the machine's limit and the reference pipelines",
                       description="Throughput of model-only training (the limit), of the harness's training and "
                       "evaluation, and of a torchvision Dataset+DataLoader pipeline; the overhead share and peak memory "
                       "of one method run; the wall time of a fully cached re-run. Prints a table and writes it as "
                       f"Parquet (default: perf/ beside the results directory, ./{Path(USER_RESULTS).parent}/perf).")
    p.add_argument("--task", nargs="+", default=["digits-cnn-class", "fmnist-lenet-class"],
                   help="task name(s), or none (with --rerun none: only the cross-seed measure)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu); AMP on CUDA where the task's recipe allows")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--workers", type=positive_int, default=None, help="DataLoader workers of the reference pipeline, besides 0 "
                   "(default: the CPU count)")
    p.add_argument("--steps", type=positive_int, default=None, help="training steps per measure (default: one epoch of the task)")
    p.add_argument("--repeats", type=positive_int, default=3, help="interleaved repetitions; the fastest is kept (default 3)")
    p.add_argument("--method", default="finetune", help="the method whose run's overhead share is measured")
    p.add_argument("--rerun", default="quick", help="suite or comma-separated tasks for the cached re-run, or none")
    p.add_argument("--rerun-methods", default=None, help="methods of the cached re-run, comma-separated (default: those "
                   "stored completely in --results, else original,finetune)")
    p.add_argument("--rerun-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--crossseed", default=None, help="EXAMPLESxSEEDS of the cross-seed metrics' timing on synthetic φ "
                   "(default: issue 20's 6000x16, goal 5 s for all; eps_quality and klom_p95 at their smallest valid "
                   "seed count), or none")
    p.add_argument("--results", default=USER_RESULTS, help=f"results directory (default ./{USER_RESULTS}; read only: "
                   "copied for the re-run)")
    p.add_argument("--cache", default=None, help="reference-model cache (default $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench)")
    p.add_argument("--data-root", default=None, help="where dataset files live")
    p.add_argument("--out", default=None, help="a .parquet file, or a folder for perf-<time>.parquet "
                   "(default: perf/ beside --results)")
    p.set_defaults(fn=cmd_perf)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        message = stray_run_arguments(args, extra)
        if message is None:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        print(f"bench: error: {message}", file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except (UnknownName, ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; completed runs are stored, re-run to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
