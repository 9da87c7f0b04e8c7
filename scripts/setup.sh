#!/usr/bin/env bash
# Creates .venv, installs parsec with its pinned dependencies, builds the Go and Node.js
# testbed programs (each step idempotent; PARSEC_SETUP_PYTHON_ONLY=1 skips the programs).
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
  .venv/bin/python -m pip install -q -e ".[test,analysis,jupyter]"
  touch "$stamp"
fi

# the Go and Node.js testbed programs (peers of other implementations); cluster nodes that
# run only py fleets skip them (PARSEC_SETUP_PYTHON_ONLY=1, as cluster.yaml does)
if [ "${PARSEC_SETUP_PYTHON_ONLY:-0}" != 1 ]; then
  bash scripts/build-go.sh
  bash scripts/build-js.sh
fi
