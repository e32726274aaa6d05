#!/usr/bin/env bash
# Two pong bots lose the relay in the middle of a match: the server is
# restarted on the same port (same certificate, so the pin still holds).
# libissun reconnects; the sessions and the room are gone with the old
# server, so pong finds a room again (one player opens it, the other joins)
# and the match goes on to its end.  Checks that both report the drop and
# the reconnect, end up in the same new room, end the match with the same
# final state, and exit 0.
set -euo pipefail
test_name=pong_reconnect
. "$(dirname "$0")/pong_lib.bash"
command -v openssl >/dev/null || fail "openssl is not installed (scripts/deps.sh test)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >"$tmp/openssl.log" 2>&1 || fail "openssl req"
certs=(ISSUN_CERT_PATH="$tmp/cert.pem" ISSUN_KEY_PATH="$tmp/key.pem")

start_server "${certs[@]}"
step "server on port $port"
frames=1500 # 25 s of play

bot alice 5 re $frames
wait_for 15000 "alice waiting" grep -q "waiting for a second player" "$tmp/alice.err"
bot bob 6 re $frames
wait_for 10000 "alice playing against bob" grep -q "playing against bob" "$tmp/alice.err"
wait_for 10000 "bob playing against alice" grep -q "playing against alice" "$tmp/bob.err"
wait_for 20000 "a point on bob's side" grep -q "score " "$tmp/bob.err"
before=$(sed -n 's/.*score \([0-9]*:[0-9]*\)$/\1/p' "$tmp/bob.err" | tail -n1)
step "playing, score $before; restarting the server"

stop_server
start_server "${certs[@]}" ISSUN_BIND_ADDR="127.0.0.1:$port"
wait_for 15000 "alice reconnected" grep -q "reconnected: now in room" "$tmp/alice.err"
wait_for 15000 "bob reconnected" grep -q "reconnected: now in room" "$tmp/bob.err"
grep -q "connection lost" "$tmp/alice.err" || fail "alice did not report the drop"
grep -q "connection lost" "$tmp/bob.err" || fail "bob did not report the drop"
step "both back"

finish_pair alice "$alice" bob "$bob"

python3 - "$tmp/alice.json" "$tmp/bob.json" $frames "$before" <<'PY' || fail "final states do not agree"
import json, sys
a = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
b = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
n = int(sys.argv[3])
before = [int(x) for x in sys.argv[4].split(":")]
def check(cond, what):
    if not cond:
        print("pong_reconnect: " + what, file=sys.stderr)
        print("alice: " + json.dumps(a), file=sys.stderr)
        print("bob:   " + json.dumps(b), file=sys.stderr)
        sys.exit(1)
check(a["result"] == "over" and b["result"] == "over", "a match that did not end normally")
check(a["reconnects"] >= 1 and b["reconnects"] >= 1, "no reconnect counted")
check(a["room"] == b["room"] and a["room"] != 0, "not in the same room after the restart")
check(a["peer"] == b["node"] and b["peer"] == a["node"], "peers are not each other")
check(sorted(a["players"]) == sorted([a["node"], b["node"]]) and a["players"] == b["players"],
      "players/sides differ")
check(a["tick"] == n and b["tick"] == n, "the match did not end at tick %d" % n)
check(a["ball"] == b["ball"] and a["score"] == b["score"], "final state differs")
check(a["score"][0] >= before[0] and a["score"][1] >= before[1],
      "the score went back from %r to %r: the match did not go on" % (before, a["score"]))
print("pong_reconnect: agree at tick %d after the restart: score %r (was %r)" % (n, a["score"], before))
PY
stop_server
step "ok"
