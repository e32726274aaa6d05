#!/usr/bin/env bash
# Installs the build into a temporary prefix and proves that a program using
# only the public header compiles, links and loads against the installed
# libissun, three ways: pkg-config (shared), pkg-config (static archive), and
# CMake find_package(issun) with issun::issun and issun::issun_static.
#   ISSUN_BUILD_DIR  configured and built tree (default: build)
#   ISSUN_SOURCE_DIR source tree (default: this script's ../..)
set -euo pipefail

src=${ISSUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${ISSUN_BUILD_DIR:-$src/build}
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
hello=$src/examples/hello/hello.c

step() { echo "packaging: $*"; }
fail() { echo "packaging: FAIL: $*" >&2; exit 1; }

# A sanitizer build installs a sanitized libissun: programs linking it must
# carry the same runtime (first in the link), so build them the same way.
if grep -q '^ISSUN_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  san="-fsanitize=address,undefined"
  printf '#!/bin/sh\nexec %s %s "$@"\n' "$cc" "$san" >"$tmp/cc"
  chmod +x "$tmp/cc"
  cc=$tmp/cc
  export CFLAGS="$san" LDFLAGS="$san" # picked up by the CMake consumers below
  step "sanitizer build: consumers built with $san"
fi

step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "cmake --install"; }

pcdir=$(dirname "$(find "$prefix" -name libissun.pc | head -n1)")
[ -f "$pcdir/libissun.pc" ] || fail "libissun.pc not installed"
[ -f "$prefix/include/issun/issun.h" ] || fail "include/issun/issun.h not installed"
[ -n "$(find "$prefix" -name 'issunConfig.cmake')" ] || fail "issunConfig.cmake not installed"
[ -n "$(find "$prefix" -name 'issunConfigVersion.cmake')" ] || fail "issunConfigVersion.cmake not installed"
[ -n "$(find "$prefix" -name 'libissun.so.*')" ] || fail "libissun.so not installed"
[ -n "$(find "$prefix" -name 'libissun.a')" ] || fail "libissun.a not installed"
# Private headers stay private.
if find "$prefix/include" -name '*.h' | grep -vq '/issun/issun[^/]*\.h$\|/issun/bus\.h$'; then
  find "$prefix/include" -name '*.h' >&2
  fail "unexpected headers installed"
fi

export PKG_CONFIG_PATH=$pcdir
libdir=$(pkg-config --variable=libdir libissun)
[ -d "$libdir" ] || fail "pkg-config libdir '$libdir' does not exist (pc file not relocatable?)"
ver=$(pkg-config --modversion libissun)
step "pkg-config finds libissun $ver in $libdir"

# The public header alone, strict: C11 and C99, no warnings.
for std in c11 c99; do
  printf '#include <issun/issun.h>\nint main(void) { return issun_version() == 0; }\n' >"$tmp/h.c"
  "$cc" -std=$std -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags libissun) \
    -c "$tmp/h.c" -o "$tmp/h.o" || fail "issun.h does not compile cleanly as $std"
done
if command -v c++ >/dev/null 2>&1; then
  printf '#include <issun/issun.h>\nint main() { return issun_version() == nullptr; }\n' >"$tmp/h.cc"
  c++ -Wall -Wextra -Werror $(pkg-config --cflags libissun) -c "$tmp/h.cc" -o "$tmp/hcc.o" ||
    fail "issun.h does not compile as C++"
fi

step "pkg-config, shared"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags libissun) "$hello" \
  $(pkg-config --libs libissun) -Wl,-rpath,"$libdir" -o "$tmp/hello_pc" || fail "build with pkg-config"
"$tmp/hello_pc" --help | grep "libissun $ver" >/dev/null || fail "hello_pc --help"
ldd "$tmp/hello_pc" | grep "$libdir/libissun.so" >/dev/null || fail "hello_pc does not load the installed libissun.so"

step "docs/client.md's example program"
awk '/^```c$/ {on = 1; next} on && /^```$/ {exit} on {print}' "$src/docs/client.md" >"$tmp/game.c"
[ -s "$tmp/game.c" ] || fail "no C example found in docs/client.md"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags libissun) "$tmp/game.c" \
  $(pkg-config --libs libissun) -Wl,-rpath,"$libdir" -o "$tmp/game" || fail "the guide's example"

step "pkg-config, static"
# shellcheck disable=SC2046
"$cc" -std=c11 $(pkg-config --cflags libissun) "$hello" "$libdir/libissun.a" \
  $(pkg-config --static --libs-only-L libissun) $(pkg-config --libs libngtcp2_crypto_gnutls libngtcp2 gnutls) \
  -o "$tmp/hello_static" || fail "static build with libissun.a"
"$tmp/hello_static" --help | grep "libissun $ver" >/dev/null || fail "hello_static --help"
! ldd "$tmp/hello_static" | grep libissun >/dev/null || fail "hello_static still loads libissun.so"

step "CMake find_package(issun)"
mkdir -p "$tmp/cm"
cat >"$tmp/cm/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(hello_consumer C)
find_package(issun 0.1 REQUIRED)
add_executable(hello_cmake "$hello")
target_link_libraries(hello_cmake PRIVATE issun::issun)
add_executable(hello_cmake_static "$hello")
target_link_libraries(hello_cmake_static PRIVATE issun::issun_static)
CMAKE
cmake -S "$tmp/cm" -B "$tmp/cm/b" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/cm.log" 2>&1 ||
  { cat "$tmp/cm.log" >&2; fail "find_package(issun) configure"; }
cmake --build "$tmp/cm/b" >>"$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log" >&2; fail "find_package build"; }
"$tmp/cm/b/hello_cmake" --help | grep "libissun $ver" >/dev/null || fail "hello_cmake --help"
ldd "$tmp/cm/b/hello_cmake" | grep "$prefix" >/dev/null || fail "hello_cmake does not load the installed libissun.so"
"$tmp/cm/b/hello_cmake_static" --help | grep "libissun $ver" >/dev/null || fail "hello_cmake_static --help"

# A version the package does not satisfy is refused.
mkdir -p "$tmp/cv"
cat >"$tmp/cv/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(version_check C)
find_package(issun 9.0 QUIET)
if(issun_FOUND)
  message(FATAL_ERROR "issun 9.0 accepted")
endif()
CMAKE
cmake -S "$tmp/cv" -B "$tmp/cv/b" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/cv.log" 2>&1 ||
  { cat "$tmp/cv.log" >&2; fail "find_package accepted an unsatisfiable version"; }

step "ok"
