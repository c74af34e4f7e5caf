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
command -v patch >/dev/null 2>&1 || missing+=(patch) # vendor/apply.sh (tests/vendor_drift.rs)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux) # tests/e2e_hostile.rs (loopback-only namespace)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)        # ... and its loopback interface
command -v openssl >/dev/null 2>&1 || missing+=(openssl)    # scripts/grpc-certs.sh (gRPC TLS tests)
[ -x /usr/sbin/kamailio ] || missing+=(kamailio)             # tests/e2e_interop.rs (a record-routing proxy)
command -v linphonec >/dev/null 2>&1 || missing+=(linphone-cli) # tests/e2e_linphone.rs
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The OpenMetrics parser (Python prometheus-client) for tests/e2e_metrics.rs, in a venv of its own:
# a stock Debian Python refuses `pip install` outside one (PEP 668, externally managed).
TOOLS=${MILLIWATT_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/milliwatt-test-tools}
PYENV=$TOOLS/py-metrics
if ! "$PYENV/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  echo "test.sh: installing the Python package prometheus-client into $PYENV (OpenMetrics parser for the tests)"
  mkdir -p "$TOOLS"
  if ! python3 -m venv "$PYENV" 2>/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv
    rm -rf "$PYENV"
    python3 -m venv "$PYENV"
  fi
  "$PYENV/bin/python" -m pip install -q --disable-pip-version-check prometheus-client
fi
# Not MILLIWATT_*: the services read every MILLIWATT_ variable as configuration (and reject unknown keys).
export OPENMETRICS_PARSER_PYTHON=$PYENV/bin/python

echo "== cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check) # its own workspace (README "Fuzzing")
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (the binaries the end-to-end tests start)"
cargo build --workspace --bins
echo "== unit tests (the pure cores in simulated time, the shells), design walls, vendor drift"
cargo test --workspace --lib --bins
cargo test --test walls --test vendor_drift
echo "== SIP framing through the vendored ezk's own receive parsing (signaling/tests/framing.rs)"
cargo test -p milliwatt-signaling --test framing
echo "== fuzz targets, a short bounded run each from the committed corpus (scripts/fuzz.sh)"
bash scripts/fuzz.sh 15
# The end-to-end tests run in real time (20 ms packet pacing judged to 2 %, RFC 3261 timers to
# 250 ms): one test at a time, so that they do not starve each other on 2 cores.
for t in tests/e2e_*.rs; do
  name=$(basename "$t" .rs)
  echo "== $name (one test at a time)"
  cargo test --test "$name" -- --test-threads=1
done
echo "== benchmark smoke run (debug build: the benchmark's path runs through; no figures kept)"
cargo build --example bench
target/debug/examples/bench smoke
echo "== helm chart (lint, template, Kubernetes schema validation, negative cases)"
bash tests/helm/run.sh
