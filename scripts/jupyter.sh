#!/usr/bin/env bash
# Opens the analysis notebooks in JupyterLab with this checkout's environment: sets up .venv
# (with the jupyter extra), registers its kernel as "parsec" for this user, starts JupyterLab
# in notebooks/. Extra arguments go to `jupyter lab` (e.g. --no-browser --port 8899).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ipykernel install --user --name parsec --display-name "Python 3 (parsec)" >/dev/null
echo "jupyter: kernel 'Python 3 (parsec)' registered for this checkout's .venv"
root=(); [ "$(id -u)" = 0 ] && root=(--allow-root)  # Jupyter refuses root unless told (containers, CI boxes)
exec .venv/bin/jupyter lab --notebook-dir notebooks --ServerApp.ip=127.0.0.1 "${root[@]}" "$@"
