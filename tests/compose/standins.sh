#!/usr/bin/env bash
# Creates local stand-ins for the Dockerfile's upstream base images when no registry can be
# reached: `debian:bookworm-slim` (debootstrap of Debian's minbase) and
# `rust:<version>-slim-bookworm` (that base + gcc, libc6-dev, ca-certificates and this host's own
# Rust toolchain). Images that already exist are kept. The Dockerfile itself is unchanged.
# The host's CA bundle is copied into the stand-in builder only (TLS to crates.io is re-signed on
# this network); nothing of it is committed.
set -euo pipefail
DOCKER=${DOCKER:-/usr/bin/docker}
RUST_VERSION=${RUST_VERSION:-1.95}
BASE=debian:bookworm-slim
BUILDER=rust:${RUST_VERSION}-slim-bookworm

have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

if ! have "$BASE"; then
  echo "standins: $BASE is a LOCAL STAND-IN made with debootstrap (no registry here)"
  if ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || { echo "standins: no Debian mirror configured for apt" >&2; exit 1; }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | "$DOCKER" import - "$BASE" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

if ! have "$BUILDER"; then
  echo "standins: $BUILDER is a LOCAL STAND-IN: $BASE + gcc + this host's Rust toolchain"
  sysroot=$(rustc --print sysroot)
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  # Without its documentation (about 800 MB of the 1.4 GB) and library sources.
  mkdir "$ctx/toolchain"
  tar -C "$sysroot" --exclude=./share/doc --exclude=./lib/rustlib/src -c . | tar -C "$ctx/toolchain" -x
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY toolchain /usr/local/rustup/toolchains/local
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/rustup/toolchains/local/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DOCKERFILE
  DOCKER_BUILDKIT=1 "$DOCKER" build --network host -q -t "$BUILDER" "$ctx" >/dev/null
  rm -rf "$ctx"
  trap - EXIT
fi
echo "standins: $BASE and $BUILDER present (local stand-ins where no registry was reachable)"
