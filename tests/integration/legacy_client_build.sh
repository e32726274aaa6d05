#!/usr/bin/env bash
# Builds tests/legacy-client (issun-legacy-client: a Rust stand-in for issun's
# QuicClientBackend on quinn + rustls) into the build directory, offline,
# with Debian's cargo and Debian's packaged crates (/usr/share/cargo/registry,
# see tests/legacy-client/.cargo/config.toml).  CTest runs this as the setup
# of the legacy_client fixture, before integration.it_legacy.
#
# Needs: cargo, rustc, librust-quinn-dev and friends (scripts/deps.sh test).
set -euo pipefail

src="${ISSUN_SOURCE_DIR:?ISSUN_SOURCE_DIR is not set}/tests/legacy-client"
out="${ISSUN_BUILD_DIR:?ISSUN_BUILD_DIR is not set}/legacy-client"
cargo="${ISSUN_CARGO:-/usr/bin/cargo}"
rustc="${ISSUN_RUSTC:-/usr/bin/rustc}"

if [ ! -x "$cargo" ] || [ ! -x "$rustc" ]; then
  echo "legacy_client_build: $cargo or $rustc missing; run scripts/deps.sh test" >&2
  exit 1
fi
if ! compgen -G "/usr/share/cargo/registry/quinn-0.*" >/dev/null; then
  echo "legacy_client_build: Debian's librust-quinn-dev is not installed; run scripts/deps.sh test" >&2
  exit 1
fi

# Build from a copy, so that cargo's Cargo.lock and the .cargo config stay
# out of the source tree; -p keeps timestamps, so an unchanged client is not
# rebuilt.
mkdir -p "$out/src"
cp -pR "$src/." "$out/src/"
cd "$out/src"
export CARGO_HOME="$out/cargo-home" # no user-wide cargo config or registry
export CARGO_TARGET_DIR="$out/target"
export RUSTC="$rustc"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" # one core: other tests run beside this one
echo "legacy_client_build: $("$cargo" --version), $("$rustc" --version)"
timeout 1100 "$cargo" build --offline 2>&1 | tail -n 25
bin="$CARGO_TARGET_DIR/debug/issun-legacy-client"
test -x "$bin" || { echo "legacy_client_build: $bin was not built" >&2; exit 1; }
# It must run: bad arguments give its usage and exit 4.
set +e
"$bin" --no-such-flag >/dev/null 2>&1
rc=$?
set -e
[ "$rc" = 4 ] || { echo "legacy_client_build: $bin --no-such-flag exited $rc, expected 4" >&2; exit 1; }
echo "legacy_client_build: built $bin"
