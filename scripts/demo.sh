#!/usr/bin/env bash
# Quick start: set up, then run the local demo (testbed, servers, scheduler job, summary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled
exec .venv/bin/parsec demo "$@"
