#!/usr/bin/env bash
# libissun.so exports exactly the functions declared ISSUN_API in
# include/issun/*.h: nothing internal (proto, quic, test hooks issun__*),
# and nothing public missing.
#   ISSUN_BUILD_DIR  build tree holding libissun.so (default: build)
#   ISSUN_SOURCE_DIR source tree (default: this script's ../..)
set -euo pipefail

src=${ISSUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${ISSUN_BUILD_DIR:-$src/build}
lib=$build/libissun.so
if [ ! -e "$lib" ]; then
  echo "symbols: $lib not found (is the client library built?)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every function the public headers declare with ISSUN_API.  Comments are
# stripped (the C preprocessor, without expanding macros); a declaration may
# span lines, so each header becomes one line per statement.
cc=${CC:-cc}
for h in "$src"/include/issun/*.h; do
  "$cc" -fpreprocessed -dD -E -P -x c "$h" 2>/dev/null | tr '\n' ' ' | tr ';' '\n'
done | grep -E '(^|[^A-Za-z0-9_])ISSUN_API[[:space:]]' |
  grep -oE '\bissun_[A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u >"$tmp/declared"

nm -D --defined-only "$lib" | awk '{print $NF}' |
  grep -vE '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u >"$tmp/exported"

status=0
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
if [ -n "$extra" ]; then
  echo "symbols: libissun.so exports names not declared in include/issun/*.h:" >&2
  echo "$extra" | sed 's/^/  /' >&2
  status=1
fi
if [ -n "$missing" ]; then
  echo "symbols: declared ISSUN_API but not exported by libissun.so:" >&2
  echo "$missing" | sed 's/^/  /' >&2
  status=1
fi
if [ "$(wc -l <"$tmp/declared")" -lt 10 ]; then
  echo "symbols: found only $(wc -l <"$tmp/declared") declarations: header parsing broke" >&2
  status=1
fi
# The SONAME carries the ABI version.
if ! readelf -d "$lib" | grep 'SONAME.*libissun\.so\.[0-9]' >/dev/null; then
  echo "symbols: libissun.so has no versioned SONAME" >&2
  status=1
fi
[ $status -eq 0 ] && echo "symbols: $(wc -l <"$tmp/exported") exported, all declared in include/issun/"
exit $status
