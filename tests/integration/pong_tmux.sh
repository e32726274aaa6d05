#!/usr/bin/env bash
# The interactive pong (ncurses) under tmux, against a real relay: keys go
# in with send-keys, screens come out with capture-pane.
#   1. alice waits; bob joins; each sees the other's name.
#   2. bob's keys (s, Down, Up, w) move bob's paddle on alice's screen, and
#      alice's keys move hers on bob's screen.
#   3. alice (the host) quits with Q: bob is told, becomes the host and waits;
#      carol joins bob's room and the game goes on: the ball moves on
#      carol's screen, and she sees bob's paddle where he left it.
set -euo pipefail
test_name=pong_tmux
. "$(dirname "$0")/pong_lib.bash"
command -v tmux >/dev/null || fail "tmux is not installed (scripts/deps.sh test)"

start_server
step "server on port $port"

sock=$tmp/tmux.sock
tm() { tmux -S "$sock" -f /dev/null "$@"; }
started_tmux=0
cleanup_tmux() { [ $started_tmux -eq 0 ] || tm kill-server 2>/dev/null || true; cleanup; }
trap cleanup_tmux EXIT

# play NAME: a window running pong for NAME; its exit code lands in NAME.rc.
play() {
  local cmd="$pong --server 127.0.0.1:$port --pin $pin --name $1 --room tmux-$$ 2>$tmp/$1.err; echo \$? >$tmp/$1.rc"
  if [ $started_tmux -eq 0 ]; then
    TERM=xterm tm new-session -d -s pong -n "$1" -x 80 -y 24 "$cmd"
    started_tmux=1
  else
    tm new-window -d -t pong -n "$1" "$cmd"
  fi
}
screen_of() { tm capture-pane -p -t "pong:$1"; }
shows() { screen_of "$1" | grep -- "$2" >/dev/null; }
# paddle_top WINDOW left|right: the court row of the paddle's top (-1: none).
paddle_top() {
  local col=3
  [ "$2" = right ] && col=60
  screen_of "$1" | awk -v c=$col 'NR >= 3 && NR <= 20 && substr($0, c, 1) == "#" { print NR - 3; found = 1; exit }
                                  END { if (!found) print -1 }'
}
paddle_is() { [ "$(paddle_top "$1" "$2")" = "$3" ]; }
ball_at() { screen_of "$1" | awk 'NR >= 3 && NR <= 20 { i = index($0, "O"); if (i) { print NR "," i; exit } }'; }
ball_moved() { local now; now=$(ball_at "$1"); [ -n "$now" ] && [ "$now" != "$2" ]; }
exited_ok() { [ -s "$tmp/$1.rc" ] && [ "$(cat "$tmp/$1.rc")" = 0 ]; }

play alice
wait_for 10000 "alice waiting" shows alice "waiting for a second player"
play bob
wait_for 10000 "bob on alice's screen" shows alice "alice (you) .* bob"
wait_for 10000 "alice on bob's screen" shows bob "alice .* bob (you)"
step "alice (left, host) and bob (right) see each other"

# Both paddles start in the middle (row 7 of 0..14).
wait_for 5000 "bob's paddle in the middle on alice's screen" paddle_is alice right 7
tm send-keys -t pong:bob s s s Down
wait_for 5000 "bob's paddle at row 11 on alice's screen" paddle_is alice right 11
paddle_is bob right 11 || fail "bob's own screen disagrees: $(paddle_top bob right)"
tm send-keys -t pong:bob Up Up w
wait_for 5000 "bob's paddle back at row 8 on alice's screen" paddle_is alice right 8
tm send-keys -t pong:alice w w w w w w w w w w
wait_for 5000 "alice's paddle at the top on bob's screen" paddle_is bob left 0
step "paddles move on the other player's screen"

tm send-keys -t pong:alice q
wait_for 5000 "alice to quit with 0" exited_ok alice
wait_for 10000 "bob told alice left" shows bob "alice left"
wait_for 10000 "bob now runs the ball" shows bob "(you run the ball)"
shows bob "waiting for a second player" || fail "bob is not waiting for a new player"
step "alice quit: bob is the host now"

play carol
wait_for 10000 "bob on carol's screen" shows carol "carol (you) .* bob"
wait_for 10000 "carol on bob's screen" shows bob "carol .* bob (you)"
wait_for 5000 "bob's paddle (row 8) on carol's screen" paddle_is carol right 8
first=$(ball_at carol)
wait_for 5000 "the ball to move on carol's screen" ball_moved carol "$first"
step "carol joined bob's room and the game goes on"

tm send-keys -t pong:carol q
tm send-keys -t pong:bob q
wait_for 5000 "carol to quit with 0" exited_ok carol
wait_for 5000 "bob to quit with 0" exited_ok bob
stop_server
step "ok"
