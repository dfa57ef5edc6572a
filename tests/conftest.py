"""Shared fixtures: tiny SYNTHETIC tasks (never registered in ``bench.tasks.TASKS``) and caches
that live in pytest's temporary directories.

Every test that runs the harness passes ``results=``, ``leaderboard=`` and ``cache=`` pointing
into ``tmp_path``; on top of that, ``UNLEARNBENCH_CACHE`` is pointed at a temporary folder for the
whole session so that a forgotten ``cache=`` can never write to ``~/.cache``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bench.tasks import ForgetRule, Recipe, Task

torch.set_num_threads(1)

#: The tiny recipe of the synthetic tasks: 3 epochs on ~110 images of 8×8 pixels (well under a second).
SYNTHETIC_RECIPE = Recipe(epochs=3, batch_size=32, lr=3e-3)


def make_synthetic_task(name: str, forget: ForgetRule, *, version: int = 1) -> Task:
    """A task on the SYNTHETIC 4-class dataset with the small CNN and a Gaussian-noise surrogate."""
    return Task(
        name=name,
        description="SYNTHETIC test task",
        dataset="synthetic",
        arch="digits_cnn",
        forget=forget,
        recipe=SYNTHETIC_RECIPE,
        version=version,
        surrogate="gaussian_noise",
        surrogate_size=64,
    )


@pytest.fixture(scope="session", autouse=True)
def _no_home_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point the default reference cache at a temporary folder for the whole session."""
    old = os.environ.get("UNLEARNBENCH_CACHE")
    os.environ["UNLEARNBENCH_CACHE"] = str(tmp_path_factory.mktemp("default-cache"))
    yield
    if old is None:
        os.environ.pop("UNLEARNBENCH_CACHE", None)
    else:
        os.environ["UNLEARNBENCH_CACHE"] = old


@pytest.fixture(scope="session")
def synthetic_task() -> Task:
    """SYNTHETIC class removal: forget every training image of class 1 (not in the registry)."""
    return make_synthetic_task("synthetic-cnn-class", ForgetRule("classes", classes=(1,)))


@pytest.fixture(scope="session")
def synthetic_random_task() -> Task:
    """SYNTHETIC random forgetting: forget 20% of the training pool at random (not in the registry)."""
    return make_synthetic_task("synthetic-cnn-random", ForgetRule("random", fraction=0.2))


@pytest.fixture(scope="session")
def reference_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference cache shared by the tests that do not tamper with it."""
    return tmp_path_factory.mktemp("reference-cache")
