#!/usr/bin/env bash
# Rooms in the pong example, headless, through a real relay:
#   - alice opens a room (R1) and hosts; bob joins it;
#   - carol finds R1 full and opens R2, where she waits;
#   - alice (the host) leaves: the server makes bob host of R1; bob goes on
#     running the match alone until someone comes;
#   - carol, waiting alone in the newer R2, sees R1 has a free seat again and
#     moves there; bob and carol finish the match that alice started.
# Checks the messages each bot prints, the rooms, bob's host change, and that
# bob and carol end the match on the same tick with the same ball and score.
# First, two players started at the same instant (both may see no room and
# open one each): they must still end up playing each other.
set -euo pipefail
test_name=pong_rooms
. "$(dirname "$0")/pong_lib.bash"

start_server
step "server on port $port"
frames=900

room_of() { sed -n 's/.* in room \([0-9]*\) .*/\1/p' "$tmp/$1.err" | head -n1; }

bot xavier 8 race 120
bot yvonne 9 race 120
wait_for 30000 "the racing pair to finish" eval 'not_running $xavier && not_running $yvonne'
rc_x=0; wait $xavier || rc_x=$?
rc_y=0; wait $yvonne || rc_y=$?
[ $rc_x -eq 0 ] && [ $rc_y -eq 0 ] || fail "racing pair exited $rc_x and $rc_y"
python3 - "$tmp/xavier.json" "$tmp/yvonne.json" <<'PY' || fail "the racing pair did not play each other"
import json, sys
x, y = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
assert x["room"] == y["room"] and x["peer"] == y["node"] and y["peer"] == x["node"], (x, y)
assert x["tick"] == y["tick"] == 120 and x["ball"] == y["ball"], (x, y)
PY
how="one joined the other's room"
grep -q "moved to room" "$tmp/xavier.err" "$tmp/yvonne.err" && how="one moved to the other's older room"
step "two players started together met: $how"

bot alice 1 rooms $frames
wait_for 15000 "alice waiting" grep -q "waiting for a second player" "$tmp/alice.err"
bot bob 2 rooms $frames
wait_for 10000 "alice playing against bob" grep -q "playing against bob" "$tmp/alice.err"
wait_for 10000 "bob playing against alice" grep -q "playing against alice" "$tmp/bob.err"
r1=$(room_of alice)
[ "$(room_of bob)" = "$r1" ] || fail "bob is not in alice's room $r1"

bot carol 3 rooms $frames
wait_for 15000 "carol waiting" grep -q "waiting for a second player" "$tmp/carol.err"
r2=$(room_of carol)
[ -n "$r2" ] && [ "$r2" != "$r1" ] || fail "carol should have opened a room of her own (R1 is full)"
step "alice and bob in $r1, carol waiting in $r2"

kill -TERM "$alice"
rc=0; wait "$alice" || rc=$?
[ $rc -eq 1 ] || fail "alice, stopped before the end, exited $rc (want 1)"
grep -q '"result":"quit"' "$tmp/alice.json" || fail "alice's report does not say quit"
wait_for 10000 "bob told that alice left and he hosts" grep -q "alice left; you run the ball now" "$tmp/bob.err"
wait_for 15000 "carol moving to R1" grep -q "moved to room $r1 where a player was waiting" "$tmp/carol.err"
wait_for 10000 "bob playing against carol" grep -q "playing against carol" "$tmp/bob.err"
step "alice left; bob hosts $r1; carol moved there"

finish_pair bob "$bob" carol "$carol"

python3 - "$tmp/alice.json" "$tmp/bob.json" "$tmp/carol.json" $frames "$r1" <<'PY' || fail "reports disagree"
import json, sys
a, b, c = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:4])
n, r1 = int(sys.argv[4]), int(sys.argv[5])
def check(cond, what):
    if not cond:
        print("pong_rooms: " + what, file=sys.stderr)
        for p in (a, b, c):
            print(json.dumps(p), file=sys.stderr)
        sys.exit(1)
check(b["result"] == "over" and c["result"] == "over", "the match did not end normally")
check(b["room"] == r1 and c["room"] == r1, "bob and carol not both in R1")
check(b["host_changes"] == 1 and c["last_update"]["from"] == b["node"], "bob did not become the host")
check(b["peer"] == c["node"] and c["peer"] == b["node"], "bob and carol are not each other's peer")
check(b["peers_seen"] == 2, "bob should have met alice, then carol")
check(b["side"] == "right" and c["side"] == "left", "bob kept his side; carol took the free one")
check(b["tick"] == n and c["tick"] == n, "the match did not end at tick %d" % n)
check(b["ball"] == c["ball"] and b["score"] == c["score"], "final state differs")
print("pong_rooms: bob (host after alice) and carol agree at tick %d, score %r" % (n, b["score"]))
PY
stop_server
step "ok"
