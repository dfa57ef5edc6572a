#!/usr/bin/env bash
# Create ./.venv (if missing) and install the pinned torch pair, then the project with its test extra.
# Idempotent: re-running only installs what is missing. Usage: bash ci/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The pinned CPU/GPU wheels first (served locally on the project's machines); the package metadata
# itself only asks for torch>=2.4 so that GPU users keep their own build.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
echo "unlearnbench installed in $(pwd)/.venv (run: .venv/bin/bench --help)"
