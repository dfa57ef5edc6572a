"""What a call of :func:`bench.run` plans: every task × method × seed as a :class:`RunSpec`, with
its hyperparameters resolved and checked before any work, the oracle's reference run of each
(task, seed), and which of them the results store still lacks.

A run's id hashes everything that can move its numbers (the task's definition and version, the
method and its version, the resolved hyperparameters, the seed, the device type), so a planned
run already stored under its id is done.
"""
from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from typing import Any, Sequence

from bench.references import REFERENCE_VERSION
from bench.registry import MethodSpec, get_method
from bench.results import ORACLE, canonical_json, make_run_id
from bench.tasks import Task, get_task

DEFAULT_SEEDS = (0, 1, 2)

#: The largest seed: a run's seed is stored in the results' int64 ``seed`` column. (What it seeds
#: takes any integer: every random choice draws from :func:`bench.data.seed_stream`, which hashes
#: the seed's text into the 63 bits ``torch.manual_seed`` and NumPy are given.)
MAX_SEED = 2**63 - 1


def check_seeds(seeds: Sequence[Any]) -> list[int]:
    """The seeds, duplicates merged (order kept), each an integer in [0, :data:`MAX_SEED`]; a loud
    error before any work otherwise (a larger seed trained for minutes, then could not be stored)."""
    out: list[int] = []
    for seed in seeds:
        try:
            value = operator.index(seed)  # an int (or NumPy integer); 2.5 or "0" is not
        except TypeError:
            raise ValueError(f"seed {seed!r} is not an integer: seeds are integers in [0, 2**63 - 1]") from None
        if isinstance(seed, bool) or not 0 <= value <= MAX_SEED:
            raise ValueError(f"seed {seed!r} is out of range: seeds are integers in [0, 2**63 - 1]")
        if value not in out:
            out.append(value)
    return out


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
    not applicable, with the reason, rather than run. A task, method or seed named twice is planned
    once (order kept): its second run would find the first one's file.
    """
    if not seeds:
        raise ValueError("no seeds given")
    seeds = check_seeds(seeds)
    task_objs = list(dict.fromkeys(get_task(t) for t in tasks))
    specs = [get_method(m) for m in dict.fromkeys(methods)]
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
                runs.append(RunSpec(task, spec.name, spec.version, canonical_json(hp), seed, device_type))
    return Plan(tuple(runs), tuple(skipped))


def oracle_run(task: Task, seed: int, device_type: str = "cpu") -> RunSpec:
    """The reference run ``oracle`` of (task, seed): no hyperparameters, the references' version."""
    return RunSpec(task, ORACLE, REFERENCE_VERSION, canonical_json({}), seed, device_type)


def oracle_run_id(task: Task, seed: int, device_type: str = "cpu") -> str:
    return oracle_run(task, seed, device_type).run_id


def runs_to_do(plan: Plan, stored: dict[str, str], *, force: bool) -> list[RunSpec]:
    """The planned runs not stored as "ok" (``stored``: :func:`bench.results.stored_runs`), or every
    planned run when ``force``; in plan order."""
    return [planned for planned in plan.runs if force or stored.get(planned.run_id) != "ok"]


def groups_to_do(plan: Plan, todo: Sequence[RunSpec], stored: dict[str, str], device_type: str) -> dict[tuple[Task, int], list[RunSpec]]:
    """``todo`` by (task, seed); a group whose runs are all stored but whose oracle row is not is
    kept, empty (its oracle still has rows to write)."""
    groups: dict[tuple[Task, int], list[RunSpec]] = {}
    for planned in todo:
        groups.setdefault((planned.task, planned.seed), []).append(planned)
    for planned in plan.runs:
        if stored.get(oracle_run_id(planned.task, planned.seed, device_type)) != "ok":
            groups.setdefault((planned.task, planned.seed), [])
    return groups
