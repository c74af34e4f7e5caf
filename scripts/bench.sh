#!/usr/bin/env bash
# Benchmark: concurrent tone calls (sender loss, pacing lateness, media RSS, CPU per packet against
# a raw sendto baseline) and calls/s of 2-second calls (failures), with SIPp on the same machine,
# everything on loopback.
# Usage: scripts/bench.sh [concurrent N | rate R SECONDS | overload N R SECONDS | memory N |
#                          duplex N | baresip [RATE ...]]
#        (default: concurrent 500 and rate 200 10; memory: the all-in-one process, RSS per call;
#        baresip: the CPU per call against Debian's baresip at its highest clean rate)
#        scripts/bench.sh flood [SECONDS [RATE [SOURCES]]]    (default 60 s, 5000 messages/s, 200
#        addresses: tests/e2e_flood.rs on the release build, longer and harder than in the tests)
#        scripts/bench.sh soak [CALLS [RATE]]                  (default 1,000,000 calls at 500/s:
#        tests/e2e_soak.rs on the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1-}" = flood ]; then
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
  cargo build --release --workspace --bins
  export FLOOD_SECONDS=${2:-60} FLOOD_RATE=${3:-5000} FLOOD_SOURCES=${4:-200}
  echo "## flood: ${FLOOD_SECONDS} s at ${FLOOD_RATE} messages/s from ${FLOOD_SOURCES} addresses"
  exec cargo test --release --test e2e_flood -- --nocapture --test-threads=1
fi
if [ "${1-}" = soak ]; then
  command -v sipp >/dev/null || { echo "bench.sh: sipp is missing (Debian package sip-tester)" >&2; exit 1; }
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
  cargo build --release --workspace --bins
  export SOAK_CALLS=${2:-1000000} SOAK_RATE=${3:-500}
  echo "## soak: ${SOAK_CALLS} calls at ${SOAK_RATE}/s"
  exec cargo test --release --test e2e_soak -- --nocapture --test-threads=1
fi
command -v sipp >/dev/null || { echo "bench.sh: sipp is missing (Debian package sip-tester)" >&2; exit 1; }
cargo build --release --workspace --bins --examples
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
exec target/release/examples/bench "$@"
