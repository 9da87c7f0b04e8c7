#!/usr/bin/env bash
# Start this host's Ray node of a parsec cluster (cluster.yaml, cluster-onprem.yaml, and
# the multi-node test run it the same way):
#
#   scripts/ray-node.sh head [ray start options…]
#   scripts/ray-node.sh worker HEAD_IP:PORT [ray start options…]
#
# - database: PARSEC_DATABASE_* from $PARSEC_ENV_FILE (default ~/parsec.env) are exported
#   into the node, so every actor and job on it inherits them;
# - token authentication: RAY_AUTH_MODE=token unless set (the token: ~/.ray/auth_token,
#   RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN);
# - region: the node declares the custom resource region:<name> fleets are placed by —
#   PARSEC_NODE_REGION, else AWS_REGION, else the EC2 instance metadata; skipped when the
#   cluster launcher already sets the node type's resources (RAY_OVERRIDE_RESOURCES) or
#   the caller passes --resources;
# - the dashboard and job API listen on 127.0.0.1 only (reach them through an SSH tunnel,
#   e.g. `ray dashboard cluster.yaml`).
# It never runs `ray stop`: cluster.yaml does that itself on its dedicated hosts.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
role=${1:-}
shift || true
die() { echo "ray-node: $*" >&2; exit 2; }

env_file=${PARSEC_ENV_FILE:-$HOME/parsec.env}
if [ -f "$env_file" ]; then set -a; . "$env_file"; set +a; fi
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token} RAY_USAGE_STATS_ENABLED=${RAY_USAGE_STATS_ENABLED:-0}
ray_bin=${PARSEC_RAY_BIN:-$root/.venv/bin/ray}
[ -x "$ray_bin" ] || die "no Ray at $ray_bin: run scripts/setup.sh first (or set PARSEC_RAY_BIN)"
# jobs run with the node's environment: `python jobs/…` must be this venv's python
export PATH="$(cd "$(dirname "$ray_bin")" && pwd):$PATH"

imds_region() {
  # IMDSv2: a session token first; 1 s timeouts so a non-EC2 host gives up at once
  local token
  token=$(curl -sf -m 1 -X PUT http://169.254.169.254/latest/api/token \
            -H "X-aws-ec2-metadata-token-ttl-seconds: 60") || return 0
  curl -sf -m 1 -H "X-aws-ec2-metadata-token: $token" \
    http://169.254.169.254/latest/meta-data/placement/region || true
}

args=("$@")
if [ -z "${RAY_OVERRIDE_RESOURCES:-}" ] && [[ " ${args[*]-} " != *" --resources"* ]]; then
  region=${PARSEC_NODE_REGION:-${AWS_REGION:-$(imds_region)}}
  if [ -n "$region" ]; then
    [[ "$region" =~ ^[a-z0-9-]+$ ]] || die "bad region name '$region'"
    args+=("--resources" "{\"region:$region\": 1}")
    echo "ray-node: region $region"
  else
    echo "ray-node: no region (set PARSEC_NODE_REGION); fleets cannot be placed on this node" >&2
  fi
fi

case "$role" in
  head)
    exec "$ray_bin" start --head --dashboard-host 127.0.0.1 --disable-usage-stats "${args[@]}" ;;
  worker)
    [ "${#args[@]}" -ge 1 ] || die "usage: ray-node.sh worker HEAD_IP:PORT [ray start options]"
    head_address=${args[0]}
    exec "$ray_bin" start --address "$head_address" --disable-usage-stats "${args[@]:1}" ;;
  *)
    die "usage: ray-node.sh head|worker [HEAD_IP:PORT] [ray start options]" ;;
esac
