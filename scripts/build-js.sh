#!/usr/bin/env bash
# Install the js-libp2p testbed program's dependencies (testbed/js) exactly as locked.
#
#   scripts/build-js.sh            # npm ci, skipped when node_modules matches package-lock.json
#   scripts/build-js.sh --force    # reinstall regardless
#
# Needs Node.js >= 20 and npm (the npm registry must be reachable for the first install).
# Idempotent: a stamp holding the sha256 of package-lock.json (+ node version) is written
# into node_modules after a successful `npm ci`; when it matches, nothing is done.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/testbed/js"
stamp="$dir/node_modules/.parsec-lock.sha256"

die() { echo "build-js: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node not found: install Node.js >= 20 (https://nodejs.org) and retry"
command -v npm >/dev/null 2>&1 || die "npm not found: install npm (it ships with Node.js) and retry"
major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
[ "$major" -ge 20 ] 2>/dev/null || die "Node.js >= 20 needed, found $(node --version 2>/dev/null || echo unknown)"
[ -f "$dir/package-lock.json" ] || die "missing $dir/package-lock.json"

want="$( { sha256sum "$dir/package-lock.json" | cut -d' ' -f1; echo "node-$major"; } | sha256sum | cut -d' ' -f1)"
if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "build-js: node_modules up to date ($dir)"
    exit 0
fi

echo "build-js: npm ci in $dir"
start=$(date +%s)
# engine warnings (p-retry declares node >= 22; polyfill.mjs covers Node 20) are not errors
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed (is the npm registry reachable?)"
echo "$want" > "$stamp"
echo "build-js: done in $(( $(date +%s) - start ))s"
