/*
 * Session start and lifetime (protocol sections 4, 5, 11) against a real
 * issun-server: NodeId assignment and requests, duplicates, takeover with
 * the resume secret, SERVER_FULL, the HELLO deadline, heartbeats, silent
 * peers, FIN, a dropped client, IPv6, shutdown.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "it.h"

static it_server srv; /* heartbeat 300 ms: silent peers go after 900 ms */

static int setup(void **state) {
  const char *env[] = {"ISSUN_HEARTBEAT_INTERVAL=300ms", "ISSUN_HELLO_TIMEOUT=400ms", NULL};
  return it_server_start(&srv, env);
}

static int teardown(void **state) {
  return it_server_stop(&srv) == 0 ? 0 : -1;
}

static uint32_t join_room(itc *t, uint64_t room) {
  return (uint32_t)itc_room_join(t, room, NULL);
}

static uint64_t make_room(itc *t) {
  it_room r;
  assert_int_equal(itc_room_create(t, "s", 0, NULL, 0, &r), 0);
  return r.id;
}

static void test_requested_and_duplicate_node_ids(void **state) {
  itc_opts o = {.node_id = 4242};
  itc *a = itc_new(&srv, "a", &o);
  assert_int_equal(issun_client_node_id(a->c), 4242);
  o.no_connect = 1;
  itc *b = itc_new(&srv, "b", &o);
  assert_int_equal(itc_connect(b), ISSUN_ERR_DUPLICATE_NODE);
  issun_close_info ci;
  assert_int_equal(issun_client_close_info(b->c, &ci), 0);
  assert_true(ci.has_server_error);
  assert_int_equal(ci.server_error_code, ISSUN_WIRE_DUPLICATE_NODE);
  assert_int_equal(itc_close_code(b), ISSUN_WIRE_DUPLICATE_NODE);
  /* A wrong secret is no better than none. */
  uint8_t wrong[16] = {1, 2, 3};
  itc *c = itc_new(&srv, "c", &(itc_opts){.no_connect = 1});
  assert_int_equal(issun__set_resume(c->c, 4242, wrong), 0);
  assert_int_equal(itc_connect(c), ISSUN_ERR_DUPLICATE_NODE);
  itc_free(a);
  itc_free(b);
  itc_free(c);
  /* Once a is gone, 4242 is free again. */
  itc *d = itc_new(&srv, "d", &(itc_opts){.no_connect = 1, .node_id = 4242});
  assert_true(IT_WAIT(3000, itc_connect(d) == 0, d));
  assert_int_equal(issun_client_node_id(d->c), 4242);
  itc_free(d);
}

static void test_takeover_keeps_room_without_presence(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL);
  uint64_t ida = issun_client_node_id(a->c);
  uint64_t room = make_room(a);
  assert_int_equal(join_room(b, room), 0);
  assert_true(IT_WAIT(5000, a->npres == 1, a, b));
  uint8_t secret[16];
  assert_int_equal(issun__resume_secret(a->c, secret), 0);

  itc *a2 = itc_new(&srv, "a2", &(itc_opts){.no_connect = 1});
  assert_int_equal(issun__set_resume(a2->c, ida, secret), 0);
  assert_int_equal(itc_connect(a2), 0);
  assert_int_equal(issun_client_node_id(a2->c), ida);
  /* The old connection is told and closed. */
  assert_true(IT_WAIT(5000, itc_close_code(a) == ISSUN_WIRE_SESSION_TAKEN_OVER, a, a2, b));
  /* The new connection is in the room: b's room broadcast reaches it, and
   * b saw no leave/join for the takeover. */
  assert_int_equal(issun_client_send(b->c, "s::Hi", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "x",
                                     1, NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(a2, "s::Hi") == 1, a2, b));
  assert_int_equal(b->npres, 0);
  /* The old secret no longer works: ACK gave a new one. */
  itc *a3 = itc_new(&srv, "a3", &(itc_opts){.no_connect = 1});
  assert_int_equal(issun__set_resume(a3->c, ida, secret), 0);
  assert_int_equal(itc_connect(a3), ISSUN_ERR_DUPLICATE_NODE);
  itc_free(a);
  itc_free(a2);
  itc_free(a3);
  itc_free(b);
}

static void test_server_full_but_takeover_allowed(void **state) {
  it_server small;
  const char *env[] = {"ISSUN_MAX_CLIENTS=6", NULL};
  assert_int_equal(it_server_start(&small, env), 0);
  itc *cs[6];
  for (int i = 0; i < 6; i++) cs[i] = itc_new(&small, "f", NULL);
  itc *x = itc_new(&small, "x", &(itc_opts){.no_connect = 1});
  assert_int_equal(itc_connect(x), ISSUN_ERR_SERVER_FULL);
  assert_int_equal(itc_close_code(x), ISSUN_WIRE_SERVER_FULL);
  uint8_t secret[16];
  assert_int_equal(issun__resume_secret(cs[0]->c, secret), 0);
  itc *t = itc_new(&small, "t", &(itc_opts){.no_connect = 1});
  assert_int_equal(issun__set_resume(t->c, issun_client_node_id(cs[0]->c), secret), 0);
  assert_int_equal(itc_connect(t), 0);
  itc_free(x);
  itc_free(t);
  for (int i = 0; i < 6; i++) itc_free(cs[i]);
  assert_int_equal(it_server_stop(&small), 0);
}

static void test_hello_deadline(void **state) {
  itc *t = itc_new(&srv, "slow", &(itc_opts){.skip_hello = 1});
  /* Open the stream with two bytes of a frame header so the server has a
   * stream to put its ERROR on, then go quiet. */
  assert_int_equal(issun__send_raw_stream(t->c, (const uint8_t *)"IS", 2), 0);
  /* No HELLO: the server closes with TIMEOUT after 400 ms. */
  assert_true(IT_WAIT(5000, itc_close_code(t) == ISSUN_WIRE_TIMEOUT, t));
  assert_true(itc_count_raw(t, 0x05) == 1); /* ERROR frame before the close */
  itc_free(t);
}

static void test_heartbeats_sent_when_idle(void **state) {
  itc *t = itc_new(&srv, "idle", &(itc_opts){.raw_capture = 1});
  /* The server sends HEARTBEAT every 300 ms of its own silence. */
  assert_true(IT_WAIT(3000, itc_count_raw(t, 0x02) >= 3, t));
  assert_int_equal(issun_client_state(t->c), ISSUN_STATE_CONNECTED);
  itc_free(t);
}

static void test_silent_peer_closed_and_room_told(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL);
  uint64_t idb = issun_client_node_id(b->c);
  uint64_t room = make_room(a);
  assert_int_equal(join_room(b, room), 0);
  assert_true(IT_WAIT(5000, a->npres == 1, a, b));
  assert_int_equal(issun__stop_heartbeats(b->c, 1), 0);
  uint64_t t0 = it_now_ms();
  assert_true(IT_WAIT(5000, itc_close_code(b) == ISSUN_WIRE_TIMEOUT, a, b));
  uint64_t took = it_now_ms() - t0;
  assert_true(took >= 500); /* not before ~3 x 300 ms of silence */
  assert_true(IT_WAIT(3000, a->npres == 2, a));
  assert_int_equal(a->pres[1].change, ISSUN_PRESENCE_LEAVE);
  assert_int_equal(a->pres[1].node_id, idb);
  itc_free(a);
  itc_free(b);
}

static void test_fin_leaves_with_no_error(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL);
  uint64_t room = make_room(a);
  assert_int_equal(join_room(b, room), 0);
  assert_true(IT_WAIT(5000, a->npres == 1, a, b));
  assert_int_equal(issun__finish_stream(b->c), 0);
  assert_true(IT_WAIT(5000, itc_close_code(b) == ISSUN_WIRE_NO_ERROR, a, b));
  assert_true(IT_WAIT(5000, a->npres == 2 && a->pres[1].change == ISSUN_PRESENCE_LEAVE, a));
  itc_free(a);
  itc_free(b);
}

static void test_dropped_client_times_out(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL);
  uint64_t idb = issun_client_node_id(b->c);
  uint64_t room = make_room(a);
  assert_int_equal(join_room(b, room), 0);
  assert_true(IT_WAIT(5000, a->npres == 1, a, b));
  /* b's network vanishes without a CONNECTION_CLOSE. */
  assert_int_equal(issun__cut_socket(b->c, 0), 0);
  itc_free(b);
  assert_true(IT_WAIT(5000, a->npres == 2, a));
  assert_int_equal(a->pres[1].change, ISSUN_PRESENCE_LEAVE);
  assert_int_equal(a->pres[1].node_id, idb);
  itc_free(a);
}

static void test_reconnect_resumes_node_and_room(void **state) {
  itc *a = itc_new(&srv, "a", NULL);
  itc *b = itc_new(&srv, "b", &(itc_opts){.reconnect = 1});
  uint64_t idb = issun_client_node_id(b->c);
  uint64_t room = make_room(a);
  assert_int_equal(join_room(b, room), 0);
  assert_true(IT_WAIT(5000, a->npres == 1, a, b));
  size_t states0 = b->nstates;
  assert_int_equal(issun__cut_socket(b->c, 0), 0);
  /* The library notices, reconnects and resumes before the server's
   * timeout has ended the old session. */
  assert_true(IT_WAIT(10000,
                      b->nstates > states0 && issun_client_state(b->c) == ISSUN_STATE_CONNECTED &&
                          itc_has_state(b, ISSUN_STATE_RECONNECTING),
                      a, b));
  assert_int_equal(issun_client_node_id(b->c), idb);
  assert_int_equal(issun_client_room_id(b->c), room);
  assert_int_equal(issun_client_send(a->c, "s::After", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE,
                                     "x", 1, NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "s::After") == 1, a, b));
  itc_free(a);
  itc_free(b);
}

static void test_ipv6(void **state) {
  it_server s6;
  const char *env[] = {"ISSUN_BIND_ADDR=[::1]:0", NULL};
  assert_int_equal(it_server_start(&s6, env), 0);
  assert_string_equal(s6.host, "::1");
  itc *a = itc_new(&s6, "a", NULL), *b = itc_new(&s6, "b", NULL);
  assert_int_equal(issun_client_send(a->c, "v6::Ping", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE,
                                     "6", 1, NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "v6::Ping") == 1, a, b));
  itc_free(a);
  itc_free(b);
  assert_int_equal(it_server_stop(&s6), 0);
}

static void test_shutdown_tells_everyone(void **state) {
  it_server s2;
  assert_int_equal(it_server_start(&s2, NULL), 0);
  itc *a = itc_new(&s2, "a", NULL), *b = itc_new(&s2, "b", NULL);
  uint64_t room = make_room(a);
  assert_int_equal(join_room(b, room), 0);
  /* b joining told a; everything after the kill must be silent. */
  assert_true(IT_WAIT(5000, a->npres >= 1, a, b));
  int pres_before = a->npres;
  uint64_t t0 = it_now_ms();
  kill(s2.pid, SIGTERM);
  assert_true(IT_WAIT(5000,
                      itc_close_code(a) == ISSUN_WIRE_SHUTTING_DOWN &&
                          itc_close_code(b) == ISSUN_WIRE_SHUTTING_DOWN,
                      a, b));
  assert_true(itc_has_error(a, ISSUN_WIRE_SHUTTING_DOWN));
  assert_int_equal(it_server_signal(&s2, 0, 3000), 0);
  assert_int_equal(s2.exit_status, 0);
  assert_true(it_now_ms() - t0 < 2500);
  assert_int_equal(a->npres, pres_before); /* no presence storm on the way out */
  itc_free(a);
  itc_free(b);
  it_server_stop(&s2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_requested_and_duplicate_node_ids),
      cmocka_unit_test(test_takeover_keeps_room_without_presence),
      cmocka_unit_test(test_server_full_but_takeover_allowed),
      cmocka_unit_test(test_hello_deadline),
      cmocka_unit_test(test_heartbeats_sent_when_idle),
      cmocka_unit_test(test_silent_peer_closed_and_room_told),
      cmocka_unit_test(test_fin_leaves_with_no_error),
      cmocka_unit_test(test_dropped_client_times_out),
      cmocka_unit_test(test_reconnect_resumes_node_and_room),
      cmocka_unit_test(test_ipv6),
      cmocka_unit_test(test_shutdown_tells_everyone),
  };
  return cmocka_run_group_tests_name("session", tests, setup, teardown);
}
