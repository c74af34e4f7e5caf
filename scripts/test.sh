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

# The fuzz targets' sanitizer build, the container images and the Helm checks take minutes of
# CPU (and downloads) that only the last steps need, while the builds below leave a core idle in
# their serial stretches and the end-to-end tests mostly wait on real time (20 ms packets, SIP
# timers). So all three start now, in the background at idle CPU priority: SCHED_IDLE (chrt) for
# our own processes, and for the image build the cpu.idle knob of Docker's cgroup (BuildKit runs
# its build steps in Docker's cgroup, not as our children), set for the build and put back after
# it. A SCHED_IDLE task runs only when nothing else wants the CPU, so the tests' processes are
# never kept waiting by it. Where Docker's cgroup cannot be made idle (not root, cgroup v2 under
# systemd), the images are built in the foreground by tests/e2e_compose.rs.
bg=$(mktemp -d "${TMPDIR:-/tmp}/milliwatt-test-bg.XXXXXX")
fuzz_pid=""
images_pid=""
helm_pid=""
docker_idle=""
docker_idle_was=""
finish_bg() {
  [ -z "$fuzz_pid" ] || kill -- -"$fuzz_pid" 2>/dev/null || true
  [ -z "$images_pid" ] || kill -- -"$images_pid" 2>/dev/null || true
  [ -z "$helm_pid" ] || kill -- -"$helm_pid" 2>/dev/null || true
  [ -z "$docker_idle" ] || echo "$docker_idle_was" >"$docker_idle" 2>/dev/null || true
  rm -rf "$bg"
}
trap finish_bg EXIT
# wait_bg PID LOG WHAT: waits for a background job; when it failed, prints its log and stops.
wait_bg() {
  if ! wait "$1"; then
    echo "test.sh: $3 failed; its log:" >&2
    tail -n 100 "$2" >&2
    exit 1
  fi
}
set -m # each background job in a process group of its own (so that finish_bg can stop it whole)
echo "== fuzz targets' build, in the background at idle CPU priority (scripts/fuzz.sh --build-only)"
chrt --idle 0 bash scripts/fuzz.sh --build-only >"$bg/fuzz-build.log" 2>&1 &
fuzz_pid=$!
echo "== helm chart checks, in the background at idle CPU priority (tests/helm/run.sh: lint, template, Kubernetes schema validation, negative cases)"
chrt --idle 0 bash tests/helm/run.sh >"$bg/helm.log" 2>&1 &
helm_pid=$!
for d in /sys/fs/cgroup/cpu/docker /sys/fs/cgroup/docker; do
  [ -d "$(dirname "$d")" ] || continue
  [ "$d" = /sys/fs/cgroup/docker ] || mkdir -p "$d" 2>/dev/null || continue
  if [ -w "$d/cpu.idle" ] && docker_idle_was=$(cat "$d/cpu.idle") && echo 1 >"$d/cpu.idle" 2>/dev/null; then
    docker_idle=$d/cpu.idle
    break
  fi
done
if [ -n "$docker_idle" ]; then
  echo "== container images' build, in the background at idle CPU priority ($docker_idle = 1 while it runs)"
  chrt --idle 0 bash tests/compose/build-images.sh >"$bg/images.log" 2>&1 &
  images_pid=$!
else
  echo "== container images: Docker's cgroup cannot be made idle here; tests/e2e_compose.rs builds them in the foreground"
fi
set +m

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
# --workspace, not -p milliwatt-signaling: the workspace's features, so the dependencies built
# above are reused (with -p, cargo resolved other features and rebuilt tokio's and hyper's crates
# and everything above them: 1 min 15 s of a cold run).
cargo test --workspace --test framing
# The end-to-end tests run in real time (20 ms packet pacing judged to 2 %, RFC 3261 timers to
# 250 ms): one test at a time, so that they do not starve each other on 2 cores. Except
# e2e_sipp, two at a time: each of its tests is one call or a few that mostly wait (the
# session-timer test 63 s, the PRACK test 33 s), ports come from one allocator in the process,
# and two at a time halve its 3.3 minutes. The Compose tests come last (they need the images).
for t in tests/e2e_*.rs; do
  name=$(basename "$t" .rs)
  [ "$name" != e2e_compose ] || continue
  threads=1
  [ "$name" != e2e_sipp ] || threads=2
  echo "== $name ($threads test(s) at a time)"
  cargo test --test "$name" -- --test-threads=$threads
done

echo "== fuzz targets, a short bounded run each from the committed corpus (scripts/fuzz.sh)"
wait_bg "$fuzz_pid" "$bg/fuzz-build.log" "the fuzz targets' build"
fuzz_pid=""
tail -n 1 "$bg/fuzz-build.log"
bash scripts/fuzz.sh 15

if [ -n "$images_pid" ]; then
  wait_bg "$images_pid" "$bg/images.log" "the container images' build"
  images_pid=""
  cat "$bg/images.log"
  echo "$docker_idle_was" >"$docker_idle"
  docker_idle=""
fi
echo "== e2e_compose (one test at a time)"
cargo test --test e2e_compose -- --test-threads=1

echo "== benchmark smoke run (debug build: the benchmark's path runs through; no figures kept)"
cargo build --example bench
target/debug/examples/bench smoke
echo "== helm chart checks (started in the background at the beginning)"
wait_bg "$helm_pid" "$bg/helm.log" "the Helm checks"
helm_pid=""
grep -v '^ok ' "$bg/helm.log" || true
