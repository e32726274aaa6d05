/*
 * Event relay rules (protocol section 6) against a real issun-server:
 * ping-pong, sender overwrite, no echo, 10-client broadcast stress with
 * per-sender order, targeted, to-server, datagrams.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "it.h"

static it_server srv;

static int setup(void **state) {
  /* A generous rate limit: this suite measures routing, not limits. */
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=100000", NULL};
  return it_server_start(&srv, env);
}

static int teardown(void **state) {
  return it_server_stop(&srv) == 0 ? 0 : -1;
}

static void send_ev(itc *t, const char *type, issun_scope scope, uint64_t target,
                    issun_delivery d, const void *p, size_t n) {
  int rv = issun_client_send(t->c, type, scope, target, d, p, n, NULL);
  if (rv != 0) fail_msg("send %s: %s", type, issun_strerror(rv));
}

static void test_ping_pong(void **state) {
  itc *a = itc_new(&srv, "alice", NULL), *b = itc_new(&srv, "bob", NULL);
  uint64_t ida = issun_client_node_id(a->c), idb = issun_client_node_id(b->c);
  assert_true(ida != 0 && idb != 0 && ida != idb);

  send_ev(a, "pong::Ping", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "ping", 4);
  assert_true(IT_WAIT(5000, itc_count_type(b, "pong::Ping") == 1, a, b));
  assert_int_equal(b->ev[0].sender, ida);
  assert_int_equal(b->ev[0].payload_len, 4);
  assert_memory_equal(b->ev[0].payload, "ping", 4);
  assert_int_equal(b->ev[0].reliable, 1);

  send_ev(b, "pong::Pong", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "pong!", 5);
  assert_true(IT_WAIT(5000, itc_count_type(a, "pong::Pong") == 1, a, b));
  assert_int_equal(a->ev[0].sender, idb);
  assert_memory_equal(a->ev[0].payload, "pong!", 5);
  /* never echoed back to the sender */
  assert_int_equal(itc_count_type(a, "pong::Ping"), 0);
  assert_int_equal(itc_count_type(b, "pong::Pong"), 0);
  itc_free(a);
  itc_free(b);
}

static void test_sender_overwritten_rest_byte_for_byte(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL);
  uint8_t f[256];
  const uint8_t body[] = {0, 1, 2, 0xff, 0xfe, 'x'};
  size_t n = it_event_frame(f, sizeof f, 0xdeadbeef, 77, 0, 0, "spoof::Event", body, sizeof body);
  assert_int_equal(issun__send_raw_stream(a->c, f, n), 0);
  assert_true(IT_WAIT(5000, b->nev == 1, a, b));
  assert_int_equal(b->ev[0].sender, issun_client_node_id(a->c));
  assert_int_equal(b->ev[0].sequence, 77);
  assert_int_equal(b->ev[0].timestamp, 1700000000000ull);
  assert_string_equal(b->ev[0].type, "spoof::Event");
  assert_int_equal(b->ev[0].payload_len, sizeof body);
  assert_memory_equal(b->ev[0].payload, body, sizeof body);
  itc_free(a);
  itc_free(b);
}

#define NSTRESS 10
#define PER_CLIENT 200

static int all_received(itc **cs) {
  for (int i = 0; i < NSTRESS; i++)
    if (cs[i]->nev < (size_t)(NSTRESS - 1) * PER_CLIENT) return 0;
  return 1;
}

static void test_broadcast_stress_10_clients(void **state) {
  itc *cs[NSTRESS];
  uint64_t ids[NSTRESS];
  for (int i = 0; i < NSTRESS; i++) {
    char name[16];
    snprintf(name, sizeof name, "p%d", i);
    cs[i] = itc_new(&srv, name, NULL);
    ids[i] = issun_client_node_id(cs[i]->c);
  }
  /* Interleave the senders so the server sees them all at once. */
  for (int k = 0; k < PER_CLIENT; k++) {
    for (int i = 0; i < NSTRESS; i++) {
      uint32_t body[2] = {(uint32_t)i, (uint32_t)k};
      send_ev(cs[i], "stress::Tick", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, body, sizeof body);
    }
    if (k % 20 == 0) it_poll(0, cs, NSTRESS);
  }
  assert_true(IT_WAIT(30000, all_received(cs), cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6],
                      cs[7], cs[8], cs[9]));
  for (int i = 0; i < NSTRESS; i++) {
    assert_int_equal(cs[i]->nev, (NSTRESS - 1) * PER_CLIENT);
    uint32_t next[NSTRESS] = {0};
    for (size_t e = 0; e < cs[i]->nev; e++) {
      const itc_event *ev = &cs[i]->ev[e];
      uint32_t body[2];
      memcpy(body, ev->payload, sizeof body);
      assert_true(body[0] < NSTRESS);
      assert_int_not_equal(body[0], (uint32_t)i); /* no echo */
      assert_int_equal(ev->sender, ids[body[0]]); /* sender is the real one */
      assert_int_equal(body[1], next[body[0]]);    /* per-sender order, nothing missing */
      next[body[0]]++;
    }
  }
  for (int i = 0; i < NSTRESS; i++) itc_free(cs[i]);
}

static void test_targeted(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL), *c = itc_new(&srv, "c", NULL);
  uint64_t idb = issun_client_node_id(b->c);
  send_ev(a, "t::Whisper", ISSUN_SCOPE_TARGETED, idb, ISSUN_RELIABLE, "hi", 2);
  /* an absent target: dropped, nobody gets it */
  send_ev(a, "t::Lost", ISSUN_SCOPE_TARGETED, 0x1234567890ull, ISSUN_RELIABLE, "x", 1);
  /* a marker broadcast after both: once it arrives, the earlier ones would have too */
  send_ev(a, "t::Marker", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, NULL, 0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "t::Marker") && itc_count_type(c, "t::Marker"), a,
                      b, c));
  assert_int_equal(itc_count_type(b, "t::Whisper"), 1);
  assert_int_equal(b->ev[0].scope, ISSUN_SCOPE_TARGETED);
  assert_int_equal(b->ev[0].target, idb);
  assert_int_equal(itc_count_type(c, "t::Whisper"), 0);
  assert_int_equal(itc_count_type(b, "t::Lost") + itc_count_type(c, "t::Lost"), 0);
  itc_free(a);
  itc_free(b);
  itc_free(c);
}

static void test_to_server_not_relayed(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL);
  send_ev(a, "t::Telemetry", ISSUN_SCOPE_TO_SERVER, 0, ISSUN_RELIABLE, "x", 1);
  send_ev(a, "t::Marker", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, NULL, 0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "t::Marker") == 1, a, b));
  assert_int_equal(itc_count_type(b, "t::Telemetry"), 0);
  itc_free(a);
  itc_free(b);
}

static void test_datagrams_relayed_as_datagrams(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL);
  itc_opts o = {.no_datagrams = 1};
  itc *c = itc_new(&srv, "c", &o);
  /* A few, since a DATAGRAM may be lost even on loopback. */
  for (int i = 0; i < 5; i++)
    send_ev(a, "t::Pos", ISSUN_SCOPE_BROADCAST, 0, ISSUN_UNRELIABLE, "xy", 2);
  send_ev(a, "t::Marker", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, NULL, 0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "t::Pos") >= 1 && itc_count_type(c, "t::Marker"),
                      a, b, c));
  for (size_t i = 0; i < b->nev; i++)
    if (strcmp(b->ev[i].type, "t::Pos") == 0) assert_int_equal(b->ev[i].reliable, 0);
  /* c did not advertise DATAGRAM support: it gets none */
  assert_int_equal(itc_count_type(c, "t::Pos"), 0);
  itc_free(a);
  itc_free(b);
  itc_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ping_pong),
      cmocka_unit_test(test_sender_overwritten_rest_byte_for_byte),
      cmocka_unit_test(test_broadcast_stress_10_clients),
      cmocka_unit_test(test_targeted),
      cmocka_unit_test(test_to_server_not_relayed),
      cmocka_unit_test(test_datagrams_relayed_as_datagrams),
  };
  return cmocka_run_group_tests_name("events", tests, setup, teardown);
}
