#!/bin/sh
# Regenerates the test-only TLS fixtures in this folder (needs the openssl CLI).
# The keys are public test data: never use them outside tests.
set -eu
cd "$(dirname "$0")"
days=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Test CA (P-256, PKCS#8 key).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days "$days" -subj "/CN=cc-common test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

# Server certificate for localhost / 127.0.0.1 (P-256, PKCS#8 key).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server-key.pem
openssl req -new -key server-key.pem -subj "/CN=localhost" -out "$tmp/server.csr"
cat > "$tmp/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in "$tmp/server.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
  -CAserial "$tmp/ca.srl" -sha256 -days "$days" -extfile "$tmp/server.ext" -out server.pem

# Client certificate for mTLS (P-256, SEC1 "EC PRIVATE KEY" key).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/client-pkcs8.pem"
openssl ec -in "$tmp/client-pkcs8.pem" -out client-key.pem
openssl req -new -key client-key.pem -subj "/CN=cc-common test client" -out "$tmp/client.csr"
cat > "$tmp/client.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
openssl x509 -req -in "$tmp/client.csr" -CA ca.pem -CAkey ca-key.pem \
  -CAserial "$tmp/ca.srl" -CAcreateserial -sha256 -days "$days" -extfile "$tmp/client.ext" -out client.pem

# RSA server certificate with a PKCS#1 "RSA PRIVATE KEY" key, to cover that key format.
openssl genrsa -traditional -out rsa-server-key.pem 2048
openssl req -new -key rsa-server-key.pem -subj "/CN=localhost" -out "$tmp/rsa.csr"
openssl x509 -req -in "$tmp/rsa.csr" -CA ca.pem -CAkey ca-key.pem \
  -CAserial "$tmp/ca.srl" -CAcreateserial -sha256 -days "$days" -extfile "$tmp/server.ext" -out rsa-server.pem

# An unrelated self-signed certificate: trusting only this one must make handshakes fail.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/other-key.pem" \
  -sha256 -days "$days" -subj "/CN=unrelated test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out other-ca.pem
