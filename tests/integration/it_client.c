/*
 * libissun against a real issun-server: the networked event bus end to end
 * (two buses, a networked and a local-only type, the double buffer), events
 * queued while disconnected and delivered after the resume, the offline
 * queue's bound, and a server restart that keeps the NodeId.
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
  (void)state;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=10000", NULL};
  return it_server_start(&srv, env);
}

static int teardown(void **state) {
  (void)state;
  return it_server_stop(&srv) == 0 ? 0 : -1;
}

static issun_client_stats stats_of(const itc *t) {
  issun_client_stats st = {0};
  assert_int_equal(issun_client_stats_get(t->c, &st), 0);
  return st;
}

static uint64_t received(const itc *t) { return stats_of(t).events_received; }

static void test_bus_end_to_end(void **state) {
  (void)state;
  itc *a = itc_new(&srv, "bus-a", NULL), *b = itc_new(&srv, "bus-b", NULL);
  issun_bus *ba, *bb;
  assert_int_equal(issun_bus_new(&ba, a->c), 0);
  assert_int_equal(issun_bus_new(&bb, b->c), 0);
  issun_event_type move_a, local_a, aim_a, move_b, local_b, aim_b;
  /* Same names on both sides; registration order differs on purpose:
   * types travel by name, not by local id. */
  assert_int_equal(issun_bus_register(ba, "game::Move", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1,
                                      &move_a),
                   0);
  assert_int_equal(issun_bus_register(ba, "game::Local", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE,
                                      0, &local_a),
                   0);
  assert_int_equal(issun_bus_register(ba, "game::Aim", ISSUN_SCOPE_TARGETED, ISSUN_UNRELIABLE, 1,
                                      &aim_a),
                   0);
  assert_int_equal(issun_bus_register(bb, "game::Aim", ISSUN_SCOPE_TARGETED, ISSUN_UNRELIABLE, 1,
                                      &aim_b),
                   0);
  assert_int_equal(issun_bus_register(bb, "game::Local", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE,
                                      0, &local_b),
                   0);
  assert_int_equal(issun_bus_register(bb, "game::Move", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1,
                                      &move_b),
                   0);

  /* Frame 1 on A: three moves, one local tick, one aim at B. */
  for (int i = 0; i < 3; i++) assert_int_equal(issun_bus_publish(ba, move_a, &i, sizeof i), 0);
  assert_int_equal(issun_bus_publish(ba, local_a, "tick", 4), 0);
  assert_int_equal(issun_bus_publish_to(ba, aim_a, issun_client_node_id(b->c), "aim", 3), 0);
  /* Nothing is readable before the dispatch that ends the frame. */
  assert_int_equal(issun_bus_count(ba, move_a), 0);
  assert_int_equal(issun_bus_dispatch(ba), 0);
  assert_int_equal(issun_bus_count(ba, move_a), 3);
  assert_int_equal(issun_bus_count(ba, local_a), 1);

  /* B brings the network in; still nothing readable until its dispatch. */
  assert_true(IT_WAIT(5000, (issun_bus_poll_network(bb), received(b) >= 4), a, b));
  assert_int_equal(issun_bus_count(bb, move_b), 0);
  assert_int_equal(issun_bus_dispatch(bb), 0);
  assert_int_equal(issun_bus_count(bb, move_b), 3);
  assert_int_equal(issun_bus_count(bb, aim_b), 1);
  assert_int_equal(issun_bus_count(bb, local_b), 0); /* local-only never crossed */

  issun_bus_reader r;
  issun_event ev;
  assert_int_equal(issun_bus_reader_init(&r, bb, move_b), 0);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(issun_bus_reader_next(&r, &ev), 1);
    assert_int_equal(ev.meta.local, 0);
    assert_int_equal(ev.meta.sender, issun_client_node_id(a->c));
    assert_int_equal(ev.payload_len, sizeof i);
    int v;
    memcpy(&v, ev.payload, sizeof v);
    assert_int_equal(v, i); /* in order */
    if (i > 0) assert_true(ev.meta.sequence > 0);
  }
  assert_int_equal(issun_bus_reader_next(&r, &ev), 0);
  assert_int_equal(issun_bus_reader_init(&r, bb, aim_b), 0);
  assert_int_equal(issun_bus_reader_next(&r, &ev), 1);
  assert_int_equal(ev.meta.reliable, 0); /* came as a DATAGRAM */
  assert_memory_equal(ev.payload, "aim", 3);

  /* A reader started before a dispatch is invalid after it. */
  assert_int_equal(issun_bus_reader_init(&r, bb, move_b), 0);
  assert_int_equal(issun_bus_dispatch(bb), 0);
  assert_int_equal(issun_bus_reader_next(&r, &ev), ISSUN_ERR_STATE);
  /* The next frame starts empty: last frame's events are gone. */
  assert_int_equal(issun_bus_count(bb, move_b), 0);
  assert_int_equal(issun_bus_count(bb, aim_b), 0);

  /* And back: B's move reaches A, A's own moves are not echoed. */
  int back = 42;
  assert_int_equal(issun_bus_publish(bb, move_b, &back, sizeof back), 0);
  assert_true(IT_WAIT(5000, (issun_bus_poll_network(ba), received(a) >= 1), a, b));
  assert_int_equal(issun_bus_dispatch(ba), 0);
  assert_int_equal(issun_bus_count(ba, move_a), 1);
  assert_int_equal(issun_bus_reader_init(&r, ba, move_a), 0);
  assert_int_equal(issun_bus_reader_next(&r, &ev), 1);
  assert_int_equal(ev.meta.sender, issun_client_node_id(b->c));

  issun_bus_stats st;
  assert_int_equal(issun_bus_stats_get(bb, &st), 0);
  assert_int_equal(st.received, 4);
  assert_int_equal(st.unknown_dropped, 0);
  assert_int_equal(st.send_failed, 0);
  issun_bus_free(ba);
  issun_bus_free(bb);
  itc_free(a);
  itc_free(b);
}

static void test_events_queued_while_disconnected(void **state) {
  (void)state;
  itc *a = itc_new(&srv, "a", NULL);
  itc *b = itc_new(&srv, "b", &(itc_opts){.reconnect = 1, .offline_queue_events = 4});
  uint64_t idb = issun_client_node_id(b->c);
  assert_int_equal(issun__cut_socket(b->c, 0), 0);
  /* Send while the library knows it is down. */
  assert_true(IT_WAIT(10000, issun_client_state(b->c) == ISSUN_STATE_RECONNECTING, a, b));
  int queued = 0, refused = 0;
  for (int i = 0; i < 6; i++) {
    int rv = issun_client_send(b->c, "q::Later", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, &i,
                               sizeof i, NULL);
    if (rv == 0)
      queued++;
    else if (rv == ISSUN_ERR_QUEUE_FULL)
      refused++;
    else
      fail_msg("send while reconnecting: %s", issun_strerror(rv));
  }
  /* No poll ran since the state was seen: no hidden thread can have
   * reconnected meanwhile, so all six met the offline queue. */
  assert_int_equal(issun_client_state(b->c), ISSUN_STATE_RECONNECTING);
  assert_int_equal(queued, 4); /* the bound */
  assert_int_equal(refused, 2);
  issun_client_stats st;
  assert_int_equal(issun_client_stats_get(b->c, &st), 0);
  assert_int_equal(st.offline_dropped, 2);
  assert_true(IT_WAIT(10000, issun_client_state(b->c) == ISSUN_STATE_CONNECTED, a, b));
  assert_int_equal(issun_client_node_id(b->c), idb);
  issun_session_info si;
  assert_int_equal(issun_client_session_info(b->c, &si), 0);
  assert_int_equal(si.resumed, 1);
  assert_true(IT_WAIT(5000, itc_count_type(a, "q::Later") == (size_t)queued, a, b));
  for (int i = 0; i < queued; i++) {
    int v;
    memcpy(&v, a->ev[i].payload, sizeof v);
    assert_int_equal(v, i);
    assert_int_equal(a->ev[i].sender, idb);
  }
  itc_free(a);
  itc_free(b);
}

static void test_server_restart_keeps_node_id(void **state) {
  (void)state;
  it_server s1;
  assert_int_equal(it_server_start(&s1, NULL), 0);
  itc *b = itc_new(&s1, "b", &(itc_opts){.reconnect = 1, .insecure = 1});
  uint64_t idb = issun_client_node_id(b->c);
  uint16_t port = s1.port;
  assert_int_equal(it_server_stop(&s1), 0);
  assert_true(IT_WAIT(10000, issun_client_state(b->c) == ISSUN_STATE_RECONNECTING, b));

  /* A new server process on the same port (with a new self-signed
   * certificate, hence the insecure client). */
  char bind[64];
  snprintf(bind, sizeof bind, "ISSUN_BIND_ADDR=127.0.0.1:%u", port);
  const char *env[] = {bind, NULL};
  it_server s2;
  assert_int_equal(it_server_start(&s2, env), 0);
  assert_true(IT_WAIT(20000, issun_client_state(b->c) == ISSUN_STATE_CONNECTED, b));
  /* Nobody holds the old NodeId on the new server: it is granted again. */
  assert_int_equal(issun_client_node_id(b->c), idb);
  itc *a = itc_new(&s2, "a", NULL);
  assert_int_equal(issun_client_send(a->c, "r::Hi", ISSUN_SCOPE_TARGETED, idb, ISSUN_RELIABLE,
                                     "x", 1, NULL),
                   0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "r::Hi") == 1, a, b));
  itc_free(a);
  itc_free(b);
  assert_int_equal(it_server_stop(&s2), 0);
}

/* a sends to b, whose settings.ack_delay_ms is ack_delay_ms; returns b's
 * NodeId once the connects' own packets have settled. */
static uint64_t ack_pair(int32_t ack_delay_ms, itc **a, itc **b) {
  *a = itc_new(&srv, "a", NULL);
  *b = itc_new(&srv, "b", &(itc_opts){.ack_delay_ms = ack_delay_ms});
  itc *const both[] = {*a, *b};
  it_poll(50, both, 2);
  return issun_client_node_id((*b)->c);
}

/* settings.ack_delay_ms: a client that only receives (events 4 ms apart,
 * each in a packet of its own) sends an ACK at most every 20 ms or every
 * 10 packets, not one per packet as the QUIC stack would on loopback (its
 * delay is srtt/8, microseconds here); nothing is delivered later for it. */
static void test_ack_delay_bounds_acks(void **state) {
  (void)state;
  itc *a, *b;
  uint64_t idb = ack_pair(20, &a, &b);
  itc *const both[] = {a, b};
  uint64_t b0 = stats_of(b).packets_sent, r0 = received(b);
  uint64_t t0 = it_now_ms();
  for (int i = 0; i < 50; i++) {
    assert_int_equal(issun_client_send(a->c, "ack::Tick", ISSUN_SCOPE_TARGETED, idb,
                                       ISSUN_RELIABLE, "t", 1, NULL),
                     0);
    uint64_t next = t0 + 4u * (uint64_t)(i + 1);
    while (it_now_ms() < next) it_poll(1, both, 2);
  }
  assert_true(IT_WAIT(5000, received(b) - r0 == 50, a, b));
  uint64_t ms = it_now_ms() - t0;
  uint64_t sent = stats_of(b).packets_sent - b0;
  /* by time: one per 20 ms; by count: one per 10 packets; +3 for a
   * heartbeat and rounding at both ends */
  uint64_t bound = ms / 20 + 50 / 10 + 3;
  print_message("b: %llu packets sent for 50 received in %llu ms (bound %llu)\n",
                (unsigned long long)sent, (unsigned long long)ms, (unsigned long long)bound);
  assert_true(sent >= 1);
  assert_true(sent <= bound);
  itc_free(a);
  itc_free(b);
}

/* A held ACK goes when the hold ends, even when the client blocks in
 * issun_client_poll and nothing else arrives: b gets two events about 1 ms
 * apart (so ngtcp2's own ACK timer has fired during the hold), then waits.
 * Its ACK must leave before any packet from the relay prompts it: the
 * relay's retransmission timer is at least 25 ms (our max_ack_delay) and
 * the hold 10 ms.  It once slept past the hold until the relay's probe. */
static void test_held_ack_goes_at_hold_end(void **state) {
  (void)state;
  itc *a, *b;
  uint64_t idb = ack_pair(10, &a, &b);
  itc *const both[] = {a, b};
  uint64_t r0 = received(b);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(issun_client_send(a->c, "ack::Tick", ISSUN_SCOPE_TARGETED, idb,
                                       ISSUN_RELIABLE, "t", 1, NULL),
                     0);
    assert_true(IT_WAIT(2000, received(b) - r0 == (uint64_t)i + 1, a, b));
    if (i == 0) {
      uint64_t until = it_now_ms() + 1;
      while (it_now_ms() < until) it_poll(1, both, 2);
    }
  }
  issun_client_stats st0 = stats_of(b);
  uint64_t t0 = it_now_ms();
  issun_client_stats st = st0;
  while (st.packets_sent == st0.packets_sent && it_now_ms() - t0 < 2000) {
    assert_int_equal(issun_client_poll(b->c, 100), 0);
    st = stats_of(b);
  }
  print_message("b: ACK after %llu ms; packets in meanwhile %llu\n",
                (unsigned long long)(it_now_ms() - t0),
                (unsigned long long)(st.packets_received - st0.packets_received));
  assert_true(st.packets_sent > st0.packets_sent);
  assert_int_equal(st.packets_received, st0.packets_received);
  itc_free(a);
  itc_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bus_end_to_end),
      cmocka_unit_test(test_events_queued_while_disconnected),
      cmocka_unit_test(test_server_restart_keeps_node_id),
      cmocka_unit_test(test_ack_delay_bounds_acks),
      cmocka_unit_test(test_held_ack_goes_at_hold_end),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
