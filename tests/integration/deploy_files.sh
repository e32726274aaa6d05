#!/usr/bin/env bash
# Keeps deploy/ honest without a container engine (issue 5):
#  - the Dockerfile builds with scripts/build-release.sh, the script `make
#    release` / `make run` / `make install` use, and that script builds;
#  - the runtime image installs exactly the packages that own the shared
#    libraries the binary links; it runs as a non-root user, exposes
#    5000/udp and 9090/tcp, and its HEALTHCHECK command, run here against a
#    live relay, passes (and fails against a closed port);
#  - docker-compose.yml parses (python3-yaml), names only variables the
#    server reads, mounts the certificates read-only, and its Prometheus
#    config passes `promtool check config` and targets the relay's port;
#  - fly.toml parses (tomllib), its variables are the server's, its UDP
#    service and checks use the configured ports;
#  - .env.example names only the server's variables, and a relay started
#    with exactly those values runs;
#  - the systemd unit passes `systemd-analyze verify` without a single
#    warning and `systemd-analyze security` scores it at most 2.0;
#  - docs/operations.md mentions every variable and every metric family.
#   ISSUN_SERVER_BIN, ISSUN_SOURCE_DIR (set by CTest)
set -euo pipefail

src=${ISSUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${ISSUN_SERVER_BIN:?ISSUN_SERVER_BIN is not set}
d=$src/deploy
py=/usr/bin/python3
[ -x "$py" ] || py=python3
tmp=$(mktemp -d /tmp/issun-deploy-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "deploy_files: FAIL: $*" >&2; exit 1; }
step() { echo "deploy_files: $*"; }
checks=0
ok() { checks=$((checks + 1)); step "ok: $*"; }

for f in Dockerfile docker-compose.yml prometheus.yml fly.toml issun-server.service .env.example; do
  [ -f "$d/$f" ] || fail "deploy/$f is missing"
done
for t in promtool systemd-analyze curl openssl; do
  command -v $t >/dev/null || fail "$t not found (scripts/deps.sh test installs it)"
done
"$py" -c 'import yaml, tomllib' 2>/dev/null || fail "$py lacks yaml/tomllib (python3-yaml, Python >= 3.11)"

# The variables the server reads: from its own --help (one line per setting).
"$bin" --help >"$tmp/help.txt"
grep -o 'ISSUN_[A-Z0-9_]*' "$tmp/help.txt" | sort -u >"$tmp/vars.txt"
echo RUST_LOG >>"$tmp/vars.txt" # read when ISSUN_LOG is unset (--help says so)
grep -q '^ISSUN_METRICS_PORT$' "$tmp/vars.txt" || fail "--help lists no ISSUN_METRICS_PORT"
# ...and the source agrees: every ISSUN_ name in config.c is in --help.
for v in $(grep -o '"ISSUN_[A-Z0-9_]*"' "$src/src/server/config.c" | tr -d '"' | sort -u); do
  grep -qx "$v" "$tmp/vars.txt" || fail "config.c reads $v but --help does not list it"
done
known() { grep -qx "$1" "$tmp/vars.txt"; }
check_vars() { # FILE-LABEL VAR...
  local label=$1
  shift
  [ $# -gt 0 ] || fail "$label names no variables at all"
  for v in "$@"; do known "$v" || fail "$label names $v, which the server does not read"; done
}

# Waits up to 10 s for a relay's start-up line in LOG; else shows LOG and
# fails with MESSAGE.
wait_started() {
  local end=$((SECONDS + 10))
  until grep -qs "Relay server listening on" "$1"; do
    [ $SECONDS -lt $end ] || { cat "$1" >&2; fail "$2"; }
    sleep 0.05 # polling the log for the start-up line
  done
}

# ---- one build script --------------------------------------------------------
grep -Eq '^RUN .*scripts/build-release\.sh' "$d/Dockerfile" ||
  fail "deploy/Dockerfile does not build with scripts/build-release.sh"
for target in release run install; do
  recipe=$(make -s -n -C "$src" "$target" BUILD="$tmp/mk")
  grep -q 'scripts/build-release\.sh' <<<"$recipe" ||
    fail "make $target does not go through scripts/build-release.sh"
done
if grep -Eq 'cmake +--build|cmake +-S' "$d/Dockerfile"; then
  fail "deploy/Dockerfile runs cmake itself instead of the script"
fi
JOBS=2 "$src/scripts/build-release.sh" "$tmp/rel" >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log" >&2; fail "scripts/build-release.sh failed"; }
"$tmp/rel/issun-server" --version | grep '^issun-server ' >/dev/null || fail "the release binary does not run"
# The README's build command is one of those make targets (or the script).
grep -Eq 'make (run|release|install)|scripts/build-release\.sh' "$src/README.md" ||
  fail "README.md builds the relay some other way than make run/release/install"
ok "Dockerfile, README (make run), make release/run/install all use scripts/build-release.sh, which builds"

# ---- Dockerfile --------------------------------------------------------------
[ "$(grep -c '^FROM debian:bookworm' "$d/Dockerfile")" -ge 2 ] || fail "not multi-stage on bookworm"
grep -Eq '^FROM debian:bookworm(-slim)?$' "$d/Dockerfile" || fail "no bookworm runtime stage"
user=$(sed -n 's/^USER  *//p' "$d/Dockerfile" | tail -n1)
[ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] || fail "the image runs as root"
grep -Eq '^EXPOSE .*5000/udp' "$d/Dockerfile" || fail "5000/udp not exposed"
grep -Eq '^EXPOSE .*9090/tcp' "$d/Dockerfile" || fail "9090/tcp not exposed"
check_vars Dockerfile $(sed -n '/^ENV /,/[^\\]$/p' "$d/Dockerfile" | grep -o '[A-Z][A-Z0-9_]*=' | tr -d '=')
# Runtime packages = the packages owning the libraries the binary links.
runtime_pkgs=$(awk '/^FROM debian:bookworm-slim/{rt=1} rt' "$d/Dockerfile" |
  sed -n '/apt-get install/,/rm -rf/p' | tr ' \\' '\n\n' | grep -E '^lib|^ca-certificates$' | sort -u)
for lib in $(ldd "$tmp/rel/issun-server" | awk '/=>/ {print $3}'); do
  real=$(readlink -f "$lib")
  pkg=$(dpkg -S "$real" 2>/dev/null | head -n1 | cut -d: -f1) || true
  [ -n "$pkg" ] || pkg=$(dpkg -S "$lib" 2>/dev/null | head -n1 | cut -d: -f1) || true
  case "$pkg" in libc6 | libgcc-s1 | "") continue ;; esac # in every Debian image
  if ! echo "$runtime_pkgs" | grep -x "$pkg" >/dev/null; then
    # Only libraries we link directly must be listed; the rest come as their dependencies.
    if readelf -d "$tmp/rel/issun-server" | grep "NEEDED.*\[$(basename "$lib")\]" >/dev/null; then
      fail "the runtime image lacks $pkg (for $(basename "$lib"))"
    fi
  fi
done
ok "Dockerfile: bookworm multi-stage, USER $user, EXPOSE 5000/udp 9090/tcp, runtime packages: $(echo $runtime_pkgs)"

# ---- the HEALTHCHECK, for real -----------------------------------------------
hc=$(sed -n '/^HEALTHCHECK/,/[^\\]$/p' "$d/Dockerfile" | tr -d '\n' | sed 's/\\ *  */ /g')
cmdjson=$(echo "$hc" | sed -n 's/.* CMD \(\[.*\]\)$/\1/p')
[ -n "$cmdjson" ] || fail "HEALTHCHECK has no exec-form CMD"
echo "$cmdjson" | "$py" -c 'import json,sys; a=json.load(sys.stdin); open(sys.argv[1],"w").write("\0".join(a))' "$tmp/hc.argv"
mapfile -d '' hcargv <"$tmp/hc.argv"
mport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$tmp" && ISSUN_BIND_ADDR=127.0.0.1:0 ISSUN_METRICS_PORT=$mport exec "$bin" >"$tmp/relay.log" 2>&1) &
pids+=($!)
wait_started "$tmp/relay.log" "the relay did not start"
ISSUN_METRICS_PORT=$mport timeout 5 "${hcargv[@]}" || fail "the HEALTHCHECK command fails against a healthy relay"
ISSUN_METRICS_PORT=$mport ISSUN_METRICS_ADDR=127.0.0.1 timeout 5 "${hcargv[@]}" ||
  fail "the HEALTHCHECK command ignores ISSUN_METRICS_ADDR"
kill "${pids[0]}"
wait "${pids[0]}" || fail "the relay did not exit cleanly"
pids=()
if ISSUN_METRICS_PORT=$mport timeout 5 "${hcargv[@]}" 2>/dev/null; then
  fail "the HEALTHCHECK command passes with no relay running"
fi
ok "HEALTHCHECK passes against a live relay and fails against a closed port"

# ---- docker-compose.yml + prometheus.yml ------------------------------------
"$py" - "$d/docker-compose.yml" "$tmp/compose.vars" <<'PY' || fail "docker-compose.yml: see above"
import re, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
svc = doc["services"]
relay = svc["relay"]
assert relay["build"]["dockerfile"] == "deploy/Dockerfile", relay["build"]
assert relay["build"]["context"] == "..", relay["build"]
env = relay["environment"]
if isinstance(env, list):
    env = dict(e.split("=", 1) for e in env)
names = set(env)
for v in env.values():  # ${VAR:-default} interpolations name variables too
    names.update(re.findall(r"\$\{([A-Z0-9_]+)", str(v)))
open(sys.argv[2], "w").write("\n".join(sorted(names)) + "\n")
assert "5000:5000/udp" in relay["ports"], relay["ports"]
assert any(str(p).endswith(":9090/tcp") for p in relay["ports"]), relay["ports"]
assert any(str(v).endswith(":/app/certs:ro") for v in relay["volumes"]), relay["volumes"]
assert str(env["ISSUN_METRICS_PORT"]) == "9090"
prom = svc["prometheus"]
assert any(str(v).startswith("./prometheus.yml:") for v in prom["volumes"]), prom["volumes"]
print("compose services:", ", ".join(sorted(svc)))
PY
check_vars docker-compose.yml $(cat "$tmp/compose.vars")
promtool check config "$d/prometheus.yml" >"$tmp/promtool.log" 2>&1 ||
  { cat "$tmp/promtool.log" >&2; fail "promtool rejects deploy/prometheus.yml"; }
"$py" - "$d/prometheus.yml" <<'PY' || fail "deploy/prometheus.yml does not scrape relay:9090"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
targets = [t for sc in c["scrape_configs"] for s in sc["static_configs"] for t in s["targets"]]
assert "relay:9090" in targets, targets
PY
ok "docker-compose.yml parses, names $(wc -l <"$tmp/compose.vars") server variables; prometheus.yml passes promtool"

# ---- fly.toml -----------------------------------------------------------------
"$py" - "$d/fly.toml" "$tmp/fly.vars" <<'PY' || fail "fly.toml: see above"
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
env = c["env"]
open(sys.argv[2], "w").write("\n".join(sorted(env)) + "\n")
port = int(env["ISSUN_BIND_ADDR"].rsplit(":", 1)[1])
mport = int(env["ISSUN_METRICS_PORT"])
udp = [s for s in c["services"] if s["protocol"] == "udp"]
assert udp and udp[0]["internal_port"] == port, c["services"]
assert env["ISSUN_BIND_ADDR"].startswith("fly-global-services:"), env["ISSUN_BIND_ADDR"]
assert c["checks"]["health"]["port"] == mport and c["checks"]["health"]["path"] == "/health"
assert c["metrics"]["port"] == mport and c["metrics"]["path"] == "/metrics"
paths = {f["guest_path"] for f in c.get("files", [])}
assert {env["ISSUN_CERT_PATH"], env["ISSUN_KEY_PATH"]} <= paths, paths
assert c["build"]["dockerfile"] == "Dockerfile"
PY
check_vars fly.toml $(cat "$tmp/fly.vars")
ok "fly.toml parses; UDP service, checks and metrics on the configured ports"

# ---- .env.example: names, and the values start a relay ----------------------
envvars=$(sed -n 's/^#\{0,1\}\([A-Z][A-Z0-9_]*\)=.*/\1/p' "$d/.env.example" | sort -u)
check_vars .env.example $envvars
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 || fail "openssl could not make a test certificate"
mapfile -t envlines < <(grep -E '^[A-Z][A-Z0-9_]*=' "$d/.env.example")
mport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$tmp" && exec env -i PATH="$PATH" "${envlines[@]}" ISSUN_BIND_ADDR=127.0.0.1:0 \
  ISSUN_METRICS_PORT="$mport" ISSUN_CERT_PATH="$tmp/cert.pem" ISSUN_KEY_PATH="$tmp/key.pem" \
  "$bin" >"$tmp/env-relay.log" 2>&1) &
pids+=($!)
wait_started "$tmp/env-relay.log" "a relay with .env.example's values did not start"
curl -sf "http://127.0.0.1:$mport/health" | grep -x OK >/dev/null || fail "/health of the .env.example relay"
kill "${pids[0]}"
wait "${pids[0]}" || fail "the .env.example relay did not exit cleanly"
pids=()
ok ".env.example: $(echo $envvars | wc -w) variables, all read by the server; a relay runs with them"

# ---- systemd unit ---------------------------------------------------------------
mkdir -p "$tmp/unit"
# The one change: ExecStart points at the binary under test (verify checks it exists).
sed "s|^ExecStart=.*|ExecStart=$bin|" "$d/issun-server.service" >"$tmp/unit/issun-server.service"
systemd-analyze verify "$tmp/unit/issun-server.service" >"$tmp/verify.log" 2>&1 ||
  { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify failed"; }
[ ! -s "$tmp/verify.log" ] || { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify warns"; }
systemd-analyze security --offline=yes --threshold=20 "$tmp/unit/issun-server.service" \
  >"$tmp/security.log" 2>&1 || { tail -n 40 "$tmp/security.log" >&2; fail "exposure above 2.0"; }
score=$(sed -n 's/.*Overall exposure level for issun-server.service: \([0-9.]*\).*/\1/p' "$tmp/security.log")
for opt in DynamicUser=yes ProtectSystem=strict NoNewPrivileges=yes; do
  grep -qx "$opt" "$d/issun-server.service" || fail "the unit lacks $opt"
done
if grep -Eq '^AmbientCapabilities=.+' "$d/issun-server.service"; then
  fail "the unit grants capabilities though its ports are above 1024"
fi
check_vars issun-server.service $(sed -n 's/^Environment=\([A-Z][A-Z0-9_]*\)=.*/\1/p' "$d/issun-server.service")
ok "systemd unit: verify clean, exposure $score"

# ---- docs/operations.md covers every variable and every metric ---------------
ops=$src/docs/operations.md
[ -f "$ops" ] || fail "docs/operations.md is missing"
for v in $(cat "$tmp/vars.txt"); do
  grep -q "$v" "$ops" || fail "docs/operations.md does not mention $v"
done
mport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$tmp" && ISSUN_BIND_ADDR=127.0.0.1:0 ISSUN_METRICS_PORT=$mport exec "$bin" >"$tmp/relay3.log" 2>&1) &
pids+=($!)
end=$((SECONDS + 10))
until grep -qs "Relay server listening on" "$tmp/relay3.log"; do
  [ $SECONDS -lt $end ] || fail "the relay did not start"
  sleep 0.05 # polling the log for the start-up line
done
fams=$(curl -sf "http://127.0.0.1:$mport/metrics" | sed -n 's/^# TYPE \([a-z_]*\) .*/\1/p')
[ "$(echo "$fams" | wc -l)" -ge 20 ] || fail "too few metric families exposed"
for f in $fams; do
  grep -q "$f" "$ops" || fail "docs/operations.md does not describe the metric $f"
done
ok "docs/operations.md mentions all $(wc -l <"$tmp/vars.txt") variables and $(echo "$fams" | wc -l) metric families"

echo "deploy_files: $checks passed, 0 failed"
