/*
 * libissun API misuse and local behaviour, with no relay server: argument
 * validation, state rules, the offline queue and its bound, failure paths
 * of connect (refused, no answer), calls forbidden in callbacks, and the
 * event bus (local-only double buffer, readers, dispatch, remote intake).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/client_internal.h"
#include "issun/issun.h"

/* ---- helpers ---------------------------------------------------------- */

/* A UDP port with nothing listening (bound then closed: the kernel answers
 * with ICMP port unreachable). */
static uint16_t closed_port(void) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  socklen_t l = sizeof(a);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* A UDP socket that receives and never answers; *port gets its port. */
static int silent_socket(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  socklen_t l = sizeof(a);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static issun_client *new_client(const issun_client_settings *s, const issun_client_callbacks *cb,
                                void *ud) {
  issun_client_settings d;
  issun_client_settings_default(&d);
  d.insecure = 1;
  issun_client *c = NULL;
  char err[256];
  int rv = issun_client_new_ex(&c, s ? s : &d, cb, ud, err, sizeof(err));
  if (rv != 0)
    fail_msg("issun_client_new: %s: %s", issun_strerror(rv), err);
  return c;
}

/* ---- errors and names --------------------------------------------------- */

static void test_strerror_and_wire_codes(void **state) {
  (void)state;
  for (int e = ISSUN_ERR_INVALID_ARG; e >= ISSUN_ERR_EXISTS; e--)
    assert_string_not_equal(issun_strerror(e), "unknown error");
  assert_string_equal(issun_strerror(0), "success");
  assert_string_equal(issun_strerror(12345), "unknown error");
  assert_string_equal(issun_strerror(-1000), "unknown error");
  assert_string_equal(issun_wire_code_name(ISSUN_WIRE_SERVER_FULL), "SERVER_FULL");
  assert_string_equal(issun_wire_code_name(0x17), "TOO_MANY_ROOMS");
  assert_string_equal(issun_wire_code_name(0x99), "UNKNOWN");
  assert_int_equal(issun_error_from_wire(0), 0);
  assert_int_equal(issun_error_from_wire(ISSUN_WIRE_DUPLICATE_NODE), ISSUN_ERR_DUPLICATE_NODE);
  assert_int_equal(issun_error_from_wire(ISSUN_WIRE_UNAUTHORIZED), ISSUN_ERR_UNAUTHORIZED);
  assert_int_equal(issun_error_from_wire(ISSUN_WIRE_ROOM_FULL), ISSUN_ERR_ROOM_FULL);
  assert_int_equal(issun_error_from_wire(ISSUN_WIRE_TIMEOUT), ISSUN_ERR_SERVER_TIMEOUT);
  assert_int_equal(issun_error_from_wire(0x42), ISSUN_ERR_SERVER);
  for (unsigned w = 1; w <= 0x17; w++) {
    if (strcmp(issun_wire_code_name(w), "UNKNOWN") == 0)
      continue;
    int e = issun_error_from_wire(w);
    assert_true(e < 0);
    assert_string_not_equal(issun_strerror(e), "unknown error");
  }
  assert_string_equal(issun_version(), ISSUN_VERSION_STRING);
}

/* ---- settings and creation ------------------------------------------------ */

static void test_settings_and_new_validation(void **state) {
  (void)state;
  assert_int_equal(issun_client_settings_default(NULL), ISSUN_ERR_INVALID_ARG);
  issun_client_settings s;
  assert_int_equal(issun_client_settings_default(&s), 0);
  assert_int_equal(s.reconnect, 1);
  assert_int_equal(s.enable_datagrams, 1);
  assert_int_equal(s.insecure, 0); /* verification on by default */
  assert_true(s.reconnect_min_ms > 0 && s.reconnect_min_ms <= s.reconnect_max_ms);
  assert_true(s.connect_timeout_ms > 0 && s.heartbeat_ms > 0);

  assert_int_equal(issun_client_new(NULL, &s, NULL, NULL), ISSUN_ERR_INVALID_ARG);

  issun_client *c = (issun_client *)0x1;
  char err[200];
  char longname[80];
  memset(longname, 'n', sizeof(longname));
  longname[sizeof(longname) - 1] = 0;
  s.insecure = 1;
  s.name = longname;
  assert_int_equal(issun_client_new_ex(&c, &s, NULL, NULL, err, sizeof(err)),
                   ISSUN_ERR_INVALID_ARG);
  assert_null(c);
  assert_true(strlen(err) > 0);
  s.name = "\xff\xfe";
  assert_int_equal(issun_client_new(&c, &s, NULL, NULL), ISSUN_ERR_INVALID_ARG);
  s.name = "ok";
  s.reconnect_min_ms = 5000;
  s.reconnect_max_ms = 100;
  assert_int_equal(issun_client_new(&c, &s, NULL, NULL), ISSUN_ERR_INVALID_ARG);
  issun_client_settings_default(&s);
  s.enable_datagrams = 7;
  assert_int_equal(issun_client_new(&c, &s, NULL, NULL), ISSUN_ERR_INVALID_ARG);
  issun_client_settings_default(&s);
  assert_int_equal(s.ack_delay_ms, 10);
  s.ack_delay_ms = 21; /* must stay below the 25 ms max_ack_delay advertised */
  assert_int_equal(issun_client_new(&c, &s, NULL, NULL), ISSUN_ERR_INVALID_ARG);
  s.ack_delay_ms = -2;
  assert_int_equal(issun_client_new(&c, &s, NULL, NULL), ISSUN_ERR_INVALID_ARG);
  s.insecure = 1;
  for (int32_t v = -1; v <= 20; v += 21) { /* -1 (off) and 20 are accepted */
    s.ack_delay_ms = v;
    assert_int_equal(issun_client_new(&c, &s, NULL, NULL), 0);
    issun_client_free(c);
  }

  /* Certificate options are checked at creation. */
  issun_client_settings_default(&s);
  s.ca_file = "/nonexistent/ca.pem";
  assert_int_equal(issun_client_new_ex(&c, &s, NULL, NULL, err, sizeof(err)), ISSUN_ERR_CERT);
  assert_null(c);
  issun_client_settings_default(&s);
  s.pin_sha256 = "not-a-fingerprint";
  assert_int_equal(issun_client_new(&c, &s, NULL, NULL), ISSUN_ERR_CERT);

  /* NULL settings = defaults (system CA store); strings are copied. */
  assert_int_equal(issun_client_new(&c, NULL, NULL, NULL), 0);
  assert_non_null(c);
  issun_client_free(c);
  char name[16] = "temp";
  issun_client_settings_default(&s);
  s.name = name;
  s.insecure = 1;
  assert_int_equal(issun_client_new(&c, &s, NULL, NULL), 0);
  memset(name, 0, sizeof(name));
  issun_client_free(c);
  issun_client_free(NULL);
}

static void test_getters_on_null_and_idle(void **state) {
  (void)state;
  assert_int_equal(issun_client_state(NULL), ISSUN_STATE_IDLE);
  assert_int_equal(issun_client_node_id(NULL), 0);
  assert_int_equal(issun_client_room_id(NULL), 0);
  assert_int_equal(issun_client_fd(NULL), -1);
  assert_int_equal(issun_client_timeout_ms(NULL), -1);
  assert_non_null(issun_client_last_error(NULL));
  issun_session_info si;
  issun_close_info ci;
  issun_client_stats st;
  assert_int_equal(issun_client_session_info(NULL, &si), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_close_info(NULL, &ci), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_stats_get(NULL, &st), ISSUN_ERR_INVALID_ARG);

  issun_client *c = new_client(NULL, NULL, NULL);
  assert_int_equal(issun_client_state(c), ISSUN_STATE_IDLE);
  assert_int_equal(issun_client_fd(c), -1);
  assert_int_equal(issun_client_timeout_ms(c), -1);
  assert_int_equal(issun_client_node_id(c), 0);
  assert_int_equal(issun_client_session_info(c, NULL), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_session_info(c, &si), 0);
  assert_int_equal(si.node_id, 0);
  assert_int_equal(issun_client_poll(c, 0), 0);
  assert_int_equal(issun_client_poll(c, -2), ISSUN_ERR_INVALID_ARG);
  /* Nothing would ever wake a poll(-1) on an idle client. */
  assert_int_equal(issun_client_poll(c, -1), ISSUN_ERR_STATE);
  assert_int_equal(issun_client_poll(NULL, 0), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_close(c), 0);
  assert_int_equal(issun_client_close(NULL), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_flush(c, 0), ISSUN_ERR_NOT_CONNECTED);
  issun_client_free(c);
}

/* ---- sends and room requests without a session ---------------------------- */

static void test_send_validation_when_idle(void **state) {
  (void)state;
  issun_client *c = new_client(NULL, NULL, NULL);
  char big[300];
  memset(big, 'x', sizeof(big));
  big[257] = 0; /* 257 bytes: one too many */
  assert_int_equal(
      issun_client_send(NULL, "t", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "x", 1, NULL),
      ISSUN_ERR_INVALID_ARG);
  assert_int_equal(
      issun_client_send(c, NULL, ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "x", 1, NULL),
      ISSUN_ERR_INVALID_ARG);
  assert_true(strlen(issun_client_last_error(c)) > 0);
  assert_int_equal(issun_client_send(c, "", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "x", 1, NULL),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(
      issun_client_send(c, big, ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "x", 1, NULL),
      ISSUN_ERR_INVALID_ARG);
  big[256] = 0; /* exactly 256: fine as far as the name goes */
  assert_int_equal(
      issun_client_send(c, big, ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "x", 1, NULL),
      ISSUN_ERR_NOT_CONNECTED);
  assert_int_equal(
      issun_client_send(c, "bad\xc3", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "x", 1, NULL),
      ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_send(c, "t", (issun_scope)7, 0, ISSUN_RELIABLE, "x", 1, NULL),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_send(c, "t", ISSUN_SCOPE_TARGETED, 0, ISSUN_RELIABLE, "x", 1, NULL),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(
      issun_client_send(c, "t", ISSUN_SCOPE_BROADCAST, 0, (issun_delivery)3, "x", 1, NULL),
      ISSUN_ERR_INVALID_ARG);
  assert_int_equal(
      issun_client_send(c, "t", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, NULL, 4, NULL),
      ISSUN_ERR_INVALID_ARG);
  /* Well-formed, but never connected: refused, not queued. */
  assert_int_equal(
      issun_client_send(c, "t", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, NULL, 0, NULL),
      ISSUN_ERR_NOT_CONNECTED);
  assert_int_equal(
      issun_client_send(c, "t", ISSUN_SCOPE_TARGETED, 9, ISSUN_UNRELIABLE, "x", 1, NULL),
      ISSUN_ERR_NOT_CONNECTED);

  uint32_t rid = 77;
  assert_int_equal(issun_client_room_create(c, NULL, 0, NULL, 0, &rid), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_room_create(c, "r", 0, NULL, 2, &rid), ISSUN_ERR_INVALID_ARG);
  issun_kv bad[1] = {{"k", NULL}};
  assert_int_equal(issun_client_room_create(c, "r", 0, bad, 1, &rid), ISSUN_ERR_INVALID_ARG);
  issun_kv ok[1] = {{"mode", "ffa"}};
  assert_int_equal(issun_client_room_create(c, "r", 4, ok, 1, &rid), ISSUN_ERR_NOT_CONNECTED);
  assert_int_equal(issun_client_room_join(c, 0, &rid), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_room_join(c, 5, &rid), ISSUN_ERR_NOT_CONNECTED);
  assert_int_equal(issun_client_room_leave(c, &rid), ISSUN_ERR_NOT_CONNECTED);
  assert_int_equal(issun_client_room_list(c, NULL), ISSUN_ERR_NOT_CONNECTED);
  assert_int_equal(issun_client_room_start(c, NULL), ISSUN_ERR_NOT_CONNECTED);
  assert_int_equal(issun_client_room_leave(NULL, &rid), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(rid, 77); /* untouched on failure */
  const issun_room_reply *r = (const issun_room_reply *)0x1;
  assert_int_equal(issun_client_room_wait(c, 1, 10, &r), ISSUN_ERR_NOT_CONNECTED);
  assert_null(r);
  assert_int_equal(issun_client_room_wait(NULL, 1, 10, &r), ISSUN_ERR_INVALID_ARG);

  assert_int_equal(issun_client_connect(c, NULL, 5000), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_connect(c, "", 5000), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_connect(c, "127.0.0.1", 0), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_connect_async(NULL, "127.0.0.1", 1), ISSUN_ERR_INVALID_ARG);
  issun_client_stats st;
  assert_int_equal(issun_client_stats_get(c, &st), 0);
  assert_int_equal(st.events_sent, 0);
  issun_client_free(c);
}

/* ---- connect failures ------------------------------------------------------- */

typedef struct cb_log {
  issun_state states[16];
  int errs[16];
  int n;
  int poll_rv;
  int connect_rv;
  int room_wait_rv;
  int free_in_failed;
} cb_log;

static void log_state(issun_client *c, issun_state st, int err, void *ud) {
  cb_log *l = ud;
  if (l->n < 16) {
    l->states[l->n] = st;
    l->errs[l->n] = err;
    l->n++;
  }
  if (st == ISSUN_STATE_FAILED) {
    /* Calls that would re-enter the loop are refused inside callbacks. */
    l->poll_rv = issun_client_poll(c, 0);
    l->connect_rv = issun_client_connect(c, "127.0.0.1", 1);
    l->room_wait_rv = issun_client_room_wait(c, 1, 0, NULL);
    if (l->free_in_failed)
      issun_client_free(c); /* deferred until the call returns */
  }
}

static void test_connect_refused(void **state) {
  (void)state;
  cb_log l;
  memset(&l, 0, sizeof(l));
  issun_client_callbacks cb = {.on_state = log_state};
  issun_client *c = new_client(NULL, &cb, &l);
  int rv = issun_client_connect(c, "127.0.0.1", closed_port());
  assert_int_equal(rv, ISSUN_ERR_REFUSED);
  assert_int_equal(issun_client_state(c), ISSUN_STATE_FAILED);
  issun_close_info ci;
  assert_int_equal(issun_client_close_info(c, &ci), 0);
  assert_non_null(strstr(ci.reason, "refused"));
  /* The callback's refused calls set the last error after that. */
  assert_non_null(strstr(issun_client_last_error(c), "callback"));
  assert_int_equal(ci.error, ISSUN_ERR_REFUSED);
  assert_int_equal(ci.has_server_error, 0);
  assert_int_equal(l.n, 2);
  assert_int_equal(l.states[0], ISSUN_STATE_CONNECTING);
  assert_int_equal(l.states[1], ISSUN_STATE_FAILED);
  assert_int_equal(l.errs[1], ISSUN_ERR_REFUSED);
  assert_int_equal(l.poll_rv, ISSUN_ERR_IN_CALLBACK);
  assert_int_equal(l.connect_rv, ISSUN_ERR_IN_CALLBACK);
  assert_int_equal(l.room_wait_rv, ISSUN_ERR_IN_CALLBACK);
  assert_int_equal(issun_client_fd(c), -1);
  /* A failed client can connect again. */
  assert_int_equal(issun_client_connect(c, "127.0.0.1", closed_port()), ISSUN_ERR_REFUSED);
  issun_client_free(c);
}

static void test_free_inside_callback_is_deferred(void **state) {
  (void)state;
  cb_log l;
  memset(&l, 0, sizeof(l));
  l.free_in_failed = 1;
  issun_client_callbacks cb = {.on_state = log_state};
  issun_client *c = new_client(NULL, &cb, &l);
  /* The handle is released when connect returns; it reports the close. */
  assert_int_equal(issun_client_connect(c, "127.0.0.1", closed_port()), ISSUN_ERR_CLOSED);
  assert_int_equal(l.states[l.n - 1], ISSUN_STATE_FAILED);
}

static void test_connect_timeout_and_offline_queue(void **state) {
  (void)state;
  uint16_t port;
  int fd = silent_socket(&port);
  issun_client_settings s;
  issun_client_settings_default(&s);
  s.insecure = 1;
  s.connect_timeout_ms = 400;
  s.offline_queue_events = 3;
  s.offline_queue_bytes = 4096;
  cb_log l;
  memset(&l, 0, sizeof(l));
  issun_client_callbacks cb = {.on_state = log_state};
  issun_client *c = new_client(&s, &cb, &l);

  assert_int_equal(issun_client_connect_async(c, "localhost", port), 0);
  assert_int_equal(issun_client_state(c), ISSUN_STATE_CONNECTING);
  assert_int_equal(issun_client_connect_async(c, "127.0.0.1", port), ISSUN_ERR_STATE);
  assert_true(issun_client_fd(c) >= 0);
  int t = issun_client_timeout_ms(c);
  assert_true(t >= 0 && t <= 400);

  /* While connecting, reliable events wait in the bounded offline queue. */
  uint64_t seq = 0;
  for (int i = 0; i < 3; i++)
    assert_int_equal(
        issun_client_send(c, "q::Ev", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "abc", 3, &seq), 0);
  assert_int_equal(seq, 3);
  assert_int_equal(
      issun_client_send(c, "q::Ev", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "abc", 3, NULL),
      ISSUN_ERR_QUEUE_FULL);
  /* Unreliable events are never queued. */
  assert_int_equal(
      issun_client_send(c, "q::Dg", ISSUN_SCOPE_BROADCAST, 0, ISSUN_UNRELIABLE, "a", 1, NULL),
      ISSUN_ERR_NOT_CONNECTED);
  /* Room requests need a live session. */
  assert_int_equal(issun_client_room_list(c, NULL), ISSUN_ERR_NOT_CONNECTED);
  issun_client_stats st;
  assert_int_equal(issun_client_stats_get(c, &st), 0);
  assert_int_equal(st.offline_queued, 3);
  assert_int_equal(st.offline_dropped, 1);
  assert_true(st.send_refused >= 2);

  /* An event over the frame limit is refused whatever the state. */
  size_t bign = 70000;
  char *bigp = calloc(1, bign);
  assert_non_null(bigp);
  assert_int_equal(
      issun_client_send(c, "q::Big", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, bigp, bign, NULL),
      ISSUN_ERR_TOO_LARGE);
  free(bigp);

  /* No answer: the connect fails with TIMEOUT after connect_timeout_ms;
   * poll never blocks longer than asked. */
  for (int i = 0; i < 60 && issun_client_state(c) == ISSUN_STATE_CONNECTING; i++)
    assert_int_equal(issun_client_poll(c, 50), 0);
  assert_int_equal(issun_client_state(c), ISSUN_STATE_FAILED);
  issun_close_info ci;
  issun_client_close_info(c, &ci);
  assert_int_equal(ci.error, ISSUN_ERR_TIMEOUT);
  assert_non_null(strstr(ci.reason, "no answer"));

  /* Blocking connect: same, with the error returned. */
  assert_int_equal(issun_client_connect(c, "127.0.0.1", port), ISSUN_ERR_TIMEOUT);
  issun_client_free(c);
  close(fd);
}

/* ---- event bus --------------------------------------------------------------- */

typedef struct pos {
  int32_t x, y;
} pos;

static void test_bus_validation(void **state) {
  (void)state;
  issun_bus *b = NULL;
  assert_int_equal(issun_bus_new(NULL, NULL), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_new(&b, NULL), 0);
  issun_event_type t, u;
  char big[300];
  memset(big, 'y', sizeof(big));
  big[257] = 0;
  assert_int_equal(issun_bus_register(NULL, "a", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1, &t),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_register(b, NULL, ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1, &t),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_register(b, "", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1, &t),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_register(b, big, ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1, &t),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_register(b, "a", (issun_scope)9, ISSUN_RELIABLE, 1, &t),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_register(b, "a", ISSUN_SCOPE_BROADCAST, (issun_delivery)9, 1, &t),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_register(b, "a", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 2, &t),
                   ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_register(b, "game::Pos", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1, &t),
                   0);
  assert_int_equal(issun_bus_register(b, "game::Pos", ISSUN_SCOPE_TO_SERVER, ISSUN_RELIABLE, 0, &u),
                   ISSUN_ERR_EXISTS);
  assert_int_equal(issun_bus_lookup(b, "game::Pos", &u), 0);
  assert_int_equal(u, t);
  assert_int_equal(issun_bus_lookup(b, "game::Nope", &u), ISSUN_ERR_NOT_FOUND);
  assert_int_equal(issun_bus_lookup(b, NULL, &u), ISSUN_ERR_INVALID_ARG);

  assert_int_equal(issun_bus_publish(NULL, t, "x", 1), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_publish(b, t + 100, "x", 1), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_publish(b, t, NULL, 1), ISSUN_ERR_INVALID_ARG);
  issun_event_type tt;
  assert_int_equal(
      issun_bus_register(b, "game::Whisper", ISSUN_SCOPE_TARGETED, ISSUN_RELIABLE, 0, &tt), 0);
  assert_int_equal(issun_bus_publish(b, tt, "x", 1), ISSUN_ERR_INVALID_ARG); /* needs a target */
  assert_int_equal(issun_bus_publish_to(b, tt, 42, "x", 1), 0);

  issun_bus_reader r;
  issun_event ev;
  assert_int_equal(issun_bus_reader_init(NULL, b, t), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_reader_init(&r, b, 999), ISSUN_ERR_NOT_FOUND);
  assert_int_equal(issun_bus_reader_init(&r, b, t), 0);
  assert_int_equal(issun_bus_reader_next(&r, NULL), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_reader_next(NULL, &ev), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_count(b, 999), 0);
  assert_int_equal(issun_bus_count(NULL, t), 0);
  assert_int_equal(issun_bus_dispatch(NULL), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_poll_network(NULL), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_poll_network(b), 0); /* detached: nothing to do */
  assert_int_equal(issun_bus_attach(NULL, NULL), ISSUN_ERR_INVALID_ARG);
  issun_bus_stats st;
  assert_int_equal(issun_bus_stats_get(b, NULL), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_bus_stats_get(b, &st), 0);
  issun_bus_free(b);
  issun_bus_free(NULL);
}

static void test_bus_local_double_buffer(void **state) {
  (void)state;
  issun_bus *b;
  assert_int_equal(issun_bus_new(&b, NULL), 0);
  issun_event_type tp, tc;
  assert_int_equal(
      issun_bus_register(b, "game::Pos", ISSUN_SCOPE_BROADCAST, ISSUN_UNRELIABLE, 1, &tp), 0);
  assert_int_equal(
      issun_bus_register(b, "game::Chat", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 0, &tc), 0);

  /* Frame 1: publish; nothing is readable before dispatch. */
  for (int i = 0; i < 3; i++) {
    pos p = {i, -i};
    assert_int_equal(issun_bus_publish(b, tp, &p, sizeof(p)), 0);
  }
  assert_int_equal(issun_bus_publish(b, tc, "hi", 2), 0);
  assert_int_equal(issun_bus_count(b, tp), 0);
  issun_bus_reader r;
  issun_event ev;
  assert_int_equal(issun_bus_reader_init(&r, b, tp), 0);
  assert_int_equal(issun_bus_reader_next(&r, &ev), 0);

  /* Dispatch: frame 1's events become readable, in order, by type. */
  assert_int_equal(issun_bus_dispatch(b), 0);
  assert_int_equal(issun_bus_count(b, tp), 3);
  assert_int_equal(issun_bus_count(b, tc), 1);
  /* Events published now belong to the next frame. */
  pos p9 = {9, 9};
  assert_int_equal(issun_bus_publish(b, tp, &p9, sizeof(p9)), 0);
  assert_int_equal(issun_bus_count(b, tp), 3);
  assert_int_equal(issun_bus_reader_init(&r, b, tp), 0);
  uint64_t last_seq = 0;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(issun_bus_reader_next(&r, &ev), 1);
    assert_string_equal(ev.type_name, "game::Pos");
    assert_int_equal(ev.type_name_len, 9);
    assert_int_equal(ev.payload_len, sizeof(pos));
    pos got;
    memcpy(&got, ev.payload, sizeof(got));
    assert_int_equal(got.x, i);
    assert_int_equal(got.y, -i);
    assert_int_equal(ev.meta.sender, 0); /* detached: no node id */
    assert_int_equal(ev.meta.local, 1);
    assert_int_equal(ev.meta.reliable, 0);
    assert_int_equal(ev.meta.scope, ISSUN_SCOPE_BROADCAST);
    assert_true(ev.meta.sequence > last_seq);
    assert_true(ev.meta.timestamp_ms > 1600000000000ull);
    last_seq = ev.meta.sequence;
  }
  assert_int_equal(issun_bus_reader_next(&r, &ev), 0);
  issun_bus_reader rc;
  assert_int_equal(issun_bus_reader_init(&rc, b, tc), 0);
  assert_int_equal(issun_bus_reader_next(&rc, &ev), 1);
  assert_int_equal(ev.payload_len, 2);
  assert_memory_equal(ev.payload, "hi", 2);
  assert_int_equal(ev.meta.reliable, 1);
  assert_int_equal(issun_bus_reader_next(&rc, &ev), 0);

  /* Next dispatch: frame 1 is dropped, frame 2 (one event) is readable;
   * an old reader is invalidated. */
  assert_int_equal(issun_bus_reader_init(&r, b, tp), 0);
  assert_int_equal(issun_bus_dispatch(b), 0);
  assert_int_equal(issun_bus_reader_next(&r, &ev), ISSUN_ERR_STATE);
  assert_int_equal(issun_bus_count(b, tp), 1);
  assert_int_equal(issun_bus_count(b, tc), 0);
  assert_int_equal(issun_bus_reader_init(&r, b, tp), 0);
  assert_int_equal(issun_bus_reader_next(&r, &ev), 1);
  pos got;
  memcpy(&got, ev.payload, sizeof(got));
  assert_int_equal(got.x, 9);

  /* Empty frame: everything dropped. */
  assert_int_equal(issun_bus_dispatch(b), 0);
  assert_int_equal(issun_bus_count(b, tp), 0);

  /* Many frames of varying volume: arenas are reused, data stays right. */
  for (int f = 0; f < 50; f++) {
    int n = (f * 37) % 200;
    for (int i = 0; i < n; i++) {
      pos p = {f, i};
      assert_int_equal(issun_bus_publish(b, tp, &p, sizeof(p)), 0);
    }
    assert_int_equal(issun_bus_publish(b, tc, NULL, 0), 0);
    assert_int_equal(issun_bus_dispatch(b), 0);
    assert_int_equal(issun_bus_count(b, tp), (size_t)n);
    assert_int_equal(issun_bus_reader_init(&r, b, tp), 0);
    for (int i = 0; i < n; i++) {
      assert_int_equal(issun_bus_reader_next(&r, &ev), 1);
      memcpy(&got, ev.payload, sizeof(got));
      assert_int_equal(got.x, f);
      assert_int_equal(got.y, i);
    }
    assert_int_equal(issun_bus_reader_next(&r, &ev), 0);
    assert_int_equal(issun_bus_reader_init(&rc, b, tc), 0);
    assert_int_equal(issun_bus_reader_next(&rc, &ev), 1);
    assert_non_null(ev.payload); /* never NULL, even when empty */
    assert_int_equal(ev.payload_len, 0);
  }
  issun_bus_stats st;
  assert_int_equal(issun_bus_stats_get(b, &st), 0);
  assert_true(st.published > 0);
  assert_int_equal(st.received, 0);
  assert_int_equal(st.send_failed, 0);
  issun_bus_free(b);
}

static void test_bus_remote_and_attached_client(void **state) {
  (void)state;
  issun_client *c = new_client(NULL, NULL, NULL);
  issun_bus *b, *b2;
  assert_int_equal(issun_bus_new(&b, c), 0);
  assert_int_equal(issun_bus_new(&b2, c), ISSUN_ERR_STATE); /* one bus per client */
  assert_int_equal(issun_bus_new(&b2, NULL), 0);
  assert_int_equal(issun_bus_attach(b2, c), ISSUN_ERR_STATE);

  issun_event_type tn, tl;
  assert_int_equal(
      issun_bus_register(b, "net::Move", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1, &tn), 0);
  assert_int_equal(
      issun_bus_register(b, "loc::Tick", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 0, &tl), 0);
  /* Attached but not connected: a networked publish is still delivered
   * locally, and the send error is reported and counted. */
  assert_int_equal(issun_bus_publish(b, tn, "m", 1), ISSUN_ERR_NOT_CONNECTED);
  assert_int_equal(issun_bus_publish(b, tl, "t", 1), 0);
  assert_int_equal(issun_bus_poll_network(b), 0);

  /* Remote events as the client hands them over. */
  issun_event rem = {
      .type_name = "net::Move", .type_name_len = 9, .payload = "R", .payload_len = 1};
  rem.meta.sender = 777;
  rem.meta.sequence = 5;
  rem.meta.reliable = 1;
  issun_bus__on_remote(b, &rem);
  issun_event unk = rem;
  unk.type_name = "net::Unknown";
  unk.type_name_len = 12;
  issun_bus__on_remote(b, &unk);
  issun_event loc = rem;
  loc.type_name = "loc::Tick"; /* local-only types take nothing from the network */
  loc.type_name_len = 9;
  issun_bus__on_remote(b, &loc);

  assert_int_equal(issun_bus_dispatch(b), 0);
  assert_int_equal(issun_bus_count(b, tn), 2);
  assert_int_equal(issun_bus_count(b, tl), 1);
  issun_bus_reader r;
  issun_event ev;
  assert_int_equal(issun_bus_reader_init(&r, b, tn), 0);
  assert_int_equal(issun_bus_reader_next(&r, &ev), 1);
  assert_int_equal(ev.meta.local, 1);
  assert_int_equal(ev.meta.sender, 0); /* no session yet */
  assert_int_equal(issun_bus_reader_next(&r, &ev), 1);
  assert_int_equal(ev.meta.local, 0);
  assert_int_equal(ev.meta.sender, 777);
  assert_int_equal(ev.meta.sequence, 5);
  assert_memory_equal(ev.payload, "R", 1);
  assert_int_equal(issun_bus_reader_next(&r, &ev), 0);
  issun_bus_stats st;
  assert_int_equal(issun_bus_stats_get(b, &st), 0);
  assert_int_equal(st.received, 1);
  assert_int_equal(st.unknown_dropped, 2);
  assert_int_equal(st.send_failed, 1);

  /* Detach, attach the other bus, then free the client first: the bus
   * survives, detached. */
  assert_int_equal(issun_bus_attach(b, NULL), 0);
  assert_int_equal(issun_bus_attach(b2, c), 0);
  issun_client_free(c);
  assert_int_equal(issun_bus_publish(b2, 0, NULL, 0), ISSUN_ERR_INVALID_ARG); /* no types */
  assert_int_equal(issun_bus_poll_network(b2), 0);
  issun_bus_free(b);
  issun_bus_free(b2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strerror_and_wire_codes),
      cmocka_unit_test(test_settings_and_new_validation),
      cmocka_unit_test(test_getters_on_null_and_idle),
      cmocka_unit_test(test_send_validation_when_idle),
      cmocka_unit_test(test_connect_refused),
      cmocka_unit_test(test_free_inside_callback_is_deferred),
      cmocka_unit_test(test_connect_timeout_and_offline_queue),
      cmocka_unit_test(test_bus_validation),
      cmocka_unit_test(test_bus_local_double_buffer),
      cmocka_unit_test(test_bus_remote_and_attached_client),
  };
  return cmocka_run_group_tests_name("client_api", tests, NULL, NULL);
}
