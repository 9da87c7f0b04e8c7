#!/usr/bin/env bash
# The test suite with real services: a PostgreSQL server and a local Ray head, both
# started here and stopped on exit (by their own data dir / the PID of our `ray start
# --block`, which takes its Ray processes with it — never `ray stop`, which would end every
# Ray cluster on the machine), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled
work=$(mktemp -d /tmp/parsec-test.XXXXXX)
chmod 755 "$work"
ray_pid=
cleanup() {
  if [ -n "$ray_pid" ]; then kill "$ray_pid" 2>/dev/null || true; wait "$ray_pid" 2>/dev/null || true; fi
  .venv/bin/python -m parsec.store.pgctl stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# scheduler jobs the tests submit keep their journals here (the Ray head passes it on), not in ~/.parsec
export PARSEC_SCHEDULER_SPOOL_DIR="$work/spool"
eval "$(.venv/bin/python -m parsec.store.pgctl start "$work/pg" --env PARSEC_TEST_DATABASE_)"
echo "test: PostgreSQL on $PARSEC_TEST_DATABASE_HOST:$PARSEC_TEST_DATABASE_PORT"

if [ -z "${RAY_ADDRESS:-}" ]; then
  # every port of this head chosen free, so test runs in two checkouts do not collide
  # (Ray's agents otherwise take fixed defaults such as 52365)
  read -r ray_port agent_port agent_grpc env_port metrics_port client_port < <(.venv/bin/python -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  .venv/bin/ray start --head --block --node-ip-address 127.0.0.1 --port "$ray_port" --dashboard-host 127.0.0.1 \
      --dashboard-port 0 --dashboard-agent-listen-port "$agent_port" --dashboard-agent-grpc-port "$agent_grpc" \
      --runtime-env-agent-port "$env_port" --metrics-export-port "$metrics_port" --ray-client-server-port "$client_port" \
      --num-cpus 2 --disable-usage-stats >"$work/ray-start.log" 2>&1 &
  ray_pid=$!
  export RAY_ADDRESS="127.0.0.1:$ray_port"
  for _ in $(seq 60); do
    kill -0 "$ray_pid" 2>/dev/null || { cat "$work/ray-start.log"; exit 1; }
    .venv/bin/ray status --address "$RAY_ADDRESS" >/dev/null 2>&1 && break
    sleep 1
  done
  .venv/bin/ray status --address "$RAY_ADDRESS" >/dev/null 2>&1 || { cat "$work/ray-start.log"; exit 1; }
  echo "test: Ray head at $RAY_ADDRESS"
fi

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then echo "test: no tests ran"; fi
exit "$status"
