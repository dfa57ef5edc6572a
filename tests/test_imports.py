"""The house: imports run one way, and the lightweight entry points stay light.

Every ``import`` statement of the package (module level and inside functions alike) is read from
the source with :mod:`ast`. A module may import one of a strictly lower layer, or one of its own
layer as long as no cycle forms; an upward import or a cycle fails, naming the pair. The layers,
lowest first, are those of DESIGN.md:

    env, lookup, files < tasks, registry, results, datasets < data, forgetsets, splits, leakage, models, train
        < references, metrics, mia, residue, crossseed, examples, group, claims, methods, memorisation < report < run
        < compare < check, perf < cli < bench

``bench.registry`` loads the bundled methods by importing the ``bench.methods`` package (a plugin
mechanism): that one edge is the only import allowed to point upward.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"bench": ROOT / "bench", "bench.methods": ROOT / "methods", "bench.datasets": ROOT / "datasets"}

LAYERS: tuple[tuple[str, ...], ...] = (
    ("bench.env", "bench.lookup", "bench.files"),
    ("bench.tasks", "bench.registry", "bench.results", "bench.datasets"),
    ("bench.data", "bench.forgetsets", "bench.splits", "bench.leakage", "bench.models", "bench.train"),
    ("bench.references", "bench.metrics", "bench.mia", "bench.svc", "bench.residue", "bench.crossseed", "bench.examples", "bench.group",
     "bench.claims", "bench.methods", "bench.memorisation"),
    ("bench.report",),
    ("bench.run",),
    ("bench.compare",),
    ("bench.check", "bench.perf"),
    ("bench.cli",),
    ("bench",),
)
#: The plugin loader: the registry imports the (import-free) ``bench.methods`` package to find methods.
ALLOWED_UPWARD = {("bench.registry", "bench.methods")}


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def layer_of(module: str) -> int:
    """The layer of the longest layer prefix of ``module`` (``bench.run.plan`` → ``bench.run``)."""
    best, rank = "", -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or (name != "bench" and module.startswith(name + "."))) and len(name) > len(best):
                best, rank = name, i
    if rank < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return rank


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports (resolved to the longest known prefix)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_no_module_imports_a_higher_layer():
    wrong = sorted(
        f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, targets in graph().items() for b in targets
        if layer_of(b) > layer_of(a) and (a, b) not in ALLOWED_UPWARD
    )
    assert not wrong, "upward imports:\n  " + "\n  ".join(wrong)


def test_no_import_cycles():
    edges = {a: {b for b in targets if (a, b) not in ALLOWED_UPWARD} for a, targets in graph().items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_the_layer_test_catches_an_upward_import_and_a_cycle(tmp_path: Path):
    upward = {"bench.env": {"bench.cli"}, "bench.cli": set()}
    assert [(a, b) for a, t in upward.items() for b in t if layer_of(b) > layer_of(a)] == [("bench.env", "bench.cli")]
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from bench.report import x\nfrom . import sibling\n")
    known = {"bench.data": src, "bench.report": src, "bench.sibling": src}
    assert imports("bench.data", src, known) == {"bench.report", "bench.sibling"}


@pytest.mark.parametrize("module", ["bench.registry", "bench.tasks"])
def test_light_modules_do_not_pull_in_the_runner(module: str):
    code = f"import sys, {module}; heavy = [m for m in ('bench.run', 'bench.report', 'bench.perf', 'sklearn', 'matplotlib') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"import {module} also imported {out}"
