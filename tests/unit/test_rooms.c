/*
 * rooms: create/join/leave/start and every status in its order, sizes,
 * host migration, deletion of empty rooms, the room limit, listing order,
 * udata, the REPLY encoding of a room, allocation failure, and long random
 * churn checked against a reference model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/proto.h"
#include "server/rooms.h"

/* Under ASan, let a huge malloc return NULL (as glibc's does) instead of
 * aborting, so the allocation-failure paths can be exercised. */
const char *__asan_default_options(void);
__attribute__((used)) const char *__asan_default_options(void) {
  return "allocator_may_return_null=1";
}

#define SEED UINT64_C(0x0123456789abcdef)

typedef struct rng {
  uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
  uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static size_t rng_below(rng *r, size_t n) {
  return (size_t)(rng_next(r) % n);
}

static void *U(uintptr_t x) {
  return (void *)x;
}

/* Creates a room named `name` with no metadata; asserts success. */
static room *mk(rooms *rs, uint64_t node, const char *name, uint32_t max_clients) {
  room *r = NULL;
  assert_int_equal(
      rooms_create(rs, node, U(node), (const uint8_t *)name, strlen(name), max_clients, NULL, &r),
      0);
  assert_non_null(r);
  return r;
}

static void join_ok(rooms *rs, room *r, uint64_t node) {
  room *out = NULL;
  assert_int_equal(rooms_join(rs, r->id, node, U(node), &out), 0);
  assert_ptr_equal(out, r);
}

static void check_members(const room *r, const uint64_t *want, uint32_t n) {
  assert_int_equal(r->count, n);
  assert_true(r->cap >= r->count);
  assert_true(r->count <= r->max_clients);
  for (uint32_t i = 0; i < n; i++)
    assert_int_equal(r->member_ids[i], want[i]);
}

/* Encodes list<(str, str)> from NUL-terminated pairs into mem. */
static pr_kvlist mk_meta(uint8_t *mem, size_t cap, const char *const *kv, size_t pairs) {
  pr_buf b;
  pr_buf_init(&b, mem, cap);
  pr_put_u64(&b, pairs);
  for (size_t i = 0; i < 2 * pairs; i++)
    pr_put_str(&b, kv[i], strlen(kv[i]));
  assert_int_equal(b.err, 0);
  pr_kvlist l = {pairs, {mem, b.len}};
  return l;
}

static void test_create_basics(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 100, SEED);
  assert_non_null(rs);
  assert_int_equal(rooms_count(rs), 0);
  assert_null(rooms_oldest(rs));

  uint8_t name[] = "lobby \xc3\xa9"; /* UTF-8, copied not borrowed */
  uint8_t meta_mem[256];
  static const char *const kv[] = {"map", "dust", "mode", "ctf"};
  pr_kvlist meta = mk_meta(meta_mem, sizeof(meta_mem), kv, 2);
  uint8_t meta_copy[256];
  memcpy(meta_copy, meta_mem, meta.raw.len);

  room *r = NULL;
  assert_int_equal(rooms_create(rs, 77, U(0x770), name, sizeof(name) - 1, 4, &meta, &r), 0);
  assert_non_null(r);
  memset(name, 'x', sizeof(name));
  memset(meta_mem, 0xee, sizeof(meta_mem));

  assert_int_not_equal(r->id, 0);
  assert_int_equal(r->name_len, sizeof(name) - 1);
  assert_memory_equal(r->name, "lobby \xc3\xa9", r->name_len);
  assert_int_equal(r->state, PR_ROOM_WAITING);
  assert_int_equal(r->max_clients, 4);
  assert_int_equal(r->host, 77);
  assert_int_equal(r->count, 1);
  assert_int_equal(r->member_ids[0], 77);
  assert_ptr_equal(r->member_udata[0], U(0x770));
  assert_int_equal(r->meta_len, meta.raw.len);
  assert_memory_equal(r->meta_raw, meta_copy, r->meta_len);

  assert_int_equal(rooms_count(rs), 1);
  assert_ptr_equal(rooms_find(rs, r->id), r);
  assert_null(rooms_find(rs, r->id + 1));
  assert_null(rooms_find(rs, 0));
  assert_ptr_equal(rooms_oldest(rs), r);
  assert_null(rooms_newer(r));

  /* no metadata: an empty encoded list (a zero u64 count) */
  room *r2 = NULL;
  assert_int_equal(rooms_create(rs, 78, NULL, (const uint8_t *)"", 0, 0, NULL, &r2), 0);
  assert_int_equal(r2->meta_len, 8);
  static const uint8_t zero8[8] = {0};
  assert_memory_equal(r2->meta_raw, zero8, 8);
  assert_int_equal(r2->name_len, 0);
  assert_int_not_equal(r2->id, r->id);
  assert_int_equal(rooms_count(rs), 2);

  rooms_free(rs);
  rooms_free(NULL);
}

static void test_sizes_default_and_clamp(void **state) {
  (void)state;
  rooms *rs = rooms_new(100, 8, 50, SEED);
  assert_non_null(rs);
  assert_int_equal(mk(rs, 1, "a", 0)->max_clients, 8); /* 0: the default */
  assert_int_equal(mk(rs, 2, "b", 1)->max_clients, 1);
  assert_int_equal(mk(rs, 3, "c", 49)->max_clients, 49);
  assert_int_equal(mk(rs, 4, "d", 50)->max_clients, 50); /* at the limit: kept */
  assert_int_equal(mk(rs, 5, "e", 51)->max_clients, 50); /* above: clamped */
  assert_int_equal(mk(rs, 6, "f", UINT32_MAX)->max_clients, 50);
  rooms_free(rs);

  /* a default above the maximum is clamped too */
  rs = rooms_new(100, 64, 10, SEED);
  assert_non_null(rs);
  assert_int_equal(mk(rs, 1, "a", 0)->max_clients, 10);
  rooms_free(rs);
}

static void test_join_and_status_order(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 100, SEED);
  assert_non_null(rs);
  room *out = U(1);

  /* ROOM_NOT_FOUND: no such id, and id 0 */
  assert_int_equal(rooms_join(rs, 12345, 2, NULL, &out), PR_E_ROOM_NOT_FOUND);
  assert_null(out);
  assert_int_equal(rooms_join(rs, 0, 2, NULL, &out), PR_E_ROOM_NOT_FOUND);

  room *r = mk(rs, 1, "two", 2);
  join_ok(rs, r, 2);
  uint64_t want[] = {1, 2};
  check_members(r, want, 2);
  assert_ptr_equal(r->member_udata[1], U(2));

  /* ROOM_FULL while waiting */
  out = U(1);
  assert_int_equal(rooms_join(rs, r->id, 3, NULL, &out), PR_E_ROOM_FULL);
  assert_null(out);
  check_members(r, want, 2);

  /* full and started: ROOM_NOT_WAITING comes before ROOM_FULL */
  assert_int_equal(rooms_start(rs, r, 1), 0);
  assert_int_equal(rooms_join(rs, r->id, 3, NULL, &out), PR_E_ROOM_NOT_WAITING);
  check_members(r, want, 2);

  /* started and not full: still ROOM_NOT_WAITING */
  rooms_leave_result res;
  rooms_leave(rs, r, 2, &res);
  assert_int_equal(r->count, 1);
  assert_int_equal(rooms_join(rs, r->id, 3, NULL, &out), PR_E_ROOM_NOT_WAITING);
  assert_int_equal(r->count, 1);

  /* a freed slot can be joined while waiting */
  room *w = mk(rs, 10, "w", 2);
  join_ok(rs, w, 11);
  assert_int_equal(rooms_join(rs, w->id, 12, NULL, &out), PR_E_ROOM_FULL);
  rooms_leave(rs, w, 11, &res);
  join_ok(rs, w, 12);
  uint64_t want_w[] = {10, 12};
  check_members(w, want_w, 2);

  rooms_free(rs);
}

/* Members beyond the initial slots: the arrays grow, order holds, and the
 * room fills exactly at max_clients. */
static void test_join_many_members(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 1000, SEED);
  assert_non_null(rs);
  room *r = mk(rs, 1000, "big", 300);
  for (uint64_t n = 1; n < 300; n++)
    join_ok(rs, r, 1000 + n);
  assert_int_equal(r->count, 300);
  assert_int_equal(r->cap, 300); /* doubling, capped at max_clients */
  for (uint32_t i = 0; i < 300; i++) {
    assert_int_equal(r->member_ids[i], 1000 + i);
    assert_ptr_equal(r->member_udata[i], U(1000 + i));
  }
  room *out;
  assert_int_equal(rooms_join(rs, r->id, 5, NULL, &out), PR_E_ROOM_FULL);
  rooms_free(rs);
}

static void test_start(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 100, SEED);
  assert_non_null(rs);
  room *r = mk(rs, 1, "s", 4);
  join_ok(rs, r, 2);
  assert_int_equal(rooms_start(rs, r, 2), PR_E_NOT_HOST);
  assert_int_equal(r->state, PR_ROOM_WAITING);
  assert_int_equal(rooms_start(rs, r, 99), PR_E_NOT_HOST);
  assert_int_equal(rooms_start(rs, r, 1), 0);
  assert_int_equal(r->state, PR_ROOM_IN_PROGRESS);
  /* NOT_HOST is checked before ROOM_NOT_WAITING */
  assert_int_equal(rooms_start(rs, r, 2), PR_E_NOT_HOST);
  assert_int_equal(rooms_start(rs, r, 1), PR_E_ROOM_NOT_WAITING);
  assert_int_equal(r->state, PR_ROOM_IN_PROGRESS);

  /* a new host after migration may start; the old one may not */
  room *q = mk(rs, 5, "q", 4);
  join_ok(rs, q, 6);
  rooms_leave_result res;
  rooms_leave(rs, q, 5, &res);
  assert_int_equal(rooms_start(rs, q, 5), PR_E_NOT_HOST);
  assert_int_equal(rooms_start(rs, q, 6), 0);
  rooms_free(rs);
}

/* Host migration always picks the member present longest, over several
 * leaves, including a member who left and came back (now the newest). */
static void test_leave_and_host_migration(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 100, SEED);
  assert_non_null(rs);
  room *r = mk(rs, 1, "m", 10);
  for (uint64_t n = 2; n <= 6; n++)
    join_ok(rs, r, n);
  uint64_t id = r->id;
  rooms_leave_result res;

  /* a non-host leaves: order kept, host unchanged */
  rooms_leave(rs, r, 3, &res);
  assert_int_equal(res.room_id, id);
  assert_false(res.deleted);
  assert_false(res.host_changed);
  assert_int_equal(res.new_host, 1);
  uint64_t w1[] = {1, 2, 4, 5, 6};
  check_members(r, w1, 5);
  for (uint32_t i = 0; i < r->count; i++)
    assert_ptr_equal(r->member_udata[i], U(w1[i]));

  /* 3 comes back: it is now the newest member */
  join_ok(rs, r, 3);
  uint64_t w2[] = {1, 2, 4, 5, 6, 3};
  check_members(r, w2, 6);

  /* the host leaves: 2 has been present longest */
  rooms_leave(rs, r, 1, &res);
  assert_false(res.deleted);
  assert_true(res.host_changed);
  assert_int_equal(res.new_host, 2);
  assert_int_equal(r->host, 2);
  uint64_t w3[] = {2, 4, 5, 6, 3};
  check_members(r, w3, 5);

  /* a non-host leaves from the end and the middle */
  rooms_leave(rs, r, 3, &res);
  assert_false(res.host_changed);
  assert_int_equal(res.new_host, 2);
  rooms_leave(rs, r, 5, &res);
  uint64_t w4[] = {2, 4, 6};
  check_members(r, w4, 3);
  for (uint32_t i = 0; i < r->count; i++)
    assert_ptr_equal(r->member_udata[i], U(w4[i]));

  /* host 2 leaves: 4; host 4 leaves: 6 */
  rooms_leave(rs, r, 2, &res);
  assert_true(res.host_changed);
  assert_int_equal(res.new_host, 4);
  rooms_leave(rs, r, 4, &res);
  assert_true(res.host_changed);
  assert_int_equal(res.new_host, 6);
  assert_int_equal(r->host, 6);
  uint64_t w5[] = {6};
  check_members(r, w5, 1);
  assert_ptr_equal(rooms_find(rs, id), r);

  /* the last member leaves: the room is gone */
  rooms_leave(rs, r, 6, &res);
  assert_int_equal(res.room_id, id);
  assert_true(res.deleted);
  assert_false(res.host_changed);
  assert_int_equal(res.new_host, 0);
  assert_int_equal(rooms_count(rs), 0);
  assert_null(rooms_find(rs, id));
  assert_null(rooms_oldest(rs));
  room *out;
  assert_int_equal(rooms_join(rs, id, 9, NULL, &out), PR_E_ROOM_NOT_FOUND);
  rooms_free(rs);
}

/* A started room keeps its state through migration, and is deleted when
 * empty like any other. */
static void test_started_room_deleted_when_empty(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 100, SEED);
  assert_non_null(rs);
  room *r = mk(rs, 1, "g", 3);
  join_ok(rs, r, 2);
  assert_int_equal(rooms_start(rs, r, 1), 0);
  uint64_t id = r->id;
  rooms_leave_result res;
  rooms_leave(rs, r, 1, &res);
  assert_true(res.host_changed);
  assert_int_equal(r->state, PR_ROOM_IN_PROGRESS);
  rooms_leave(rs, r, 2, &res);
  assert_true(res.deleted);
  assert_null(rooms_find(rs, id));
  assert_int_equal(rooms_count(rs), 0);
  rooms_free(rs);
}

static void check_order(rooms *rs, room *const *want, size_t n) {
  size_t i = 0;
  room *prev = NULL;
  for (room *r = rooms_oldest(rs); r != NULL; r = rooms_newer(r)) {
    assert_true(i < n);
    assert_ptr_equal(r, want[i]);
    assert_ptr_equal(r->older, prev);
    prev = r;
    i++;
  }
  assert_int_equal(i, n);
  assert_int_equal(rooms_count(rs), n);
}

static void test_list_order(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 100, SEED);
  assert_non_null(rs);
  room *a = mk(rs, 1, "a", 4), *b = mk(rs, 2, "b", 4), *c = mk(rs, 3, "c", 4);
  room *d = mk(rs, 4, "d", 4);
  room *all[] = {a, b, c, d};
  check_order(rs, all, 4);

  /* joins and starts do not reorder */
  join_ok(rs, a, 10);
  assert_int_equal(rooms_start(rs, c, 3), 0);
  check_order(rs, all, 4);

  rooms_leave_result res;
  rooms_leave(rs, b, 2, &res); /* the middle */
  room *w1[] = {a, c, d};
  check_order(rs, w1, 3);
  rooms_leave(rs, d, 4, &res); /* the newest */
  room *w2[] = {a, c};
  check_order(rs, w2, 2);
  rooms_leave(rs, a, 1, &res); /* not empty yet: stays, same place */
  check_order(rs, w2, 2);
  rooms_leave(rs, a, 10, &res); /* the oldest */
  room *w3[] = {c};
  check_order(rs, w3, 1);
  room *e = mk(rs, 5, "e", 4);
  room *w4[] = {c, e};
  check_order(rs, w4, 2);
  rooms_leave(rs, c, 3, &res);
  rooms_leave(rs, e, 5, &res);
  check_order(rs, NULL, 0);
  room *f = mk(rs, 6, "f", 4);
  room *w5[] = {f};
  check_order(rs, w5, 1);
  rooms_free(rs);
}

static void test_too_many_rooms(void **state) {
  (void)state;
  rooms *rs = rooms_new(3, 8, 100, SEED);
  assert_non_null(rs);
  room *a = mk(rs, 1, "a", 0);
  mk(rs, 2, "b", 0);
  mk(rs, 3, "c", 0);
  room *out = U(1);
  assert_int_equal(rooms_create(rs, 4, NULL, (const uint8_t *)"d", 1, 0, NULL, &out),
                   PR_E_TOO_MANY_ROOMS);
  assert_null(out);
  assert_int_equal(rooms_count(rs), 3);

  /* a full set of rooms does not stop joins */
  join_ok(rs, a, 5);
  rooms_leave_result res;
  rooms_leave(rs, a, 5, &res);
  assert_int_equal(rooms_count(rs), 3);
  assert_int_equal(rooms_create(rs, 4, NULL, (const uint8_t *)"d", 1, 0, NULL, &out),
                   PR_E_TOO_MANY_ROOMS);

  /* one room deleted: creation is allowed again, once */
  rooms_leave(rs, a, 1, &res);
  assert_true(res.deleted);
  assert_int_equal(rooms_count(rs), 2);
  mk(rs, 4, "d", 0);
  assert_int_equal(rooms_create(rs, 6, NULL, (const uint8_t *)"e", 1, 0, NULL, &out),
                   PR_E_TOO_MANY_ROOMS);
  rooms_free(rs);

  /* a limit of 0 refuses every room */
  rs = rooms_new(0, 8, 100, SEED);
  assert_non_null(rs);
  assert_int_equal(rooms_create(rs, 1, NULL, (const uint8_t *)"a", 1, 0, NULL, &out),
                   PR_E_TOO_MANY_ROOMS);
  assert_int_equal(rooms_count(rs), 0);
  rooms_free(rs);
}

static void test_set_udata(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 100, SEED);
  assert_non_null(rs);
  room *r = mk(rs, 1, "u", 8);
  join_ok(rs, r, 2);
  join_ok(rs, r, 3);
  rooms_set_udata(r, 2, U(0x222));
  assert_ptr_equal(r->member_udata[0], U(1));
  assert_ptr_equal(r->member_udata[1], U(0x222));
  assert_ptr_equal(r->member_udata[2], U(3));
  rooms_set_udata(r, 1, NULL);
  assert_null(r->member_udata[0]);
  /* the pointer follows its member through a leave */
  rooms_leave_result res;
  rooms_leave(rs, r, 1, &res);
  assert_int_equal(r->member_ids[0], 2);
  assert_ptr_equal(r->member_udata[0], U(0x222));
  assert_ptr_equal(r->member_udata[1], U(3));
  rooms_free(rs);
}

/* Decodes the one REPLY frame in buf[0..len). */
static void decode_reply(const uint8_t *buf, size_t len, pr_reply *rep) {
  pr_hdr hdr;
  const uint8_t *payload;
  size_t consumed;
  assert_int_equal(pr_frame_next(buf, len, PR_DEFAULT_MAX_FRAME_PAYLOAD, &hdr, &payload, &consumed),
                   0);
  assert_int_equal(consumed, len);
  assert_int_equal(hdr.type, PR_FT_REPLY);
  assert_int_equal(pr_reply_decode(payload, hdr.len, rep), 0);
}

/* Compares a decoded RoomInfo with the room, field by field. */
static void check_info(const pr_room_info *ri, const room *r) {
  assert_int_equal(ri->room_id, r->id);
  assert_int_equal(ri->name.len, r->name_len);
  assert_memory_equal(ri->name.ptr, r->name, r->name_len);
  assert_int_equal(ri->state, r->state);
  assert_int_equal(ri->host, r->host);
  assert_int_equal(ri->max_clients, r->max_clients);
  assert_int_equal(ri->members.count, r->count);
  size_t off = 0;
  uint64_t v;
  uint32_t i = 0;
  while (pr_u64_next(&ri->members, &off, &v)) {
    assert_true(i < r->count);
    assert_int_equal(v, r->member_ids[i]);
    i++;
  }
  assert_int_equal(i, r->count);
  assert_int_equal(ri->metadata.raw.len, r->meta_len);
  assert_memory_equal(ri->metadata.raw.ptr, r->meta_raw, r->meta_len);
}

static void test_reply_add(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 100, SEED);
  assert_non_null(rs);
  uint8_t meta_mem[256];
  static const char *const kv[] = {"map", "dust2", "", "empty key", "\xe2\x82\xac", "euro"};
  pr_kvlist meta = mk_meta(meta_mem, sizeof(meta_mem), kv, 3);
  room *a = NULL;
  assert_int_equal(rooms_create(rs, 500, NULL, (const uint8_t *)"alpha", 5, 6, &meta, &a), 0);
  join_ok(rs, a, 300);
  join_ok(rs, a, 900);
  join_ok(rs, a, 100);
  rooms_leave_result res;
  rooms_leave(rs, a, 500, &res); /* host moves to 300 */
  room *b = mk(rs, 7, "beta", 0);
  assert_int_equal(rooms_start(rs, b, 7), 0);

  uint8_t buf[1024];
  pr_buf pb;
  pr_reply_state st;
  pr_buf_init(&pb, buf, sizeof(buf));
  pr_reply_begin(&pb, &st, 4242, 0);
  assert_int_equal(rooms_reply_add(&pb, &st, a), 0);
  assert_int_equal(rooms_reply_add(&pb, &st, b), 0);
  pr_reply_finish(&pb, &st);
  assert_int_equal(pb.err, 0);

  pr_reply rep;
  decode_reply(buf, pb.len, &rep);
  assert_int_equal(rep.request_id, 4242);
  assert_int_equal(rep.status, 0);
  assert_int_equal(rep.room_count, 2);
  size_t off = 0;
  pr_room_info ri;
  assert_true(pr_room_next(&rep, &off, &ri));
  check_info(&ri, a);
  /* spelled out too, so a shared mistake in check_info cannot hide */
  assert_int_equal(ri.host, 300);
  assert_int_equal(ri.max_clients, 6);
  assert_int_equal(ri.state, PR_ROOM_WAITING);
  assert_memory_equal(ri.name.ptr, "alpha", 5);
  uint64_t want[] = {300, 900, 100};
  size_t moff = 0;
  for (size_t i = 0; i < 3; i++) {
    uint64_t v = 0;
    assert_true(pr_u64_next(&ri.members, &moff, &v));
    assert_int_equal(v, want[i]);
  }
  assert_int_equal(ri.metadata.count, 3);
  size_t koff = 0;
  pr_bytes k, v;
  for (size_t i = 0; i < 3; i++) {
    assert_true(pr_kv_next(&ri.metadata, &koff, &k, &v));
    assert_int_equal(k.len, strlen(kv[2 * i]));
    assert_memory_equal(k.ptr, kv[2 * i], k.len);
    assert_int_equal(v.len, strlen(kv[2 * i + 1]));
    assert_memory_equal(v.ptr, kv[2 * i + 1], v.len);
  }
  assert_false(pr_kv_next(&ri.metadata, &koff, &k, &v));

  assert_true(pr_room_next(&rep, &off, &ri));
  check_info(&ri, b);
  assert_int_equal(ri.state, PR_ROOM_IN_PROGRESS);
  assert_int_equal(ri.max_clients, 8);
  assert_int_equal(ri.metadata.count, 0);
  assert_false(pr_room_next(&rep, &off, &ri));

  /* a room that does not fit is left out and the reply stays valid: a
   * buffer exactly the size of a REPLY holding b alone */
  pr_buf_init(&pb, buf, sizeof(buf));
  pr_reply_begin(&pb, &st, 1, 0);
  assert_int_equal(rooms_reply_add(&pb, &st, b), 0);
  pr_reply_finish(&pb, &st);
  size_t just_b = pb.len;
  uint8_t small[128];
  assert_true(just_b <= sizeof(small));
  pr_buf_init(&pb, small, just_b);
  pr_reply_begin(&pb, &st, 1, 0);
  assert_int_equal(rooms_reply_add(&pb, &st, b), 0);
  assert_int_equal(rooms_reply_add(&pb, &st, a), -1);
  assert_int_equal(pb.len, just_b);
  pr_reply_finish(&pb, &st);
  assert_int_equal(pb.err, 0);
  decode_reply(small, pb.len, &rep);
  assert_int_equal(rep.room_count, 1);
  off = 0;
  assert_true(pr_room_next(&rep, &off, &ri));
  check_info(&ri, b);
  rooms_free(rs);
}

/* Huge sizes make malloc fail inside rooms_create: PR_E_PROTOCOL, nothing
 * added, nothing leaked (ASan checks), and the set still works. */
static void test_allocation_failure(void **state) {
  (void)state;
  rooms *rs = rooms_new(10, 8, 100, SEED);
  assert_non_null(rs);
  room *keep = mk(rs, 1, "keep", 4);
  uint8_t tiny[8] = {0};
  room *out = U(1);
  /* the name copy fails */
  assert_int_equal(rooms_create(rs, 2, NULL, tiny, SIZE_MAX - 16, 4, NULL, &out), PR_E_PROTOCOL);
  assert_null(out);
  /* the metadata copy fails, after the name was allocated */
  pr_kvlist huge = {0, {tiny, SIZE_MAX - 16}};
  assert_int_equal(rooms_create(rs, 2, NULL, tiny, 1, 4, &huge, &out), PR_E_PROTOCOL);
  assert_null(out);
  assert_int_equal(rooms_count(rs), 1);
  room *only[] = {keep};
  check_order(rs, only, 1);
  mk(rs, 3, "after", 4);
  assert_int_equal(rooms_count(rs), 2);
  rooms_free(rs);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Ids: non-zero, unique among live rooms, and a function of the seed. */
static void test_ids(void **state) {
  (void)state;
  enum { N = 5000 };
  rooms *rs = rooms_new(N, 8, 100, SEED);
  rooms *same = rooms_new(N, 8, 100, SEED);
  rooms *other = rooms_new(N, 8, 100, SEED + 1);
  assert_non_null(rs);
  assert_non_null(same);
  assert_non_null(other);
  uint64_t *ids = malloc(N * sizeof(*ids));
  assert_non_null(ids);
  int differ = 0;
  for (size_t i = 0; i < N; i++) {
    room *r = mk(rs, i + 1, "r", 2);
    ids[i] = r->id;
    assert_int_not_equal(r->id, 0);
    assert_int_equal(mk(same, i + 1, "r", 2)->id, r->id);
    differ += mk(other, i + 1, "r", 2)->id != r->id;
  }
  assert_true(differ > N / 2);
  for (size_t i = 0; i < N; i++)
    assert_int_equal(rooms_find(rs, ids[i])->id, ids[i]);
  qsort(ids, N, sizeof(*ids), cmp_u64);
  for (size_t i = 1; i < N; i++)
    assert_true(ids[i - 1] != ids[i]);
  free(ids);
  rooms_free(rs);
  rooms_free(same);
  rooms_free(other);
}

/* The reference model for the churn test. */
typedef struct model_room {
  room *r;
  uint64_t id;
  uint64_t host;
  uint32_t n;
  uint64_t members[16];
} model_room;

/* Live rooms in the model are in creation order. */
static void check_model(rooms *rs, const model_room *m, size_t live) {
  assert_int_equal(rooms_count(rs), live);
  room *r = rooms_oldest(rs);
  room *prev = NULL;
  for (size_t i = 0; i < live; i++) {
    assert_non_null(r);
    assert_ptr_equal(r, m[i].r);
    assert_ptr_equal(r->older, prev);
    assert_ptr_equal(rooms_find(rs, m[i].id), r);
    assert_int_equal(r->id, m[i].id);
    assert_int_equal(r->host, m[i].host);
    check_members(r, m[i].members, m[i].n);
    for (uint32_t j = 0; j < m[i].n; j++)
      assert_ptr_equal(r->member_udata[j], U(m[i].members[j]));
    prev = r;
    r = rooms_newer(r);
  }
  assert_null(r);
}

/* 10,000 rooms created and deleted through random joins and leaves, against
 * the model.  The mix alternates between growing to the 400-room limit
 * (the hash table grows, TOO_MANY_ROOMS is hit) and shrinking to a few. */
static void test_churn(void **state) {
  (void)state;
  enum { LIMIT = 400, CYCLES = 10000 };
  model_room *m = calloc(LIMIT, sizeof(*m));
  uint64_t *gone = malloc(CYCLES * sizeof(*gone));
  assert_non_null(m);
  assert_non_null(gone);
  rooms *rs = rooms_new(LIMIT, 8, 16, SEED);
  assert_non_null(rs);
  rng g = {99};
  size_t live = 0, created = 0, deleted = 0, refused = 0, max_live = 0;
  uint64_t next_node = 1;
  size_t step = 0;
  int growing = 1;
  while (created < CYCLES || live > 0) {
    step++;
    if (growing && live == LIMIT)
      growing = 0;
    if (!growing && live < 10)
      growing = 1;
    size_t what = rng_below(&g, 10);
    /* growing: 5 create, 2 join, 3 leave; shrinking: 1, 1, 8 */
    int do_create = created < CYCLES && (live == 0 || what < (growing ? 5u : 1u));
    int do_join = !do_create && created < CYCLES && what < (growing ? 7u : 2u);
    if (do_create) {
      room *out = NULL;
      uint64_t node = next_node++;
      int rv = rooms_create(rs, node, U(node), (const uint8_t *)"churn", 5,
                            (uint32_t)rng_below(&g, 20), NULL, &out);
      if (live == LIMIT) {
        assert_int_equal(rv, PR_E_TOO_MANY_ROOMS);
        assert_null(out);
        refused++;
      } else {
        assert_int_equal(rv, 0);
        model_room *mr = &m[live++];
        mr->r = out;
        mr->id = out->id;
        mr->host = node;
        mr->n = 1;
        mr->members[0] = node;
        assert_true(out->max_clients >= 1 && out->max_clients <= 16);
        created++;
        if (live > max_live)
          max_live = live;
      }
    } else if (do_join) {
      model_room *mr = &m[rng_below(&g, live)];
      room *out = NULL;
      uint64_t node = next_node++;
      int rv = rooms_join(rs, mr->id, node, U(node), &out);
      if (mr->n == mr->r->max_clients) {
        assert_int_equal(rv, PR_E_ROOM_FULL);
      } else {
        assert_int_equal(rv, 0);
        mr->members[mr->n++] = node;
      }
    } else {
      size_t k = rng_below(&g, live);
      model_room *mr = &m[k];
      uint32_t at = (uint32_t)rng_below(&g, mr->n);
      uint64_t node = mr->members[at];
      rooms_leave_result res;
      rooms_leave(rs, mr->r, node, &res);
      assert_int_equal(res.room_id, mr->id);
      memmove(&mr->members[at], &mr->members[at + 1], (mr->n - at - 1) * sizeof(uint64_t));
      mr->n--;
      if (mr->n == 0) {
        assert_true(res.deleted);
        assert_false(res.host_changed);
        assert_int_equal(res.new_host, 0);
        gone[deleted++] = mr->id;
        memmove(&m[k], &m[k + 1], (live - k - 1) * sizeof(*m));
        live--;
      } else {
        assert_false(res.deleted);
        assert_int_equal(res.host_changed, node == mr->host);
        if (node == mr->host)
          mr->host = mr->members[0];
        assert_int_equal(res.new_host, mr->host);
      }
    }
    if (step % 1000 == 0) {
      check_model(rs, m, live);
      for (size_t i = 0; i < deleted; i++)
        assert_null(rooms_find(rs, gone[i]));
    }
  }
  check_model(rs, m, 0);
  assert_int_equal(created, CYCLES);
  assert_int_equal(deleted, CYCLES);
  assert_int_equal(max_live, LIMIT);
  assert_true(refused > 0);
  /* the set is reusable once empty */
  room *again = mk(rs, next_node, "again", 0);
  assert_ptr_equal(rooms_oldest(rs), again);
  rooms_free(rs);
  free(gone);
  free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_basics),
      cmocka_unit_test(test_sizes_default_and_clamp),
      cmocka_unit_test(test_join_and_status_order),
      cmocka_unit_test(test_join_many_members),
      cmocka_unit_test(test_start),
      cmocka_unit_test(test_leave_and_host_migration),
      cmocka_unit_test(test_started_room_deleted_when_empty),
      cmocka_unit_test(test_list_order),
      cmocka_unit_test(test_too_many_rooms),
      cmocka_unit_test(test_set_udata),
      cmocka_unit_test(test_reply_add),
      cmocka_unit_test(test_allocation_failure),
      cmocka_unit_test(test_ids),
      cmocka_unit_test(test_churn),
  };
  return cmocka_run_group_tests_name("rooms", tests, NULL, NULL);
}
