#!/usr/bin/env bash
# make bench-instr: the relay's user-space instructions per delivered event,
# counted by valgrind's callgrind.  CPU time moves by up to ±25% between
# sittings on a shared VM; instruction counts move by a few percent, so an
# A/B of a code change can be read from one run each.  The kernel's share
# (send and receive system calls, about half of a delivery's cost) is not
# counted: compare these numbers with each other, not with µs.
#
#   scripts/bench-instr.sh [WORKLOAD...]     default: fanout room global
#
# For every workload: a fresh issun-server under callgrind (metrics on a free
# port), issun-load with a small version of the workload (callgrind runs the
# server about 50 times slower), a warm-up until events flow plus 1 s, then
# the counters are zeroed, the window (INSTR_SECONDS, default 5) runs, and
# they are dumped.  Deliveries in the window come from the server's own
# issun_event_deliveries_total, read at both ends, and so do the packets
# (sent plus received): instructions per packet hold steadier than per
# delivery, which also moves with how many events share a packet.  Writes
#   bench-results/instr-<workload>-<UTC time>.callgrind   callgrind_annotate can read it
#   bench-results/instr-<workload>-<UTC time>.json        the JSON line, also on stdout
# Environment: BUILD_DIR (default build/bench, Release); SERVER and LOAD
# (binaries to use instead of building them); BENCH_OUT (default
# bench-results); INSTR_ARGS (issun-load arguments replacing the workload's
# small defaults); INSTR_SECONDS; BENCH_SERVER_ENV (extra VAR=value for the
# server, e.g. LD_LIBRARY_PATH=DIR for an ngtcp2 built with symbols, so that
# its static functions get names instead of addresses).
# (Conditions for wait_for are single-quoted on purpose.)
# shellcheck disable=SC2016
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
BUILD_DIR=${BUILD_DIR:-$ROOT/build/bench}
OUT=${BENCH_OUT:-$ROOT/bench-results}
WINDOW=${INSTR_SECONDS:-5}
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -eq 0 ] && WORKLOADS=(fanout room global)

command -v valgrind >/dev/null || { echo "bench-instr: valgrind not found (scripts/deps.sh test)" >&2; exit 1; }
command -v callgrind_control >/dev/null || { echo "bench-instr: callgrind_control not found" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench-instr: curl not found" >&2; exit 1; }

find_binaries bench-instr
mkdir -p "$OUT"

# Small versions: about 2,000 deliveries/s, which the server keeps up with
# under callgrind.
small_args() {
  case $1 in
    fanout) echo "--clients 20 --rate 5" ;;
    room | unreliable) echo "--clients 24" ;;
    global) echo "--clients 20 --rate 5" ;;
    *) echo "bench-instr: no small version of '$1' (room, unreliable, fanout, global)" >&2; return 1 ;;
  esac
}

trap run_cleanup EXIT
trap 'exit 130' INT TERM

# sample: "DELIVERIES PACKETS" (sent plus received) from one scrape of the
# server's /metrics, empty when it does not answer.
sample() {
  curl -sf "http://127.0.0.1:$mport/metrics" | awk '
    $1 == "issun_event_deliveries_total" {d = $2}
    $1 == "issun_packets_sent_total" || $1 == "issun_packets_received_total" {p += $2}
    END {if (d != "") print d, p}'
}
deliveries() { sample | cut -d" " -f1; }

# give_up WORKLOAD MESSAGE [LOG]: report, show the log's tail, stop this run.
give_up() {
  echo "bench-instr: $1: $2" >&2
  [ -n "${3:-}" ] && tail -n 20 "$3" >&2
  run_cleanup
  RC=1
}

RC=0
for wl in "${WORKLOADS[@]}"; do
  args=${INSTR_ARGS:-$(small_args "$wl")} || { RC=1; continue; }
  d0="" p0="" d1="" p1=""
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  TMP=$(mktemp -d /tmp/issun-instr.XXXXXX)
  mport=$(free_port)
  # shellcheck disable=SC2086
  env "${BENCH_ENV[@]}" ISSUN_METRICS_PORT="$mport" ISSUN_METRICS_ADDR=127.0.0.1 ${BENCH_SERVER_ENV:-} \
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$SERVER" >"$TMP/server.log" 2>&1 &
  SPID=$!
  RUN_PIDS+=("$SPID")
  if ! wait_for 60 'server_started "$TMP/server.log" && [ -n "$(deliveries)" ]' "$SPID"; then
    give_up "$wl" "the server did not start under callgrind" "$TMP/server.log"
    continue
  fi
  # issun-load runs past the window: connect, warm-up, window, and a margin.
  # shellcheck disable=SC2086
  "$LOAD" --workload "$wl" --server "$ADDR" --pin "$FPR" $args --seconds $((WINDOW + 30)) \
    >"$TMP/load.json" 2>"$TMP/load.log" &
  LPID=$!
  RUN_PIDS+=("$LPID")
  # Warm-up: events flowing, then one more second.
  if ! wait_for 120 '[ "$(deliveries)" -gt 0 ] 2>/dev/null' "$SPID"; then
    give_up "$wl" "no deliveries (issun-load log below)" "$TMP/load.log"
    continue
  fi
  sleep 1 # warm-up length
  read -r d0 p0 < <(sample)
  callgrind_control -z "$SPID" >/dev/null 2>&1
  sleep "$WINDOW" # the measured window
  callgrind_control -d "$SPID" >/dev/null 2>&1
  read -r d1 p1 < <(sample)
  stop_pids "$LPID"
  dump=$(ls "$TMP"/cg.out.* 2>/dev/null | head -n1)
  if [ -z "$dump" ] || [ -z "${d0:-}" ] || [ -z "${d1:-}" ]; then
    give_up "$wl" "no callgrind dump or no delivery count"
    continue
  fi
  cp "$dump" "$OUT/instr-$wl-$stamp.callgrind"
  python3 "$ROOT/scripts/callgrind-summary.py" "$dump" --workload "$wl" \
    --deliveries $((d1 - d0)) --packets $((p1 - p0)) --seconds "$WINDOW" --args "$args" \
    --server-env "${BENCH_SERVER_ENV:-}" >"$OUT/instr-$wl-$stamp.json" || RC=1
  cat "$OUT/instr-$wl-$stamp.json"
  run_cleanup
done
exit $RC
