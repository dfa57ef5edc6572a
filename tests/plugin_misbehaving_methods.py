"""Methods that misbehave on purpose, registered through $UNLEARNBENCH_PLUGINS (tests only): each
stands for a hostile or buggy method the harness must survive without a wrong number, a lost
record or a stopped sweep (tests/test_isolation.py)."""
import os
import sys
import time

import torch

from bench.registry import method

#: What ``received`` saw: the (model, data) of its last call, for the reachability walk.
RECEIVED: list = []


@method(uses=("retain",), paper="test plugin", version=1)
def zeroes_retain(model, data, *, device):
    """Edits its retain images in place (a method that forgot to copy before augmenting)."""
    data.retain.x.zero_()
    return model


@method(uses=(), paper="test plugin", version=1)
def received(model, data, *, device):
    """Keeps what it was given, so that a test can walk everything reachable from it."""
    RECEIVED[:] = [model, data]
    return model


@method(uses=(), paper="test plugin", version=1)
def calls_sys_exit(model, data, *, device):
    """Ends its process politely (a script's habit), which must not end the sweep."""
    sys.exit(3)


@method(uses=(), paper="test plugin", version=1)
def kills_its_process(model, data, *, device):
    """Ends its process at once, as an out-of-memory kill would: no exception, no clean-up."""
    os._exit(7)


@method(uses=(), paper="test plugin", version=1)
def never_returns(model, data, *, device):
    """Hangs (a deadlock, an endless loop)."""
    while True:
        time.sleep(0.05)


@method(uses=(), paper="test plugin", version=1)
def diverges(model, data, *, device):
    """Returns a model whose outputs are NaN (a training run that diverged)."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return model
