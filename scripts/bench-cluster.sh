#!/usr/bin/env bash
# Cross-relay cost and latency (docs/clustering.md, "Measured"): the bench.md
# room workload on
#   alone    one relay, clustering off
#   cluster1 one relay with clustering on (every client on it)
#   cluster2 two relays over one nats-server, clients alternating between them
#            (so about two thirds of each event's recipients are on the other relay)
# CPU is read from /proc for every relay and for nats-server over the run.
#   scripts/bench-cluster.sh [BUILD_DIR] [CLIENTS] [SECONDS]
set -euo pipefail
build=${1:-build/nats}
clients=${2:-200}
secs=${3:-10}
bin=$build/issun-server
load=$build/tools/issun-load/issun-load
for f in "$bin" "$load"; do [ -x "$f" ] || { echo "bench-cluster: $f missing (build first)" >&2; exit 1; }; done
command -v nats-server >/dev/null || { echo "bench-cluster: nats-server missing (scripts/deps.sh test)" >&2; exit 1; }
here=$(pwd)
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d /tmp/issun-bench-cluster-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
"$here/scripts/gen-cert.sh" --dir "$tmp/certs" >/dev/null 2>&1

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
wait_log() { for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "bench-cluster: no '$2' in $1" >&2; cat "$1" >&2; exit 1; }

np=$(free_port)
nats-server -a 127.0.0.1 -p "$np" -js -sd "$tmp/js" >"$tmp/nats.log" 2>&1 &
npid=$!
pids+=("$npid")
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$np") 2>/dev/null && break; sleep 0.05; done

start_relay() { # name port cluster(0/1)
  local env=(ISSUN_BIND_ADDR=127.0.0.1:$2 ISSUN_METRICS_PORT=0 ISSUN_CERT_PATH=$tmp/certs/cert.pem
             ISSUN_KEY_PATH=$tmp/certs/key.pem ISSUN_MAX_EVENTS_PER_SEC=100000 ISSUN_MAX_CLIENTS=100000
             ISSUN_MAX_HANDSHAKES_PER_IP=0 ISSUN_MAX_CONNS_PER_IP=0)
  [ "$3" = 1 ] && env+=(ISSUN_NATS_URL=nats://127.0.0.1:$np)
  env "${env[@]}" "$bin" >"$tmp/$1.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
  wait_log "$tmp/$1.log" "listening"
}

run() { # label pids... -- servers...
  local label=$1; shift
  local watch=() servers=()
  while [ "$1" != -- ]; do watch+=("$1"); shift; done
  shift
  for s in "$@"; do servers+=(--server "127.0.0.1:$s"); done
  local t0=() tk=0
  for p in "${watch[@]}"; do t0+=("$(cpu_ticks "$p")"); done
  local out
  out=$("$load" --workload room "${servers[@]}" --ca "$tmp/certs/ca.pem" --clients "$clients" \
        --room-size 4 --rate 30 --seconds "$secs" --server-pid "${watch[0]}" 2>"$tmp/$label.err" | tail -1)
  local i=0
  for p in "${watch[@]}"; do tk=$((tk + $(cpu_ticks "$p") - ${t0[$i]})); i=$((i + 1)); done
  python3 - "$label" "$out" "$tk" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
label, line, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
j = json.loads(line)
cpu = ticks / hz  # every relay + nats-server, whole run (connect, warm-up, window, drain)
print(f"{label:9s} delivered/s {j['delivered_per_s']:.0f}  loss {j['loss_pct']:.3f}%  "
      f"p50 {j['p50_us']:.0f} us  p99 {j['p99_us']:.0f} us  p999 {j['p999_us']:.0f} us  "
      f"cpu(relays+nats, run) {cpu:.2f} s  other load {j.get('other_load_pct', 0)}%")
EOF
}

port_alone=$(free_port)
start_relay alone "$port_alone" 0
p_alone=$last_pid
run alone "$p_alone" -- "$port_alone"
kill "$p_alone"

port_a=$(free_port)
start_relay ra "$port_a" 1
pa=$last_pid
port_b=$(free_port)
start_relay rb "$port_b" 1
pb=$last_pid
run cluster1 "$pa" "$pb" "$npid" -- "$port_a"
run cluster2 "$pa" "$pb" "$npid" -- "$port_a" "$port_b"
