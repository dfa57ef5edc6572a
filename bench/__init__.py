"""unlearnbench: an open benchmark for machine unlearning in image classification.

Public API::

    import bench
    rows = bench.run("digits-cnn-class", "finetune", seeds=[0])
    bench.list_tasks(), bench.list_methods(), bench.list_metrics()

Every name is imported on first use (PEP 562), so ``import bench.registry`` or ``bench ls`` does
not pay for torch and the runner.
"""
from __future__ import annotations

import importlib
from typing import Any

#: Public name → the module that holds it.
_HOMES = {
    "run": "bench.run",
    "method": "bench.registry",
    "get_method": "bench.registry",
    "list_methods": "bench.registry",
    "get_task": "bench.tasks",
    "list_tasks": "bench.tasks",
}

__all__ = ["run", "method", "get_method", "get_task", "list_methods", "list_tasks", "list_metrics"]


def list_metrics() -> list[str]:
    from bench.metrics import COMPOSITES, METRICS

    return METRICS.names() + COMPOSITES.names()


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    module = importlib.import_module(_HOMES[name])
    return module if name == "run" else getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
