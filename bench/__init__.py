"""unlearnbench: an open benchmark for machine unlearning in image classification.

Public API::

    import bench
    rows = bench.run("digits-cnn-class", "finetune", seeds=[0])
    bench.list_tasks(), bench.list_methods(), bench.list_metrics()
"""
from bench.registry import get_method, list_methods, method
from bench.runner import run
from bench.tasks import get_task, list_tasks


def list_metrics() -> list[str]:
    from bench.metrics import COMPOSITES, METRICS

    return METRICS.names() + COMPOSITES.names()


__all__ = ["run", "method", "get_method", "get_task", "list_methods", "list_tasks", "list_metrics"]
