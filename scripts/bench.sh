#!/usr/bin/env bash
# make bench: the bench.md workloads against a fresh issun-server each.
#
#   scripts/bench.sh [WORKLOAD...]        default: room fanout unreliable connect
#
# Builds issun-server and issun-load in release mode (BUILD_DIR, default
# build/bench), then for every workload starts the server pinned to CPU 0 and
# issun-load pinned to CPU 1 (when the host has two CPUs and taskset), pins
# the server's self-signed certificate by the fingerprint it logs, and writes
#   bench-results/<workload>-<UTC time>.json   the JSON line of bench.md
#   bench-results/<workload>-<UTC time>.log    issun-load's progress, server log tail
#   bench-results/latest.jsonl                 every JSON line of this run
# Environment: BENCH_ARGS (extra issun-load arguments for every workload),
# BENCH_SERVER_ENV (extra VAR=value for the server, e.g. "ISSUN_FLUSH_US=500"),
# QUIET_WAIT (seconds to wait for an idle host first, default 60),
# BENCH_PROCS (issun-load --procs: N worker processes pinned to CPUs 1..N,
# for hosts where one generator core cannot load the relay; default 1).
# (Conditions for wait_for are single-quoted on purpose.)
# shellcheck disable=SC2016
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
BUILD_DIR=${BUILD_DIR:-$ROOT/build/bench}
OUT=$ROOT/bench-results
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -eq 0 ] && WORKLOADS=(room fanout unreliable connect)

cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DISSUN_BUILD_TESTS=OFF >/dev/null || exit 1
cmake --build "$BUILD_DIR" -j 2 --target issun-server issun-load >/dev/null || exit 1
SERVER=$BUILD_DIR/issun-server
LOAD=$BUILD_DIR/tools/issun-load/issun-load
mkdir -p "$OUT"
: >"$OUT/latest.jsonl"

# every client is a socket on both sides
ulimit -n "$(ulimit -Hn)" 2>/dev/null
echo "bench: open files limit $(ulimit -n)" >&2

PROCS=${BENCH_PROCS:-1}
case $PROCS in '' | *[!0-9]* | 0) echo "bench: BENCH_PROCS must be a positive number" >&2; exit 2 ;; esac
PROCS_ARGS=()
[ "$PROCS" -gt 1 ] && PROCS_ARGS=(--procs "$PROCS")
SRV_PIN=()
GEN_PIN=()
if [ "$(nproc --all)" -ge 2 ] && command -v taskset >/dev/null; then
  SRV_PIN=(taskset -c 0)
  GEN_PIN=(taskset -c 1)
  if [ "$PROCS" -gt 1 ]; then
    if [ "$(nproc --all)" -gt "$PROCS" ]; then
      GEN_PIN=(taskset -c "1-$PROCS")
    else
      echo "bench: $PROCS workers on CPU 1 alone: this host has $(nproc --all) CPUs" >&2
    fi
  fi
else
  echo "bench: fewer than 2 CPUs or no taskset: not pinned" >&2
fi

busy_pct() {
  local a b
  read -r -a a </proc/stat
  sleep 1
  read -r -a b </proc/stat
  local busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
  local total=$((busy + (b[4] + b[5]) - (a[4] + a[5])))
  echo $((total > 0 ? 100 * busy / total : 0))
}
wait_quiet() {
  local waited=0 b
  while :; do
    b=$(busy_pct)
    [ "$b" -lt 10 ] && return
    if [ "$waited" -ge "${QUIET_WAIT:-60}" ]; then
      echo "bench: host still ${b}% busy, running anyway" >&2
      return
    fi
    sleep 2
    waited=$((waited + 3))
  done
}

trap run_cleanup EXIT
trap 'exit 130' INT TERM

RC=0
for wl in "${WORKLOADS[@]}"; do
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  log="$OUT/$wl-$stamp.log"
  slog=$(mktemp /tmp/issun-bench-server.XXXXXX)
  wait_quiet
  # shellcheck disable=SC2086
  env "${BENCH_ENV[@]}" ${BENCH_SERVER_ENV:-} "${SRV_PIN[@]}" "$SERVER" >"$slog" 2>&1 &
  SPID=$!
  RUN_PIDS+=("$SPID")
  if ! wait_for 10 'server_started "$slog"' "$SPID"; then
    echo "bench: server did not start" >&2
    cat "$slog" >&2
    exit 1
  fi
  echo "bench: $wl: server pid $SPID at $ADDR" >&2
  # shellcheck disable=SC2086
  "${GEN_PIN[@]}" "$LOAD" --workload "$wl" --server "$ADDR" --server-pid "$SPID" --pin "$FPR" \
    "${PROCS_ARGS[@]}" ${BENCH_ARGS:-} >"$OUT/$wl-$stamp.json" 2>"$log"
  rc=$?
  run_cleanup
  { echo "---- server log (tail)"; tail -n 5 "$slog"; } >>"$log"
  rm -f "$slog"
  if [ $rc != 0 ]; then
    echo "bench: $wl: issun-load exited $rc (see $log)" >&2
    RC=1
  fi
  line=$(tail -n1 "$OUT/$wl-$stamp.json")
  [ -n "$line" ] && echo "$line" >>"$OUT/latest.jsonl"
  echo "$line"
done
exit $RC
