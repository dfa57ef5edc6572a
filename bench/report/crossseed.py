"""A task page's cross-seed per-example attacks: each entry's models over its seeds against the
oracles', beside the noise floor and the task's signal (:mod:`bench.crossseed`, from the
per-example values the runs stored, :mod:`bench.examples`).

For an entry e with seeds s₁ < … < s_N shared with the original and the oracle (N even; the
largest seed dropped when N is odd), the split halves (:func:`bench.crossseed.halves`, averaged
over partitions of the seeds into halves) give

* ``ulira_accuracy(e)``: e's models of one half against the oracles of the other, mean of both
  ways; goal: the **floor**, the oracles of one half against those of the other (≈ 0.5);
* the task's **signal**: the same for the original. The task separates original from oracle on
  the attack when the CI of original − floor lies above 0; without it no entry is read against
  the attack ("no signal on this task");
* e − floor and e − original with 95 % bootstrap CIs over the forget examples, paired on the same
  resamples. e is *at the floor* when the CI of e − floor holds 0, *closer to the oracle than
  doing nothing* when the CI of e − original lies below 0, else *no better than doing nothing*.

The control row repeats the original-vs-oracle test on the task's control images (test images no
model trained on): it should sit at the floor, and a control above it means the attack measures
something other than membership. ``eps_quality`` and ``klom_p95`` are shown from
2 × :data:`~bench.crossseed.MIN_NONPARAMETRIC_MODELS` seeds only (their scale moves with N).
"""
from __future__ import annotations

from typing import Callable

import pandas as pd

from bench.crossseed import CROSS_SEED_METRICS, MIN_NONPARAMETRIC_MODELS, PER_EXAMPLE_VARIANCE_FROM, Estimate, Halves, halves
from bench.examples import CONTROL, FORGET, phi_matrix
from bench.report.cells import md_table
from bench.report.select import TaskRows
from bench.results import ORACLE, ORIGINAL
from bench.tasks import TASKS

#: task name → its stored per-example rows (:func:`bench.examples.read_examples` of the store)
ExamplesOf = Callable[[str], pd.DataFrame]
MIN_SEEDS = 6  #: three models per half: the fewest :func:`bench.crossseed.ulira` fits leave-one-out
PRIMARY = "ulira_accuracy"


def run_ids(selected: TaskRows, examples: pd.DataFrame) -> dict[str, dict[int, str]]:
    """entry → seed → run id, over the runs the page counts that have per-example values."""
    have = set(examples["run_id"])
    runs = selected.ok[["entry", "seed", "run_id"]].drop_duplicates()
    out: dict[str, dict[int, str]] = {}
    for rec in runs.itertuples(index=False):
        if rec.run_id in have:
            out.setdefault(rec.entry, {})[int(rec.seed)] = rec.run_id
    return out


def shared_seeds(*runs: dict[int, str]) -> tuple[int, ...]:
    """The seeds every one of ``runs`` has, sorted, cut to an even count (split halves)."""
    seeds = sorted(set.intersection(*(set(r) for r in runs)))
    return tuple(seeds[: len(seeds) - len(seeds) % 2])


def ci(e: Estimate, decimals: int = 3) -> str:
    return f"{e.value:.{decimals}f} [{e.low:.{decimals}f}, {e.high:.{decimals}f}]"


def reading(minus_floor: Estimate, minus_original: Estimate | None) -> str:
    if minus_floor.low <= 0.0 <= minus_floor.high:
        return "at the floor (indistinguishable from the oracle)"
    if minus_original is not None and minus_original.high < 0.0:
        return "closer to the oracle than doing nothing, not at the floor"
    return "no better than doing nothing"


def tpr(h: Halves, name: str) -> str:
    return f"{sum(r.tpr_at_fpr for r in h.details[name]) / len(h.details[name]):.3f}"


def attack_inputs(selected: TaskRows, examples_of: ExamplesOf | None) -> tuple[pd.DataFrame, dict[str, dict[int, str]]] | str:
    """The task's per-example rows and run ids (entry → seed → run id), or why the attack is not
    computed; ``""`` when the store has no per-example values for the task at all."""
    task = TASKS.get(selected.task) if selected.task in TASKS else None
    examples = examples_of(selected.task) if examples_of is not None else None
    if task is None or examples is None or examples.empty:
        return ""
    if not task.fixed_split:
        return ("Not computed: each seed of this task draws its own forget set, and the cross-seed attacks "
                "compare models on one forget set (a task with a `split_seed`, see `bench.tasks`).")
    runs = run_ids(selected, examples)
    if ORIGINAL not in runs or ORACLE not in runs:
        return "Not computed: the original's or the oracle's runs have no per-example values."
    base = shared_seeds(runs[ORIGINAL], runs[ORACLE])
    if len(base) < MIN_SEEDS:
        return (f"Not computed: {len(base)} seeds have the original's and the oracle's per-example values; "
                f"the attack needs {MIN_SEEDS} (three models per half).")
    return examples, runs


def crossseed_section(selected: TaskRows, examples_of: ExamplesOf | None, *, entries: bool = True) -> list[str]:
    """The page's section (empty when the store has no per-example values for the task);
    ``entries=False``: only the floor, the signal and the control (``bench signal``)."""
    found = attack_inputs(selected, examples_of)
    if found == "":
        return []
    head = ["## Per-example attacks across seeds", ""]
    if isinstance(found, str):
        return head + [found, ""]
    return head + attack_lines(selected, *found, entries)


def original_halves(examples: pd.DataFrame, runs: dict[str, dict[int, str]], split: str) -> Halves:
    """The original's models against the oracles' on ``split``, over the seeds both have: the floor and the signal."""
    base = shared_seeds(runs[ORIGINAL], runs[ORACLE])
    return halves(PRIMARY, matrices(examples, runs, [ORACLE], base, split)[ORACLE],
                  {ORIGINAL: matrices(examples, runs, [ORIGINAL], base, split)[ORIGINAL]})


def attack_gate(selected: TaskRows, examples_of: ExamplesOf | None) -> str:
    """The signal gate's attack half: ``""`` when the original's ``ulira_accuracy`` lies above the
    floor beyond noise (CI of original − floor above 0), else why the task fails it — too few seeds
    with per-example values, or a forget set drawn per seed, fail it too. Not applied (``""``) to a
    store without any per-example values for the task (``examples_of`` None, or rows written before
    they were stored): its page has no attack section either."""
    found = attack_inputs(selected, examples_of)
    if found == "":
        return ""
    if isinstance(found, str):
        why = found.removeprefix("Not computed: ")
        return (f"the signal gate needs `{PRIMARY}` to separate the original from the oracle, and it is not computed "
                f"here: {why.rstrip('.')}")
    minus_floor = original_halves(*found, FORGET).minus_floor[ORIGINAL]
    if minus_floor.low > 0.0:
        return ""
    return (f"`{PRIMARY}` does not separate the original from the oracle beyond noise (original − floor "
            f"{ci(minus_floor)}), so no entry can be told from doing nothing on it")


def matrices(examples: pd.DataFrame, runs: dict[str, dict[int, str]], entries: list[str], seeds: tuple[int, ...],
             split: str) -> dict[str, object]:
    return {e: phi_matrix(examples, {s: runs[e][s] for s in seeds}, split)[0] for e in entries}


def attack_lines(selected: TaskRows, examples: pd.DataFrame, runs: dict[str, dict[int, str]],
                 with_entries: bool = True) -> list[str]:
    entries = sorted(e for e in runs if e not in (ORIGINAL, ORACLE)) if with_entries else []
    groups: dict[tuple[int, ...], list[str]] = {}
    for e in entries:
        groups.setdefault(shared_seeds(runs[ORIGINAL], runs[ORACLE], runs[e]), []).append(e)
    base = shared_seeds(runs[ORIGINAL], runs[ORACLE])
    reference, control = original_halves(examples, runs, FORGET), original_halves(examples, runs, CONTROL)
    signal = reference.minus_floor[ORIGINAL].low > 0.0
    n = len(base)
    variance = "per-example" if n // 2 >= PER_EXAMPLE_VARIANCE_FROM else "pooled (LiRA's fixed variance)"
    lines = [
        f"`{PRIMARY}`, split halves over {n} seeds ({n // 2} models per population; variances {variance}, "
        f"per-example from {PER_EXAMPLE_VARIANCE_FROM} models per population), averaged over {reference.partitions} "
        f"partitions of the seeds into halves, {reference.n_examples} forget examples; goal: the floor. 95 % "
        "bootstrap CIs over the examples.",
        "",
        f"- **Floor** (oracles vs oracles): {ci(reference.floor)}",
        f"- **Signal** (original vs oracles): {ci(reference.values[ORIGINAL])}; original − floor "
        f"{ci(reference.minus_floor[ORIGINAL])} → "
        + ("the task separates original from oracle on this attack." if signal else
           "**no signal on this task**: the original is within noise of the floor, so no entry is read against it."),
        f"- **Control** ({control.n_examples} test images no model trained on; original vs oracles): "
        f"{ci(control.values[ORIGINAL])}, − floor {ci(control.minus_floor[ORIGINAL])}",
        "",
    ]
    rows = []
    for seeds, names in sorted(groups.items(), key=lambda kv: kv[1]):  # empty without entries
        if len(seeds) < MIN_SEEDS:
            rows += [[f"`{e}`", str(len(seeds)), "—", "—", "—", "—", f"needs {MIN_SEEDS} seeds with per-example values"]
                     for e in names]
            continue
        h = halves(PRIMARY, matrices(examples, runs, [ORACLE], seeds, FORGET)[ORACLE],
                   matrices(examples, runs, [ORIGINAL, *names], seeds, FORGET), baseline=ORIGINAL)
        for e in names:
            read = reading(h.minus_floor[e], h.minus_baseline[e]) if signal else "no signal on this task"
            rows.append([f"`{e}`", str(len(seeds)), ci(h.values[e]), ci(h.minus_floor[e]), ci(h.minus_baseline[e]),
                         tpr(h, e), read])
    if with_entries:
        lines += [md_table(["entry", "seeds", PRIMARY, "− floor", "− original", "TPR @ 1% FPR", "reading"], rows,
                           right={1, 5}), ""]
    if n // 2 >= MIN_NONPARAMETRIC_MODELS:
        lines += nonparametric_lines(examples, runs, base)
    else:
        others = [m for m in CROSS_SEED_METRICS.names() if m != PRIMARY]
        lines += [f"{', '.join(f'`{m}`' for m in others)}: shown from {2 * MIN_NONPARAMETRIC_MODELS} seeds "
                  f"({MIN_NONPARAMETRIC_MODELS} models per half; their scale moves with N); this task has {n}.", ""]
    return lines


def nonparametric_lines(examples: pd.DataFrame, runs: dict[str, dict[int, str]], seeds: tuple[int, ...]) -> list[str]:
    """``eps_quality`` and ``klom_p95`` of the original against the floor (enough seeds only)."""
    out = []
    for metric in CROSS_SEED_METRICS.names():
        if metric == PRIMARY:
            continue
        h = halves(metric, matrices(examples, runs, [ORACLE], seeds, FORGET)[ORACLE],
                   {ORIGINAL: matrices(examples, runs, [ORIGINAL], seeds, FORGET)[ORIGINAL]})
        out.append(f"- `{metric}`: floor {ci(h.floor)}, original {ci(h.values[ORIGINAL])}, "
                   f"original − floor {ci(h.minus_floor[ORIGINAL])}")
    return out + [""]
