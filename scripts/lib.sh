# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts (sourced, not run).

# wait_for SECONDS CONDITION [PID]: evaluates the shell CONDITION (given in
# single quotes) every 100 ms until it holds (returns 0), SECONDS pass, or
# PID, when given, has exited (returns 1).
wait_for() {
  local end=$((SECONDS + $1))
  until eval "$2"; do
    [ $SECONDS -lt $end ] || return 1
    if [ -n "${3:-}" ]; then kill -0 "$3" 2>/dev/null || return 1; fi
    sleep 0.1 # polling interval, not a fixed wait
  done
}

# stop_pids PID...: SIGTERM to each, then reap them; empty arguments are
# skipped.
stop_pids() {
  local p
  for p in "$@"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  for p in "$@"; do [ -n "$p" ] && wait "$p" 2>/dev/null; done
  return 0
}

# find_binaries NAME: sets SERVER (building issun-server and issun-load in
# BUILD_DIR, Release, unless SERVER is already set) and LOAD (default:
# BUILD_DIR's issun-load); exits, naming the calling script, when either is
# missing.
find_binaries() {
  if [ -z "${SERVER:-}" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DISSUN_BUILD_TESTS=OFF >/dev/null || exit 1
    cmake --build "$BUILD_DIR" -j 2 --target issun-server issun-load >/dev/null || exit 1
    SERVER=$BUILD_DIR/issun-server
  fi
  LOAD=${LOAD:-$BUILD_DIR/tools/issun-load/issun-load}
  [ -x "$SERVER" ] || { echo "$1: no server at $SERVER" >&2; exit 1; }
  [ -x "$LOAD" ] || { echo "$1: no issun-load at $LOAD" >&2; exit 1; }
}
