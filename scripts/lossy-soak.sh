#!/usr/bin/env bash
# The relay on a bad link, run after run: a rare stall shows in one run of
# many, never in one long run's percentiles.
#
#   scripts/lossy-soak.sh [RUNS] [LOSS_PCT]        default: 20 runs, 5% loss
#
# Every run starts a fresh release issun-server, scripts/lossy-proxy.py in
# front of it (DELAY_MS each way, LOSS_PCT dropped each way, a new seed per
# run) and issun-load through the proxy, then prints one line:
#   run 3: p99 91.0 ms, p99.9 118.2 ms, max 166.1 ms, loss 0.000%
# and at the end a summary line.  The exit status is 1 when a run's max
# latency passed STALL_MS or a reliable workload lost events.
#
# Environment:
#   BUILD_DIR     release build (default build/bench); SERVER, LOAD override
#   LOAD_ARGS     issun-load's workload arguments (default "--workload
#                 fanout --clients 10 --rate 20 --payload 1000": 1 KB events,
#                 so each player gets 180 KB/s and the sender's state, window
#                 and pacer, is exercised; the relay's pacer fault of
#                 2026-11-25 stalled every run of this, and one in 30-50 with
#                 small events)
#   RUN_SECONDS   length of each run (default 10)
#   DELAY_MS      one-way delay (default 10, so a 20 ms round trip)
#   STALL_MS      a run whose max latency passes this is a stall (default 600)
#   BENCH_SERVER_ENV  extra VAR=value for the server, e.g. "ISSUN_CC=bbr"
#   QLOG          1: trace every connection (ISSUN_QLOG_DIR) and keep the
#                 traces of each stalled run in bench-results/lossy-<time>-run<N>/
#                 (docs/operations.md, "Tracing connections with qlog")
# (Conditions for wait_for are single-quoted on purpose.)
# shellcheck disable=SC2016
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
BUILD_DIR=${BUILD_DIR:-$ROOT/build/bench}
OUT=$ROOT/bench-results
RUNS=${1:-20}
LOSS=${2:-5}
LOAD_ARGS=${LOAD_ARGS:---workload fanout --clients 10 --rate 20 --payload 1000}
RUN_SECONDS=${RUN_SECONDS:-10}
DELAY_MS=${DELAY_MS:-10}
STALL_MS=${STALL_MS:-600}

command -v python3 >/dev/null || { echo "lossy-soak: python3 not found" >&2; exit 1; }
find_binaries lossy-soak

trap run_cleanup EXIT
trap 'exit 130' INT TERM

stamp=$(date -u +%Y%m%dT%H%M%SZ)
stalls=0 lossy=0 failed=0 worst=0
for run in $(seq "$RUNS"); do
  TMP=$(mktemp -d /tmp/issun-soak.XXXXXX)
  qlog_env=()
  if [ "${QLOG:-0}" = 1 ]; then
    mkdir -p "$TMP/qlog"
    qlog_env=(ISSUN_QLOG_DIR="$TMP/qlog")
  fi
  # shellcheck disable=SC2086
  env "${BENCH_ENV[@]}" "${qlog_env[@]}" ${BENCH_SERVER_ENV:-} "$SERVER" >"$TMP/server.log" 2>&1 &
  RUN_PIDS+=("$!")
  if ! wait_for 10 'server_started "$TMP/server.log"' $!; then
    echo "run $run: the server did not start" >&2
    tail -n 20 "$TMP/server.log" >&2
    failed=$((failed + 1))
    run_cleanup
    continue
  fi
  python3 "$ROOT/scripts/lossy-proxy.py" --port-file "$TMP/proxy.port" "${ADDR##*:}" 0 "$DELAY_MS" "$LOSS" "$run" &
  RUN_PIDS+=("$!")
  if ! wait_for 10 '[ -s "$TMP/proxy.port" ]' $!; then
    echo "run $run: the proxy did not start" >&2
    failed=$((failed + 1))
    run_cleanup
    continue
  fi
  # shellcheck disable=SC2086
  "$LOAD" $LOAD_ARGS --server "127.0.0.1:$(cat "$TMP/proxy.port")" --pin "$FPR" \
    --seconds "$RUN_SECONDS" >"$TMP/load.json" 2>"$TMP/load.log"
  line=$(python3 - "$TMP/load.json" "$STALL_MS" <<'EOF'
import json, sys
try:
    d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except Exception:
    print("none"); sys.exit()
mx = d.get("max_us", 0) / 1000
loss = d.get("loss_pct", 0.0)
verdict = "stall" if mx > float(sys.argv[2]) else "ok"
print("%s %.0f %.3f p99 %.1f ms, p99.9 %.1f ms, max %.1f ms, loss %.3f%%" % (
    verdict, mx, loss, d.get("p99_us", 0) / 1000, d.get("p999_us", 0) / 1000, mx, loss))
EOF
  )
  if [ "$line" = none ]; then
    echo "run $run: no result from issun-load" >&2
    tail -n 20 "$TMP/load.log" >&2
    failed=$((failed + 1))
    run_cleanup
    continue
  fi
  read -r verdict mx loss text <<<"$line"
  echo "run $run: $text"
  [ "$mx" -gt "$worst" ] && worst=$mx
  case "$LOAD_ARGS" in *unreliable*) ;; *) [ "$loss" != 0.000 ] && lossy=$((lossy + 1)) ;; esac
  if [ "$verdict" = stall ]; then
    stalls=$((stalls + 1))
    if [ "${QLOG:-0}" = 1 ]; then
      kept=$OUT/lossy-$stamp-run$run
      mkdir -p "$OUT" && cp -r "$TMP/qlog" "$kept" && echo "run $run: traces in $kept"
    fi
  fi
  run_cleanup
done
echo "lossy-soak: $RUNS runs at ${LOSS}% loss, ${DELAY_MS} ms each way: $stalls over ${STALL_MS} ms (worst max ${worst} ms), $lossy with loss, $failed failed"
[ "$stalls" -eq 0 ] && [ "$lossy" -eq 0 ] && [ "$failed" -eq 0 ]
