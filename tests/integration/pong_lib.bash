# Helpers shared by the pong_*.sh tests (sourced, not a test itself).
#   ISSUN_SERVER_BIN, ISSUN_BUILD_DIR, ISSUN_SOURCE_DIR as given by CTest.

src=${ISSUN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
build=${ISSUN_BUILD_DIR:-$src/build}
server_bin=${ISSUN_SERVER_BIN:-$build/issun-server}
pong=$build/examples/pong/pong
tmp=$(mktemp -d /tmp/issun-pong-XXXXXX)
started_pids=()

fail() {
  echo "$test_name: FAIL: $*" >&2
  for f in "$tmp"/*.log "$tmp"/*.err "$tmp"/*.json; do
    [ -f "$f" ] && { echo "---- $f" >&2; tail -n 40 "$f" >&2; }
  done
  exit 1
}
step() { echo "$test_name: $*"; }

cleanup() {
  local p
  for p in "${started_pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${started_pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  [ -n "${IT_KEEP_LOGS:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

[ -x "$server_bin" ] || fail "no server binary at $server_bin"
[ -x "$pong" ] || fail "no pong binary at $pong (is libncurses-dev installed? scripts/deps.sh build)"

now_ms() { date +%s%3N; }

# wait_for MS DESCRIPTION COMMAND...: polls COMMAND until it succeeds or MS pass.
wait_for() {
  local ms=$1 what=$2
  shift 2
  local end=$(($(now_ms) + ms))
  until "$@"; do
    [ "$(now_ms)" -lt "$end" ] || fail "timed out after ${ms} ms waiting for: $what"
    sleep 0.05 # polling interval, not a wait for the condition itself
  done
}

# start_server [ENV=VALUE...]: a relay on 127.0.0.1, port chosen by the
# kernel; sets server_pid, port, pin from its log.
start_server() {
  local log=$tmp/server.log
  : >"$log"
  (cd "$tmp" && exec env ISSUN_BIND_ADDR=127.0.0.1:0 ISSUN_METRICS_PORT=0 ISSUN_LOG=info "$@" \
    "$server_bin" >>"$log" 2>&1) &
  server_pid=$!
  started_pids+=("$server_pid")
  wait_for 10000 "the server's listening line" grep -q "Relay server listening on" "$log"
  port=$(sed -n 's/.*Relay server listening on addr=[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$log" | head -n1)
  pin=$(sed -n 's/.*sha256=\([0-9A-Fa-f:]*\).*/\1/p' "$log" | head -n1)
  [ -n "$port" ] && [ -n "$pin" ] || fail "could not read the port and fingerprint from the server log"
}

stop_server() {
  kill -TERM "$server_pid"
  local rc=0
  wait "$server_pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "server exited with $rc on SIGTERM"
}

# is_running PID
is_running() { kill -0 "$1" 2>/dev/null; }
not_running() { ! kill -0 "$1" 2>/dev/null; }

# bot NAME SEED ROOM FRAMES [PORT]: starts a headless pong player in the
# background, output in $tmp/NAME.json and $tmp/NAME.err, and sets the
# variable NAME to its pid.  PORT defaults to the server's.
# Waits (the game's length + 45 s at most) for two bots to exit, and fails
# unless both exited 0.  Uses $frames.
finish_pair() {
  local n1=$1 p1=$2 n2=$3 p2=$4 rc1=0 rc2=0
  wait_for $(((frames / 60 + 45) * 1000)) "$n1 and $n2 to finish" \
    eval "not_running $p1 && not_running $p2"
  wait "$p1" || rc1=$?
  wait "$p2" || rc2=$?
  [ $rc1 -eq 0 ] || fail "$n1 exited $rc1"
  [ $rc2 -eq 0 ] || fail "$n2 exited $rc2"
}

bot() {
  "$pong" --server "127.0.0.1:${5:-$port}" --pin "$pin" --name "$1" --room "$3" --bot \
    --frames "$4" --seed "$2" >"$tmp/$1.json" 2>"$tmp/$1.err" &
  started_pids+=("$!")
  eval "$1=$!"
}
