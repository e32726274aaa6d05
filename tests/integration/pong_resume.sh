#!/usr/bin/env bash
# A pong player's connection goes dead while the relay still holds its
# session: bob plays through a UDP forwarder (udp_cut_proxy.py) that stops
# delivering the server's packets to him, and his own ones to the server a
# little later (so the server does not time him out first).  libissun gives
# up on the silent connection after 3 heartbeats, reconnects from a new port
# and resumes the session; pong finds it is still in its room ("the game goes
# on").  Alice never sees bob leave, and the match ends normally for both.
set -euo pipefail
test_name=pong_resume
. "$(dirname "$0")/pong_lib.bash"

# Heartbeat 1 s: bob declares the connection dead 3 s after the cut; the
# server would do the same to bob 3 s after his packets stop, which is 1.8 s
# after the cut: 4.8 s, time enough for bob to come back and resume.
start_server ISSUN_HEARTBEAT_INTERVAL=1s
step "server on port $port"
python3 "$src/tests/integration/udp_cut_proxy.py" "$port" "$tmp/proxy.port" "$tmp/cut" 1.8 \
  2>"$tmp/proxy.log" &
started_pids+=("$!")
wait_for 5000 "the proxy's port" test -s "$tmp/proxy.port"
pport=$(cat "$tmp/proxy.port")

frames=1200
bot alice 3 resume $frames
wait_for 15000 "alice waiting" grep -q "waiting for a second player" "$tmp/alice.err"
bot bob 4 resume $frames $pport
wait_for 10000 "alice playing against bob" grep -q "playing against bob" "$tmp/alice.err"
wait_for 10000 "bob playing against alice" grep -q "playing against alice" "$tmp/bob.err"
step "playing (bob through the proxy on port $pport); cutting bob's connection"

touch "$tmp/cut"
wait_for 10000 "bob noticing the dead connection" grep -q "connection lost" "$tmp/bob.err"
wait_for 10000 "bob back in his room" grep -q "reconnected: the game goes on" "$tmp/bob.err"
step "bob reconnected and resumed his session"

finish_pair alice "$alice" bob "$bob"
! grep -q "left" "$tmp/alice.err" || fail "alice saw bob leave: the session was not resumed"

python3 - "$tmp/alice.json" "$tmp/bob.json" $frames <<'PY' || fail "reports disagree"
import json, sys
a, b = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
n = int(sys.argv[3])
def check(cond, what):
    if not cond:
        print("pong_resume: " + what, file=sys.stderr)
        print(json.dumps(a), file=sys.stderr)
        print(json.dumps(b), file=sys.stderr)
        sys.exit(1)
check(a["result"] == "over" and b["result"] == "over", "the match did not end normally")
check(b["reconnects"] == 1 and a["reconnects"] == 0, "bob should have reconnected once, alice never")
check(a["room"] == b["room"] and a["peers_seen"] == 1 and b["peers_seen"] == 1,
      "the room or the players changed")
check(a["tick"] == n and b["tick"] == n and a["ball"] == b["ball"] and a["score"] == b["score"],
      "final state differs")
print("pong_resume: same room, no leave, agree at tick %d, score %r" % (n, a["score"]))
PY
stop_server
step "ok"
