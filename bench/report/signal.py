"""What a ranking can tell on a task: which forgetting metrics separate the original from the
oracle there (their *signal*), and whether an entry beats doing nothing (the original).

**Signal.** For each stored metric m that measures forgetting (``measures="forgetting"`` in
:mod:`bench.metrics`: forget accuracy, the membership attacks, ...), with a_s the original's and
o_s the oracle's value of seed s: the paired t-test over the seeds both have
(:func:`bench.report.paired.paired_t_test`, d_s = a_s − o_s). m has signal on the task when
p < 0.05. Without it (p ≥ 0.05, or fewer than two shared seeds: untestable) the original, which
forgot nothing, already sits where the oracle is on m, so a method's gap on m cannot tell
forgetting from doing nothing: m is flagged "no signal on this task" and left out of every
composite score of the task, which combines the rest of its inputs (:attr:`Composite.fn
<bench.metrics.Composite>` takes any subset). When *every* forgetting input of a composite lacks
signal, the composite is not computed on the task (n/a) and a task ranked by it has no ranks;
the same holds for a task ranked by one forgetting metric without signal.

**The signal gate.** A task is ranked only when, besides its ranking metric, the cross-seed
per-example attack separates original from oracle too: ``ulira_accuracy``'s original − floor CI
lies above 0 (:func:`bench.report.crossseed.attack_gate`; computed from the stored per-example
values, so a task with fewer than six seeds of them, or a forget set drawn per seed, is not ranked
either). A task that fails is shown with every number, and its page says why it has no ranks.

Beside p the table prints the mean of d with its 95 % t interval (it excludes 0 exactly when
p < 0.05), and the same for **oracle against oracle**: the oracle's seeds in two halves,
d_i = o_{A_i} − o_{B_i} (:func:`bench.report.paired.split_half_differences`), how far two
models of the oracle's recipe fall apart on m by chance. Its interval should hold 0; one that
does not says the seeds are not independent draws, and the table says so.

The rule applies to forgetting metrics only. Utility metrics (retain and test accuracy) always
stay in the composite, although the original usually is within noise of the oracle on them:
there the original *is* the ideal (a method should keep the model's utility), so its agreement
with the oracle is the target met, not an absence of signal — and dropping them would leave a
composite of forgetting alone, on which a method that destroys the model ranks well.

**Doing nothing.** Each ranked entry e is tested against the original on the per-seed values r_s
of the ranking metric (the same paired test, d_s = r_{e,s} − r_{original,s}). e beats doing
nothing when p < 0.05 and the mean of d points the goal's way (lower for a gap or a ``min``
metric, higher for ``max``); otherwise — p ≥ 0.05, untestable, no original run, or better
beyond noise the wrong way — it is "no better than doing nothing".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.metrics import COMPOSITES, METRICS
from bench.report.cells import and_list, fixed, md_table, p_text
from bench.report.paired import Interval, beyond_noise, paired_differences, paired_t_test, split_half_differences, t_interval
from bench.results import ORACLE, ORIGINAL


@dataclass(frozen=True)
class MetricSignal:
    """Original against oracle on one forgetting metric: means over each one's seeds, the
    paired test's p and the number of seeds it paired (p NaN: untestable), the mean paired
    difference original − oracle with its interval, and oracle against oracle (split halves)."""

    metric: str
    original_mean: float
    oracle_mean: float
    p: float
    seeds: int
    difference: Interval
    floor: Interval

    @property
    def present(self) -> bool:
        return beyond_noise(self.p)


@dataclass(frozen=True)
class TaskSignal:
    """The signal of every stored forgetting metric of one task (registry order), and the signal
    gate's attack half (:func:`bench.report.crossseed.attack_gate`): ``""`` when the cross-seed
    ``ulira_accuracy`` separates original from oracle (or was not asked for), else why not."""

    metrics: tuple[MetricSignal, ...]
    attack: str = ""

    def lacking(self) -> tuple[str, ...]:
        """The stored forgetting metrics without signal on the task."""
        return tuple(s.metric for s in self.metrics if not s.present)

    def inputs(self, composite: str) -> tuple[str, ...]:
        """The inputs ``composite`` combines on this task (order of its ``of``): all but the
        forgetting metrics without signal; none when no forgetting input is left."""
        of = COMPOSITES.get(composite).of
        kept = tuple(m for m in of if m not in self.lacking())
        forgetting = [m for m in of if METRICS.get(m).measures == "forgetting"]
        return kept if not forgetting or any(m in kept for m in forgetting) else ()

    def unranked_why(self, name: str) -> str:
        """Why the task cannot be ranked by ``name`` (a composite or a metric); ``""`` when it can.
        When the test itself was impossible (no original run, or fewer than two seeds shared with
        the oracle), the reason says what to run."""
        if name in COMPOSITES:
            if self.inputs(name):
                return self.attack
            missing = [m for m in COMPOSITES.get(name).of if m in self.lacking()]
            why = (f"none of the forgetting inputs of `{name}` ({and_list([f'`{m}`' for m in missing])}) separates "
                   "the original from the oracle on this task beyond noise (no signal), so it cannot tell "
                   "forgetting from doing nothing")
        elif name in self.lacking():
            missing = [name]
            why = (f"`{name}` does not separate the original from the oracle on this task beyond noise (no signal), "
                   "so it cannot tell forgetting from doing nothing")
        else:
            return self.attack
        if all(math.isnan(s.p) for s in self.metrics if s.metric in missing):
            why += ("; the test needs the original and the oracle on at least two shared seeds: run the `original` "
                    "method on the oracle's seeds")
        return why


def series_of(ok: pd.DataFrame, entry: str, metric: str) -> pd.Series:
    """The per-seed values of ``metric`` for ``entry`` (indexed by seed)."""
    rows = ok[(ok["entry"] == entry) & (ok["metric"] == metric)]
    return rows.set_index("seed")["value"].astype("float64").sort_index()


def finite_mean(values: pd.Series) -> float:
    v = values.to_numpy(dtype="float64")
    v = v[np.isfinite(v)]
    return float(np.mean(v)) if len(v) else math.nan


def task_signal(ok: pd.DataFrame) -> TaskSignal:
    """:class:`TaskSignal` of a task's selected ok rows (:attr:`bench.report.select.TaskRows.ok`)."""
    stored = set(ok["metric"]) if len(ok) else set()
    found = []
    for name in METRICS.names():
        if name not in stored or METRICS.get(name).measures != "forgetting":
            continue
        original, oracle = series_of(ok, ORIGINAL, name), series_of(ok, ORACLE, name)
        p, n = paired_t_test(original, oracle)
        found.append(MetricSignal(name, finite_mean(original), finite_mean(oracle), p, n,
                                  t_interval(paired_differences(original, oracle)),
                                  t_interval(split_half_differences(oracle))))
    return TaskSignal(tuple(found))


@dataclass(frozen=True)
class VersusOriginal:
    """An entry against doing nothing: the paired test's p and seeds, whether its mean is on the
    better side of the original's, and the verdict (p < 0.05 and better)."""

    p: float
    seeds: int
    better_mean: bool
    beats: bool


def versus_original(per_seed: pd.Series, entry: str, higher_is_better: bool) -> VersusOriginal:
    """The do-nothing test of ``entry`` on ``per_seed`` (the per-(entry, seed) ranking values)."""
    if ORIGINAL not in per_seed.index.get_level_values("entry"):
        return VersusOriginal(math.nan, 0, False, False)
    mine, original = per_seed.xs(entry, level="entry"), per_seed.xs(ORIGINAL, level="entry")
    p, n = paired_t_test(mine, original)
    d = paired_differences(mine, original)
    better = bool(len(d)) and (float(np.mean(d)) > 0 if higher_is_better else float(np.mean(d)) < 0)
    return VersusOriginal(p, n, better, better and beyond_noise(p))


def interval_cell(i: Interval, decimals: int = 3) -> str:
    """``mean [low, high]``; only the mean for one value; ``n/a`` for none."""
    if math.isnan(i.mean):
        return "n/a"
    if math.isnan(i.low):
        return fixed(i.mean, decimals)
    return f"{fixed(i.mean, decimals)} [{fixed(i.low, decimals)}, {fixed(i.high, decimals)}]"


def signal_section(signal: TaskSignal, rank_by: str) -> list[str]:
    """The page's "Signal" table: per stored forgetting metric, original and oracle means, p, and
    whether it has signal; then the inputs each composite used, and why the task is unranked."""
    lines = ["## Signal", ""]
    if not signal.metrics:
        lines += ["No forgetting metric is stored for this task.", ""]
    else:
        rows = []
        for s in signal.metrics:
            used_in = [c for c in COMPOSITES.names() if s.metric in COMPOSITES.get(c).of]
            p = f"untestable ({s.seeds} shared seed{'s' if s.seeds != 1 else ''})" if math.isnan(s.p) else p_text(s.p)
            verdict = "yes" if s.present else "no signal on this task"
            if s.floor.excludes_zero:
                verdict += "; oracle halves differ beyond noise: seeds not independent?"
            rows.append([s.metric, fixed(s.original_mean, 3), fixed(s.oracle_mean, 3), interval_cell(s.difference), p,
                         interval_cell(s.floor), str(s.seeds), verdict, ", ".join(used_in) or "—"])
        lines += [md_table(["metric", "original", "oracle", "original − oracle [95 % CI]", "p",
                            "oracle − oracle [95 % CI]", "seeds", "signal", "composite input of"], rows,
                           right={1, 2, 6}), ""]
    for name in COMPOSITES.names():
        of, used = COMPOSITES.get(name).of, signal.inputs(name)
        left = [m for m in of if m not in used]
        text = f"`{name}` on this task combines {and_list([f'`{m}`' for m in used])}" if used else \
            f"`{name}` is not computed on this task (n/a)"
        if left:
            text += f"; left out, no signal: {and_list([f'`{m}`' for m in left])}"
        lines.append(f"- {text}.")
    why = signal.unranked_why(rank_by)
    if why:
        lines.append(f"- **Not ranked:** {why}.")
    lines += [
        "",
        "Signal: for each metric that measures forgetting, a two-sided paired t-test over seeds of the "
        "original's values against the oracle's, with the mean difference and its 95 % t interval (it excludes 0 "
        "exactly when p < 0.05). Oracle − oracle: the oracle's seeds in two halves, first half minus second, seed "
        "by seed, with its interval: how far two oracles fall apart by chance (it should hold 0). "
        "p < 0.05: the metric tells the model that forgot nothing from "
        "the target on this task. p ≥ 0.05 or untestable (fewer than two shared seeds): no signal on this task — "
        "a method's gap on it cannot tell forgetting from doing nothing, so it is left out of the composite "
        "scores here; when none of a composite's forgetting inputs has signal, the task is not ranked on it. "
        "Utility metrics (retain and test accuracy) always stay in: the original is the utility ideal, so its "
        "agreement with the oracle there is the target, not a missing signal, and leaving them out would let a "
        "method that destroys the model rank well. Means are over each model's seeds.",
        "",
    ]
    return lines
