/*
 * Every abuse limit against a real issun-server: it has a setting (set low
 * here), it refuses or cuts off what passes it, and it counts what it
 * dropped.  The counts are read from the "Limit counters" line the server
 * logs when it stops (the same counters the metrics endpoint exports).
 *
 * Per-address limits (connections, handshakes per second) refuse new
 * connections before any TLS work, answering with CONNECTION_REFUSED;
 * stateless Retry (always, auto) validates addresses; forged Retry tokens,
 * half-open handshakes, garbage and unknown versions are handled; frame
 * size, type name, room name, room metadata, rooms, room size, server
 * size, HELLO deadline and the event rate are each reached.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "it.h"
#include "it_quic.h"

/* ---- helpers ---------------------------------------------------------- */

/* Stops the server (keeping its log) and returns counter `name` from its
 * "Limit counters" line (0 when absent). */
static long long counter_of(it_server *s, const char *name) {
  if (s->pid) assert_int_equal(it_server_signal(s, SIGTERM, 5000), 0);
  FILE *f = fopen(s->log_path, "r");
  assert_non_null(f);
  char line[4096];
  long long v = -1;
  while (fgets(line, sizeof line, f)) {
    char *p = strstr(line, "Limit counters");
    if (!p) continue;
    v = 0;
    for (char *tok = strtok(p + 14, " \n"); tok; tok = strtok(NULL, " \n")) {
      size_t n = strlen(name);
      if (strncmp(tok, name, n) == 0 && tok[n] == '=') v = atoll(tok + n + 1);
    }
  }
  fclose(f);
  if (v < 0) fail_msg("no 'Limit counters' line in %s", s->log_path);
  return v;
}

static struct sockaddr_in server_addr(const it_server *s) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(s->port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  return a;
}

/* A UDP socket on 127.0.0.1, and its address. */
static int udp_socket(struct sockaddr_in *local) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t l = sizeof *local;
  getsockname(fd, (struct sockaddr *)local, &l);
  return fd;
}

/* Waits up to ms for a datagram; returns its length or -1. */
static ssize_t recv_wait(int fd, uint8_t *buf, size_t cap, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, ms) != 1) return -1;
  return recv(fd, buf, cap, 0);
}

/* Connects until it succeeds or ms pass; returns the last result. */
static int connect_until(itc *t, int ms) {
  uint64_t end = it_now_ms() + (uint64_t)ms;
  int rv;
  do {
    rv = itc_connect(t);
    if (rv == 0) return 0;
    it_poll(20, &t, 1); /* wait a little, polling (the handle is FAILED) */
  } while (it_now_ms() < end);
  return rv;
}

static void expect_refused_fast(itc *t) {
  uint64_t t0 = it_now_ms();
  int rv = itc_connect(t);
  uint64_t dt = it_now_ms() - t0;
  if (rv == 0) fail_msg("the connection was accepted");
  assert_int_equal(rv, ISSUN_ERR_QUIC);
  assert_non_null(strstr(issun_client_last_error(t->c), "refused the QUIC handshake"));
  /* refused by CONNECTION_REFUSED, not left to time out (5 s) */
  assert_true(dt < 3000);
  issun_close_info ci;
  assert_int_equal(issun_client_close_info(t->c, &ci), 0);
  assert_true(ci.has_close);
  assert_int_equal(ci.close_is_app, 0);
  assert_int_equal(ci.close_code, 0x2); /* CONNECTION_REFUSED */
}

/* ---- per-address limits ---------------------------------------------- */

static void test_connections_per_address(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_MAX_CONNS_PER_IP=3", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *a = itc_new(&s, "a", NULL), *b = itc_new(&s, "b", NULL), *c = itc_new(&s, "c", NULL);
  itc *d = itc_new(&s, "d", &(itc_opts){.no_connect = 1});
  expect_refused_fast(d);
  /* the three keep working */
  assert_int_equal(issun_client_send(a->c, "x::E", ISSUN_SCOPE_TARGETED, issun_client_node_id(c->c),
                                     ISSUN_RELIABLE, "1", 1, NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(c, "x::E") == 1, a, b, c));
  /* one leaves: there is room again */
  itc_free(a);
  assert_int_equal(connect_until(d, 5000), 0);
  itc_free(b);
  itc_free(c);
  itc_free(d);
  assert_true(counter_of(&s, "ip_conns") >= 1);
  it_server_stop(&s);
}

static void test_handshakes_per_address(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_MAX_HANDSHAKES_PER_IP=2", "ISSUN_MAX_CONNS_PER_IP=0", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *t[8];
  int ok = 0, refused = 0;
  for (int i = 0; i < 8; i++) {
    t[i] = itc_new(&s, "h", &(itc_opts){.no_connect = 1});
    int rv = itc_connect(t[i]);
    if (rv == 0) {
      ok++;
    } else {
      issun_close_info ci;
      issun_client_close_info(t[i]->c, &ci);
      assert_true(ci.has_close && ci.close_code == 0x2);
      refused++;
    }
  }
  assert_true(ok >= 2);
  assert_true(refused >= 1);
  /* tokens come back with time */
  itc *late = itc_new(&s, "late", &(itc_opts){.no_connect = 1});
  assert_int_equal(connect_until(late, 5000), 0);
  for (int i = 0; i < 8; i++) itc_free(t[i]);
  itc_free(late);
  assert_true(counter_of(&s, "ip_handshakes") >= refused);
  it_server_stop(&s);
}

/* ---- Retry ----------------------------------------------------------- */

static void test_retry_always(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_RETRY=always", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *a = itc_new(&s, "a", NULL), *b = itc_new(&s, "b", NULL);
  assert_int_equal(issun_client_send(a->c, "r::E", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "1", 1,
                                     NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "r::E") == 1, a, b));
  /* what a Retry looks like on the wire: small, stateless */
  itq *q = itq_new();
  struct sockaddr_in local, to = server_addr(&s);
  int fd = udp_socket(&local);
  uint8_t pkt[1500], reply[1500];
  size_t n = itq_initial(q, (struct sockaddr *)&local, sizeof local, (struct sockaddr *)&to,
                         sizeof to, NULL, 0, pkt, sizeof pkt);
  assert_int_equal(sendto(fd, pkt, n, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)n);
  ssize_t r = recv_wait(fd, reply, sizeof reply, 5000);
  assert_true(r > 0 && r < 200);
  assert_int_equal(reply[0] & 0xf0, 0xf0); /* long header, type Retry */
  close(fd);
  itq_free(q);
  itc_free(a);
  itc_free(b);
  assert_true(counter_of(&s, "retry_sent") >= 3);
  assert_int_equal(counter_of(&s, "retry_bad_token"), 0);
  it_server_stop(&s);
}

static void test_retry_auto_above_threshold(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_RETRY_THRESHOLD=10", "ISSUN_LOG=debug", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  /* a quiet server accepts directly */
  itc *a = itc_new(&s, "a", NULL);
  char line_a[64];
  snprintf(line_a, sizeof line_a, "Stateless Retry sent addr=127.0.0.1 port=%u\n",
           (unsigned)issun__local_port(a->c));
  itc_free(a);
  /* a burst of 40 connection attempts (Initials that never decrypt) puts
   * the rate over 10/s: the next real client is validated with a Retry */
  struct sockaddr_in local, to = server_addr(&s);
  int fd = udp_socket(&local);
  uint8_t pkt[1500];
  unsigned seed = 5;
  for (int i = 0; i < 40; i++) {
    size_t n = itq_fake_initial(pkt, &seed);
    assert_int_equal(sendto(fd, pkt, n, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)n);
  }
  close(fd);
  itc *b = itc_new(&s, "b", NULL), *c = itc_new(&s, "c", NULL);
  assert_int_equal(issun_client_send(b->c, "r::E", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "1", 1,
                                     NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(c, "r::E") == 1, b, c));
  char line[64];
  snprintf(line, sizeof line, "Stateless Retry sent addr=127.0.0.1 port=%u\n",
           (unsigned)issun__local_port(b->c));
  itc_free(b);
  itc_free(c);
  assert_true(counter_of(&s, "retry_sent") >= 1);
  assert_true(it_server_log_has(&s, line));     /* b itself was sent a Retry */
  assert_false(it_server_log_has(&s, line_a)); /* a was not */
  assert_true(counter_of(&s, "bad_packet") == 0); /* they parsed: counted as attempts */
  it_server_stop(&s);
}

static void test_retry_never(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_RETRY=never", "ISSUN_RETRY_THRESHOLD=1", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *a = itc_new(&s, "a", NULL), *b = itc_new(&s, "b", NULL), *c = itc_new(&s, "c", NULL);
  itc_free(a);
  itc_free(b);
  itc_free(c);
  assert_int_equal(counter_of(&s, "retry_sent"), 0);
  it_server_stop(&s);
}

static void test_forged_retry_token(void **state) {
  it_server s;
  assert_int_equal(it_server_start(&s, NULL), 0);
  itq *q = itq_new();
  assert_non_null(q);
  struct sockaddr_in local, to = server_addr(&s);
  int fd = udp_socket(&local);
  uint8_t token[80], pkt[1500], reply[1500];
  token[0] = 0xb6; /* looks like a Retry token of ngtcp2's */
  for (size_t i = 1; i < sizeof token; i++) token[i] = (uint8_t)(i * 31);
  size_t n = itq_initial(q, (struct sockaddr *)&local, sizeof local, (struct sockaddr *)&to,
                         sizeof to, token, sizeof token, pkt, sizeof pkt);
  assert_true(n >= 1200);
  assert_int_equal(sendto(fd, pkt, n, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)n);
  /* answered with a (small) Initial CONNECTION_CLOSE, no connection made */
  ssize_t r = recv_wait(fd, reply, sizeof reply, 5000);
  assert_true(r > 0 && r < 200); /* far smaller than the 1200-byte Initial: no amplification */
  assert_int_equal(reply[0] & 0xf0, 0xc0); /* long header, Initial */
  close(fd);
  itq_free(q);
  assert_int_equal(counter_of(&s, "retry_bad_token"), 1);
  it_server_stop(&s);
}

/* ---- half-open handshakes and the handshake timeout -------------------- */

static void test_half_open_handshake_times_out(void **state) {
  it_server s;
  /* under valgrind (ISSUN_TEST_SLOW) the server needs longer for anything */
  int slow = getenv("ISSUN_TEST_SLOW") != NULL;
  const char *env[] = {"ISSUN_MAX_CONNS_PER_IP=1",
                       slow ? "ISSUN_HANDSHAKE_TIMEOUT=5s" : "ISSUN_HANDSHAKE_TIMEOUT=500ms", NULL};
  int timeout_ms = slow ? 5000 : 500;
  assert_int_equal(it_server_start(&s, env), 0);
  itq *q = itq_new();
  struct sockaddr_in local, to = server_addr(&s);
  int fd = udp_socket(&local);
  uint8_t pkt[1500], reply[1500];
  size_t n = itq_initial(q, (struct sockaddr *)&local, sizeof local, (struct sockaddr *)&to,
                         sizeof to, NULL, 0, pkt, sizeof pkt);
  assert_true(n >= 1200);
  uint64_t t0 = it_now_ms();
  assert_int_equal(sendto(fd, pkt, n, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)n);
  /* the server answered (its handshake flight): the connection exists */
  assert_true(recv_wait(fd, reply, sizeof reply, 5000) > 0);
  /* ...and holds this address's only slot until the handshake times out */
  itc *t = itc_new(&s, "t", &(itc_opts){.no_connect = 1});
  expect_refused_fast(t);
  assert_int_equal(connect_until(t, 4 * timeout_ms + 8000), 0);
  assert_true(it_now_ms() - t0 >= (uint64_t)timeout_ms * 8 / 10);
  itc_free(t);
  close(fd);
  itq_free(q);
  assert_int_equal(counter_of(&s, "handshake_timeout"), 1);
  assert_true(counter_of(&s, "ip_conns") >= 1);
  it_server_stop(&s);
}

/* ---- garbage, unknown versions --------------------------------------- */

static void test_garbage_and_unknown_versions(void **state) {
  it_server s;
  assert_int_equal(it_server_start(&s, NULL), 0);
  struct sockaddr_in local, to = server_addr(&s);
  int fd = udp_socket(&local);
  uint8_t pkt[1500], reply[1500];
  srand(7);
  for (int i = 0; i < 200; i++) {
    size_t n = 1 + (size_t)(rand() % 1400);
    for (size_t k = 0; k < n; k++) pkt[k] = (uint8_t)rand();
    pkt[0] &= 0x7f; /* short header: never a version negotiation */
    sendto(fd, pkt, n, 0, (struct sockaddr *)&to, sizeof to);
  }
  /* an unknown version in a small datagram gets no answer (no amplification)... */
  memset(pkt, 0, sizeof pkt);
  pkt[0] = 0xc0;
  pkt[1] = 0x1a, pkt[2] = 0x2a, pkt[3] = 0x3a, pkt[4] = 0x4a; /* a reserved version */
  pkt[5] = 8;
  memset(pkt + 6, 0x11, 8); /* DCID */
  pkt[14] = 8;
  memset(pkt + 15, 0x22, 8); /* SCID: small probe */
  sendto(fd, pkt, 100, 0, (struct sockaddr *)&to, sizeof to);
  /* ...a full-size one gets a Version Negotiation echoing its SCID */
  memset(pkt + 15, 0x33, 8);
  sendto(fd, pkt, 1200, 0, (struct sockaddr *)&to, sizeof to);
  ssize_t r = recv_wait(fd, reply, sizeof reply, 5000);
  assert_true(r >= 7 + 8);
  assert_int_equal(reply[1] | reply[2] | reply[3] | reply[4], 0); /* version 0: VN */
  assert_int_equal(reply[5], 8);
  assert_int_equal(reply[6], 0x33); /* answers the full-size one, not the probe */
  assert_true(r < 1200);
  close(fd);
  /* the server still serves */
  itc *a = itc_new(&s, "a", NULL);
  itc_free(a);
  assert_true(counter_of(&s, "bad_packet") >= 150);
  it_server_stop(&s);
}

/* ---- session-level limits ---------------------------------------------- */

static void test_hello_timeout_and_server_full(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_HELLO_TIMEOUT=300ms", "ISSUN_MAX_CLIENTS=1", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *quiet = itc_new(&s, "q", &(itc_opts){.skip_hello = 1});
  assert_true(IT_WAIT(5000, itc_close_code(quiet) == ISSUN_WIRE_TIMEOUT, quiet));
  itc *a = itc_new(&s, "a", NULL);
  itc *b = itc_new(&s, "b", &(itc_opts){.no_connect = 1});
  assert_int_equal(itc_connect(b), ISSUN_ERR_SERVER_FULL);
  itc_free(quiet);
  itc_free(a);
  itc_free(b);
  assert_int_equal(counter_of(&s, "hello_timeout"), 1);
  assert_int_equal(counter_of(&s, "server_full"), 1);
  it_server_stop(&s);
}

static void test_frame_size_and_type_name(void **state) {
  it_server s;
  assert_int_equal(it_server_start(&s, NULL), 0);
  uint8_t f[1024];
  /* a header announcing 70000 bytes (limit 65536) */
  itc *a = itc_new(&s, "a", NULL);
  size_t n = it_frame(f, sizeof f, 0x01, NULL, 0);
  f[4] = 0x70, f[5] = 0x11, f[6] = 0x01, f[7] = 0; /* 70000 LE */
  assert_int_equal(issun__send_raw_stream(a->c, f, n), 0);
  assert_true(IT_WAIT(5000, itc_close_code(a) == ISSUN_WIRE_FRAME_TOO_LARGE, a));
  /* type names of 257 and 0 bytes */
  char longname[258];
  memset(longname, 'T', 257);
  longname[257] = 0;
  itc *b = itc_new(&s, "b", NULL), *c = itc_new(&s, "c", NULL);
  n = it_event_frame(f, sizeof f, 0, 1, 0, 0, longname, "p", 1);
  assert_int_equal(issun__send_raw_stream(b->c, f, n), 0);
  n = it_event_frame(f, sizeof f, 0, 1, 2, 99, "", "p", 1);
  assert_int_equal(issun__send_raw_stream(c->c, f, n), 0);
  assert_true(IT_WAIT(5000,
                      itc_close_code(b) == ISSUN_WIRE_PROTOCOL_ERROR &&
                          itc_close_code(c) == ISSUN_WIRE_PROTOCOL_ERROR,
                      b, c));
  itc_free(a);
  itc_free(b);
  itc_free(c);
  assert_int_equal(counter_of(&s, "frame_size"), 1);
  assert_int_equal(counter_of(&s, "type_name"), 2);
  it_server_stop(&s);
}

static uint16_t create(itc *t, const char *name, uint32_t maxc, const issun_kv *kv, size_t nkv,
                       uint64_t *room) {
  it_room r;
  int status = itc_room_create(t, name, maxc, kv, nkv, &r);
  if (room && status == 0) *room = r.id;
  return status;
}

static void test_room_limits(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_MAX_ROOM_NAME=8", "ISSUN_MAX_ROOM_METADATA=64", "ISSUN_MAX_ROOMS=2",
                       NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *a = itc_new(&s, "a", NULL), *b = itc_new(&s, "b", NULL), *c = itc_new(&s, "c", NULL);
  itc *d = itc_new(&s, "d", NULL), *e = itc_new(&s, "e", NULL);
  uint64_t r1 = 0, r2 = 0;
  /* at the limits: fine */
  /* encoded: count u64 + (len u64 + "k") + (len u64 + value) = 8 + 9 + 8 + |value| */
  issun_kv kv[1] = {{"k", "0123456789012345678901234567890123456789"}}; /* 65 bytes */
  issun_kv kv_ok[1] = {{"k", "012345678901234567890123456789012345678"}}; /* 64 bytes */
  assert_int_equal(create(a, "12345678", 0, kv_ok, 1, &r1), 0);
  assert_int_equal(create(b, "solo", 1, NULL, 0, &r2), 0);
  /* rooms per server, members per room */
  assert_int_equal(create(c, "third", 0, NULL, 0, NULL), ISSUN_WIRE_TOO_MANY_ROOMS);
  assert_int_equal(itc_room_join(c, r2, NULL), ISSUN_WIRE_ROOM_FULL);
  uint32_t rid;
  /* over the name and metadata limits: the connection is closed */
  assert_int_equal(issun_client_room_create(d->c, "123456789", 0, NULL, 0, &rid), 0);
  assert_int_equal(issun_client_room_create(e->c, "m", 0, kv, 1, &rid), 0);
  assert_true(IT_WAIT(5000,
                      itc_close_code(d) == ISSUN_WIRE_PROTOCOL_ERROR &&
                          itc_close_code(e) == ISSUN_WIRE_PROTOCOL_ERROR,
                      d, e));
  issun_close_info ci;
  issun_client_close_info(d->c, &ci);
  assert_non_null(strstr(ci.server_error_message, "room name longer than 8 bytes"));
  issun_client_close_info(e->c, &ci);
  assert_non_null(strstr(ci.server_error_message, "metadata larger than 64 bytes"));
  itc_free(a);
  itc_free(b);
  itc_free(c);
  itc_free(d);
  itc_free(e);
  assert_int_equal(counter_of(&s, "room_name"), 1);
  assert_int_equal(counter_of(&s, "room_metadata"), 1);
  assert_int_equal(counter_of(&s, "rooms"), 1);
  assert_int_equal(counter_of(&s, "room_full"), 1);
  it_server_stop(&s);
}

static void test_event_rate(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=5", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *a = itc_new(&s, "a", NULL), *b = itc_new(&s, "b", NULL);
  for (int i = 0; i < 20; i++)
    assert_int_equal(issun_client_send(a->c, "q::E", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "1",
                                       1, NULL), 0);
  assert_true(IT_WAIT(5000, itc_has_error(a, ISSUN_WIRE_RATE_LIMITED), a, b));
  assert_true(IT_WAIT(5000, itc_count_type(b, "q::E") >= 5, a, b));
  size_t got = itc_count_type(b, "q::E");
  itc_free(a);
  itc_free(b);
  long long dropped = counter_of(&s, "dropped_rate_limited");
  assert_true(dropped >= 10);
  assert_int_equal(dropped + (long long)got, 20);
  it_server_stop(&s);
}

/* A client that stops acknowledging: the relay's congestion window to it
 * fills, its backlog passes the slow-consumer limit, and its ERROR frame can
 * never be sent.  The close waits out its grace period and then goes ahead;
 * the relay must carry on serving (this once hung the relay in its timer
 * loop). */
static void test_silent_slow_consumer_does_not_hang(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_SLOW_CONSUMER_BYTES=65536", "ISSUN_MAX_EVENTS_PER_SEC=100000",
                       NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *a = itc_new(&s, "a", NULL), *b = itc_new(&s, "b", NULL);
  itc *c = itc_new(&s, "silent", NULL); /* never polled again: no ACKs */
  static uint8_t body[1000];
  int sent = 0;
  uint64_t end = it_now_ms() + 20000;
  while (sent < 400 && it_now_ms() < end) {
    int rv = issun_client_send(a->c, "s::Big", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, body,
                               sizeof body, NULL);
    if (rv == 0)
      sent++;
    else
      assert_int_equal(rv, ISSUN_ERR_QUEUE_FULL);
    it_poll(1, (itc *[]){a, b}, 2);
  }
  assert_int_equal(sent, 400);
  assert_true(IT_WAIT(20000, itc_count_type(b, "s::Big") == 400, a, b));
  /* c was cut off; the relay still answers a new client and relays */
  itc *d = itc_new(&s, "d", NULL);
  assert_int_equal(issun_client_send(d->c, "s::After", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE,
                                     "x", 1, NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "s::After") == 1, a, b, d));
  assert_true(it_server_log_has(&s, "reason=SLOW_CONSUMER"));
  itc_free(a);
  itc_free(b);
  itc_free(c);
  itc_free(d);
  assert_int_equal(it_server_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_connections_per_address),
      cmocka_unit_test(test_handshakes_per_address),
      cmocka_unit_test(test_retry_always),
      cmocka_unit_test(test_retry_auto_above_threshold),
      cmocka_unit_test(test_retry_never),
      cmocka_unit_test(test_forged_retry_token),
      cmocka_unit_test(test_half_open_handshake_times_out),
      cmocka_unit_test(test_garbage_and_unknown_versions),
      cmocka_unit_test(test_hello_timeout_and_server_full),
      cmocka_unit_test(test_frame_size_and_type_name),
      cmocka_unit_test(test_room_limits),
      cmocka_unit_test(test_event_rate),
      cmocka_unit_test(test_silent_slow_consumer_does_not_hang),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
