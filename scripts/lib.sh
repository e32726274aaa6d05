# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts (sourced, not run).
# The globals set here (BENCH_ENV, ADDR, FPR) are read by those scripts.
# shellcheck disable=SC2034

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

# free_port: prints a TCP port on 127.0.0.1 that is free right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# What every benchmark gives the relay: a port the kernel picks on loopback,
# no metrics endpoint (a later ISSUN_METRICS_PORT overrides it), no limits
# per address, no Retry, and client and event rates no workload reaches.
BENCH_ENV=(ISSUN_BIND_ADDR=127.0.0.1:0 ISSUN_METRICS_PORT=0 ISSUN_MAX_CLIENTS=10000
  ISSUN_MAX_CONNS_PER_IP=0 ISSUN_MAX_HANDSHAKES_PER_IP=0 ISSUN_MAX_EVENTS_PER_SEC=100000
  ISSUN_RETRY=never)

# server_started LOG: 0 once the relay writing LOG is listening, with ADDR
# (host:port) and FPR (its certificate's SHA-256, for --pin) set from it.
server_started() {
  ADDR=$(grep -o 'Relay server listening on addr=[0-9.:]*' "$1" | head -n1 | cut -d= -f2)
  FPR=$(grep -o 'sha256=[0-9A-Fa-f:]*' "$1" | head -n1 | cut -d= -f2)
  [ -n "$ADDR" ]
}

# The current run's processes and temporary directory: run_cleanup stops
# the first and removes the second (the scripts trap it on EXIT too).
RUN_PIDS=()
TMP=""
run_cleanup() {
  stop_pids "${RUN_PIDS[@]}"
  [ -n "$TMP" ] && rm -rf "$TMP"
  RUN_PIDS=()
  TMP=""
}
