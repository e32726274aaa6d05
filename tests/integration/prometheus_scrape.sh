#!/usr/bin/env bash
# A real Prometheus scrapes a real relay (issue 5): the relay runs on
# loopback with its metrics endpoint on a free port, N libissun clients
# (examples/hello, built as issun-hello) stay connected, and Prometheus,
# started here with a temporary scrape configuration, must report
# issun_connected_clients == N through its query API.
#   ISSUN_SERVER_BIN, ISSUN_BUILD_DIR (set by CTest)
set -euo pipefail

N=3
bin=${ISSUN_SERVER_BIN:?ISSUN_SERVER_BIN is not set}
build=${ISSUN_BUILD_DIR:?ISSUN_BUILD_DIR is not set}
hello=$build/issun-hello
py=/usr/bin/python3
[ -x "$py" ] || py=python3

fail() {
  echo "prometheus_scrape: FAIL: $*" >&2
  if [ -n "${pport:-}" ]; then
    echo "--- Prometheus targets:" >&2
    curl -s "http://127.0.0.1:$pport/api/v1/targets" >&2 || true
    echo >&2
  fi
  exit 1
}
step() { echo "prometheus_scrape: $*"; }

command -v prometheus >/dev/null || fail "prometheus not found: install the 'prometheus' package (scripts/deps.sh test)"
command -v curl >/dev/null || fail "curl not found (scripts/deps.sh test)"
[ -x "$hello" ] || fail "$hello not built"

tmp=$(mktemp -d /tmp/issun-prom-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${keep:-0}" = 1 ]; then echo "logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS DESCRIPTION CONDITION: evaluates the shell CONDITION (a
# string, so that command substitutions in it run every time) every 100 ms.
wait_for() {
  local secs=$1 what=$2 cond=$3
  local end=$((SECONDS + secs))
  until eval "$cond"; do
    [ $SECONDS -lt $end ] || { keep=1; fail "timed out after ${secs}s waiting for $what"; }
    sleep 0.1 # polling interval of the condition above, not a fixed wait
  done
}

# ---- the relay --------------------------------------------------------------
mport=$(free_port)
(cd "$tmp" && ISSUN_BIND_ADDR=127.0.0.1:0 ISSUN_METRICS_PORT=$mport ISSUN_LOG=info \
  ISSUN_LOG_FORMAT=text exec "$bin" >"$tmp/relay.log" 2>&1) &
pids+=($!)
wait_for 10 "the relay to listen" 'grep -q "Relay server listening on" "$tmp/relay.log"'
qport=$(sed -n 's/.*Relay server listening on addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/relay.log")
fpr=$(sed -n 's/.*sha256=\([0-9A-F:]*\).*/\1/p' "$tmp/relay.log" | head -n1)
[ -n "$qport" ] && [ -n "$fpr" ] || fail "no port or fingerprint in the relay's log"
grep -q "Metrics endpoint listening on addr=127.0.0.1:$mport" "$tmp/relay.log" ||
  fail "metrics endpoint not on port $mport"
step "relay on udp $qport, metrics on tcp $mport"

relay_clients() {
  curl -sf "http://127.0.0.1:$mport/metrics" | sed -n 's/^issun_connected_clients \([0-9]*\)$/\1/p'
}

# ---- N clients that stay connected -----------------------------------------
for i in $(seq 1 $N); do
  "$hello" --host 127.0.0.1 --port "$qport" --pin "$fpr" --name "scrape$i" --seconds 120 \
    >"$tmp/hello$i.log" 2>&1 &
  pids+=($!)
done
wait_for 20 "$N clients connected (relay's own /metrics)" '[ "$(relay_clients)" = "$N" ]'
step "$N clients connected"

# ---- Prometheus -------------------------------------------------------------
pport=$(free_port)
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: issun-relay
    scrape_interval: 500ms
    scrape_timeout: 400ms
    static_configs:
      - targets: ["127.0.0.1:$mport"]
EOF
promtool check config "$tmp/prometheus.yml" >/dev/null || fail "promtool rejects the scrape config"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$pport" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
step "prometheus on tcp $pport"

# query EXPR: prints the single result's value, or nothing.
query() {
  curl -sf --get "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" |
    "$py" -c '
import json, sys
d = json.load(sys.stdin)
r = d["data"]["result"] if d.get("status") == "success" else []
if len(r) == 1:
    print(r[0]["value"][1])
' 2>/dev/null || true
}

wait_for 60 "Prometheus to see the target up" '[ "$(query "up{job=\"issun-relay\"}")" = 1 ]'
wait_for 60 "Prometheus to report issun_connected_clients == $N" \
  '[ "$(query "issun_connected_clients{job=\"issun-relay\"}")" = "$N" ]'
step "Prometheus query API: issun_connected_clients = $N"

# Each hello broadcast one event: Prometheus sees them, and the histogram
# series are queryable.
wait_for 30 "events relayed" \
  '[ "$(query "sum(issun_events_relayed_total{scope=\"broadcast\"})")" = "$N" ]'
got=$(query 'sum(issun_relay_latency_microseconds_count{scope="broadcast"})')
[ -n "$got" ] || fail "no relay latency histogram in Prometheus"
step "issun_events_relayed_total{scope=broadcast} = $N, latency observations = $got"

# One client leaves: the scrape follows.
kill "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
wait_for 60 "Prometheus to report $((N - 1)) clients" \
  '[ "$(query "issun_connected_clients{job=\"issun-relay\"}")" = "$((N - 1))" ]'
step "after one client left: issun_connected_clients = $((N - 1))"
echo "prometheus_scrape: 1 passed, 0 failed"
