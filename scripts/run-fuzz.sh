#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build.
#   scripts/run-fuzz.sh BUILD_DIR SECONDS
#
# For each target: first replays every file under
# tests/fuzz/regressions/<target>/ (inputs that once crashed it), then fuzzes
# for SECONDS seconds over a temporary copy of tests/fuzz/corpus/<target>/,
# so the committed corpus is never modified.  Exits non-zero when any target
# crashes; the crashing inputs are kept in BUILD_DIR/fuzz-artifacts/<target>/
# (add them to tests/fuzz/regressions/<target>/ once fixed).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
secs=$2
case "$secs" in
  '' | *[!0-9]*) echo "run-fuzz: SECONDS must be a whole number" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
targets="fuzz_stream fuzz_datagram fuzz_payloads fuzz_token fuzz_legacy"

work=$(mktemp -d "${TMPDIR:-/tmp}/issun-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=""
for t in $targets; do
  bin="$build/tests/fuzz/$t"
  if [ ! -x "$bin" ]; then
    echo "run-fuzz: $bin is missing (configure with -DISSUN_FUZZ=ON and build it)" >&2
    exit 1
  fi
  artifacts="$build/fuzz-artifacts/$t"
  mkdir -p "$artifacts"

  # 1. regressions: each file is run once
  regs=()
  if [ -d "$root/tests/fuzz/regressions/$t" ]; then
    while IFS= read -r -d '' f; do regs+=("$f"); done < <(
      find "$root/tests/fuzz/regressions/$t" -type f ! -name '.gitkeep' -print0 | sort -z)
  fi
  if [ ${#regs[@]} -gt 0 ]; then
    echo "== $t: replaying ${#regs[@]} regression input(s)"
    if ! "$bin" -artifact_prefix="$artifacts/" "${regs[@]}" >"$work/$t.replay.log" 2>&1; then
      tail -n 40 "$work/$t.replay.log" >&2
      echo "run-fuzz: $t FAILED on a regression input" >&2
      failed="$failed $t"
      continue
    fi
  fi

  # 2. fuzzing over a scratch copy of the seed corpus
  corpus="$work/corpus/$t"
  mkdir -p "$corpus"
  if [ -d "$root/tests/fuzz/corpus/$t" ]; then
    cp -R "$root/tests/fuzz/corpus/$t/." "$corpus/"
  fi
  echo "== $t: fuzzing for ${secs}s"
  log="$work/$t.log"
  if "$bin" -max_total_time="$secs" -max_len=8192 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
      "$log" | sed "s/^/   $t /" || true
  else
    tail -n 60 "$log" >&2
    echo "run-fuzz: $t FAILED; inputs kept in $artifacts" >&2
    failed="$failed $t"
  fi
done

if [ -n "$failed" ]; then
  echo "run-fuzz: failing targets:$failed" >&2
  exit 1
fi
echo "run-fuzz: all targets ran ${secs}s without a crash"
