#!/usr/bin/env bash
# The fuzz targets in fuzz/ (cargo-fuzz, libFuzzer; README "Fuzzing"): build them once, then run
# each for SECONDS from its hand-written seeds (fuzz/seeds/TARGET) and its committed corpus
# (fuzz/corpus/TARGET, inputs libFuzzer found), both read only: new inputs go to a temp dir.
# A crash, an assertion of a target, a leak, an input slower than 10 s or more than 2 GiB of
# memory fails the run; libFuzzer saves the input in fuzz/artifacts/TARGET/ and this script
# prints the command that replays it.
#
# usage: bash scripts/fuzz.sh [--grow | --build-only] [SECONDS [TARGET...]]   (default: 15 s, every target)
#
# --grow: new inputs go into fuzz/corpus/TARGET itself, which is then minimized
# (`cargo fuzz cmin`, keeping the coverage): how the committed corpus is grown after a long run.
# --build-only: build the targets (and install cargo-fuzz if missing), run nothing: scripts/test.sh
# builds them early at idle CPU priority and runs them later.
#
# Needs the nightly toolchain (`cargo +nightly`: sanitizer flags) and cargo-fuzz, installed
# 0.13.2 from crates.io here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

grow=false
build_only=false
if [ "${1-}" = --grow ]; then grow=true; shift; fi
if [ "${1-}" = --build-only ]; then build_only=true; shift; fi
seconds=${1:-15}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: SECONDS must be a positive integer, not '$seconds'" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sip_request sdp_negotiation rtp_rtcp_dtmf config_load)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly Rust toolchain is missing ('cargo +nightly' fails): cargo-fuzz needs it (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked --quiet
fi

cd fuzz
echo "fuzz.sh: building ${targets[*]}"
for t in "${targets[@]}"; do
  cargo +nightly fuzz build "$t"
done
if $build_only; then
  echo "fuzz.sh: built ${targets[*]}"
  exit 0
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/milliwatt-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
  [ -d "seeds/$t" ] || { echo "fuzz.sh: no seeds/$t" >&2; exit 1; }
  mkdir -p "corpus/$t"
  mkdir -p "$scratch/$t" "artifacts/$t"
  echo "== fuzz $t for ${seconds}s (seeds: $(ls "seeds/$t" | wc -l), corpus: $(ls "corpus/$t" | wc -l))"
  dirs=("$scratch/$t" "corpus/$t" "seeds/$t")
  $grow && dirs=("corpus/$t" "seeds/$t")
  if cargo +nightly fuzz run "$t" "${dirs[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$scratch/$t.log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)|^#[0-9]+.*DONE' "$scratch/$t.log" || true
    if $grow; then
      cargo +nightly fuzz cmin "$t" "corpus/$t" >"$scratch/$t.cmin.log" 2>&1 || { tail -n 20 "$scratch/$t.cmin.log"; exit 1; }
      echo "fuzz.sh: corpus/$t minimized to $(ls "corpus/$t" | wc -l) inputs"
    fi
  else
    tail -n 60 "$scratch/$t.log"
    artifact=$(grep -o 'artifacts/[^ ]*' "$scratch/$t.log" | tail -n 1 || true)
    echo "fuzz.sh: $t FAILED; replay: (cd fuzz && cargo +nightly fuzz run $t ${artifact:-artifacts/$t/<input>})" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${targets[*]}: no failure in ${seconds}s each"
