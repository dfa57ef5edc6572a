#!/usr/bin/env bash
# The project's test command: set up (venv, pinned torch, the project), fetch the Debian
# Fashion-MNIST package when we may (root with apt), then run the whole CPU test suite,
# slow end-to-end tests included, and (without arguments) the regression checks of the published
# results. Usage: bash ci/test.sh [pytest args: run only those tests, no regression checks]
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
# Ray is an optional extra for users; the tests exercise the Ray executor, so CI installs it.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,ray]"
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; then
    # In CI the real-data tests must run; elsewhere they are skipped with the reason.
    [ -n "${CI:-}" ] && { echo "error: apt-get install dataset-fashion-mnist failed" >&2; exit 1; }
    echo "warning: could not install dataset-fashion-mnist; the Fashion-MNIST tests will be skipped"
  fi
fi
.venv/bin/python -m pytest -q -ra "$@"
# The published numbers (issue 10), when the whole suite ran: the committed leaderboard must be what
# `bench report` makes of the committed results, and re-running the digits suite must reproduce
# every committed digits number (exactly on the same CPU kernels; see `bench check --help`).
if [ $# -eq 0 ]; then
  .venv/bin/bench report --check --results results --out leaderboard
  .venv/bin/bench check --baseline results/
fi
