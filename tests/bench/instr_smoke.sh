#!/usr/bin/env bash
# scripts/bench-instr.sh cannot rot: a tiny fanout under callgrind against
# this build's issun-server must print one JSON line with deliveries,
# instructions split by part (the relay, ngtcp2, TLS), and top functions.
# Checks that the counts are there and consistent, never what they are.
# Not registered in sanitizer builds: valgrind cannot run an ASan binary.
#   ISSUN_SERVER_BIN, ISSUN_BUILD_DIR, ISSUN_SOURCE_DIR (set by CTest)
set -euo pipefail

src=${ISSUN_SOURCE_DIR:?ISSUN_SOURCE_DIR is not set}
out=$(mktemp -d /tmp/issun-instr-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT

SERVER=${ISSUN_SERVER_BIN:?ISSUN_SERVER_BIN is not set} \
  LOAD=${ISSUN_BUILD_DIR:?ISSUN_BUILD_DIR is not set}/tools/issun-load/issun-load \
  BENCH_OUT=$out INSTR_SECONDS=2 INSTR_ARGS="--clients 4 --rate 20" \
  "$src/scripts/bench-instr.sh" fanout >"$out/stdout" 2>"$out/stderr" || {
  echo "FAIL: bench-instr.sh exited $?"
  cat "$out/stderr"
  exit 1
}
python3 - "$out/stdout" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
if len(lines) != 1:
    sys.exit("FAIL: expected one JSON line, got %d" % len(lines))
j = json.loads(lines[0])
for k in ("workload", "deliveries", "instructions", "instr_per_delivery", "packets",
          "instr_per_packet", "per_delivery_by_part", "top_functions"):
    if k not in j:
        sys.exit("FAIL: no %s in %s" % (k, lines[0]))
assert j["workload"] == "fanout", j
assert j["deliveries"] > 0 and j["packets"] > 0, j
assert j["instructions"] > 0, j
parts = j["per_delivery_by_part"]
for p in ("relay", "ngtcp2", "tls"):
    assert parts.get(p, 0) > 0, "no %s instructions: %s" % (p, parts)
# the parts add up to the total (rounding aside)
total = sum(parts.values())
assert abs(total - j["instr_per_delivery"]) <= max(5, 0.01 * total), (total, j)
assert j["top_functions"] and all(f["pct"] > 0 for f in j["top_functions"]), j
print("ok: %d deliveries, %.0f instructions each (%s)" % (j["deliveries"], j["instr_per_delivery"], parts))
PY
ls "$out"/instr-fanout-*.callgrind >/dev/null || { echo "FAIL: no callgrind file kept"; exit 1; }
