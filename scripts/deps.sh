#!/usr/bin/env bash
# Makes sure the Debian/Ubuntu packages a target needs are installed.
#   scripts/deps.sh build|test|fuzz|all
# Installs what is missing with apt-get when it can (root, or sudo without a
# password); otherwise prints the one command to run and fails.
set -euo pipefail

build_pkgs="cmake make gcc pkg-config libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev libnats-dev ca-certificates libncurses-dev"
test_pkgs="libcmocka-dev openssl procps python3 nats-server tmux valgrind prometheus curl systemd python3-yaml"
# The legacy interop test's Rust client (tests/legacy-client), built offline
# with Debian's toolchain against Debian's packaged crates.
test_pkgs="$test_pkgs cargo rustc librust-quinn-dev librust-rustls-dev librust-tokio-dev librust-tokio-macros-dev librust-serde-dev librust-serde-derive-dev librust-bincode-dev librust-bytes-dev"
fuzz_pkgs="clang libclang-rt-14-dev"

want=""
case "${1:-build}" in
  build) want="$build_pkgs" ;;
  test) want="$build_pkgs $test_pkgs" ;;
  fuzz) want="$build_pkgs $test_pkgs $fuzz_pkgs" ;;
  all) want="$build_pkgs $test_pkgs $fuzz_pkgs" ;;
  *) echo "usage: $0 build|test|fuzz|all" >&2; exit 2 ;;
esac

missing=()
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  echo "deps: installing ${missing[*]} with sudo" >&2
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
else
  echo "deps: missing packages: ${missing[*]}" >&2
  echo "deps: run this once, then try again:" >&2
  echo "  sudo sh -c '$cmd'" >&2
  exit 1
fi
