#!/usr/bin/env bash
# Build the Go testbed program (many go-libp2p-kad-dht peers in one process, driven by
# parsec/testbed/external.py) to testbed/go/bin/parsec-go-peers.
#
# Idempotent: does nothing when the binary is newer than every source, go.mod and go.sum
# (--force rebuilds). Needs only the Go toolchain (go.mod's version or newer; an older
# `go` fetches the right toolchain through GOTOOLCHAIN=auto) and the Go module proxy.
# Builds with CGO_ENABLED=0: a static binary, no C compiler needed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/testbed/go"
out="$src/bin/parsec-go-peers"
force=0
[ "${1:-}" = "--force" ] && force=1

if ! command -v go >/dev/null 2>&1; then
  echo "build-go: the Go toolchain ('go') is not on PATH. Install Go 1.26 or newer" \
       "(https://go.dev/dl/) and run scripts/build-go.sh again." >&2
  exit 1
fi

if [ "$force" = 0 ] && [ -x "$out" ]; then
  newer="$(find "$src" -path "$src/bin" -prune -o -type f \
             \( -name '*.go' -o -name go.mod -o -name go.sum \) -newer "$out" -print -quit)"
  if [ -z "$newer" ]; then
    echo "build-go: $out is up to date"
    exit 0
  fi
fi

echo "build-go: building $out with $(go version | cut -d' ' -f3-)"
start=$(date +%s)
mkdir -p "$src/bin"
cd "$src"
# -mod=mod: go.sum may be completed from the module proxy; -buildvcs=false: the binary
# does not depend on git state.
GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 go build -trimpath -o "$out.tmp.$$" . \
  || { rm -f "$out.tmp.$$"; echo "build-go: go build failed" >&2; exit 1; }
mv -f "$out.tmp.$$" "$out"
echo "build-go: built $out in $(( $(date +%s) - start ))s"
