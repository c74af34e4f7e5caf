#!/usr/bin/env bash
# Makes a private CA and the PEM files for TLS on the media gRPC API (media.grpc_tls_*):
#   ca.pem              the CA: media.grpc_tls_ca_file (clients) and grpc_tls_client_ca_file (media)
#   media.pem media.key media's certificate (serverAuth; the names given) and key
#   client.pem client.key  the certificate signaling and milliwatt-ctl present (clientAuth)
# Usage: scripts/grpc-certs.sh DIR [NAME...]
#   NAME: the DNS names and addresses media's certificate carries (the host clients dial);
#   default: media localhost 127.0.0.1 ::1. Existing files in DIR are replaced.
# Keys are written mode 0600: a container running as another user (the images run as 10001)
# needs them owned by that user (chown 10001:10001 DIR/*.key) or mounted from a Secret.
# For production, use your own PKI (cert-manager on Kubernetes): these are for tests and labs.
set -euo pipefail
dir=${1:?usage: scripts/grpc-certs.sh DIR [NAME...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(media localhost 127.0.0.1 ::1)
command -v openssl >/dev/null || {
    echo "grpc-certs.sh: openssl is required (Debian package openssl)" >&2
    exit 1
}
mkdir -p "$dir"
cd "$dir"
san=""
for n in "${names[@]}"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}

key() { (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"); }
key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=Milliwatt gRPC test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem
# issue NAME COMMON_NAME EXTENSIONS
issue() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
        -extfile <(printf '%s\n' "$3") -out "$1.pem" 2>/dev/null
    rm -f "$1.csr"
}
issue media "${names[0]}" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san"
issue client milliwatt-signaling "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ca.srl
echo "grpc-certs.sh: wrote $PWD/{ca.pem,media.pem,media.key,client.pem,client.key} (media: $san)"
