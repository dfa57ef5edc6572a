"""The method registry: the ``@method`` decorator, :class:`MethodSpec`, ``get_method`` and
``list_methods`` (in the manner of timm's ``register_model`` / ``create_model``). Like every
registry of the benchmark it is a :class:`bench.lookup.Registry`: an unknown name is an error that
lists the valid ones and the closest match.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.lookup import Registry, unknown_message
from bench.tasks import FORGET_KINDS

#: The data a method may declare. ``retain_fraction`` means "a per-class random fraction of the
#: retain set", the fraction being the method's ``retain_fraction`` hyperparameter.
DATA_KINDS = ("forget", "retain", "retain_fraction", "surrogate")


@dataclass(frozen=True)
class MethodSpec:
    """A registered unlearning method.

    ``fn(model, data, *, device, **hyperparameters) -> nn.Module``. ``uses`` lists the data it is
    given (anything else is ``None`` in its :class:`bench.data.MethodData`); ``tuned`` maps a task
    name to the hyperparameters tuned for that task on its validation split; ``bounds`` maps a
    hyperparameter to an inclusive ``(low, high)`` range (``None`` = unbounded) checked before a run.
    """

    name: str
    fn: Callable[..., Any]
    uses: tuple[str, ...]
    paper: str
    description: str
    version: int
    defaults: dict[str, Any]
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)
    bounds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    applies_to: tuple[str, ...] = FORGET_KINDS

    def not_applicable(self, task: Any) -> str | None:
        """Why this method does not run on ``task`` (a :class:`bench.tasks.Task`), or ``None`` when
        it does: its paper setting does not cover the task's forget rule, or it needs surrogate
        data the task does not name."""
        if task.forget.kind not in self.applies_to:
            return f"{self.name} applies to {'/'.join(self.applies_to)} forgetting only"
        if "surrogate" in self.uses and task.surrogate is None:
            return f"{self.name} needs surrogate data and {task.name} names none"
        return None

    def resolve(self, task_name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults, then this task's tuned values, then user overrides; checked and typed."""
        hp = dict(self.defaults)
        hp.update(self.tuned.get(task_name, {}))
        for key, value in (overrides or {}).items():
            if key not in self.defaults:
                raise ValueError(unknown_message(f"hyperparameter of {self.name}", key, list(self.defaults)))
            if key in self.fixed:
                raise ValueError(
                    f"{self.name}: {key} is fixed to {self.fixed[key]!r} for this entry; "
                    f"use the other registered variant instead"
                )
            hp[key] = coerce(self.name, key, value, self.defaults[key])
        hp.update(self.fixed)
        for key, (low, high) in self.bounds.items():
            value = hp[key]
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(
                    f"{self.name}: hyperparameter {key}={value!r} is out of range "
                    f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
                )
        return hp


def coerce(method: str, key: str, value: Any, default: Any) -> Any:
    """Convert a command-line string (or any value) to the type of the hyperparameter's default."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{method}: {key} must be true or false, got {value!r}")
    kind = type(default)
    if default is None or kind is str:
        return value if not isinstance(value, str) or default is None else str(value)
    try:
        converted = kind(value)
    except (TypeError, ValueError, OverflowError):  # int(float("inf")) overflows
        raise ValueError(f"{method}: {key} must be of type {kind.__name__}, got {value!r}") from None
    if kind is int and isinstance(value, str) and str(converted) != value.strip():
        raise ValueError(f"{method}: {key} must be an integer, got {value!r}")
    if kind is int and isinstance(value, float) and converted != value:  # int(2.5) would silently be 2
        raise ValueError(f"{method}: {key} must be an integer, got {value!r}")
    check_finite(method, key, converted)
    return converted


def check_finite(method: str, key: str, value: Any) -> None:
    """Refuse a NaN or infinite float: NaN passes every bound (``nan < low`` is False) and would be
    stored as a bare ``NaN`` in the hyperparameter JSON; an infinity fails deep inside a method."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{method}: {key}={value!r} is not a finite number; give a finite value")


METHODS: Registry[MethodSpec] = Registry("method")


def method(
    *,
    name: str | None = None,
    uses: tuple[str, ...],
    paper: str,
    version: int,
    tuned: dict[str, dict[str, Any]] | None = None,
    bounds: dict[str, tuple[float | None, float | None]] | None = None,
    fixed: dict[str, Any] | None = None,
    applies_to: tuple[str, ...] = FORGET_KINDS,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an unlearning method (decorator).

    The hyperparameters and their defaults are read from the function's keyword-only parameters
    (``device`` excluded); the first docstring line is the one-line description.
    """

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = name or fn.__name__
        bad = [u for u in uses if u not in DATA_KINDS]
        if bad:
            raise ValueError(f"method {key}: unknown data kinds {bad}; valid: {DATA_KINDS}")
        unknown_kinds = [k for k in applies_to if k not in FORGET_KINDS]
        if unknown_kinds or not applies_to:
            raise ValueError(f"method {key}: applies_to {tuple(applies_to)} must name forget kinds among {FORGET_KINDS}")
        if "retain" in uses and "retain_fraction" in uses:
            raise ValueError(f"method {key}: declare either 'retain' or 'retain_fraction', not both")
        defaults: dict[str, Any] = {}
        for param in inspect.signature(fn).parameters.values():
            if param.kind is not inspect.Parameter.KEYWORD_ONLY or param.name == "device":
                continue
            if param.default is inspect.Parameter.empty:
                raise ValueError(f"method {key}: hyperparameter {param.name} needs a default")
            check_finite(f"method {key}", param.name, param.default)
            defaults[param.name] = param.default
        if "retain_fraction" in uses and "retain_fraction" not in defaults:
            raise ValueError(f"method {key}: uses retain_fraction but has no retain_fraction hyperparameter")
        for task_hp in (tuned or {}).values():
            unknown = set(task_hp) - set(defaults)
            if unknown:
                raise ValueError(f"method {key}: tuned values for unknown hyperparameters {sorted(unknown)}")
        for hp_name, value in [*((k, v) for t in (tuned or {}).values() for k, v in t.items()), *(fixed or {}).items()]:
            check_finite(f"method {key}", hp_name, value)
        doc = inspect.getdoc(fn) or ""
        spec = MethodSpec(
            name=key,
            fn=fn,
            uses=tuple(uses),
            paper=paper,
            description=doc.splitlines()[0] if doc else "",
            version=version,
            defaults=defaults,
            tuned=dict(tuned or {}),
            bounds=dict(bounds or {}),
            fixed=dict(fixed or {}),
            applies_to=applies_to,
        )
        METHODS.register(key, spec)
        return fn

    return register


def get_method(name: str) -> MethodSpec:
    """The registered method ``name`` (importing the bundled methods first)."""
    load_methods()
    return METHODS.get(name)


def list_methods() -> list[str]:
    load_methods()
    return METHODS.names()


def plugin_modules() -> list[str]:
    """The modules named in ``$UNLEARNBENCH_PLUGINS`` (comma-separated import paths)."""
    import os

    return [m.strip() for m in os.environ.get("UNLEARNBENCH_PLUGINS", "").split(",") if m.strip()]


def importable(spec: MethodSpec) -> bool:
    """Whether a fresh worker process registers ``spec`` too: a bundled method or one of a plugin
    module, not one defined in a notebook, a script's ``__main__`` or inside a function."""
    module = getattr(spec.fn, "__module__", "")
    return ((module.startswith("bench.methods.") or module in plugin_modules())
            and "<locals>" not in getattr(spec.fn, "__qualname__", "<locals>"))


def load_methods() -> None:
    """Import every module of :mod:`bench.methods`, which registers the bundled methods, then the
    modules named in ``$UNLEARNBENCH_PLUGINS`` (comma-separated import paths): methods outside the
    package register the same way, and worker processes import them too."""
    import importlib
    import pkgutil

    import bench.methods as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"bench.methods.{info.name}")
    for module in plugin_modules():
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - a broken plugin raises anything while it is imported
            raise PluginError(f"UNLEARNBENCH_PLUGINS names {module!r}, which cannot be imported "
                              f"({type(err).__name__}: {err}); fix the module or remove it from UNLEARNBENCH_PLUGINS") from err


class PluginError(RuntimeError):
    """A module named in ``$UNLEARNBENCH_PLUGINS`` is missing or fails while imported: the user's
    setting, so the command line reports it as an error, not a traceback."""
