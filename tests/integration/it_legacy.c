/*
 * Legacy (no-ALPN) clients, protocol section 9, against a real
 * issun-server, with a client on another QUIC stack: issun-legacy-client
 * (tests/legacy-client: Rust, quinn + rustls from Debian's crates), which
 * behaves on the wire like issun's Rust QuicClientBackend.  It is built by
 * the integration.legacy_client_build test (a CTest fixture of this one).
 *
 * Covered: legacy <-> issun/1 exchange of 1,000 events each way, byte for
 * byte; legacy <-> legacy and lobby broadcast (legacy sessions are in no
 * room); 10,000 events each way on one legacy session (stream credit
 * replenished both ways); duplicate NodeIds; refusal with authentication
 * on and with ISSUN_ALLOW_LEGACY off; no frame other than EVENT ever
 * reaches a legacy client (rate limit); unreliable events are not turned
 * into streams; keep-alive without heartbeats and the NodeId freed after a
 * client vanishes; shutdown; hostile legacy streams; two relays clustered
 * over NATS (NodeIds unique across them, events between them).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "it.h"

#define TAG_RUST 'R' /* payload pattern tag of events sent by the Rust client */
#define TAG_C 'C'    /* ... and of events sent by libissun */
#define RUST_TYPE "legacy::Ping"
#define C_TYPE "issun::Pong"
#define DONE_TYPE "test::Done"
#define RUST_TS0 1700000000000ull /* the Rust client's timestamp of event 0 */

/* ---- the Rust client as a child process ------------------------------ */

typedef struct rclient {
  pid_t pid;
  char out_path[320];
  int exited, code; /* code: exit status, or 128 + signal */
} rclient;

static char rust_bin[1024];

/* What a test started, so that teardown can end it when the test failed
 * half way (the server and clients are real processes). */
static rclient *live[16];
static it_server *live_srv;

static void find_rust_bin(void) {
  const char *bd = getenv("ISSUN_BUILD_DIR");
  if (!bd)
    fail_msg("ISSUN_BUILD_DIR is not set");
  snprintf(rust_bin, sizeof rust_bin, "%s/legacy-client/target/debug/issun-legacy-client", bd);
  if (access(rust_bin, X_OK) != 0)
    fail_msg("%s is missing: it is built by the integration.legacy_client_build test "
             "(tests/integration/legacy_client_build.sh), which needs cargo and Debian's "
             "librust-quinn-dev (scripts/deps.sh test installs them)",
             rust_bin);
}

/* Starts the client against srv with the given arguments (space-separated,
 * printf-style); its stdout and stderr go to a file in the server's dir. */
static rclient *rc_start(const it_server *srv, const char *name, const char *fmt, ...) {
  static int seq;
  char args[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  rclient *r = calloc(1, sizeof *r);
  assert_non_null(r);
  snprintf(r->out_path, sizeof r->out_path, "%s/rust-%s-%d.out", srv->dir, name, seq++);
  char server[96];
  snprintf(server, sizeof server, "%s:%u", srv->host, srv->port);
  char *argv[64];
  int argc = 0;
  argv[argc++] = rust_bin;
  argv[argc++] = "--server";
  argv[argc++] = server;
  for (char *tok = strtok(args, " "); tok && argc < 62; tok = strtok(NULL, " "))
    argv[argc++] = tok;
  argv[argc] = NULL;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(r->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
      _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    execv(rust_bin, argv);
    _exit(127);
  }
  r->pid = pid;
  for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
    if (!live[i]) {
      live[i] = r;
      break;
    }
  return r;
}

/* The client's output so far (a static buffer, NUL-terminated). */
static const char *rc_out(const rclient *r) {
  static char buf[16384];
  buf[0] = 0;
  FILE *f = fopen(r->out_path, "r");
  if (!f)
    return buf;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static int rc_has(const rclient *r, const char *needle) {
  return strstr(rc_out(r), needle) != NULL;
}

static int rc_done(rclient *r) {
  if (r->exited)
    return 1;
  int st;
  if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
    r->exited = 1;
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  return r->exited;
}

static void rc_free(rclient *r) {
  if (!r)
    return;
  for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
    if (live[i] == r)
      live[i] = NULL;
  if (!rc_done(r)) {
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
  }
  free(r);
}

/* Fails the test with the client's output when it did not exit with `code`. */
static void rc_expect_exit(rclient *r, int code) {
  if (!r->exited)
    fail_msg("legacy client still running; output:\n%s", rc_out(r));
  if (r->code != code)
    fail_msg("legacy client exited %d, expected %d; output:\n%s", r->code, code, rc_out(r));
}

/* ---- helpers --------------------------------------------------------- */

/* The payload of test event i from the side tagged tag (the Rust client
 * builds the same): i as u32 LE, then (i * 37) % 301 pattern bytes. */
static size_t pattern(uint8_t tag, uint32_t i, uint8_t *out) {
  size_t len = ((size_t)i * 37) % 301;
  for (int k = 0; k < 4; k++)
    out[k] = (uint8_t)(i >> (8 * k));
  for (uint32_t k = 0; k < len; k++)
    out[4 + k] = (uint8_t)((uint32_t)tag * 131 + i * 7 + k * 13);
  return 4 + len;
}

/* Sends, polling while the client's send buffer is full. */
static void send_ev(itc *t, const char *type, issun_scope scope, uint64_t target, issun_delivery d,
                    const void *p, size_t n) {
  uint64_t end = it_now_ms() + 10000;
  for (;;) {
    int rv = issun_client_send(t->c, type, scope, target, d, p, n, NULL);
    if (rv == 0)
      return;
    if (rv != ISSUN_ERR_QUEUE_FULL || it_now_ms() > end)
      fail_msg("send %s: %s", type, issun_strerror(rv));
    itc *const cs[] = {t};
    it_poll(5, cs, 1);
  }
}

static void send_pattern(itc *t, uint32_t n, issun_scope scope, uint64_t target) {
  uint8_t buf[400];
  for (uint32_t i = 0; i < n; i++) {
    size_t len = pattern(TAG_C, i, buf);
    send_ev(t, C_TYPE, scope, target, ISSUN_RELIABLE, buf, len);
  }
}

/* Checks that t received exactly n events of RUST_TYPE from `from`, in
 * order, each as the Rust client built it (only the sender is the
 * server's). */
static void check_from_rust(const itc *t, uint64_t from, uint32_t n, issun_scope scope,
                            uint64_t target) {
  uint32_t i = 0;
  uint8_t want[400];
  for (size_t k = 0; k < t->nev; k++) {
    const itc_event *e = &t->ev[k];
    if (strcmp(e->type, RUST_TYPE) != 0 || e->sender != from)
      continue;
    if (i >= n)
      fail_msg("more than %u events from %llu", n, (unsigned long long)from);
    size_t wl = pattern(TAG_RUST, i, want);
    if (e->payload_len != wl || memcmp(e->payload, want, wl) != 0)
      fail_msg("event %u from %llu: payload differs (%zu bytes, want %zu)", i,
               (unsigned long long)from, e->payload_len, wl);
    assert_int_equal(e->sequence, i);
    assert_int_equal(e->timestamp, RUST_TS0 + i);
    assert_int_equal(e->scope, scope);
    if (scope == ISSUN_SCOPE_TARGETED)
      assert_int_equal(e->target, target);
    assert_int_equal(e->reliable, 1);
    i++;
  }
  assert_int_equal(i, n);
}

static uint64_t node_of(const itc *t) {
  return issun_client_node_id(t->c);
}

static int start(it_server *srv, const char *const *env) {
  find_rust_bin();
  live_srv = srv;
  return it_server_start(srv, env);
}

static int teardown(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
    if (live[i])
      rc_free(live[i]);
  if (live_srv && live_srv->pid)
    it_server_stop(live_srv);
  live_srv = NULL;
  return 0;
}

/* ---- tests ----------------------------------------------------------- */

/* The interop test: a Rust legacy client and a libissun client
 * exchange 1,000 events each way; none lost, payloads byte for byte. */
static void test_interop_1000_each_way(void **state) {
  static it_server srv;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=1000000", NULL};
  assert_int_equal(start(&srv, env), 0);
  itc *a = itc_new(&srv, "alice", NULL);
  uint64_t ida = node_of(a), idr = 0x1e6ac1;
  rclient *r =
      rc_start(&srv, "r",
               "--node-id %llu --send 1000 --target %llu --expect 1000 "
               "--expect-sender %llu --expect-type " C_TYPE " --expect-tag %d --wait-done",
               (unsigned long long)idr, (unsigned long long)ida, (unsigned long long)ida, TAG_C);
  assert_true(IT_WAIT(15000, rc_has(r, "HANDSHAKE") || rc_done(r), a));
  assert_true(rc_has(r, "HANDSHAKE node_id=1993409 echo=1993409"));

  send_pattern(a, 1000, ISSUN_SCOPE_TARGETED, idr);
  assert_true(IT_WAIT(30000, itc_count_type(a, RUST_TYPE) >= 1000 || rc_done(r), a));
  check_from_rust(a, idr, 1000, ISSUN_SCOPE_TARGETED, ida);
  send_ev(a, DONE_TYPE, ISSUN_SCOPE_TARGETED, idr, ISSUN_RELIABLE, "", 0);
  assert_true(IT_WAIT(30000, rc_done(r), a));
  rc_expect_exit(r, 0);
  assert_true(rc_has(r, "RECEIVED 1000 expected (0 other) done=true"));
  assert_true(it_server_log_has(&srv, "Client connected node_id=1993409"));
  assert_true(it_server_log_has(&srv, "legacy=1"));
  rc_free(r);
  itc_free(a);
  assert_int_equal(it_server_stop(&srv), 0);
}

/* Broadcast from a legacy client reaches every other roomless session
 * (libissun and legacy alike) and no room member; broadcast from libissun
 * reaches the legacy clients. */
static void test_broadcast_lobby_and_rooms(void **state) {
  static it_server srv;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=1000000", NULL};
  assert_int_equal(start(&srv, env), 0);
  itc *a = itc_new(&srv, "alice", NULL), *m = itc_new(&srv, "member", NULL);
  assert_int_equal(itc_room_create(m, "room", 0, NULL, 0, NULL), 0);
  assert_true(issun_client_room_id(m->c) != 0);
  uint64_t ida = node_of(a), id1 = 501, id2 = 502;
  /* r2 listens: it expects r1's 300 broadcasts, and sees alice's as others. */
  rclient *r2 = rc_start(&srv, "r2",
                         "--node-id %llu --expect 300 --expect-sender %llu "
                         "--expect-type " RUST_TYPE " --expect-tag %d --wait-done",
                         (unsigned long long)id2, (unsigned long long)id1, TAG_RUST);
  assert_true(IT_WAIT(15000, rc_has(r2, "HANDSHAKE") || rc_done(r2), a, m));
  /* r1 broadcasts 300 and expects alice's 200 broadcasts. */
  rclient *r1 = rc_start(&srv, "r1",
                         "--node-id %llu --send 300 --expect 200 --expect-sender %llu "
                         "--expect-type " C_TYPE " --expect-tag %d --wait-done",
                         (unsigned long long)id1, (unsigned long long)ida, TAG_C);
  assert_true(IT_WAIT(15000, rc_has(r1, "HANDSHAKE") || rc_done(r1), a, m));
  send_pattern(a, 200, ISSUN_SCOPE_BROADCAST, 0);
  assert_true(IT_WAIT(30000, itc_count_type(a, RUST_TYPE) >= 300 || rc_done(r1), a, m));
  check_from_rust(a, id1, 300, ISSUN_SCOPE_BROADCAST, 0);
  send_ev(a, DONE_TYPE, ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "", 0);
  assert_true(IT_WAIT(30000, rc_done(r1) && rc_done(r2), a, m));
  rc_expect_exit(r1, 0);
  rc_expect_exit(r2, 0);
  assert_true(rc_has(r1, "RECEIVED 200 expected (0 other) done=true"));
  assert_true(rc_has(r2, "RECEIVED 300 expected (200 other) done=true"));
  /* The room member got nothing: legacy sessions are in no room. */
  assert_int_equal(itc_count_type(m, RUST_TYPE), 0);
  assert_int_equal(itc_count_type(m, C_TYPE), 0);
  rc_free(r1);
  rc_free(r2);
  itc_free(a);
  itc_free(m);
  assert_int_equal(it_server_stop(&srv), 0);
}

/* One legacy session carries 10,000 events each way: 100 times the
 * stream credit, so credit must be replenished in both directions. */
static void test_10000_events_stream_credit(void **state) {
  static it_server srv;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=1000000", "ISSUN_SLOW_CONSUMER_BYTES=67108864",
                       NULL};
  assert_int_equal(start(&srv, env), 0);
  itc *a = itc_new(&srv, "alice", NULL);
  uint64_t ida = node_of(a), idr = 10000;
  uint64_t t0 = it_now_ms();
  rclient *r =
      rc_start(&srv, "r",
               "--node-id %llu --send 10000 --target %llu --expect 10000 "
               "--expect-sender %llu --expect-type " C_TYPE " --expect-tag %d "
               "--wait-done --timeout-ms 150000",
               (unsigned long long)idr, (unsigned long long)ida, (unsigned long long)ida, TAG_C);
  assert_true(IT_WAIT(15000, rc_has(r, "HANDSHAKE") || rc_done(r), a));
  send_pattern(a, 10000, ISSUN_SCOPE_TARGETED, idr);
  assert_true(IT_WAIT(120000, itc_count_type(a, RUST_TYPE) >= 10000 || rc_done(r), a));
  check_from_rust(a, idr, 10000, ISSUN_SCOPE_TARGETED, ida);
  send_ev(a, DONE_TYPE, ISSUN_SCOPE_TARGETED, idr, ISSUN_RELIABLE, "", 0);
  assert_true(IT_WAIT(60000, rc_done(r), a));
  rc_expect_exit(r, 0);
  assert_true(rc_has(r, "RECEIVED 10000 expected (0 other) done=true"));
  print_message("10,000 events each way over one legacy session in %llu ms; the Rust client "
                "said:\n%s",
                (unsigned long long)(it_now_ms() - t0), rc_out(r));
  rc_free(r);
  itc_free(a);
  assert_int_equal(it_server_stop(&srv), 0);
}

/* A NodeId held by any session refuses a legacy client with application
 * error DUPLICATE_NODE, and a legacy client's NodeId refuses an issun/1
 * HELLO; the holder is not disturbed. */
static void test_duplicate_node(void **state) {
  static it_server srv;
  assert_int_equal(start(&srv, NULL), 0);
  itc *a = itc_new(&srv, "alice", NULL);
  rclient *r1 = rc_start(&srv, "r1", "--node-id 777 --hold-ms 4000");
  assert_true(IT_WAIT(15000, rc_has(r1, "HANDSHAKE") || rc_done(r1), a));
  assert_false(rc_done(r1));

  rclient *r2 = rc_start(&srv, "r2", "--node-id 777");
  assert_true(IT_WAIT(15000, rc_done(r2), a));
  rc_expect_exit(r2, 3);
  assert_true(rc_has(r2, "CLOSED app_code=7"));

  char dup[32];
  snprintf(dup, sizeof dup, "--node-id %llu", (unsigned long long)node_of(a));
  rclient *r3 = rc_start(&srv, "r3", dup);
  assert_true(IT_WAIT(15000, rc_done(r3), a));
  rc_expect_exit(r3, 3);
  assert_true(rc_has(r3, "CLOSED app_code=7"));

  itc_opts o = {.node_id = 777, .no_connect = 1};
  itc *b = itc_new(&srv, "bob", &o);
  assert_int_equal(itc_connect(b), ISSUN_ERR_DUPLICATE_NODE);

  assert_true(IT_WAIT(15000, rc_done(r1), a));
  rc_expect_exit(r1, 0);
  assert_true(rc_has(r1, "HELD 4000 ms, still connected"));
  rc_free(r1);
  rc_free(r2);
  rc_free(r3);
  itc_free(a);
  itc_free(b);
  assert_int_equal(it_server_stop(&srv), 0);
}

/* With authentication on, or ISSUN_ALLOW_LEGACY off, a connection without
 * ALPN fails the TLS handshake: alert no_application_protocol (120), QUIC
 * CRYPTO_ERROR 0x100 + 120 = 376. */
static void refused_with(const char *const *env) {
  static it_server srv;
  assert_int_equal(start(&srv, env), 0);
  rclient *r = rc_start(&srv, "r", "--node-id 31337 --timeout-ms 15000");
  assert_true(IT_WAIT(20000, rc_done(r), NULL));
  rc_expect_exit(r, 2);
  assert_true(rc_has(r, "CONNECT_FAILED transport_code=376"));
  assert_false(it_server_log_has(&srv, "node_id=31337"));
  rc_free(r);
  assert_int_equal(it_server_stop(&srv), 0);
}

static void test_refused_when_auth_on(void **state) {
  const char *env[] = {"ISSUN_AUTH_SECRET=0123456789abcdef0123456789abcdef-legacy-test", NULL};
  refused_with(env);
}

static void test_refused_when_legacy_off(void **state) {
  const char *env[] = {"ISSUN_ALLOW_LEGACY=false", NULL};
  refused_with(env);
}

/* Over the rate limit a legacy client's events are dropped, but it never
 * gets an ERROR frame (it would take it for an event and break): the
 * client checks that every frame it reads is an EVENT. */
static void test_rate_limited_gets_only_events(void **state) {
  static it_server srv;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=50", NULL};
  assert_int_equal(start(&srv, env), 0);
  itc *a = itc_new(&srv, "alice", NULL);
  uint64_t ida = node_of(a);
  rclient *r = rc_start(&srv, "r",
                        "--node-id 4040 --send 400 --target %llu --expect 3 "
                        "--expect-sender %llu --expect-type " C_TYPE " --expect-tag %d --wait-done",
                        (unsigned long long)ida, (unsigned long long)ida, TAG_C);
  assert_true(IT_WAIT(15000, rc_has(r, "SENT 400") || rc_done(r), a));
  /* Some arrive (the bucket starts full), most are dropped. */
  assert_true(IT_WAIT(5000, itc_count_type(a, RUST_TYPE) >= 50, a));
  send_pattern(a, 3, ISSUN_SCOPE_TARGETED, 4040);
  send_ev(a, DONE_TYPE, ISSUN_SCOPE_TARGETED, 4040, ISSUN_RELIABLE, "", 0);
  assert_true(IT_WAIT(15000, rc_done(r), a));
  rc_expect_exit(r, 0);
  assert_true(rc_has(r, "RECEIVED 3 expected (0 other) done=true"));
  size_t got = itc_count_type(a, RUST_TYPE);
  assert_true(got >= 50 && got < 400);
  rc_free(r);
  itc_free(a);
  assert_int_equal(it_server_stop(&srv), 0);
}

/* An unreliable (DATAGRAM) event is not turned into a stream for a legacy
 * client, which never reads DATAGRAMs: it is dropped there. */
static void test_unreliable_not_delivered(void **state) {
  static it_server srv;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=1000000", NULL};
  assert_int_equal(start(&srv, env), 0);
  itc *a = itc_new(&srv, "alice", NULL), *b = itc_new(&srv, "bob", NULL);
  rclient *r = rc_start(&srv, "r",
                        "--node-id 6060 --expect 1 --expect-sender %llu --expect-type " C_TYPE
                        " --expect-tag %d --wait-done",
                        (unsigned long long)node_of(a), TAG_C);
  assert_true(IT_WAIT(15000, rc_has(r, "HANDSHAKE") || rc_done(r), a, b));
  for (int i = 0; i < 5; i++)
    send_ev(a, "issun::Move", ISSUN_SCOPE_BROADCAST, 0, ISSUN_UNRELIABLE, "xy", 2);
  /* bob, an issun/1 client, gets them (loopback loses none in practice;
   * one is enough to know they were sent). */
  assert_true(IT_WAIT(5000, itc_count_type(b, "issun::Move") >= 1, a, b));
  send_pattern(a, 1, ISSUN_SCOPE_BROADCAST, 0);
  send_ev(a, DONE_TYPE, ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "", 0);
  assert_true(IT_WAIT(15000, rc_done(r), a, b));
  rc_expect_exit(r, 0);
  assert_true(rc_has(r, "RECEIVED 1 expected (0 other) done=true"));
  rc_free(r);
  itc_free(a);
  itc_free(b);
  assert_int_equal(it_server_stop(&srv), 0);
}

/* A legacy client sends no heartbeats: the server keeps it alive with QUIC
 * PINGs (it is not closed for silence after 3 intervals), and frees its
 * NodeId by the idle timeout once it vanishes. */
static void test_keepalive_and_vanish(void **state) {
  static it_server srv;
  const char *env[] = {"ISSUN_HEARTBEAT_INTERVAL=500ms", NULL};
  assert_int_equal(start(&srv, env), 0);
  /* Silent for 6 intervals, twice the idle timeout: still connected. */
  rclient *r = rc_start(&srv, "r", "--node-id 8080 --hold-ms 3000");
  assert_true(IT_WAIT(20000, rc_done(r), NULL));
  rc_expect_exit(r, 0);
  assert_true(rc_has(r, "HELD 3000 ms, still connected"));
  rc_free(r);

  /* Now one that disappears without a word. */
  r = rc_start(&srv, "r2", "--node-id 9090 --hold-ms 60000");
  assert_true(IT_WAIT(15000, rc_has(r, "HANDSHAKE") || rc_done(r), NULL));
  assert_false(rc_done(r));
  kill(r->pid, SIGKILL);
  assert_true(IT_WAIT(5000, rc_done(r), NULL));
  /* Idle timeout: 3 x 500 ms after the last thing heard. */
  assert_true(IT_WAIT(10000, it_server_log_has(&srv, "Client disconnected node_id=9090"), NULL));
  assert_true(it_server_log_has(&srv, "reason=IDLE_TIMEOUT"));
  rc_free(r);
  r = rc_start(&srv, "r3", "--node-id 9090");
  assert_true(IT_WAIT(15000, rc_done(r), NULL));
  rc_expect_exit(r, 0);
  rc_free(r);
  assert_int_equal(it_server_stop(&srv), 0);
}

/* SIGTERM closes a legacy connection with SHUTTING_DOWN (9). */
static void test_shutdown(void **state) {
  static it_server srv;
  assert_int_equal(start(&srv, NULL), 0);
  rclient *r = rc_start(&srv, "r", "--node-id 9999 --hold-ms 20000");
  assert_true(IT_WAIT(15000, rc_has(r, "HANDSHAKE") || rc_done(r), NULL));
  assert_int_equal(it_server_signal(&srv, SIGTERM, 5000), 0);
  assert_int_equal(srv.exit_status, 0);
  assert_true(IT_WAIT(10000, rc_done(r), NULL));
  rc_expect_exit(r, 3);
  assert_true(rc_has(r, "CLOSED app_code=9"));
  rc_free(r);
  assert_int_equal(it_server_stop(&srv), 0);
}

/* Hostile legacy streams: each closes that connection with the right
 * application error code, and the server keeps serving others. */
static void test_hostile_streams(void **state) {
  static it_server srv;
  const char *env[] = {"ISSUN_MAX_FRAME_PAYLOAD=1024", NULL};
  assert_int_equal(start(&srv, env), 0);
  itc *a = itc_new(&srv, "alice", NULL);
  /* A valid EVENT frame: sender 0, timestamp 1, sequence 2, Broadcast,
   * type "t", empty payload (45 bytes). */
  const char *ev = "495301012d000000" /* IS v1 EVENT, 45 bytes */
                   "0000000000000000"
                   "0100000000000000"
                   "0200000000000000"   /* meta */
                   "00000000"           /* Broadcast */
                   "010000000000000074" /* "t" */
                   "0000000000000000";  /* payload */
  char two[512];
  snprintf(two, sizeof two, "%s%s", ev, ev);
  struct {
    const char *args;
    const char *want;
  } cases[] = {
      {"--node-id 0", "CLOSED app_code=1"},                        /* NodeId 0 */
      {"--handshake-hex 010203040506070809", "CLOSED app_code=1"}, /* 9-byte handshake */
      {"--handshake-hex 01020304", "CLOSED app_code=1"},           /* 4 bytes then FIN */
      {NULL, "CLOSED app_code=1"},                                 /* two frames on a stream */
      {"--node-id 12 --raw-uni 4953010208000000e803000000000000",
       "CLOSED app_code=1"},                                                /* HEARTBEAT */
      {"--node-id 13 --raw-uni 4954010100000000", "CLOSED app_code=1"},     /* bad magic */
      {"--node-id 14 --raw-uni 4953020100000000", "CLOSED app_code=10"},    /* version 2 */
      {"--node-id 15 --raw-uni 4953010101040000", "CLOSED app_code=2"},     /* 1025 > 1024 */
      {"--node-id 16 --raw-uni 49530101240000000000", "CLOSED app_code=1"}, /* truncated */
      {"--node-id 17 --raw-uni 4953010108000000ffffffffffffffff",
       "CLOSED app_code=1"},       /* bad payload */
      {NULL, "CLOSED app_code=1"}, /* a bidirectional stream */
      {NULL, "CLOSED app_code=1"}, /* a DATAGRAM */
  };
  char buf[1200];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *args = cases[i].args;
    if (i == 3) {
      snprintf(buf, sizeof buf, "--node-id 11 --raw-uni %s", two);
      args = buf;
    } else if (i == 10) {
      snprintf(buf, sizeof buf, "--node-id 18 --raw-bidi %s", ev);
      args = buf;
    } else if (i == 11) {
      snprintf(buf, sizeof buf, "--node-id 19 --raw-datagram %s", ev);
      args = buf;
    }
    rclient *r = rc_start(&srv, "bad", "%s --hold-ms 5000 --timeout-ms 15000", args);
    assert_true(IT_WAIT(20000, rc_done(r), a));
    if (r->code != 3 || !rc_has(r, cases[i].want))
      fail_msg("case %zu (%s): want exit 3 and '%s'; exit %d, output:\n%s", i, args, cases[i].want,
               r->code, rc_out(r));
    rc_free(r);
  }
  /* A handshake stream reset half way, with an event stream right behind
   * it: the event must not be relayed from a connection without a session. */
  snprintf(buf, sizeof buf, "--node-id 21 --handshake-reset --raw-uni %s --hold-ms 5000", ev);
  rclient *rr = rc_start(&srv, "reset", "%s", buf);
  assert_true(IT_WAIT(20000, rc_done(rr), a));
  if (rr->code != 3 || !rc_has(rr, "CLOSED app_code=1"))
    fail_msg("reset handshake: exit %d, output:\n%s", rr->code, rc_out(rr));
  rc_free(rr);
  assert_int_equal(itc_count_type(a, "t"), 0);
  /* Event streams the client abandons (reset, with and without data) are
   * skipped in their turn: the events behind them still flow, in order. */
  snprintf(buf, sizeof buf,
           "--node-id 22 --raw-uni-reset 49530101 --raw-uni-reset 4953 --send 5 --target %llu "
           "--hold-ms 300",
           (unsigned long long)node_of(a));
  rr = rc_start(&srv, "skip", "%s", buf);
  assert_true(IT_WAIT(20000, rc_done(rr), a));
  rc_expect_exit(rr, 0);
  rc_free(rr);
  check_from_rust(a, 22, 5, ISSUN_SCOPE_TARGETED, node_of(a));
  /* The same valid frame alone is relayed to alice. */
  snprintf(buf, sizeof buf, "--node-id 20 --raw-uni %s --hold-ms 300", ev);
  rclient *r = rc_start(&srv, "good", "%s", buf);
  assert_true(IT_WAIT(15000, itc_count_type(a, "t") == 1, a));
  assert_int_equal(a->ev[a->nev - 1].sender, 20);
  assert_int_equal(a->ev[a->nev - 1].sequence, 2);
  assert_int_equal(a->ev[a->nev - 1].timestamp, 1);
  assert_true(IT_WAIT(15000, rc_done(r), a));
  rc_expect_exit(r, 0);
  rc_free(r);
  itc_free(a);
  assert_int_equal(it_server_stop(&srv), 0);
}

/* ---- clustering: legacy sessions on two relays sharing one NATS ------- */

static pid_t nats_pid;
static char nats_dir[64] = "";



static void nats_end(void) {
  if (nats_pid > 0) {
    kill(nats_pid, SIGKILL);
    waitpid(nats_pid, NULL, 0);
    nats_pid = 0;
  }
  if (nats_dir[0]) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", nats_dir);
    it_run(cmd, NULL, 0);
    nats_dir[0] = 0;
  }
}

static it_server relay_b;

static int teardown_cluster(void **state) {
  teardown(state);
  if (relay_b.pid)
    it_server_stop(&relay_b);
  nats_end();
  return 0;
}

/* A NodeId is unique across the cluster for legacy sessions too, and
 * events cross relays to and from a legacy client. */
static void test_cluster_two_relays(void **state) {
  static it_server ra;
  uint16_t port = it_free_tcp_port();
  snprintf(nats_dir, sizeof nats_dir, "/tmp/issun-lgnats-XXXXXX");
  if (!mkdtemp(nats_dir))
    fail_msg("mkdtemp: %s", strerror(errno));
  nats_pid = fork();
  assert_true(nats_pid >= 0);
  if (nats_pid == 0) {
    char p[16], store[96], logp[96];
    snprintf(p, sizeof p, "%u", port);
    snprintf(store, sizeof store, "%s/js", nats_dir);
    snprintf(logp, sizeof logp, "%s/nats.log", nats_dir);
    int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", p, "-js", "-sd", store,
           (char *)NULL);
    _exit(127);
  }
  uint64_t end = it_now_ms() + 10000;
  while (!it_tcp_accepts(port)) {
    if (waitpid(nats_pid, NULL, WNOHANG) == nats_pid) {
      nats_pid = 0;
      fail_msg("nats-server exited at start (scripts/deps.sh test installs it)");
    }
    if (it_now_ms() > end)
      fail_msg("nats-server did not listen within 10 s");
    it_poll(20, NULL, 0);
  }
  char url[64];
  snprintf(url, sizeof url, "ISSUN_NATS_URL=nats://127.0.0.1:%u", port);
  const char *env[] = {url, "ISSUN_MAX_EVENTS_PER_SEC=100000", NULL};
  assert_int_equal(start(&ra, env), 0);
  assert_int_equal(it_server_start(&relay_b, env), 0);

  itc *bob = itc_new(&relay_b, "bob", NULL);
  uint64_t idb = node_of(bob), idr = 4343;
  rclient *r1 =
      rc_start(&ra, "r1",
               "--node-id %llu --send 50 --target %llu --expect 50 --expect-sender %llu "
               "--expect-type " C_TYPE " --expect-tag %d --wait-done",
               (unsigned long long)idr, (unsigned long long)idb, (unsigned long long)idb, TAG_C);
  assert_true(IT_WAIT(15000, rc_has(r1, "HANDSHAKE") || rc_done(r1), bob));
  /* The same NodeId on the other relay is a duplicate. */
  rclient *r2 = rc_start(&relay_b, "r2", "--node-id %llu", (unsigned long long)idr);
  assert_true(IT_WAIT(15000, rc_done(r2), bob));
  rc_expect_exit(r2, 3);
  assert_true(rc_has(r2, "CLOSED app_code=7"));
  /* Events both ways across the relays. */
  assert_true(IT_WAIT(15000, itc_count_type(bob, RUST_TYPE) >= 50 || rc_done(r1), bob));
  check_from_rust(bob, idr, 50, ISSUN_SCOPE_TARGETED, idb);
  send_pattern(bob, 50, ISSUN_SCOPE_TARGETED, idr);
  send_ev(bob, DONE_TYPE, ISSUN_SCOPE_TARGETED, idr, ISSUN_RELIABLE, "", 0);
  assert_true(IT_WAIT(15000, rc_done(r1), bob));
  rc_expect_exit(r1, 0);
  assert_true(rc_has(r1, "RECEIVED 50 expected (0 other) done=true"));
  rc_free(r1);
  rc_free(r2);
  itc_free(bob);
  assert_int_equal(it_server_stop(&relay_b), 0);
  assert_int_equal(it_server_stop(&ra), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_interop_1000_each_way, teardown),
      cmocka_unit_test_teardown(test_broadcast_lobby_and_rooms, teardown),
      cmocka_unit_test_teardown(test_10000_events_stream_credit, teardown),
      cmocka_unit_test_teardown(test_duplicate_node, teardown),
      cmocka_unit_test_teardown(test_refused_when_auth_on, teardown),
      cmocka_unit_test_teardown(test_refused_when_legacy_off, teardown),
      cmocka_unit_test_teardown(test_rate_limited_gets_only_events, teardown),
      cmocka_unit_test_teardown(test_unreliable_not_delivered, teardown),
      cmocka_unit_test_teardown(test_keepalive_and_vanish, teardown),
      cmocka_unit_test_teardown(test_shutdown, teardown),
      cmocka_unit_test_teardown(test_hostile_streams, teardown),
      cmocka_unit_test_teardown(test_cluster_two_relays, teardown_cluster),
  };
  /* IT_FILTER=test_name (wildcards allowed) runs only the matching tests. */
  if (getenv("IT_FILTER"))
    cmocka_set_test_filter(getenv("IT_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
