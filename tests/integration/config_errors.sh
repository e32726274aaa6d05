#!/usr/bin/env bash
# The server's command line and environment, as a user meets them: --help
# lists every setting, and every bad value stops the server with exit 2 and
# a message naming the variable or flag that carried it.
set -uo pipefail
bin=${ISSUN_SERVER_BIN:?ISSUN_SERVER_BIN not set}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "config_errors: FAIL: $*" >&2; fails=$((fails + 1)); }

# --help: exit 0, every environment variable named.
out=$("$bin" --help) || fail "--help exited $?"
for v in ISSUN_BIND_ADDR ISSUN_CERT_PATH ISSUN_KEY_PATH ISSUN_MAX_CLIENTS \
  ISSUN_HEARTBEAT_INTERVAL ISSUN_ENABLE_ROOMS ISSUN_MAX_ROOMS ISSUN_DEFAULT_ROOM_SIZE \
  ISSUN_MAX_EVENTS_PER_SEC ISSUN_MAX_FRAME_PAYLOAD ISSUN_METRICS_PORT ISSUN_LOG \
  ISSUN_LOG_FORMAT; do
  grep -q -- "$v" <<<"$out" || fail "--help does not mention $v"
done

# expect_bad NAME_IN_MESSAGE [env K=V ...] -- [args ...]
expect_bad() {
  local name=$1 want=2
  shift
  if [ "$1" = "--startup" ]; then want=1; shift; fi
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  local err rc
  # timeout: a server that wrongly accepts the value would run forever.
  err=$(cd "$tmp" && env ISSUN_BIND_ADDR=127.0.0.1:0 "${envs[@]}" timeout 10 "$bin" "$@" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -ne $want ]; then
    fail "${envs[*]} $*: exit $rc, want $want (output: $err)"
  elif ! grep -q -- "$name" <<<"$err"; then
    fail "${envs[*]} $*: message does not name $name: $err"
  fi
}

expect_bad ISSUN_MAX_CLIENTS ISSUN_MAX_CLIENTS=abc --
expect_bad ISSUN_MAX_CLIENTS ISSUN_MAX_CLIENTS=-5 --
expect_bad ISSUN_MAX_CLIENTS ISSUN_MAX_CLIENTS=99999999999999999999 --
expect_bad ISSUN_HEARTBEAT_INTERVAL ISSUN_HEARTBEAT_INTERVAL=soon --
expect_bad ISSUN_HEARTBEAT_INTERVAL ISSUN_HEARTBEAT_INTERVAL=0 --
expect_bad ISSUN_ENABLE_ROOMS ISSUN_ENABLE_ROOMS=maybe --
expect_bad ISSUN_BIND_ADDR ISSUN_BIND_ADDR=nowhere --
expect_bad ISSUN_MAX_FRAME_PAYLOAD ISSUN_MAX_FRAME_PAYLOAD=10 --
expect_bad ISSUN_LOG ISSUN_LOG=chatty --
expect_bad ISSUN_LOG_FORMAT ISSUN_LOG_FORMAT=xml --
expect_bad ISSUN_METRICS_PORT ISSUN_METRICS_PORT=70000 --
expect_bad --max-clients -- --max-clients=lots
expect_bad --no-such-flag -- --no-such-flag
# An explicitly configured certificate that does not exist is an error, not
# a silent fallback to a self-signed one (found at start-up: exit 1).
expect_bad ISSUN_CERT_PATH --startup ISSUN_CERT_PATH=/nonexistent/cert.pem ISSUN_KEY_PATH=/nonexistent/key.pem --

# A port already taken is a start-up error naming the setting.
coproc HOLD { exec python3 -c 'import socket,sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
sys.stdin.read()'; }
read -r -t 10 held <&"${HOLD[0]}" || fail "could not hold a port"
expect_bad ISSUN_BIND_ADDR --startup "ISSUN_BIND_ADDR=127.0.0.1:$held" --
exec {HOLD[1]}>&-
wait "$HOLD_PID" 2>/dev/null

if [ $fails -ne 0 ]; then
  echo "config_errors: $fails failure(s)" >&2
  exit 1
fi
echo "config_errors: ok"
