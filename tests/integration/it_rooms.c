/*
 * Rooms (protocol section 7) against a real issun-server: create, join,
 * leave, list, start, every status code, presence, host migration, room
 * deletion, room-scoped broadcast, replies in request order, rooms disabled,
 * the room limit.
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
  const char *env[] = {"ISSUN_MAX_ROOMS=5", NULL};
  return it_server_start(&srv, env);
}

static int teardown(void **state) {
  return it_server_stop(&srv) == 0 ? 0 : -1;
}

static int create(itc *t, const char *name, uint32_t maxc, it_room *out) {
  issun_kv kv[] = {{"mode", "pong"}, {"map", "classic"}};
  return itc_room_create(t, name, maxc, kv, 2, out);
}

static void test_create_join_presence_and_scoped_broadcast(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL), *c = itc_new(&srv, "c", NULL);
  uint64_t ida = issun_client_node_id(a->c), idb = issun_client_node_id(b->c);
  it_room r;
  assert_int_equal(create(a, "lobby-1", 0, &r), 0);
  assert_int_equal(r.count, 1);
  assert_int_equal(r.host, ida);
  assert_int_equal(r.max_clients, 8); /* the server's default room size */
  assert_int_equal(r.members, 1);
  assert_string_equal(r.name, "lobby-1");
  assert_int_equal(r.nmeta, 2);
  assert_int_equal(r.state, ISSUN_ROOM_WAITING);

  it_room j;
  assert_int_equal(itc_room_join(b, r.id, &j), 0);
  assert_int_equal(j.id, r.id);
  assert_int_equal(j.members, 2);
  assert_int_equal(j.member[0], ida); /* join order */
  assert_int_equal(j.member[1], idb);
  assert_true(IT_WAIT(5000, a->npres == 1, a, b, c));
  assert_int_equal(a->pres[0].change, ISSUN_PRESENCE_JOIN);
  assert_int_equal(a->pres[0].node_id, idb);
  assert_int_equal(a->pres[0].host, ida);
  assert_int_equal(a->pres[0].room_id, r.id);
  assert_int_equal(b->npres, 0); /* presence goes to the *other* members */
  assert_int_equal(issun_client_room_id(b->c), r.id);
  assert_int_equal(issun_client_room_host(b->c), ida);

  /* Room broadcast reaches members only; lobby broadcast reaches no member. */
  assert_int_equal(issun_client_send(a->c, "r::InRoom", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE,
                                     "1", 1, NULL), 0);
  assert_int_equal(issun_client_send(c->c, "r::Lobby", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE,
                                     "2", 1, NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "r::InRoom") == 1, a, b, c));
  /* a marker from a to b through the same path, and a lobby peer for c */
  itc *d = itc_new(&srv, "d", NULL);
  assert_int_equal(issun_client_send(c->c, "r::Lobby2", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE,
                                     "3", 1, NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(d, "r::Lobby2") == 1, a, b, c, d));
  assert_int_equal(itc_count_type(c, "r::InRoom"), 0);
  assert_int_equal(itc_count_type(a, "r::Lobby") + itc_count_type(b, "r::Lobby"), 0);
  assert_int_equal(itc_count_type(a, "r::Lobby2") + itc_count_type(b, "r::Lobby2"), 0);
  itc_free(a);
  itc_free(b);
  itc_free(c);
  itc_free(d);
}

static void test_status_codes(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL), *c = itc_new(&srv, "c", NULL);
  it_room r, x;
  assert_int_equal(itc_room_leave(c), ISSUN_WIRE_NOT_IN_ROOM);
  assert_int_equal(itc_room_start(c, NULL), ISSUN_WIRE_NOT_IN_ROOM);
  assert_int_equal(itc_room_join(c, 0x7777777777ull, &x), ISSUN_WIRE_ROOM_NOT_FOUND);
  assert_int_equal(x.count, 0); /* refused: empty room list */
  assert_int_equal(create(a, "duel", 2, &r), 0);
  assert_int_equal(r.max_clients, 2);
  assert_int_equal(create(a, "again", 0, NULL), ISSUN_WIRE_ALREADY_IN_ROOM);
  assert_int_equal(itc_room_join(b, r.id, NULL), 0);
  assert_int_equal(itc_room_join(b, r.id, NULL), ISSUN_WIRE_ALREADY_IN_ROOM);
  assert_int_equal(itc_room_join(c, r.id, NULL), ISSUN_WIRE_ROOM_FULL);
  assert_int_equal(itc_room_start(b, NULL), ISSUN_WIRE_NOT_HOST);
  it_room s;
  assert_int_equal(itc_room_start(a, &s), 0);
  assert_int_equal(s.state, ISSUN_ROOM_IN_PROGRESS);
  assert_int_equal(itc_room_start(a, NULL), ISSUN_WIRE_ROOM_NOT_WAITING);
  /* full and started: ROOM_NOT_WAITING is checked before ROOM_FULL */
  assert_int_equal(itc_room_join(c, r.id, NULL), ISSUN_WIRE_ROOM_NOT_WAITING);
  /* ALREADY_IN_ROOM is checked before ROOM_NOT_FOUND */
  assert_int_equal(itc_room_join(a, 0x7777777777ull, NULL), ISSUN_WIRE_ALREADY_IN_ROOM);
  assert_int_equal(itc_room_leave(b), 0);
  assert_int_equal(issun_client_room_id(b->c), 0);
  itc_free(a);
  itc_free(b);
  itc_free(c);
}

static void test_list_waiting_oldest_first(void **state) {
  itc *p = itc_new(&srv, "p", NULL), *q = itc_new(&srv, "q", NULL), *s = itc_new(&srv, "s", NULL);
  itc *viewer = itc_new(&srv, "v", NULL);
  it_room r1, r2, r3, l;
  assert_int_equal(create(p, "first", 0, &r1), 0);
  assert_int_equal(create(q, "second", 0, &r2), 0);
  assert_int_equal(create(s, "third", 0, &r3), 0);
  assert_int_equal(itc_room_start(q, NULL), 0); /* no longer waiting */
  assert_int_equal(itc_room_list(viewer, &l), 0);
  assert_int_equal(l.count, 2);
  assert_int_equal(l.ids[0], r1.id);
  assert_int_equal(l.ids[1], r3.id);
  itc_free(p);
  itc_free(q);
  itc_free(s);
  itc_free(viewer);
}

static size_t count_pres(const itc *t, int change, uint64_t node) {
  size_t n = 0;
  for (size_t i = 0; i < t->npres; i++)
    if ((int)t->pres[i].change == change && t->pres[i].node_id == node) n++;
  return n;
}

static void test_host_migration_and_deletion(void **state) {
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL), *c = itc_new(&srv, "c", NULL);
  uint64_t ida = issun_client_node_id(a->c), idb = issun_client_node_id(b->c),
           idc = issun_client_node_id(c->c);
  it_room r;
  assert_int_equal(create(a, "mig", 0, &r), 0);
  assert_int_equal(itc_room_join(b, r.id, NULL), 0);
  assert_int_equal(itc_room_join(c, r.id, NULL), 0);
  assert_true(IT_WAIT(5000, count_pres(b, ISSUN_PRESENCE_JOIN, idc) == 1, a, b, c));
  size_t b0 = b->npres, c0 = c->npres;

  /* The host leaves: the longest-present member (b) becomes host. */
  assert_int_equal(itc_room_leave(a), 0);
  assert_true(IT_WAIT(5000, b->npres == b0 + 2 && c->npres == c0 + 2, a, b, c));
  for (int k = 0; k < 2; k++) {
    itc *t = k ? c : b;
    size_t base = k ? c0 : b0;
    assert_int_equal(t->pres[base].change, ISSUN_PRESENCE_LEAVE);
    assert_int_equal(t->pres[base].node_id, ida);
    assert_int_equal(t->pres[base].host, idb);
    assert_int_equal(t->pres[base + 1].change, ISSUN_PRESENCE_HOST);
    assert_int_equal(t->pres[base + 1].node_id, idb);
    assert_int_equal(t->pres[base + 1].host, idb);
  }
  assert_int_equal(issun_client_room_host(c->c), idb);

  /* The new host disconnects: c is told, and becomes host. */
  itc_free(b);
  assert_true(IT_WAIT(5000, count_pres(c, ISSUN_PRESENCE_HOST, idc) == 1, a, c));
  assert_int_equal(count_pres(c, ISSUN_PRESENCE_LEAVE, idb), 1);
  /* The last member leaves: the room is gone. */
  assert_int_equal(itc_room_leave(c), 0);
  assert_int_equal(itc_room_join(a, r.id, NULL), ISSUN_WIRE_ROOM_NOT_FOUND);
  itc_free(a);
  itc_free(c);
}

static void test_replies_in_request_order(void **state) {
  itc *a = itc_new(&srv, "a", NULL);
  uint32_t ids[5];
  assert_int_equal(issun_client_room_list(a->c, &ids[0]), 0);
  assert_int_equal(issun_client_room_create(a->c, "ord", 0, NULL, 0, &ids[1]), 0);
  assert_int_equal(issun_client_room_create(a->c, "ord2", 0, NULL, 0, &ids[2]), 0);
  assert_int_equal(issun_client_room_leave(a->c, &ids[3]), 0);
  assert_int_equal(issun_client_room_leave(a->c, &ids[4]), 0);
  assert_true(IT_WAIT(5000, a->nreplies == 5, a));
  for (int i = 0; i < 5; i++) assert_int_equal(a->replies[i], ids[i]);
  assert_int_equal(a->reply_status[1], 0);
  assert_int_equal(a->reply_status[2], ISSUN_WIRE_ALREADY_IN_ROOM);
  assert_int_equal(a->reply_status[3], 0);
  assert_int_equal(a->reply_status[4], ISSUN_WIRE_NOT_IN_ROOM);
  itc_free(a);
}

static void test_too_many_rooms(void **state) {
  /* This server allows 5 rooms. */
  itc *cs[6];
  for (int i = 0; i < 6; i++) cs[i] = itc_new(&srv, "r", NULL);
  for (int i = 0; i < 5; i++) assert_int_equal(create(cs[i], "n", 0, NULL), 0);
  assert_int_equal(create(cs[5], "n", 0, NULL), ISSUN_WIRE_TOO_MANY_ROOMS);
  assert_int_equal(itc_room_leave(cs[0]), 0); /* deleted: a slot is free again */
  assert_int_equal(create(cs[5], "n", 0, NULL), 0);
  for (int i = 0; i < 6; i++) itc_free(cs[i]);
}

static void test_rooms_disabled(void **state) {
  it_server off;
  const char *env[] = {"ISSUN_ENABLE_ROOMS=false", NULL};
  assert_int_equal(it_server_start(&off, env), 0);
  itc *a = itc_new(&off, "a", NULL);
  assert_int_equal(create(a, "x", 0, NULL), ISSUN_WIRE_ROOMS_DISABLED);
  assert_int_equal(itc_room_join(a, 1, NULL), ISSUN_WIRE_ROOMS_DISABLED);
  assert_int_equal(itc_room_list(a, NULL), ISSUN_WIRE_ROOMS_DISABLED);
  assert_int_equal(itc_room_leave(a), ISSUN_WIRE_ROOMS_DISABLED);
  assert_int_equal(itc_room_start(a, NULL), ISSUN_WIRE_ROOMS_DISABLED);
  itc_free(a);
  assert_int_equal(it_server_stop(&off), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_join_presence_and_scoped_broadcast),
      cmocka_unit_test(test_status_codes),
      cmocka_unit_test(test_list_waiting_oldest_first),
      cmocka_unit_test(test_host_migration_and_deletion),
      cmocka_unit_test(test_replies_in_request_order),
      cmocka_unit_test(test_too_many_rooms),
      cmocka_unit_test(test_rooms_disabled),
  };
  return cmocka_run_group_tests_name("rooms", tests, setup, teardown);
}
