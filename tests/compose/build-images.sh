#!/usr/bin/env bash
# Builds the images the Compose tests run, from the unchanged Dockerfile: milliwatt/media:TAG
# and milliwatt/signaling:TAG (TAG: first argument, default e2e, the tag tests/e2e_compose.rs
# uses). Base images are local stand-ins where no registry can be reached (standins.sh).
# tests/e2e_compose.rs runs it before its first stack; scripts/test.sh runs it earlier, in the
# background at idle CPU priority, so that the test's own run finds every layer cached.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-e2e}
DOCKER=${DOCKER:-/usr/bin/docker}
bash tests/compose/standins.sh
echo "build-images: base images are local stand-ins (no container registry is reachable here)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in media signaling; do
  t0=$(date +%s)
  if ! DOCKER_BUILDKIT=1 "$DOCKER" build --progress plain --network host --target "$target" \
      -t "milliwatt/$target:$tag" . >"$log" 2>&1; then
    echo "build-images: docker build --target $target failed; the end of its output:" >&2
    tail -n 100 "$log" >&2
    exit 1
  fi
  echo "build-images: built milliwatt/$target:$tag in $(($(date +%s) - t0)) s"
done
