#!/usr/bin/env bash
# Development certificates: a private CA and a server certificate signed by
# it, valid for localhost, 127.0.0.1 and ::1 (plus any names given).
#   scripts/gen-cert.sh [--dir DIR] [--key ecdsa|ed25519|rsa] [--days N] [NAME...]
# Writes DIR/ca.pem (give it to clients: ca_file), DIR/ca-key.pem,
# DIR/cert.pem (leaf, then the CA: the chain the server sends) and
# DIR/key.pem.  DIR defaults to certs/, where issun-server looks first.
# Not for production: use your CA's certificate (e.g. Let's Encrypt's
# fullchain.pem and privkey.pem) there.
set -euo pipefail
dir=certs
kind=ecdsa
days=365
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --key) kind=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gen-cert: unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
command -v openssl >/dev/null || { echo "gen-cert: needs openssl (apt-get install openssl)" >&2; exit 1; }

newkey() {
  case "$kind" in
    ecdsa) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" ;;
    ed25519) openssl genpkey -algorithm ED25519 -out "$1" ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null ;;
    *) echo "gen-cert: --key must be ecdsa, ed25519 or rsa" >&2; exit 2 ;;
  esac
}

mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077
newkey "$dir/ca-key.pem"
openssl req -x509 -new -key "$dir/ca-key.pem" -days "$days" -subj "/CN=issun-relay development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$dir/ca.pem" 2>/dev/null
newkey "$dir/key.pem"
san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "${names[@]}"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san="$san,IP:$n"; else san="$san,DNS:$n"; fi
done
openssl req -new -key "$dir/key.pem" -subj "/CN=${names[0]:-localhost}" -out "$tmp/req.csr" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
  "$san" >"$tmp/ext"
openssl x509 -req -in "$tmp/req.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
  -CAserial "$tmp/serial" -days "$days" -extfile "$tmp/ext" -out "$tmp/leaf.pem" 2>/dev/null
cat "$tmp/leaf.pem" "$dir/ca.pem" >"$dir/cert.pem"
chmod 644 "$dir/ca.pem" "$dir/cert.pem"
fp=$(openssl x509 -in "$tmp/leaf.pem" -noout -fingerprint -sha256 | cut -d= -f2)
echo "gen-cert: $dir/cert.pem ($kind, $san), CA $dir/ca.pem"
echo "gen-cert: sha256 $fp"
