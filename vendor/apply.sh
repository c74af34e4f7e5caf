#!/usr/bin/env bash
# Build "published ezk crates + vendor/patches/*.patch" and compare it with, or write it to,
# vendor/ezk-sip-core, vendor/ezk-sip-ua and vendor/ezk-sip-types. See vendor/README.md for the workflow.
#
# usage: bash vendor/apply.sh [--upto NNNN] [OUTDIR]   build into OUTDIR (default: a temp dir)
#        bash vendor/apply.sh --check                   exit 1 if vendor/ differs from the build
#        bash vendor/apply.sh --diff                    print vendor/ minus the build as a patch
#        bash vendor/apply.sh --write                   replace vendor/ezk-sip-* with the build
#
# Needs bash, coreutils, `patch` (Debian package `patch`) and `diff` (Debian package
# `diffutils`); `cargo` only when the published crates are not in cargo's registry yet.
# Exit status: 0 success, 1 drift or a patch that does not apply exactly, 2 usage/setup error.

set -euo pipefail
export LC_ALL=C

# The published crates the series applies to (directory name = crate name in the patches).
CRATES=(ezk-sip-core ezk-sip-ua ezk-sip-types)
VERSIONS=(0.9.2 0.9.1 0.6.5)

# Files not compared by --check and kept as they are by --write: `.cargo-ok` only. Cargo
# writes it next to a crate it unpacked into ~/.cargo/registry/src as a completion marker;
# it is not part of the published .crate and its content depends on the cargo version
# ("ok" in older cargo, `{"v":1}` in current cargo). `.cargo_vcs_info.json` IS compared: it is
# inside the .crate (written by `cargo package`, records the upstream git commit).
IGNORED=.cargo-ok

VENDOR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PATCHES=$VENDOR/patches

die() { echo "apply.sh: $*" >&2; exit 2; }
usage() { sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0; }

mode=build upto= outdir=
while (($#)); do
    case $1 in
        --check | --write | --diff) [[ $mode == build ]] || die "only one of --check/--write/--diff"; mode=${1#--} ;;
        --upto) [[ ${2-} =~ ^[0-9]{4}$ ]] || die "--upto needs a 4-digit patch number"; upto=$2; shift ;;
        -h | --help) usage ;;
        -*) die "unknown option $1 (try --help)" ;;
        *) [[ -z $outdir ]] || die "more than one OUTDIR"; outdir=$1 ;;
    esac
    shift
done
[[ $mode == build || (-z $upto && -z $outdir) ]] || die "--upto and OUTDIR go with the plain build only"

command -v patch >/dev/null || die "'patch' not found: install it (Debian/Ubuntu: apt-get install patch)"
command -v diff >/dev/null || die "'diff' not found: install it (Debian/Ubuntu: apt-get install diffutils)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ezk-vendor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- published sources --------------------------------------------------------------------
cargo_home=${CARGO_HOME:-$HOME/.cargo}

# Directory of a completely unpacked crate (`.cargo-ok` present) in cargo's registry src.
registry_src() {
    local d
    for d in "$cargo_home"/registry/src/*/"$1-$2"; do
        [[ -f $d/Cargo.toml && -f $d/.cargo-ok ]] && { echo "$d"; return 0; }
    done
    return 1
}

# Let cargo download and unpack the exact published versions (a throwaway project, outside
# any workspace; nothing is built).
fetch_published() {
    command -v cargo >/dev/null ||
        die "the published crates are not in $cargo_home/registry/src and 'cargo' is not installed to fetch them"
    local p=$tmp/fetch i
    mkdir -p "$p"
    {
        printf '[package]\nname = "ezk-vendor-fetch"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
        printf '[lib]\npath = "lib.rs"\n\n[workspace]\n\n[dependencies]\n'
        for i in "${!CRATES[@]}"; do
            printf '%s = { version = "=%s", default-features = false }\n' "${CRATES[i]}" "${VERSIONS[i]}"
        done
    } >"$p/Cargo.toml"
    : >"$p/lib.rs"
    echo "apply.sh: fetching ${CRATES[*]} from crates.io with cargo" >&2
    (cd "$p" && CARGO_TARGET_DIR=$p/target cargo fetch --quiet) ||
        die "cargo fetch failed (is crates.io reachable?)"
    FETCH_MANIFEST=$p/Cargo.toml
}

# Fallback when the registry dir is not where we look: ask cargo where the sources are.
metadata_src() {
    local path
    path=$(cargo metadata --format-version 1 --offline --manifest-path "$FETCH_MANIFEST" 2>/dev/null |
        grep -o "\"manifest_path\":\"[^\"]*/$1-$2/Cargo.toml\"" | head -n 1 | cut -d'"' -f4) || true
    [[ -n $path && -f $path ]] && dirname "$path"
}

SRCS=()
FETCH_MANIFEST=
for i in "${!CRATES[@]}"; do
    c=${CRATES[i]} v=${VERSIONS[i]}
    SRCS[i]=$(registry_src "$c" "$v") || {
        [[ -n $FETCH_MANIFEST ]] || fetch_published
        SRCS[i]=$(registry_src "$c" "$v" || metadata_src "$c" "$v") ||
            die "cargo fetched $c $v but its sources were not found under $cargo_home/registry/src"
    }
done

# --- build ---------------------------------------------------------------------------------
shopt -s nullglob
series=("$PATCHES"/*.patch)
shopt -u nullglob

# $1: output dir (new or empty), $2: number of the last patch to apply, or "" for all.
build() {
    local out=$1 last=$2 i c p name out_log n=0
    [[ ! -e $out || -z $(ls -A "$out") ]] || die "$out is not empty: give an empty or new OUTDIR"
    mkdir -p "$out"
    for i in "${!CRATES[@]}"; do
        c=${CRATES[i]}
        cp -R "${SRCS[i]}" "$out/$c"
        chmod -R u+w "$out/$c"
    done
    for p in "${series[@]}"; do
        name=${p##*/}
        [[ $name =~ ^([0-9]{4})-[A-Za-z0-9._-]+\.patch$ ]] ||
            { echo "apply.sh: $name: patch files are named NNNN-slug.patch" >&2; exit 1; }
        [[ -z $last ]] || (( 10#${BASH_REMATCH[1]} <= 10#$last )) || break
        grep -q '^@@ ' "$p" || { echo "apply.sh: $name contains no diff hunk" >&2; exit 1; }
        # Exactly: no fuzz, no offset, no reversed/already-applied hunk, no backup files.
        if ! out_log=$(patch -d "$out" -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch \
            --reject-file=- <"$p" 2>&1) ||
            grep -Eq '^Hunk #[0-9]+ (succeeded at [0-9]+ \(offset|FAILED)' <<<"$out_log"; then
            echo "apply.sh: $name does not apply exactly (each hunk must apply at its line, no fuzz):" >&2
            echo "$out_log" >&2
            exit 1
        fi
        n=$((n + 1))
    done
    for p in "$out"/*  "$out"/.[!.]*; do
        [[ -e $p ]] || continue
        name=${p##*/}
        [[ " ${CRATES[*]} " == *" $name "* ]] ||
            { echo "apply.sh: the series created $name outside ${CRATES[*]}" >&2; exit 1; }
    done
    APPLIED=$n
}

# Unified diff from the build ($1) to vendor/, paths a/<crate>/... b/<crate>/... like the series.
diff_to_vendor() {
    local c
    mkdir -p "$tmp/cmp/b"
    ln -sfn "$1" "$tmp/cmp/a"
    for c in "${CRATES[@]}"; do ln -sfn "$VENDOR/$c" "$tmp/cmp/b/$c"; done
    # -N: a file added or removed on one side shows as a whole-file hunk against /dev/null;
    # timestamps are dropped so that the output can go into a patch file as it is.
    (cd "$tmp/cmp" && for c in "${CRATES[@]}"; do
        TZ=UTC0 diff -ruN -x "$IGNORED" "a/$c" "b/$c" || [[ $? == 1 ]] || exit 2
    done) | sed -E \
        -e 's#^--- a/[^\t]*\t1970-01-01 00:00:00(\.0+)? \+0000$#--- /dev/null#' \
        -e 's#^\+\+\+ b/[^\t]*\t1970-01-01 00:00:00(\.0+)? \+0000$#+++ /dev/null#' \
        -e 's#^((---|\+\+\+) [ab]/[^\t]*)\t.*$#\1#'
}

case $mode in
    build)
        out=${outdir:-$(mktemp -d "${TMPDIR:-/tmp}/ezk-patched.XXXXXX")}
        build "$out" "$upto"
        echo "apply.sh: ${CRATES[*]} published + $APPLIED patch(es)${upto:+ (up to $upto)} in $out" >&2
        echo "$out"
        ;;
    check | diff)
        build "$tmp/build" ""
        changes=$(diff_to_vendor "$tmp/build") || die "diff failed"
        if [[ $mode == diff ]]; then
            printf '%s' "$changes${changes:+$'\n'}"
            exit 0
        fi
        if [[ -n $changes ]]; then
            {
                echo "apply.sh: DRIFT: vendor/ differs from published + ${#series[@]} patch(es) in vendor/patches:"
                grep -E '^diff ' <<<"$changes" | sed -E 's/^diff .* b\//  vendor\//' || true
                echo "Edit, then regenerate the patch (vendor/README.md), or run --write to reset vendor/."
            } >&2
            echo "$changes"
            exit 1
        fi
        listed=
        for i in "${!CRATES[@]}"; do listed+="${listed:+, }vendor/${CRATES[i]} (${VERSIONS[i]})"; done
        echo "apply.sh: OK: $listed = published + $APPLIED patch(es); ignored: $IGNORED"
        ;;
    write)
        build "$tmp/build" ""
        for c in "${CRATES[@]}"; do
            # keep vendor's own .cargo-ok (see IGNORED)
            if [[ -e $VENDOR/$c/$IGNORED ]]; then cp "$VENDOR/$c/$IGNORED" "$tmp/build/$c/$IGNORED"; fi
            rm -rf "${VENDOR:?}/.$c.new"
            cp -R "$tmp/build/$c" "$VENDOR/.$c.new"
            rm -rf "${VENDOR:?}/$c"
            mv "$VENDOR/.$c.new" "$VENDOR/$c"
        done
        echo "apply.sh: wrote published + $APPLIED patch(es) to ${CRATES[*]/#/vendor/}"
        ;;
esac
