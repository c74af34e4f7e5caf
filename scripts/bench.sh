#!/usr/bin/env bash
# Benchmark: concurrent tone calls (sender loss, pacing lateness, media RSS, CPU per packet against
# a raw sendto baseline) and calls/s of 2-second calls (failures), with SIPp on the same machine,
# everything on loopback.
# Usage: scripts/bench.sh [concurrent N | rate R SECONDS]   (default: both, N=500, R=200, 10 s)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sipp >/dev/null || { echo "bench.sh: sipp is missing (Debian package sip-tester)" >&2; exit 1; }
cargo build --release --workspace --bins --examples
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
exec target/release/examples/bench "$@"
