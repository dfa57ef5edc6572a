"""Running a benchmark: :func:`run` (``bench.run(...)``), cut along its pipeline —

* :mod:`~bench.run.plan`: task × method × seed → the planned runs, and which are still to do;
* :mod:`~bench.run.evaluate`: a run's rows (the method timed, every metric; the oracle's rows);
* :mod:`~bench.run.jobs`: what a worker does (build a reference, execute a run);
* :mod:`~bench.run.executors`: where the jobs execute (local, processes, Ray), one interface;
* :mod:`~bench.run.estimate`: how long a plan will take;
* :mod:`~bench.run.driver`: :func:`run` itself.

``bench.run`` names both this package and the public function: importing any module of the package
makes ``bench.run`` the package (Python sets a package's submodules as its attributes), so the
package is callable and calling it calls :func:`bench.run.driver.run`, with its signature.
"""
from __future__ import annotations

import inspect
import sys
import types
from typing import Any

from bench.run.driver import run

__all__ = ["run"]
__signature__ = inspect.signature(run)


class _CallablePackage(types.ModuleType):
    """``bench.run(...)`` is :func:`bench.run.driver.run` (see the module docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict]:
        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
