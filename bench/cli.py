"""The ``bench`` command: run, ls, report."""
from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path
from typing import Sequence

from bench.registry import UnknownName


def parse_hp(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--hp expects name=value, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def split_names(text: str | None) -> list[str] | None:
    return [t for t in text.split(",") if t] if text else None


def cmd_run(args: argparse.Namespace) -> int:
    from bench.runner import run

    task, method = args.task, args.method
    if args.suite and task and not method:  # `bench run --suite fmnist finetune`: the one name is a method
        task, method = None, task
    start = time.perf_counter()
    rows = run(
        split_names(task), split_names(method), args.seeds, suite=args.suite,
        hp=parse_hp(args.hp), device=args.device, results=args.results, leaderboard=args.out,
        cache=args.cache, data_root=args.data_root, force=args.force, progress=not args.no_progress,
    )
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


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report
    from bench.results import read_store

    paths = write_report(read_store(args.results), args.out)
    print(f"wrote {len(paths)} file(s); index: {(Path(args.out) / 'index.md').resolve()}")
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
    p.add_argument("--results", default="results", help="results directory (default ./results)")
    p.add_argument("--out", default="leaderboard", help="leaderboard directory (default ./leaderboard)")
    p.add_argument("--cache", default=None, help="reference-model cache (default $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench)")
    p.add_argument("--data-root", default=None, help="where dataset files live")
    p.add_argument("--force", action="store_true", help="redo runs that are already stored")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("ls", help="list tasks, methods or metrics")
    p.add_argument("what", choices=["tasks", "methods", "metrics"])
    p.set_defaults(fn=cmd_ls)

    p = sub.add_parser("report", help="write the leaderboard markdown from the results store")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="leaderboard")
    p.set_defaults(fn=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
