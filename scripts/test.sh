#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and the end-to-end tests that place real
# calls with SIPp and baresip against the real binaries on loopback.
# Installs the Debian packages it needs when they are missing (needs root or sudo for that).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -c 'import prometheus_client' 2>/dev/null || {
  echo "test.sh: installing the Python package prometheus-client (OpenMetrics parser for the tests)"
  python3 -m pip install -q prometheus-client
}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (the binaries the end-to-end tests start)"
cargo build --workspace --bins
echo "== cargo test"
cargo test --workspace
echo "== helm chart (lint, template, Kubernetes schema validation, negative cases)"
bash tests/helm/run.sh
