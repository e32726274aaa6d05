#!/usr/bin/env bash
# A tiny run of every bench.md workload with issun-load against a real
# issun-server, so the tool cannot rot.  Checks correctness only, never
# timings: the run succeeds, the last stdout line is one complete JSON object
# with every bench.md field, and nothing was lost where bench.md expects no
# loss (every reliable workload; the unreliable one must deliver something).
set -u

BUILD=${ISSUN_BUILD_DIR:?ISSUN_BUILD_DIR not set}
SERVER=${ISSUN_SERVER_BIN:?ISSUN_SERVER_BIN not set}
LOAD="$BUILD/tools/issun-load/issun-load"
[ -x "$LOAD" ] || { echo "FAIL: $LOAD not built"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is needed to check the JSON"; exit 1; }

TMP=$(mktemp -d /tmp/load_smoke.XXXXXX)
SPID=""
cleanup() {
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    kill "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null

# Port 0: the kernel picks; the server logs the address it got.
ISSUN_BIND_ADDR=127.0.0.1:0 ISSUN_METRICS_PORT=0 ISSUN_MAX_EVENTS_PER_SEC=100000 \
  ISSUN_MAX_CLIENTS=10000 ISSUN_MAX_CONNS_PER_IP=0 ISSUN_MAX_HANDSHAKES_PER_IP=0 \
  "$SERVER" >"$TMP/server.log" 2>&1 &
SPID=$!
ADDR=""
for _ in $(seq 100); do # up to 10 s
  ADDR=$(grep -o 'Relay server listening on addr=[0-9.:]*' "$TMP/server.log" | head -n1 | cut -d= -f2)
  [ -n "$ADDR" ] && break
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  echo "FAIL: server did not start"; cat "$TMP/server.log"; exit 1
fi
FP=$(grep -o 'sha256=[0-9A-Fa-f:]*' "$TMP/server.log" | head -n1 | cut -d= -f2)
[ -n "$FP" ] || { echo "FAIL: no certificate fingerprint in the server log"; exit 1; }
echo "server pid $SPID at $ADDR, fingerprint $FP"

FAILS=0
# run NAME CHECK ARGS...: CHECK is a python expression over the dict j.
run() {
  local wl=$1 check=$2
  shift 2
  local out="$TMP/$wl.out" err="$TMP/$wl.err"
  timeout 120 "$LOAD" --workload "$wl" --server "$ADDR" --server-pid "$SPID" --warmup 0.5 \
    --drain 5 --max-run 100 "$@" >"$out" 2>"$err"
  local rc=$?
  if [ $rc != 0 ]; then
    echo "FAIL: $wl exited $rc"; tail -n 5 "$err"; FAILS=$((FAILS + 1)); return
  fi
  if ! tail -n1 "$out" | python3 -c '
import json, sys
need = ["workload","clients","room_size","rate_hz","payload","reliable","seconds","pinned",
        "connect_s","sent_per_s","delivered_per_s","expected_per_s","loss_pct","p50_us",
        "p99_us","p999_us","max_us","server_cpu_s","server_cpu_us_per_delivery","server_rss_mb"]
j = json.loads(sys.stdin.read())
missing = [k for k in need if k not in j]
if missing: sys.exit("missing fields: %s" % missing)
if j["workload"] != sys.argv[1]: sys.exit("workload is %r" % j["workload"])
if j["server_rss_mb"] <= 0: sys.exit("no server RSS read from /proc")
ok = eval(sys.argv[2], {}, {"j": j})
if not ok: sys.exit("check failed: %s on %s" % (sys.argv[2], json.dumps(j)))
' "$wl" "$check"; then
    echo "FAIL: $wl"; tail -n 3 "$err"; FAILS=$((FAILS + 1)); return
  fi
  echo "ok: $wl: $(tail -n1 "$out" | cut -c1-200)"
}

LOSSLESS='j["loss_pct"] == 0 and j["delivered_per_s"] > 0 and j["delivered_per_s"] == j["expected_per_s"]'
run room "$LOSSLESS" --clients 8 --room-size 4 --seconds 1 --pin "$FP"
run fanout "$LOSSLESS and j[\"room_size\"] == 6" --clients 6 --seconds 1 --pin "$FP"
run global "$LOSSLESS and j[\"room_size\"] == 0" --clients 6 --rate 10 --seconds 1 --insecure
run unreliable 'j["reliable"] is False and j["delivered_per_s"] > 0' --clients 8 --seconds 1 --pin "$FP"
run saturate "$LOSSLESS and len(j[\"steps\"]) >= 1 and j[\"steps\"][0][\"ok\"]" \
  --clients 8 --seconds 1 --max-steps 2 --pin "$FP"
run connect 'j["handshakes_per_s"] > 0 and j["dropped"] == 0 and j["p99_us"] > 0' \
  --clients 20 --seconds 1 --pin "$FP"
run churn 'j["loss_pct"] == 0 and j["churned"] > 0 and j["delivered_per_s"] > 0' \
  --clients 16 --room-size 4 --churn-pct 25 --seconds 2 --pin "$FP"

# --procs: the same runs from two worker processes, merged into one line.
# Fanout's one room and global's broadcast span both workers, so each
# worker's deliveries come from the other's sends as well.
P2='j["generator_procs"] == 2'
run room "$LOSSLESS and $P2 and j[\"sent_per_s\"] >= 0.9 * 8 * 30" --clients 8 --room-size 4 --seconds 1 \
  --pin "$FP" --procs 2
run fanout "$LOSSLESS and $P2 and j[\"expected_per_s\"] >= 0.9 * 6 * 10 * 5" --clients 6 --seconds 1 \
  --pin "$FP" --procs 2
run global "$LOSSLESS and j[\"generator_procs\"] == 3" --clients 6 --rate 10 --seconds 1 --insecure \
  --procs 3
run saturate "$LOSSLESS and $P2 and j[\"steps\"][0][\"ok\"]" --clients 8 --seconds 1 \
  --max-steps 2 --pin "$FP" --procs 2
run connect "$P2 and j[\"dropped\"] == 0 and j[\"p99_us\"] > 0" --clients 20 --seconds 1 \
  --pin "$FP" --procs 2
run churn 'j["loss_pct"] == 0 and j["churned"] > 0 and j["generator_procs"] == 2' \
  --clients 16 --room-size 4 --churn-pct 25 --seconds 2 --pin "$FP" --procs 2

# A refused pin must fail the run, not report numbers.
BAD=$(echo "$FP" | sed 's/^../00/')
[ "$BAD" = "$FP" ] && BAD=$(echo "$FP" | sed 's/^../11/')
if timeout 60 "$LOAD" --workload room --clients 4 --seconds 1 --server "$ADDR" --pin "$BAD" \
     --max-run 30 >"$TMP/badpin.out" 2>&1; then
  echo "FAIL: a wrong --pin still ran"; FAILS=$((FAILS + 1))
else
  echo "ok: wrong pin refused"
fi

kill -0 "$SPID" 2>/dev/null || { echo "FAIL: the server died"; FAILS=$((FAILS + 1)); }
if [ $FAILS != 0 ]; then
  echo "$FAILS failure(s)"; tail -n 20 "$TMP/server.log"; exit 1
fi
echo "all workloads ok"
