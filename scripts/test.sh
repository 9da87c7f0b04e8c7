#!/usr/bin/env bash
# The test suite with real services: a PostgreSQL server and a local Ray head, both
# started here and stopped on exit (by their own data dir / ray stop), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled
work=$(mktemp -d /tmp/parsec-test.XXXXXX)
chmod 755 "$work"
started_ray=0
cleanup() {
  [ "$started_ray" = 1 ] && .venv/bin/ray stop --force >/dev/null 2>&1 || true
  .venv/bin/python -m parsec.store.pgctl stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

eval "$(.venv/bin/python -m parsec.store.pgctl start "$work/pg" --env PARSEC_TEST_DATABASE_)"
echo "test: PostgreSQL on $PARSEC_TEST_DATABASE_HOST:$PARSEC_TEST_DATABASE_PORT"

if [ -z "${RAY_ADDRESS:-}" ]; then
  ray_port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  .venv/bin/ray start --head --node-ip-address 127.0.0.1 --port "$ray_port" --dashboard-host 127.0.0.1 \
      --dashboard-port 0 --num-cpus 2 --disable-usage-stats >"$work/ray-start.log" 2>&1 \
    || { cat "$work/ray-start.log"; exit 1; }
  started_ray=1
  export RAY_ADDRESS="127.0.0.1:$ray_port"
  echo "test: Ray head at $RAY_ADDRESS"
fi

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then echo "test: no tests ran"; fi
exit "$status"
