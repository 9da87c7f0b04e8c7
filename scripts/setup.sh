#!/usr/bin/env bash
# Creates .venv, installs parsec with its pinned dependencies, builds the Go and Node.js
# testbed programs (each step idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.parsec-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing dependencies (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi

# the Go and Node.js testbed programs (peers of other implementations)
bash scripts/build-go.sh
bash scripts/build-js.sh
