#!/usr/bin/env bash
# The project's test command: set up (venv, pinned torch, the project), fetch the Debian
# Fashion-MNIST package when we may (root with apt), then run the whole CPU test suite,
# slow end-to-end tests included. Usage: bash ci/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null \
    || echo "warning: could not install dataset-fashion-mnist; the Fashion-MNIST tests will be skipped"
fi
exec .venv/bin/python -m pytest -q -ra "$@"
