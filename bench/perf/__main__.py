"""``python -m bench.perf run|rerun JSON``: the child process of ``bench perf``'s run measures.

A fresh interpreter, so that a run's peak resident set is its own and a cached re-run pays the
interpreter start and the imports as ``bench run`` does. ``run``: :func:`bench.perf.runs.one_run`;
``rerun``: :func:`bench.perf.runs.cached_rerun`. Prints one JSON object as the last line of stdout.
Started by :func:`bench.perf.runs.run_child` with ``-P`` (see :data:`bench.perf.runs.SAFE_PATH`).
"""
from __future__ import annotations

import json
import sys
from typing import Sequence

import torch

from bench.perf.runs import cached_rerun, one_run, task_from_json


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("run", "rerun"):
        print("usage: python -m bench.perf run|rerun JSON (used by bench perf)", file=sys.stderr)
        return 2
    payload = json.loads(argv[1])
    torch.set_num_threads(int(payload["threads"]))
    if argv[0] == "run":
        out = one_run(task_from_json(payload["task"]), payload["method"], device=payload["device"],
                      cache=payload["cache"], data_root=payload["data_root"], seed=int(payload["seed"]))
    else:
        out = cached_rerun(payload)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
