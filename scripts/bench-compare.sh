#!/usr/bin/env bash
# The relay beside NATS over TLS, workload by workload, in one sitting.
#
#   scripts/bench-compare.sh [WORKLOAD...]     default: room fanout global connect
#
# For each workload runs scripts/bench.sh (the relay, release build, pinned
# like `make bench`) and then the NATS peer's run.sh WORKLOAD --tls (pinned
# the same way), one right after the other, and prints a side-by-side
# Markdown table.  Both JSON lines of every workload are kept, with a
# "system" field added, in bench-results/compare-<UTC time>.jsonl.
#
# Environment: NATS_PEER (the peer's directory, default ../shared/peers/nats
# next to this checkout), BENCH_ARGS and BENCH_SERVER_ENV (relay side, as for
# bench.sh), NATS_ARGS (extra natsbench arguments), QUIET_WAIT (both sides
# wait for an idle host first).
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER=${NATS_PEER:-$ROOT/../shared/peers/nats}
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -eq 0 ] && WORKLOADS=(room fanout global connect)

if [ ! -x "$PEER/run.sh" ]; then
  echo "bench-compare: no NATS peer at $PEER (set NATS_PEER to its directory)" >&2
  exit 2
fi
for wl in "${WORKLOADS[@]}"; do
  case $wl in
  room | fanout | global | connect) ;;
  *)
    echo "bench-compare: the NATS peer has no '$wl' workload (room, fanout, global, connect)" >&2
    exit 2
    ;;
  esac
done

# Appends JSON line $2 to $OUT with "system": $1 added.
tag() {
  printf '%s\n' "$2" |
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d["system"]=sys.argv[1]; print(json.dumps(d))' \
      "$1" >>"$OUT" 2>/dev/null
}

mkdir -p "$ROOT/bench-results"
OUT=$ROOT/bench-results/compare-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: >"$OUT"
RC=0
for wl in "${WORKLOADS[@]}"; do
  echo "bench-compare: $wl: relay" >&2
  relay=$("$ROOT/scripts/bench.sh" "$wl" | tail -n1)
  [ -n "$relay" ] || RC=1
  echo "bench-compare: $wl: NATS over TLS" >&2
  # shellcheck disable=SC2086
  nats=$("$PEER/run.sh" "$wl" --tls ${NATS_ARGS:-} | tail -n1)
  [ -n "$nats" ] || RC=1
  tag issun-relay "$relay" || RC=1
  tag nats-tls "$nats" || RC=1
done

python3 - "$OUT" <<'EOF'
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]

def f(v, fmt):
    return "-" if v is None else fmt.format(v)

print("| workload | system | delivered/s | loss % | p50 ms | p99 ms | server µs/delivery | server RSS MB | other load % |")
print("|---|---|---|---|---|---|---|---|---|")
for d in rows:
    if d.get("workload") == "connect":
        continue
    print("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        d.get("workload"), d.get("system"),
        f(d.get("delivered_per_s"), "{:,.0f}"), f(d.get("loss_pct"), "{:.3f}"),
        f(d.get("p50_us") and d["p50_us"] / 1000, "{:.2f}"),
        f(d.get("p99_us") and d["p99_us"] / 1000, "{:.2f}"),
        f(d.get("server_cpu_us_per_delivery"), "{:.2f}"), f(d.get("server_rss_mb"), "{:.1f}"),
        f(d.get("other_load_pct"), "{}")))
conn = [d for d in rows if d.get("workload") == "connect"]
if conn:
    print()
    print("| connect | clients | handshakes/s | p99 connect ms | server µs/connect | idle KB/client |")
    print("|---|---|---|---|---|---|")
    for d in conn:
        print("| {} | {} | {} | {} | {} | {} |".format(
            d.get("system"), d.get("clients"), f(d.get("handshakes_per_s"), "{:,.0f}"),
            f(d.get("p99_us") and d["p99_us"] / 1000, "{:.1f}"),
            f(d.get("server_cpu_us_per_connect"), "{:.0f}"),
            f(d.get("idle_rss_per_client_kb"), "{:.1f}")))
EOF
echo "bench-compare: JSON lines in $OUT" >&2
exit $RC
