#!/usr/bin/env bash
# The project's test command: set up (venv, pinned torch, the project), fetch the Debian
# Fashion-MNIST package when we may (root with apt), then run the whole CPU test suite,
# slow end-to-end tests included. Usage: bash ci/test.sh [extra pytest args]
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
exec .venv/bin/python -m pytest -q -ra "$@"
