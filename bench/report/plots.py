"""The two SVG plots of a task page (matplotlib, deterministic bytes): forgetting against utility
(the gap to the oracle on forget accuracy, on MIA-efficacy for random and identity forgetting,
against test accuracy, with a panel zoomed on the entries crowding the oracle), and each method's
runtime against the oracle's training time (log axis).
"""
from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd

from bench.report.cells import rank_of
from bench.report.pages import GENERATED_HEADER
from bench.report.select import TaskRows
from bench.results import ORACLE, ORIGINAL
from bench.tasks import TASKS

#: Sub-folder of the leaderboard that holds the generated plots (those of its ``*.svg`` that carry the marker).
PLOTS_DIR = "plots"

#: Style of every plot: matplotlib's defaults, then these. ``svg.hashsalt`` fixes the ids that
#: the SVG writer would otherwise draw at random; ``svg.fonttype = none`` keeps text as text.
PLOT_RC: dict[str, object] = {
    "svg.hashsalt": "unlearnbench",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
#: SVG metadata: no creation date and no software string, so that equal results give equal bytes.
SVG_METADATA: dict[str, None] = {"Date": None, "Creator": None}
MARKERS = ("o", "^", "v", "D", "P", "X", "<", ">", "h", "p", "d", "8")
#: One colour per method entry: matplotlib's tab20 without its two greys (grey is the original's,
#: black the oracle's), the nine dark shades first, then the nine light ones: 18 before a repeat.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)
RUNTIME_FLOOR = 1e-3  # seconds; shorter runtimes are drawn at this value on the log axis


def decade_below(x: float) -> float:
    """The largest power of ten ≤ ``x`` (x > 0 and finite): 10^⌊log10 x⌋, with the exponent read
    exactly from the decimal expansion of ``x`` rather than from a libm/SIMD logarithm, whose last
    bit differs between machines.

    >>> decade_below(0.0123), decade_below(1e-3), decade_below(999.9)
    (0.01, 0.001, 100.0)
    """
    return float(f"1e{Decimal(x).adjusted()}")


def forgetting_metric(task: str) -> str:
    """The forgetting axis of the trade-off plot: ``forget_accuracy`` for class removal (and
    unregistered tasks); ``mia_efficacy`` for random and identity forgetting, where the forget
    accuracy of the oracle is close to the original's and carries little signal."""
    kind = TASKS.get(task).forget.kind if task in TASKS else "classes"
    return "forget_accuracy" if kind == "classes" else "mia_efficacy"


#: Decimals (of the figure's width and height) the axes positions that the constrained layout
#: finds are rounded to before the SVG is written (see :func:`figure_svg`).
LAYOUT_DECIMALS = 4


def figure_svg(draw, *, height: float = 4.8) -> str:
    """Run ``draw(fig)`` on a fresh 7.5-inch-wide figure under the fixed style and return the SVG text.

    The constrained layout places the axes from text extents and tick positions, and those pass
    through the axis transforms (a log axis: numpy's log10 and power, whose last bit differs between
    CPUs, AVX2 vs. AVX-512). The SVG writer names each clip path by a hash of its rectangle at full
    precision, so one bit of layout noise would change the ids of the file. The layout is therefore
    run once, each axes' position rounded to :data:`LAYOUT_DECIMALS` decimals of the figure, and
    the figure written with those fixed positions: the bytes depend on the results only. The second
    line is :data:`GENERATED_HEADER` (an XML comment): what marks the file as ours to replace."""
    import io

    import matplotlib
    import matplotlib.style
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"), matplotlib.rc_context(PLOT_RC):
        fig = Figure(figsize=(7.5, height), layout="constrained")
        draw(fig)
        fig.draw_without_rendering()  # runs the constrained layout
        fig.set_layout_engine("none")
        for ax in fig.axes:
            ax.set_position([round(v, LAYOUT_DECIMALS) for v in ax.get_position().bounds])
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata=SVG_METADATA)
    declaration, _, rest = buf.getvalue().partition("\n")
    return f"{declaration}\n{GENERATED_HEADER}\n{rest}"  # the marker of a generated file, after <?xml ...?>


def style_of(i: int, entry: str) -> dict[str, object]:
    if entry == ORACLE:
        return {"marker": "*", "color": "black", "markersize": 11}
    if entry == ORIGINAL:
        return {"marker": "s", "color": "0.45", "markersize": 6}
    return {"marker": MARKERS[i % len(MARKERS)], "color": PALETTE[i % len(PALETTE)], "markersize": 6}


def finite_or_zero(x: object) -> float:
    x = float(x) if not pd.isna(x) else math.nan
    return x if math.isfinite(x) else 0.0


#: The trade-off plot adds a panel zoomed on the oracle's neighbourhood when at least
#: ZOOM_MIN_ENTRIES method entries lie within ZOOM_RADIUS (x, y) of the oracle's point, as fractions
#: of each axis' span, and some entry lies outside: on class removal most methods sit on top of one
#: another at (the oracle's test accuracy, 0) while one outlier sets the scale.
ZOOM_RADIUS = (0.25, 0.1)
ZOOM_MIN_ENTRIES = 3


def zoom_box(points: pd.DataFrame) -> tuple[float, float, float, float] | None:
    """(x0, x1, y0, y1) of the zoom panel of the trade-off plot, or None. ``points``: columns
    x, y, xerr, yerr (error-bar half-widths), one row per entry, indexed by entry name, the oracle
    among them. The box holds the near entries' points, padded by 15% (error bars may leave it)."""
    if ORACLE not in points.index:
        return None
    xa, ya = points.loc[ORACLE, "x"], points.loc[ORACLE, "y"]
    # the spans the main panel shows: points and error bars
    span_x = float((points["x"] + points["xerr"]).max() - (points["x"] - points["xerr"]).min()) or 1.0
    span_y = float((points["y"] + points["yerr"]).max() - (points["y"] - points["yerr"]).min()) or 1.0
    near = points[((points["x"] - xa).abs() <= ZOOM_RADIUS[0] * span_x)
                  & ((points["y"] - ya).abs() <= ZOOM_RADIUS[1] * span_y)]
    if len(near) - 1 < ZOOM_MIN_ENTRIES or len(near) == len(points):
        return None
    x0, x1 = float(near["x"].min()), float(near["x"].max())
    y0, y1 = float(near["y"].min()), float(near["y"].max())
    pad_x = 0.15 * (x1 - x0) or 0.005 * span_x
    pad_y = 0.15 * (y1 - y0) or 0.005 * span_y
    return x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y


def plot_tradeoff(task: str, table: pd.DataFrame) -> tuple[str, str] | None:
    """Forgetting error |Δ m| (m = :func:`forgetting_metric`) against test accuracy, one point per
    entry, error bars = 95% confidence intervals over seeds; a second panel zooms on the entries
    crowded around the oracle (:func:`zoom_box`). (svg, caption), or None when no entry has both
    numbers (no oracle, or no test accuracy)."""
    fm = forgetting_metric(task)
    x_col, y_col = "test_accuracy_mean", f"{fm}_gap"
    if table.empty or x_col not in table.columns or y_col not in table.columns:
        return None
    shown = table[table[x_col].notna() & table[y_col].notna()]
    if shown.empty:
        return None
    points = pd.DataFrame({
        "x": shown[x_col].astype("float64"),
        "y": shown[y_col].astype("float64"),
        "xerr": [finite_or_zero(rec.get("test_accuracy_ci")) for _, rec in shown.iterrows()],
        "yerr": [finite_or_zero(rec.get(f"{y_col}_ci")) for _, rec in shown.iterrows()],
    }, index=shown.index)
    box = zoom_box(points)

    def draw_points(ax, only: pd.Index | None = None) -> None:
        for i, (entry, rec) in enumerate(shown.iterrows()):
            if only is not None and entry not in only:
                continue
            label = entry if rec["reference"] else f"{rank_of(rec)}. {entry}"
            x, y, xerr, h = points.loc[entry, ["x", "y", "xerr", "yerr"]]
            ax.errorbar([x], [y], xerr=[xerr], yerr=[[min(h, y)], [h]], linestyle="none", capsize=3, label=label,
                        **style_of(i, entry))

    def draw(fig) -> None:
        ax = fig.add_subplot(2, 1, 1) if box else fig.add_subplot()
        draw_points(ax)
        ax.set_xlabel("utility: test accuracy (higher is better) →")
        ax.set_ylabel(f"forgetting error: |Δ {fm}| to the oracle\n(lower is better)")
        ax.set_title(f"{task}: forgetting vs. utility", fontsize=10)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        if box:
            from matplotlib.patches import Rectangle

            x0, x1, y0, y1 = box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linestyle="--", linewidth=0.8, color="0.3"))
            inside = points.index[points["x"].between(x0, x1) & points["y"].between(y0, y1)]
            zoom = fig.add_subplot(2, 1, 2)
            draw_points(zoom, inside)
            zoom.set_xlim(x0, x1)
            zoom.set_ylim(y0, y1)
            zoom.set_xlabel("test accuracy")
            zoom.set_ylabel(f"|Δ {fm}|")
            zoom.set_title(f"zoom on the dashed box: the {len(inside)} entries there", fontsize=9)

    caption = (f"Forgetting vs. utility: |Δ {fm}| to the oracle of the same seed (0 = forgets like the oracle) "
               "against test accuracy, mean over seeds; error bars: 95% confidence intervals over seeds "
               "(Student t; none with one seed; cut at 0, as a gap cannot be negative)."
               + (" The lower panel enlarges the dashed box around the oracle." if box else ""))
    return figure_svg(draw, height=8.0 if box else 4.8), caption


def plot_runtime(task: str, table: pd.DataFrame, values: pd.DataFrame) -> tuple[str, str] | None:
    """Each method's runtime (mean over seeds, whiskers min–max) on a log axis, against the
    oracle's training time (its mean over seeds, a vertical line). (svg, caption), or None when no
    method has a runtime."""
    if table.empty or "runtime_seconds" not in values.columns:
        return None
    runtime = values["runtime_seconds"]
    entries = [e for e, rec in table.iterrows() if not rec["reference"] and runtime.xs(e, level="entry").notna().any()]
    if not entries:
        return None
    oracle_seconds = math.nan
    if ORACLE in runtime.index.get_level_values("entry"):
        oracle_seconds = float(runtime.xs(ORACLE, level="entry").mean())
    per_seed = {e: runtime.xs(e, level="entry").dropna().to_numpy(dtype="float64") for e in entries}
    clipped = any(bool((v < RUNTIME_FLOOR).any()) for v in per_seed.values())
    shown = {e: np.maximum(v, RUNTIME_FLOOR) for e, v in per_seed.items()}
    oracle_line = math.isfinite(oracle_seconds) and oracle_seconds > 0
    # Bars start at a power of ten at or below everything drawn, not at 0: log(0) is drawn at a
    # stand-in of -1000 decades whose display coordinate magnifies the last bit of the log
    # transform (which differs between CPUs) into the layout, the clip box and its SVG id.
    base = decade_below(min([float(v.min()) for v in shown.values()] + ([oracle_seconds] if oracle_line else [])))

    def draw(fig) -> None:
        ax = fig.add_subplot()
        for i, entry in enumerate(entries):
            v = shown[entry]
            mean = float(v.mean())
            ax.barh([i], [mean - base], left=base, color=PALETTE[i % len(PALETTE)], alpha=0.8)
            ax.errorbar([mean], [i], xerr=[[mean - v.min()], [v.max() - mean]], color="black", capsize=3, linestyle="none")
        if oracle_line:
            ax.axvline(oracle_seconds, color="black", linestyle="--", linewidth=1.2,
                       label=f"oracle training time ({oracle_seconds:.3g} s, mean over seeds)")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_xscale("log")
        ax.set_yticks(range(len(entries)), [f"{rank_of(table.loc[e])}. {e}" for e in entries], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("runtime of the method call (seconds, log scale)")
        ax.set_title(f"{task}: runtime vs. the oracle's training time", fontsize=10)

    svg = figure_svg(draw)
    caption = ("Runtime of each method (mean over seeds; whiskers: fastest and slowest seed) against the time "
               "the oracle took to train (dashed line); left of the line is faster than retraining."
               + (f" Runtimes under {RUNTIME_FLOOR:g} s are drawn at {RUNTIME_FLOOR:g} s." if clipped else ""))
    return svg, caption


#: The plots of a task page: file name suffix and the short alternative text of its image link.
PLOT_KINDS: tuple[tuple[str, str], ...] = (("tradeoff", "forgetting vs. utility"), ("runtime", "runtime vs. oracle training time"))


def plot_files(selected: TaskRows, table: pd.DataFrame, values: pd.DataFrame | None) -> dict[str, tuple[str, str, str]]:
    """The plots of one task: relative path → (svg, alternative text, caption)."""
    out: dict[str, tuple[str, str, str]] = {}
    if values is None:
        return out
    made = {"tradeoff": plot_tradeoff(selected.task, table), "runtime": plot_runtime(selected.task, table, values)}
    for kind, alt in PLOT_KINDS:
        if made[kind] is not None:
            svg, caption = made[kind]
            out[plot_name(selected.task, kind)] = (svg, alt, caption)
    return out


def plot_name(task: str, kind: str) -> str:
    """The leaderboard-relative name of one plot of ``task`` (``kind`` of :data:`PLOT_KINDS`)."""
    return f"{PLOTS_DIR}/{task}-{kind}.svg"

