#!/usr/bin/env bash
# Two headless pong bots (examples/pong --bot) play a match through a real
# relay.  Checks that they find each other through the room list, that the
# ball state they end with agrees, that the score moved, that the host stays
# under the server's rate limit, and that both exit 0.
#
# "Agree" means: the match ends at the same tick (the host's GameOver at
# tick N, N = --frames), both report identical ball position, velocity,
# serve counter and score, the same two players on the same sides; and the
# guest had been following the host's ball until the end: its last
# BallUpdate (an unreliable datagram) came from the host at most 30 ticks
# before the end, and it received at least 80% of those the host sent.
set -euo pipefail
test_name=pong_bots
. "$(dirname "$0")/pong_lib.bash"

frames=900 # 15 s of play at 60 ticks a second

start_server
step "server on port $port"

bot alice 11 bots $frames
wait_for 15000 "alice waiting for a second player" grep -q "waiting for a second player" "$tmp/alice.err"

bot bob 22 bots $frames
step "alice ($alice) and bob ($bob) playing"

finish_pair alice "$alice" bob "$bob"

python3 - "$tmp/alice.json" "$tmp/bob.json" $frames <<'PY' || fail "final states do not agree"
import json, sys
a = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
b = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
n = int(sys.argv[3])
def check(cond, what):
    if not cond:
        print("pong_bots: " + what, file=sys.stderr)
        print("alice: " + json.dumps(a), file=sys.stderr)
        print("bob:   " + json.dumps(b), file=sys.stderr)
        sys.exit(1)
check(a["result"] == "over" and b["result"] == "over", "a match that did not end normally")
# They saw each other: by NodeId, and by name (the Hello event).
check(a["peer"] == b["node"] and b["peer"] == a["node"], "peers are not each other")
check(a["peer_name"] == "bob" and b["peer_name"] == "alice", "names not exchanged")
check(a["room"] == b["room"] and a["room"] != 0, "not in the same room")
check(a["players"] == [a["node"], b["node"]] == b["players"], "sides differ (creator plays left)")
# The final state agrees.
check(a["tick"] == n and b["tick"] == n, "the match did not end at tick %d" % n)
for k in ("ball", "score"):
    check(a[k] == b[k], "final %s differs" % k)
# The guest followed the host's ball along the way.
sent, got = a["ball_updates"]["sent"], b["ball_updates"]["received"]
check(sent >= n // 3 - 5, "host sent only %d BallUpdates in %d ticks" % (sent, n))
check(got >= 0.8 * sent, "guest received %d of %d BallUpdates" % (got, sent))
check(b["last_update"]["from"] == a["node"] and b["last_update"]["tick"] >= n - 30,
      "guest's last BallUpdate is stale: %r" % b["last_update"])
# Paddles travelled both ways.
check(a["paddle_moves"]["received"] > 0 and b["paddle_moves"]["received"] > 0, "no PaddleMove arrived")
check(a["paddle_moves"]["received"] <= b["paddle_moves"]["sent"] + 1, "alice got more moves than bob sent")
# Scores advance.
check(sum(a["score"]) >= 1, "nobody scored in %d ticks" % n)
# Within the server's rate limit (100 events/s), with room to spare.
secs = n / 60.0
for p in (a, b):
    rate = (p["ball_updates"]["sent"] + p["paddle_moves"]["sent"]) / secs
    check(rate < 60, "%s sent %.1f events/s" % (p["name"], rate))
    check(p["rate_limited"] == 0, "%s was rate limited" % p["name"])
print("pong_bots: agree at tick %d: ball %r, score %r; %d/%d ball updates; %.1f events/s from the host"
      % (n, a["ball"], a["score"], got, sent,
         (a["ball_updates"]["sent"] + a["paddle_moves"]["sent"]) / secs))
PY
stop_server
step "ok"
