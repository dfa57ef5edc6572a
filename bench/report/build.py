"""The whole leaderboard: render it (relative file name → text), write it into a folder
atomically, and ``bench report --check`` it (regenerate in memory, compare file by file with the
disk; any difference — a stale page, a hand edit, a missing or a left-over generated file — is
reported as a unified diff). The output is a deterministic function of the rows: they are put in
a canonical order first, floats have a fixed format, plot bytes do not depend on float noise, and
the only date shown is the latest row timestamp.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from bench.claims import Claim, claims_for
from bench.files import atomic_write_text
from bench.report.crossseed import ExamplesOf, attack_gate, crossseed_section
from bench.report.index import render_index
from bench.report.pages import GENERATED_HEADER, page_name, render_task
from bench.report.plots import PLOT_KINDS, PLOTS_DIR, plot_files, plot_name
from bench.report.select import check_rows, select_task_rows
from bench.report.signal import task_signal
from bench.report.stats import per_seed_table, summarize

#: Lines of unified diff shown per file before the rest is counted.
DIFF_LINES = {"md": 120, "svg": 20}


def render_report(df: pd.DataFrame, *, claims: Sequence[Claim] | None = None, plots: bool = True,
                  examples: ExamplesOf | None = None) -> dict[str, str]:
    """The leaderboard: relative file name → content. ``index.md``, one ``<task>.md`` per task,
    and with ``plots`` the SVGs ``plots/<task>-tradeoff.svg`` and ``plots/<task>-runtime.svg``
    (text; same rows → same bytes). ``claims``: published numbers to show beside ours (default
    :data:`bench.claims.CLAIMS`). ``examples``: the store's per-example values by task
    (``functools.partial(bench.examples.read_examples, results_dir)``), for the cross-seed
    attacks; without it the pages have none."""
    rows = check_rows(df)
    tasks = sorted(set(rows["task"]))
    selections = [select_task_rows(rows, t) for t in tasks]
    signals = [replace(task_signal(s.ok), attack=attack_gate(s, examples)) for s in selections]
    tables = [summarize(s, g) for s, g in zip(selections, signals)]
    out = {"index.md": render_index(selections, tables, signals)}
    figures: dict[str, str] = {}
    for selected, table, signal in zip(selections, tables, signals):
        name = page_name(selected.task)
        values = per_seed_table(selected.ok, signal)[0] if not selected.ok.empty else None
        made = plot_files(selected, table, values) if plots else {}
        figures.update({path: svg for path, (svg, _, _) in made.items()})
        links = [(path, alt, caption) for path, (_, alt, caption) in made.items()]
        out[name] = render_task(selected, table, values, claims=claims_for(selected.task, claims), plots=links,
                                signal=signal, crossseed=crossseed_section(selected, examples))
    out.update(figures)
    return out


def is_generated(path: Path) -> bool:
    """Whether ``path`` is a leaderboard file ``bench report`` wrote: a file whose first line (a
    page) or second line (a plot, after its XML declaration) is :data:`GENERATED_HEADER`."""
    if not path.is_file():
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = [handle.readline() for _ in range(2 if path.suffix == ".svg" else 1)]
    return lines[-1].rstrip("\r\n") == GENERATED_HEADER


def generated_files(out_dir: str | Path) -> list[str]:
    """The generated files in ``out_dir`` (relative names, sorted): top-level ``*.md`` and
    ``plots/*.svg`` that carry the marker (:func:`is_generated`). Other files are not ours: never
    replaced or removed, nested folders under ``plots/`` not looked into."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    candidates = [*out.glob("*.md"), *(out / PLOTS_DIR).glob("*.svg")]
    return sorted(p.relative_to(out).as_posix() for p in candidates if is_generated(p))


def report_names(tasks: Iterable[str]) -> list[str]:
    """Every file a leaderboard of ``tasks`` may write: ``index.md``, the task pages, their plots."""
    return ["index.md", *(name for task in sorted(set(tasks))
                          for name in (page_name(task), *(plot_name(task, kind) for kind, _ in PLOT_KINDS)))]


def refuse_foreign_files(out_dir: str | Path, names: Iterable[str]) -> None:
    """Raise FileExistsError naming those of ``names`` that exist in ``out_dir`` without the
    generated-file marker: a report never overwrites a file it did not write."""
    out = Path(out_dir)
    foreign = [out / name for name in names if os.path.lexists(out / name) and not is_generated(out / name)]
    if foreign:
        raise FileExistsError(
            f"{', '.join(str(p) for p in foreign)}: not written by `bench report` (no line {GENERATED_HEADER}), so "
            f"the leaderboard does not replace {'it' if len(foreign) == 1 else 'them'}; nothing was written to {out}. "
            f"Remove {'it' if len(foreign) == 1 else 'them'} or choose another --out")


def write_report(df: pd.DataFrame, out_dir: str | Path, *, claims: Sequence[Claim] | None = None,
                 plots: bool = True, examples: ExamplesOf | None = None) -> list[Path]:
    """Write :func:`render_report` into ``out_dir`` (created if missing), each file atomically
    (:func:`bench.files.atomic_write`), and delete the generated files of an earlier report that
    this one no longer produces (:func:`generated_files`: a task that left the store, a plot no
    longer drawn). A file in the way that is not generated is an error before anything is written
    (:func:`refuse_foreign_files`); other files in ``out_dir`` are left alone. Returns the
    written paths, ``index.md`` first."""
    out = Path(out_dir)
    rendered = render_report(df, claims=claims, plots=plots, examples=examples)
    refuse_foreign_files(out, rendered)
    try:
        written = [atomic_write_text(out / name, text) for name, text in rendered.items()]
    except OSError as err:  # a full disk: each file is whole, old or new; the results are untouched
        raise RuntimeError(
            f"cannot write the leaderboard in {out}: {err.strerror or err}; the results store is unchanged and every "
            "page there is whole (an old or a new version). Free space there or choose another --out, then run "
            "`bench report` with the same --results") from err
    for name in generated_files(out):
        if name not in rendered:
            (out / name).unlink()
    return written


@dataclass(frozen=True)
class FileDiff:
    """One generated file that differs between the regenerated leaderboard and the disk."""

    name: str
    kind: str  # "missing" (not on disk), "extra" (on disk, not generated), "differs"
    diff: str = ""  # unified diff (on disk → regenerated), possibly shortened


def leaderboard_diff(df: pd.DataFrame, out_dir: str | Path, *, claims: Sequence[Claim] | None = None,
                     plots: bool = True, examples: ExamplesOf | None = None) -> list[FileDiff]:
    """Compare :func:`render_report` of ``df`` with the generated files in ``out_dir``
    (:func:`generated_files`); empty when the leaderboard is fresh."""
    out = Path(out_dir)
    rendered = render_report(df, claims=claims, plots=plots, examples=examples)
    on_disk = set(generated_files(out))
    diffs = []
    for name in sorted(set(rendered) | on_disk):
        if name not in on_disk:
            diffs.append(FileDiff(name, "missing"))
            continue
        if name not in rendered:
            diffs.append(FileDiff(name, "extra"))
            continue
        raw = (out / name).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            diffs.append(FileDiff(name, "differs", "  (the file on disk is not UTF-8 text)"))
            continue
        if text != rendered[name]:
            diffs.append(FileDiff(name, "differs", unified(text, rendered[name], f"{out / name}")))
    return diffs


def unified(old: str, new: str, path: str) -> str:
    """A unified diff (3 lines of context) of ``old`` (disk) → ``new`` (regenerated), shortened
    to :data:`DIFF_LINES` lines for the file's kind; line-ending differences are spelled out."""
    lines = list(difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"{path} (on disk)", tofile=f"{path} (regenerated from the results)",
    ))
    if not lines:  # only line endings or a missing final newline differ
        return "  (only line endings differ: the generated files use \\n line endings)"
    lines = [ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n" for ln in lines]
    lines = [ln.replace("\r", "\\r") for ln in lines]
    limit = DIFF_LINES["svg" if path.endswith(".svg") else "md"]
    shown = "".join(lines[:limit])
    if len(lines) > limit:
        shown += f"... ({len(lines) - limit} more diff lines)\n"
    return shown.rstrip("\n")


def format_leaderboard_diff(diffs: Sequence[FileDiff], results: str | Path, out: str | Path) -> str:
    """The message of a failed ``bench report --check``: what differs, the diffs, what to do."""
    if not diffs:
        return f"leaderboard {out} is up to date with {results}"
    lines = [f"leaderboard {out} is not what `bench report` generates from {results}: "
             f"{len(diffs)} file(s) differ (stale, or edited by hand)"]
    for d in diffs:
        if d.kind == "missing":
            lines.append(f"- missing: {d.name} (generated from the results, not on disk)")
        elif d.kind == "extra":
            lines.append(f"- extra: {d.name} (a generated file on disk that the results no longer produce)")
        else:
            lines.append(f"- differs: {d.name}")
    for d in diffs:
        if d.diff:
            lines += ["", d.diff]
    if any(d.name.endswith(".svg") for d in diffs) and all(d.name.endswith(".svg") for d in diffs if d.kind == "differs"):
        import matplotlib

        lines += ["", f"Only plots differ: the plots are regenerated with matplotlib {matplotlib.__version__}; a "
                  "different matplotlib version draws different bytes."]
    lines += ["", f"Regenerate it with `bench report --results {results} --out {out}` and commit {out}/ "
              "(never edit generated files by hand)."]
    return "\n".join(lines)
