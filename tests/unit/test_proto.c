/*
 * Unit tests for the issun/1 wire codec (src/proto).
 *
 * The byte-exact vectors below are written out field by field from the
 * encoding rules of protocol.md section 2 (bincode 1.x default: fixed-width
 * little-endian integers, u64 lengths, u8 option tags, u32 enum variants),
 * not produced by our encoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/proto.h"

#define MAXF PR_DEFAULT_MAX_FRAME_PAYLOAD
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static pr_bytes bs(const char *s) {
  pr_bytes b = {(const uint8_t *)s, strlen(s)};
  return b;
}

static void assert_bytes_eq(pr_bytes b, const char *s) {
  assert_int_equal(b.len, strlen(s));
  if (b.len > 0)
    assert_memory_equal(b.ptr, s, b.len);
}

/* Decodes a payload with the decoder for `type`; 0 or a wire code. */
static int decode_any(uint8_t type, const uint8_t *p, size_t n) {
  union {
    pr_hello hello;
    pr_ack ack;
    pr_event event;
    pr_error error;
    pr_heartbeat hb;
    pr_room_create create;
    pr_room_join join;
    pr_room_simple simple;
    pr_reply reply;
    pr_presence presence;
  } u;
  switch (type) {
  case PR_FT_EVENT:
    return pr_event_decode(p, n, &u.event);
  case PR_FT_HEARTBEAT:
    return pr_heartbeat_decode(p, n, &u.hb);
  case PR_FT_ACK:
    return pr_ack_decode(p, n, &u.ack);
  case PR_FT_HELLO:
    return pr_hello_decode(p, n, &u.hello);
  case PR_FT_ERROR:
    return pr_error_decode(p, n, &u.error);
  case PR_FT_ROOM_CREATE:
    return pr_room_create_decode(p, n, &u.create);
  case PR_FT_ROOM_JOIN:
    return pr_room_join_decode(p, n, &u.join);
  case PR_FT_ROOM_LEAVE:
  case PR_FT_ROOM_LIST:
  case PR_FT_ROOM_START:
    return pr_room_simple_decode(p, n, &u.simple);
  case PR_FT_REPLY:
    return pr_reply_decode(p, n, &u.reply);
  case PR_FT_PRESENCE:
    return pr_presence_decode(p, n, &u.presence);
  default:
    return -1;
  }
}

/* Splits an encoded frame; asserts it is one whole frame. */
static const uint8_t *frame_payload(const uint8_t *f, size_t n, uint8_t type, size_t *plen) {
  pr_hdr h;
  const uint8_t *pl;
  size_t used;
  assert_int_equal(pr_frame_next(f, n, MAXF, &h, &pl, &used), 0);
  assert_int_equal(used, n);
  assert_int_equal(h.type, type);
  *plen = h.len;
  return pl;
}

/* An encoded list<(str,str)> for metadata. */
static size_t make_kv(uint8_t *mem, size_t cap, const char *const *kv, size_t pairs) {
  pr_buf b;
  pr_buf_init(&b, mem, cap);
  pr_put_u64(&b, pairs);
  for (size_t i = 0; i < 2 * pairs; i++)
    pr_put_str(&b, kv[i], strlen(kv[i]));
  assert_int_equal(b.err, 0);
  return b.len;
}

/* ---- byte-exact vectors ------------------------------------------------- */

/* clang-format off */
static const uint8_t EV_BCAST[] = {
  0x49, 0x53, 0x01, 0x01, 0x3f, 0x00, 0x00, 0x00, /* IS v1 EVENT len 63 */
  0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* sender 7 */
  0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, /* timestamp 1700000000000 */
  0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* sequence 3 */
  0x00, 0x00, 0x00, 0x00,                         /* scope 0 Broadcast */
  0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* type_name len 16 */
  'p', 'o', 'n', 'g', ':', ':', 'P', 'a', 'd', 'd', 'l', 'e', 'M', 'o', 'v', 'e',
  0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* payload len 3 */
  0x01, 0x02, 0x03,
};

static const uint8_t EV_TARGET[] = {
  0x49, 0x53, 0x01, 0x01, 0x47, 0x00, 0x00, 0x00, /* IS v1 EVENT len 71 */
  0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* sender 7 */
  0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, /* timestamp 1700000000000 */
  0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* sequence 3 */
  0x02, 0x00, 0x00, 0x00,                         /* scope 2 Targeted */
  0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* target 42 */
  0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* type_name len 16 */
  'p', 'o', 'n', 'g', ':', ':', 'P', 'a', 'd', 'd', 'l', 'e', 'M', 'o', 'v', 'e',
  0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* payload len 3 */
  0x01, 0x02, 0x03,
};

static const uint8_t HELLO_VEC[] = {
  0x49, 0x53, 0x01, 0x04, 0x25, 0x00, 0x00, 0x00, /* IS v1 HELLO len 37 */
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* node_id 0 */
  0x01,                                           /* resume: Some, then 16 bytes */
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
  0x00,                                           /* token: None */
  0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* name len 3 */
  'a', 'n', 'n',
};

static const uint8_t ACK_VEC[] = {
  0x49, 0x53, 0x01, 0x03, 0x2c, 0x00, 0x00, 0x00, /* IS v1 ACK len 44 */
  0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* node_id 0x1122334455667788 */
  0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
  0x88, 0x13, 0x00, 0x00,                         /* heartbeat_ms 5000 */
  0x00, 0x00, 0x01, 0x00,                         /* max_frame_payload 65536 */
  0x64, 0x00, 0x00, 0x00,                         /* max_events_per_sec 100 */
  0x7b, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, /* server_time_ms 1700000000123 */
};

static const uint8_t REPLY_VEC[] = {
  0x49, 0x53, 0x01, 0x20, 0x67, 0x00, 0x00, 0x00, /* IS v1 REPLY len 103 */
  0x09, 0x00, 0x00, 0x00,                         /* request_id 9 */
  0x00, 0x00,                                     /* status 0 */
  0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 1 room */
  0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* room_id 0x0102030405060708 */
  0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* name len 5 */
  'l', 'o', 'b', 'b', 'y',
  0x00,                                           /* state Waiting */
  0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* host 7 */
  0x08, 0x00, 0x00, 0x00,                         /* max_clients 8 */
  0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 2 members */
  0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /*   7 */
  0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /*   9 */
  0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 1 metadata pair */
  0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /*   key len 3 */
  'm', 'a', 'p',
  0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /*   value len 4 */
  'd', 'u', 's', 't',
};
/* clang-format on */

static const uint8_t PONG_PAYLOAD[] = {1, 2, 3};

static pr_event sample_event(uint32_t scope) {
  pr_event e;
  memset(&e, 0, sizeof e);
  e.sender = 7;
  e.timestamp = 1700000000000ull;
  e.sequence = 3;
  e.scope = scope;
  e.target = scope == PR_SCOPE_TARGETED ? 42 : 0;
  e.type_name = bs("pong::PaddleMove");
  e.payload.ptr = PONG_PAYLOAD;
  e.payload.len = sizeof PONG_PAYLOAD;
  return e;
}

static void test_bytes_event(void **state) {
  (void)state;
  uint8_t out[256];
  pr_event e = sample_event(PR_SCOPE_BROADCAST);
  size_t n = pr_enc_event(out, sizeof out, &e);
  assert_int_equal(n, sizeof EV_BCAST);
  assert_memory_equal(out, EV_BCAST, n);

  e = sample_event(PR_SCOPE_TARGETED);
  n = pr_enc_event(out, sizeof out, &e);
  assert_int_equal(n, sizeof EV_TARGET);
  assert_memory_equal(out, EV_TARGET, n);

  /* and the vectors decode to the same fields */
  pr_event d;
  assert_int_equal(pr_event_decode(EV_TARGET + 8, sizeof EV_TARGET - 8, &d), 0);
  assert_int_equal(d.sender, 7);
  assert_int_equal(d.timestamp, 1700000000000ull);
  assert_int_equal(d.sequence, 3);
  assert_int_equal(d.scope, PR_SCOPE_TARGETED);
  assert_int_equal(d.target, 42);
  assert_bytes_eq(d.type_name, "pong::PaddleMove");
  assert_int_equal(d.payload.len, 3);
  assert_memory_equal(d.payload.ptr, PONG_PAYLOAD, 3);
  assert_int_equal(pr_event_decode(EV_BCAST + 8, sizeof EV_BCAST - 8, &d), 0);
  assert_int_equal(d.scope, PR_SCOPE_BROADCAST);
  assert_int_equal(d.target, 0);
}

static void test_bytes_hello(void **state) {
  (void)state;
  uint8_t out[128];
  pr_hello h;
  memset(&h, 0, sizeof h);
  h.has_resume = 1;
  for (int i = 0; i < 16; i++)
    h.resume[i] = (uint8_t)i;
  h.name = bs("ann");
  size_t n = pr_enc_hello(out, sizeof out, &h);
  assert_int_equal(n, sizeof HELLO_VEC);
  assert_memory_equal(out, HELLO_VEC, n);
}

static void test_bytes_ack(void **state) {
  (void)state;
  uint8_t out[128];
  pr_ack a;
  a.node_id = 0x1122334455667788ull;
  for (int i = 0; i < 16; i++)
    a.resume[i] = (uint8_t)(0xa0 + i);
  a.heartbeat_ms = 5000;
  a.max_frame_payload = 65536;
  a.max_events_per_sec = 100;
  a.server_time_ms = 1700000000123ull;
  size_t n = pr_enc_ack(out, sizeof out, &a);
  assert_int_equal(n, sizeof ACK_VEC);
  assert_memory_equal(out, ACK_VEC, n);
}

static void test_bytes_reply(void **state) {
  (void)state;
  uint8_t out[256], meta[64];
  static const char *const kv[] = {"map", "dust"};
  pr_bytes m = {meta, make_kv(meta, sizeof meta, kv, 1)};
  const uint64_t members[] = {7, 9};
  pr_buf b;
  pr_reply_state st;
  pr_buf_init(&b, out, sizeof out);
  pr_reply_begin(&b, &st, 9, 0);
  assert_int_equal(pr_reply_add_room(&b, &st, 0x0102030405060708ull, (const uint8_t *)"lobby", 5,
                                     PR_ROOM_WAITING, 7, 8, members, 2, &m),
                   0);
  pr_reply_finish(&b, &st);
  assert_int_equal(b.err, 0);
  assert_int_equal(b.len, sizeof REPLY_VEC);
  assert_memory_equal(out, REPLY_VEC, b.len);
}

/* ---- round trips -------------------------------------------------------- */

static void test_roundtrip_event(void **state) {
  (void)state;
  uint8_t out[512], big[300];
  memset(big, 0xee, sizeof big);
  for (uint32_t scope = 0; scope <= 2; scope++) {
    pr_event e = sample_event(scope);
    e.sender = UINT64_MAX;
    e.sequence = 0x8000000000000001ull;
    e.target = scope == 2 ? UINT64_MAX - 1 : 0;
    e.payload.ptr = big;
    e.payload.len = sizeof big;
    size_t n = pr_enc_event(out, sizeof out, &e), pl;
    assert_true(n > 0);
    const uint8_t *p = frame_payload(out, n, PR_FT_EVENT, &pl);
    pr_event d;
    assert_int_equal(pr_event_decode(p, pl, &d), 0);
    assert_int_equal(d.sender, e.sender);
    assert_int_equal(d.timestamp, e.timestamp);
    assert_int_equal(d.sequence, e.sequence);
    assert_int_equal(d.scope, scope);
    assert_int_equal(d.target, e.target);
    assert_bytes_eq(d.type_name, "pong::PaddleMove");
    assert_int_equal(d.payload.len, sizeof big);
    assert_memory_equal(d.payload.ptr, big, sizeof big);
    assert_ptr_equal(d.payload.ptr, out + n - sizeof big); /* a view, not a copy */
  }
  /* empty payload */
  pr_event e = sample_event(PR_SCOPE_TO_SERVER);
  e.payload.ptr = NULL;
  e.payload.len = 0;
  size_t n = pr_enc_event(out, sizeof out, &e), pl;
  const uint8_t *p = frame_payload(out, n, PR_FT_EVENT, &pl);
  pr_event d;
  assert_int_equal(pr_event_decode(p, pl, &d), 0);
  assert_int_equal(d.payload.len, 0);
  assert_int_equal(d.scope, PR_SCOPE_TO_SERVER);
}

static void test_roundtrip_hello(void **state) {
  (void)state;
  uint8_t out[256];
  for (int variant = 0; variant < 4; variant++) {
    pr_hello h;
    memset(&h, 0, sizeof h);
    h.node_id = 0xdeadbeefcafef00dull;
    h.has_resume = variant & 1;
    if (h.has_resume)
      memset(h.resume, 0x5a, 16);
    h.has_token = (variant >> 1) & 1;
    if (h.has_token)
      h.token = bs("eyJhbGciOiJIUzI1NiJ9.e30.c2ln");
    h.name = variant == 3 ? bs("") : bs("Zoë ✓");
    size_t n = pr_enc_hello(out, sizeof out, &h), pl;
    const uint8_t *p = frame_payload(out, n, PR_FT_HELLO, &pl);
    pr_hello d;
    assert_int_equal(pr_hello_decode(p, pl, &d), 0);
    assert_int_equal(d.node_id, h.node_id);
    assert_int_equal(d.has_resume, h.has_resume);
    if (h.has_resume)
      assert_memory_equal(d.resume, h.resume, 16);
    assert_int_equal(d.has_token, h.has_token);
    if (h.has_token)
      assert_bytes_eq(d.token, "eyJhbGciOiJIUzI1NiJ9.e30.c2ln");
    assert_bytes_eq(d.name, variant == 3 ? "" : "Zoë ✓");
  }
}

static void test_roundtrip_ack(void **state) {
  (void)state;
  uint8_t out[128];
  pr_ack a = {.node_id = 99,
              .heartbeat_ms = 1,
              .max_frame_payload = UINT32_MAX,
              .max_events_per_sec = 7,
              .server_time_ms = UINT64_MAX};
  for (int i = 0; i < 16; i++)
    a.resume[i] = (uint8_t)(255 - i);
  size_t n = pr_enc_ack(out, sizeof out, &a), pl;
  const uint8_t *p = frame_payload(out, n, PR_FT_ACK, &pl);
  pr_ack d;
  assert_int_equal(pr_ack_decode(p, pl, &d), 0);
  assert_int_equal(d.node_id, 99);
  assert_memory_equal(d.resume, a.resume, 16);
  assert_int_equal(d.heartbeat_ms, 1);
  assert_int_equal(d.max_frame_payload, UINT32_MAX);
  assert_int_equal(d.max_events_per_sec, 7);
  assert_int_equal(d.server_time_ms, UINT64_MAX);
}

static void test_roundtrip_error_heartbeat(void **state) {
  (void)state;
  uint8_t out[128];
  size_t n = pr_enc_error(out, sizeof out, PR_E_SLOW_CONSUMER, "backlog over 1 MiB"), pl;
  const uint8_t *p = frame_payload(out, n, PR_FT_ERROR, &pl);
  pr_error e;
  assert_int_equal(pr_error_decode(p, pl, &e), 0);
  assert_int_equal(e.code, PR_E_SLOW_CONSUMER);
  assert_bytes_eq(e.message, "backlog over 1 MiB");

  n = pr_enc_error(out, sizeof out, 0xffff, NULL); /* NULL message = empty */
  assert_int_equal(n, 8 + 2 + 8);
  p = frame_payload(out, n, PR_FT_ERROR, &pl);
  assert_int_equal(pr_error_decode(p, pl, &e), 0);
  assert_int_equal(e.code, 0xffff);
  assert_int_equal(e.message.len, 0);

  n = pr_enc_heartbeat(out, sizeof out, 1700000000999ull);
  assert_int_equal(n, 16);
  p = frame_payload(out, n, PR_FT_HEARTBEAT, &pl);
  pr_heartbeat h;
  assert_int_equal(pr_heartbeat_decode(p, pl, &h), 0);
  assert_int_equal(h.time_ms, 1700000000999ull);
}

static void test_roundtrip_room_requests(void **state) {
  (void)state;
  uint8_t out[256], meta[128];
  static const char *const kv[] = {"mode", "ctf", "", "", "näme", "✓"};
  pr_room_create c;
  memset(&c, 0, sizeof c);
  c.request_id = 0xfffffffe;
  c.name = bs("my room");
  c.max_clients = 0;
  c.metadata.count = 3;
  c.metadata.raw.ptr = meta;
  c.metadata.raw.len = make_kv(meta, sizeof meta, kv, 3);
  size_t n = pr_enc_room_create(out, sizeof out, &c), pl;
  const uint8_t *p = frame_payload(out, n, PR_FT_ROOM_CREATE, &pl);
  pr_room_create dc;
  assert_int_equal(pr_room_create_decode(p, pl, &dc), 0);
  assert_int_equal(dc.request_id, 0xfffffffe);
  assert_bytes_eq(dc.name, "my room");
  assert_int_equal(dc.max_clients, 0);
  assert_int_equal(dc.metadata.count, 3);
  assert_int_equal(dc.metadata.raw.len, c.metadata.raw.len);
  assert_memory_equal(dc.metadata.raw.ptr, meta, c.metadata.raw.len);
  size_t off = 0;
  pr_bytes k, v;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(pr_kv_next(&dc.metadata, &off, &k, &v), 1);
    assert_bytes_eq(k, kv[2 * i]);
    assert_bytes_eq(v, kv[2 * i + 1]);
  }
  assert_int_equal(pr_kv_next(&dc.metadata, &off, &k, &v), 0);

  /* an all-zero metadata field encodes the empty list */
  memset(&c.metadata, 0, sizeof c.metadata);
  n = pr_enc_room_create(out, sizeof out, &c);
  p = frame_payload(out, n, PR_FT_ROOM_CREATE, &pl);
  assert_int_equal(pr_room_create_decode(p, pl, &dc), 0);
  assert_int_equal(dc.metadata.count, 0);
  assert_int_equal(dc.metadata.raw.len, 8);
  off = 0;
  assert_int_equal(pr_kv_next(&dc.metadata, &off, &k, &v), 0);

  pr_room_join j = {.request_id = 5, .room_id = 0x0123456789abcdefull};
  n = pr_enc_room_join(out, sizeof out, &j);
  assert_int_equal(n, 8 + 12);
  p = frame_payload(out, n, PR_FT_ROOM_JOIN, &pl);
  pr_room_join dj;
  assert_int_equal(pr_room_join_decode(p, pl, &dj), 0);
  assert_int_equal(dj.request_id, 5);
  assert_int_equal(dj.room_id, 0x0123456789abcdefull);

  const uint8_t types[] = {PR_FT_ROOM_LEAVE, PR_FT_ROOM_LIST, PR_FT_ROOM_START};
  for (size_t i = 0; i < ARRAY_LEN(types); i++) {
    n = pr_enc_room_simple(out, sizeof out, types[i], 1000 + (uint32_t)i);
    assert_int_equal(n, 12);
    p = frame_payload(out, n, types[i], &pl);
    pr_room_simple s;
    assert_int_equal(pr_room_simple_decode(p, pl, &s), 0);
    assert_int_equal(s.request_id, 1000 + i);
  }
}

static void test_roundtrip_presence(void **state) {
  (void)state;
  uint8_t out[64];
  pr_presence pp = {.room_id = 11, .node_id = 22, .change = PR_PRESENCE_HOST, .host = 22};
  size_t n = pr_enc_presence(out, sizeof out, &pp), pl;
  assert_int_equal(n, 8 + 25);
  const uint8_t *p = frame_payload(out, n, PR_FT_PRESENCE, &pl);
  pr_presence d;
  assert_int_equal(pr_presence_decode(p, pl, &d), 0);
  assert_int_equal(d.room_id, 11);
  assert_int_equal(d.node_id, 22);
  assert_int_equal(d.change, PR_PRESENCE_HOST);
  assert_int_equal(d.host, 22);
}

static void test_roundtrip_reply(void **state) {
  (void)state;
  uint8_t out[1024], meta[64];
  static const char *const kv[] = {"k", "v", "map", "dust"};
  pr_bytes m = {meta, make_kv(meta, sizeof meta, kv, 2)};
  const uint64_t members[] = {1, 2, 3, UINT64_MAX};
  pr_buf b;
  pr_reply_state st;
  pr_buf_init(&b, out, sizeof out);
  pr_reply_begin(&b, &st, 77, PR_E_NO_ERROR);
  assert_int_equal(pr_reply_add_room(&b, &st, 100, (const uint8_t *)"alpha", 5, PR_ROOM_WAITING, 1,
                                     8, members, 4, &m),
                   0);
  assert_int_equal(pr_reply_add_room(&b, &st, 200, (const uint8_t *)"", 0, PR_ROOM_IN_PROGRESS, 2,
                                     2, NULL, 0, NULL),
                   0);
  pr_reply_finish(&b, &st);
  assert_int_equal(b.err, 0);
  size_t pl;
  const uint8_t *p = frame_payload(out, b.len, PR_FT_REPLY, &pl);
  pr_reply r;
  assert_int_equal(pr_reply_decode(p, pl, &r), 0);
  assert_int_equal(r.request_id, 77);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.room_count, 2);

  size_t off = 0, moff = 0, kvoff = 0;
  pr_room_info ri;
  uint64_t v;
  pr_bytes k, val;
  assert_int_equal(pr_room_next(&r, &off, &ri), 1);
  assert_int_equal(ri.room_id, 100);
  assert_bytes_eq(ri.name, "alpha");
  assert_int_equal(ri.state, PR_ROOM_WAITING);
  assert_int_equal(ri.host, 1);
  assert_int_equal(ri.max_clients, 8);
  assert_int_equal(ri.members.count, 4);
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(pr_u64_next(&ri.members, &moff, &v), 1);
    assert_int_equal(v, members[i]);
  }
  assert_int_equal(pr_u64_next(&ri.members, &moff, &v), 0);
  assert_int_equal(ri.metadata.count, 2);
  assert_int_equal(ri.metadata.raw.len, m.len);
  assert_memory_equal(ri.metadata.raw.ptr, meta, m.len);
  assert_int_equal(pr_kv_next(&ri.metadata, &kvoff, &k, &val), 1);
  assert_bytes_eq(k, "k");
  assert_bytes_eq(val, "v");
  assert_int_equal(pr_kv_next(&ri.metadata, &kvoff, &k, &val), 1);
  assert_bytes_eq(k, "map");
  assert_bytes_eq(val, "dust");
  assert_int_equal(pr_kv_next(&ri.metadata, &kvoff, &k, &val), 0);

  assert_int_equal(pr_room_next(&r, &off, &ri), 1);
  assert_int_equal(ri.room_id, 200);
  assert_int_equal(ri.name.len, 0);
  assert_int_equal(ri.state, PR_ROOM_IN_PROGRESS);
  assert_int_equal(ri.members.count, 0);
  assert_int_equal(ri.metadata.count, 0);
  moff = 0;
  assert_int_equal(pr_u64_next(&ri.members, &moff, &v), 0);
  assert_int_equal(pr_room_next(&r, &off, &ri), 0);
  assert_int_equal(off, r.rooms_raw.len);

  /* a refusal: status set, no rooms */
  pr_buf_init(&b, out, sizeof out);
  pr_reply_begin(&b, &st, 3, PR_E_ROOM_FULL);
  pr_reply_finish(&b, &st);
  assert_int_equal(b.len, 8 + 4 + 2 + 8);
  p = frame_payload(out, b.len, PR_FT_REPLY, &pl);
  assert_int_equal(pr_reply_decode(p, pl, &r), 0);
  assert_int_equal(r.status, PR_E_ROOM_FULL);
  assert_int_equal(r.room_count, 0);
  off = 0;
  assert_int_equal(pr_room_next(&r, &off, &ri), 0);
}

/* ---- truncation and trailing bytes -------------------------------------- */

/* Fills frames[] with one valid encoded frame of every type (plus variants
 * with optional fields), returns how many; each starts at frames[i]. */
#define NFRAMES 16
typedef struct sample {
  uint8_t buf[512];
  size_t len;
} sample;

static size_t make_samples(sample *s) {
  size_t k = 0;
  uint8_t meta[128];
  static const char *const kv[] = {"a", "bc", "ключ", "значение"};
  pr_bytes m = {meta, make_kv(meta, sizeof meta, kv, 2)};

  for (uint32_t scope = 0; scope <= 2; scope++) {
    pr_event e = sample_event(scope);
    s[k].len = pr_enc_event(s[k].buf, sizeof s[k].buf, &e);
    k++;
  }
  pr_hello h;
  memset(&h, 0, sizeof h);
  h.node_id = 5;
  h.name = bs("bob");
  s[k].len = pr_enc_hello(s[k].buf, sizeof s[k].buf, &h);
  k++;
  h.has_resume = 1;
  memset(h.resume, 1, 16);
  h.has_token = 1;
  h.token = bs("tok");
  s[k].len = pr_enc_hello(s[k].buf, sizeof s[k].buf, &h);
  k++;
  pr_ack a = {.node_id = 1, .heartbeat_ms = 5000};
  s[k].len = pr_enc_ack(s[k].buf, sizeof s[k].buf, &a);
  k++;
  s[k].len = pr_enc_error(s[k].buf, sizeof s[k].buf, PR_E_TIMEOUT, "late");
  k++;
  s[k].len = pr_enc_heartbeat(s[k].buf, sizeof s[k].buf, 12345);
  k++;
  pr_room_create c = {.request_id = 1, .max_clients = 4};
  c.name = bs("r");
  c.metadata.raw = m;
  s[k].len = pr_enc_room_create(s[k].buf, sizeof s[k].buf, &c);
  k++;
  pr_room_join j = {.request_id = 2, .room_id = 3};
  s[k].len = pr_enc_room_join(s[k].buf, sizeof s[k].buf, &j);
  k++;
  s[k].len = pr_enc_room_simple(s[k].buf, sizeof s[k].buf, PR_FT_ROOM_LEAVE, 4);
  k++;
  s[k].len = pr_enc_room_simple(s[k].buf, sizeof s[k].buf, PR_FT_ROOM_LIST, 5);
  k++;
  s[k].len = pr_enc_room_simple(s[k].buf, sizeof s[k].buf, PR_FT_ROOM_START, 6);
  k++;
  pr_presence pp = {.room_id = 1, .node_id = 2, .change = 1, .host = 3};
  s[k].len = pr_enc_presence(s[k].buf, sizeof s[k].buf, &pp);
  k++;
  const uint64_t members[] = {8, 9};
  pr_buf b;
  pr_reply_state st;
  pr_buf_init(&b, s[k].buf, sizeof s[k].buf);
  pr_reply_begin(&b, &st, 1, 0);
  pr_reply_add_room(&b, &st, 1, (const uint8_t *)"x", 1, 0, 8, 4, members, 2, &m);
  pr_reply_add_room(&b, &st, 2, (const uint8_t *)"yy", 2, 1, 9, 4, members, 1, NULL);
  pr_reply_finish(&b, &st);
  s[k].len = b.err ? 0 : b.len;
  k++;
  memcpy(s[k].buf, REPLY_VEC, sizeof REPLY_VEC);
  s[k].len = sizeof REPLY_VEC;
  k++;
  assert_int_equal(k, NFRAMES);
  for (size_t i = 0; i < k; i++)
    assert_true(s[i].len >= PR_HDR_LEN);
  return k;
}

static void test_truncation_and_trailing(void **state) {
  (void)state;
  static sample s[NFRAMES];
  size_t n = make_samples(s);
  for (size_t i = 0; i < n; i++) {
    uint8_t type = s[i].buf[3];
    const uint8_t *p = s[i].buf + PR_HDR_LEN;
    size_t pl = s[i].len - PR_HDR_LEN;
    assert_int_equal(decode_any(type, p, pl), 0);
    /* every strict prefix of the payload is refused */
    for (size_t cut = 0; cut < pl; cut++) {
      uint8_t tmp[512];
      memcpy(tmp, p, cut); /* exact-size copy so ASan sees any overread */
      if (decode_any(type, tmp, cut) != PR_E_PROTOCOL) {
        fail_msg("frame %zu (type 0x%02x): prefix of %zu/%zu bytes accepted", i, type, cut, pl);
      }
    }
    /* one trailing byte is refused, whatever its value */
    uint8_t tmp[513];
    memcpy(tmp, p, pl);
    for (int t = 0; t < 256; t += 85) {
      tmp[pl] = (uint8_t)t;
      assert_int_equal(decode_any(type, tmp, pl + 1), PR_E_PROTOCOL);
    }
  }
}

/* ---- overruns ----------------------------------------------------------- */

/* Appends `len` as a u64 length/count after `prefix`, then 16 filler bytes,
 * and checks the decoder for `type` refuses it.  The payload is an
 * exact-size heap copy: a decoder that lets a wrapped length through scans
 * the (valid UTF-8) filler and then past the end, which the sanitizer build
 * reports. */
static void expect_overrun(uint8_t type, const uint8_t *prefix, size_t plen, uint64_t len) {
  uint8_t buf[256];
  pr_buf b;
  pr_buf_init(&b, buf, sizeof buf);
  pr_put_raw(&b, prefix, plen);
  pr_put_u64(&b, len);
  pr_put_raw(&b, "aaaaaaaaaaaaaaaa", 16);
  assert_int_equal(b.err, 0);
  uint8_t *copy = malloc(b.len);
  assert_non_null(copy);
  memcpy(copy, buf, b.len);
  int rv = decode_any(type, copy, b.len);
  free(copy);
  if (rv != PR_E_PROTOCOL)
    fail_msg("type 0x%02x: length %llu after %zu bytes accepted", type, (unsigned long long)len,
             plen);
}

/* Lengths that run past the payload, including ones that wrap when a
 * decoder adds them to its offset (off + len lands at or before the end). */
static void overruns_at(uint8_t type, const uint8_t *prefix, size_t plen) {
  uint64_t off = plen + 8; /* offset right after the length field */
  const uint64_t lens[] = {
      17,
      18,
      1000,
      UINT32_MAX,
      (uint64_t)1 << 32,
      (uint64_t)1 << 63,
      UINT64_MAX,
      UINT64_MAX - 7,
      UINT64_MAX - 15,
      (uint64_t)SIZE_MAX,
      (uint64_t)SIZE_MAX / 2 + 1,
      UINT64_MAX / 16 + 1,
      UINT64_MAX / 8 + 1,
      UINT64_MAX / 45 + 1,
      0 - off,      /* off + len wraps to 0 */
      0 - off + 1,  /* ... to 1 */
      0 - off + 8,  /* ... to 8 */
      0 - off + 16, /* ... to 16, all inside the payload */
  };
  for (size_t i = 0; i < ARRAY_LEN(lens); i++)
    expect_overrun(type, prefix, plen, lens[i]);
}

static void test_overruns(void **state) {
  (void)state;
  uint8_t pre[128];
  pr_buf b;

  /* EVENT.type_name */
  pr_buf_init(&b, pre, sizeof pre);
  pr_put_u64(&b, 1);
  pr_put_u64(&b, 2);
  pr_put_u64(&b, 3);
  pr_put_u32(&b, 0);
  overruns_at(PR_FT_EVENT, pre, b.len);
  /* EVENT.payload, after a targeted scope */
  pr_buf_init(&b, pre, sizeof pre);
  pr_put_u64(&b, 1);
  pr_put_u64(&b, 2);
  pr_put_u64(&b, 3);
  pr_put_u32(&b, 2);
  pr_put_u64(&b, 9);
  pr_put_str(&b, "t", 1);
  overruns_at(PR_FT_EVENT, pre, b.len);
  /* HELLO.token */
  pr_buf_init(&b, pre, sizeof pre);
  pr_put_u64(&b, 0);
  pr_put_u8(&b, 0);
  pr_put_u8(&b, 1);
  overruns_at(PR_FT_HELLO, pre, b.len);
  /* HELLO.name */
  pr_buf_init(&b, pre, sizeof pre);
  pr_put_u64(&b, 0);
  pr_put_u8(&b, 0);
  pr_put_u8(&b, 0);
  overruns_at(PR_FT_HELLO, pre, b.len);
  /* ERROR.message */
  pr_buf_init(&b, pre, sizeof pre);
  pr_put_u16(&b, 1);
  overruns_at(PR_FT_ERROR, pre, b.len);
  /* ROOM_CREATE.name, metadata count, metadata key, metadata value */
  pr_buf_init(&b, pre, sizeof pre);
  pr_put_u32(&b, 1);
  overruns_at(PR_FT_ROOM_CREATE, pre, b.len);
  pr_put_str(&b, "", 0);
  pr_put_u32(&b, 4);
  overruns_at(PR_FT_ROOM_CREATE, pre, b.len);
  pr_put_u64(&b, 1);
  overruns_at(PR_FT_ROOM_CREATE, pre, b.len);
  pr_put_str(&b, "k", 1);
  overruns_at(PR_FT_ROOM_CREATE, pre, b.len);
  /* REPLY room count, room name, members count, metadata count */
  pr_buf_init(&b, pre, sizeof pre);
  pr_put_u32(&b, 1);
  pr_put_u16(&b, 0);
  overruns_at(PR_FT_REPLY, pre, b.len);
  pr_put_u64(&b, 1);
  pr_put_u64(&b, 77);
  overruns_at(PR_FT_REPLY, pre, b.len);
  pr_put_str(&b, "n", 1);
  pr_put_u8(&b, 0);
  pr_put_u64(&b, 1);
  pr_put_u32(&b, 8);
  overruns_at(PR_FT_REPLY, pre, b.len);
  pr_put_u64(&b, 0);
  overruns_at(PR_FT_REPLY, pre, b.len);
  assert_int_equal(b.err, 0);
}

/* A u64 list whose count times 8 wraps to a small number, followed by a
 * valid rest of the payload: only a decoder that never multiplies the count
 * before bounding it refuses these. */
static void test_list_count_wraps(void **state) {
  (void)state;
  const uint64_t counts[] = {(uint64_t)1 << 61, ((uint64_t)1 << 61) + 1, UINT64_MAX / 8 + 2};
  for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
    uint8_t buf[128];
    pr_buf b;
    pr_buf_init(&b, buf, sizeof buf);
    pr_put_u32(&b, 1);         /* request_id */
    pr_put_u16(&b, 0);         /* status */
    pr_put_u64(&b, 1);         /* one room */
    pr_put_u64(&b, 5);         /* room_id */
    pr_put_str(&b, "r", 1);    /* name */
    pr_put_u8(&b, 0);          /* state */
    pr_put_u64(&b, 5);         /* host */
    pr_put_u32(&b, 8);         /* max_clients */
    pr_put_u64(&b, counts[i]); /* members count */
    /* what count * 8 (mod 2^64) would claim, then an empty metadata list */
    for (uint64_t k = 0; k < (uint64_t)(counts[i] * 8); k++)
      pr_put_u64(&b, 7);
    pr_put_u64(&b, 0);
    assert_int_equal(b.err, 0);
    assert_int_equal(pr_reply_decode(buf, b.len, &(pr_reply){0}), PR_E_PROTOCOL);
  }
  /* the same with an honest count decodes */
  uint8_t buf[128];
  pr_buf b;
  pr_buf_init(&b, buf, sizeof buf);
  pr_put_u32(&b, 1);
  pr_put_u16(&b, 0);
  pr_put_u64(&b, 1);
  pr_put_u64(&b, 5);
  pr_put_str(&b, "r", 1);
  pr_put_u8(&b, 0);
  pr_put_u64(&b, 5);
  pr_put_u32(&b, 8);
  pr_put_u64(&b, 1);
  pr_put_u64(&b, 7);
  pr_put_u64(&b, 0);
  pr_reply r;
  assert_int_equal(pr_reply_decode(buf, b.len, &r), 0);
  assert_int_equal(r.room_count, 1);
}

/* ---- field rules -------------------------------------------------------- */

static void test_utf8(void **state) {
  (void)state;
  static const char *const good[] = {
      "",
      "plain ascii",
      "\x7f",
      "\xc2\x80",
      "\xdf\xbf",
      "\xe0\xa0\x80",
      "\xed\x9f\xbf",
      "\xee\x80\x80",
      "\xef\xbf\xbf",
      "\xf0\x90\x80\x80",
      "\xf4\x8f\xbf\xbf",
      "Zoë ✓ 🎮",
  };
  static const char *const bad[] = {
      "\x80",             /* lone continuation */
      "\xbf",             /* lone continuation */
      "\xc0\x80",         /* overlong NUL */
      "\xc1\xbf",         /* overlong */
      "\xe0\x80\x80",     /* overlong 3-byte */
      "\xe0\x9f\xbf",     /* overlong 3-byte, top */
      "\xf0\x80\x80\x80", /* overlong 4-byte */
      "\xf0\x8f\xbf\xbf", /* overlong 4-byte, top */
      "\xed\xa0\x80",     /* U+D800 surrogate */
      "\xed\xbf\xbf",     /* U+DFFF surrogate */
      "\xf4\x90\x80\x80", /* U+110000 */
      "\xf5\x80\x80\x80", /* lead past F4 */
      "\xff",
      "\xfe",
      "\xc2",             /* truncated 2-byte */
      "\xe2\x82",         /* truncated 3-byte */
      "\xf0\x9f\x8e",     /* truncated 4-byte */
      "a\xc2",            /* truncated at the end */
      "\xc2\x41",         /* bad continuation */
      "\xe2\x28\xa1",     /* bad second byte */
      "\xe2\x82\x28",     /* bad third byte */
      "\xf0\x9f\x8e\x28", /* bad fourth byte */
  };
  for (size_t i = 0; i < ARRAY_LEN(good); i++)
    assert_int_equal(pr_utf8_valid((const uint8_t *)good[i], strlen(good[i])), 1);
  assert_int_equal(pr_utf8_valid((const uint8_t *)"a\0b", 3), 1); /* NUL is a valid char */
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    if (pr_utf8_valid((const uint8_t *)bad[i], strlen(bad[i])) != 0)
      fail_msg("bad UTF-8 #%zu accepted", i);
    /* and every str field that carries it is refused */
    uint8_t buf[64];
    size_t n = pr_enc_error(buf, sizeof buf, 1, bad[i]);
    assert_true(n > 0);
    assert_int_equal(pr_error_decode(buf + 8, n - 8, &(pr_error){0}), PR_E_PROTOCOL);
    pr_hello h = {.name = bs(bad[i])};
    n = pr_enc_hello(buf, sizeof buf, &h);
    assert_int_equal(pr_hello_decode(buf + 8, n - 8, &(pr_hello){0}), PR_E_PROTOCOL);
    h.name = bs("ok");
    h.has_token = 1;
    h.token = bs(bad[i]);
    n = pr_enc_hello(buf, sizeof buf, &h);
    assert_int_equal(pr_hello_decode(buf + 8, n - 8, &(pr_hello){0}), PR_E_PROTOCOL);
    pr_event e = sample_event(0);
    e.type_name = bs(bad[i]);
    n = pr_enc_event(buf, sizeof buf, &e);
    assert_int_equal(pr_event_decode(buf + 8, n - 8, &(pr_event){0}), PR_E_PROTOCOL);
    /* inside a metadata value */
    uint8_t meta[64];
    const char *kv[] = {"k", bad[i]};
    pr_room_create c = {.name = bs("r")};
    c.metadata.raw.ptr = meta;
    c.metadata.raw.len = make_kv(meta, sizeof meta, kv, 1);
    n = pr_enc_room_create(buf, sizeof buf, &c);
    assert_int_equal(pr_room_create_decode(buf + 8, n - 8, &(pr_room_create){0}), PR_E_PROTOCOL);
  }
  /* a sequence cut by the end of the field must not borrow the bytes after
   * it, even when they would complete it */
  static const uint8_t euro[] = {0xe2, 0x82, 0xac}, game[] = {0xf0, 0x9f, 0x8e, 0xae};
  assert_int_equal(pr_utf8_valid(euro, 3), 1);
  assert_int_equal(pr_utf8_valid(euro, 2), 0);
  assert_int_equal(pr_utf8_valid(euro, 1), 0);
  assert_int_equal(pr_utf8_valid(game, 4), 1);
  assert_int_equal(pr_utf8_valid(game, 3), 0);
  static const uint8_t create[] = {
      1,    0, 0, 0,             /* request_id */
      1,    0, 0, 0, 0, 0, 0, 0, /* name len 1 */
      0xc2,                      /* name: a lead byte alone */
      0x80, 0, 0, 0,             /* max_clients 128: 0x80 would complete it */
      0,    0, 0, 0, 0, 0, 0, 0, /* no metadata */
  };
  assert_int_equal(pr_room_create_decode(create, sizeof create, &(pr_room_create){0}),
                   PR_E_PROTOCOL);
  /* and from an exact-size heap copy, so a sanitizer build sees any overread */
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    size_t n = strlen(bad[i]);
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, bad[i], n);
    assert_int_equal(pr_utf8_valid(copy, n), 0);
    free(copy);
  }

  /* EVENT.payload is bytes, not str: anything goes */
  pr_event e = sample_event(0);
  e.payload = bs("\xff\xfe\xc0\x80");
  uint8_t buf[128];
  size_t n = pr_enc_event(buf, sizeof buf, &e);
  assert_int_equal(pr_event_decode(buf + 8, n - 8, &(pr_event){0}), 0);
}

static void test_field_limits(void **state) {
  (void)state;
  uint8_t buf[1024];
  char name[300];
  pr_event e = sample_event(0), d;

  memset(name, 'x', sizeof name);
  e.type_name.ptr = (const uint8_t *)name;
  const size_t tn_lens[] = {0, 1, 255, 256, 257, 299};
  for (size_t i = 0; i < ARRAY_LEN(tn_lens); i++) {
    e.type_name.len = tn_lens[i];
    size_t n = pr_enc_event(buf, sizeof buf, &e);
    int want = tn_lens[i] >= 1 && tn_lens[i] <= PR_MAX_TYPE_NAME_LEN ? 0 : PR_E_PROTOCOL;
    assert_int_equal(pr_event_decode(buf + 8, n - 8, &d), want);
  }

  pr_hello h;
  memset(&h, 0, sizeof h);
  h.name.ptr = (const uint8_t *)name;
  const size_t nm_lens[] = {0, 63, 64, 65, 299};
  for (size_t i = 0; i < ARRAY_LEN(nm_lens); i++) {
    h.name.len = nm_lens[i];
    size_t n = pr_enc_hello(buf, sizeof buf, &h);
    int want = nm_lens[i] <= PR_MAX_NAME_LEN ? 0 : PR_E_PROTOCOL;
    assert_int_equal(pr_hello_decode(buf + 8, n - 8, &(pr_hello){0}), want);
  }
  /* 64 bytes of multi-byte characters is still within the limit (bytes, not chars) */
  char accents[65] = "";
  for (int i = 0; i < 32; i++)
    strcat(accents, "\xc3\xa9"); /* U+00E9, 2 bytes each */
  h.name = bs(accents);
  assert_int_equal(h.name.len, 64);
  size_t n = pr_enc_hello(buf, sizeof buf, &h);
  assert_int_equal(pr_hello_decode(buf + 8, n - 8, &(pr_hello){0}), 0);

  /* scope: only 0, 1, 2 */
  e = sample_event(0);
  const uint32_t scopes[] = {3, 4, 0x100, 0x80000000u, UINT32_MAX};
  for (size_t i = 0; i < ARRAY_LEN(scopes); i++) {
    n = pr_enc_event(buf, sizeof buf, &e);
    buf[8 + 24] = (uint8_t)scopes[i]; /* scope sits after three u64 */
    buf[8 + 25] = (uint8_t)(scopes[i] >> 8);
    buf[8 + 26] = (uint8_t)(scopes[i] >> 16);
    buf[8 + 27] = (uint8_t)(scopes[i] >> 24);
    assert_int_equal(pr_event_decode(buf + 8, n - 8, &d), PR_E_PROTOCOL);
  }
  /* a target present with scope 0 is a trailing-bytes error, one missing with scope 2 a
   * short payload: flip the scope of each vector */
  uint8_t v[sizeof EV_TARGET];
  memcpy(v, EV_TARGET, sizeof v);
  v[8 + 24] = 0;
  assert_int_equal(pr_event_decode(v + 8, sizeof v - 8, &d), PR_E_PROTOCOL);
  memcpy(v, EV_BCAST, sizeof EV_BCAST);
  v[8 + 24] = 2;
  assert_int_equal(pr_event_decode(v + 8, sizeof EV_BCAST - 8, &d), PR_E_PROTOCOL);

  /* opt tags: only 0 and 1 */
  memset(&h, 0, sizeof h);
  h.name = bs("a");
  h.has_token = 1;
  h.token = bs("t");
  n = pr_enc_hello(buf, sizeof buf, &h);
  const uint8_t tags[] = {2, 3, 0x80, 0xff};
  for (size_t i = 0; i < ARRAY_LEN(tags); i++) {
    uint8_t t[128];
    memcpy(t, buf, n);
    t[8 + 8] = tags[i]; /* resume tag */
    assert_int_equal(pr_hello_decode(t + 8, n - 8, &(pr_hello){0}), PR_E_PROTOCOL);
    memcpy(t, buf, n);
    t[8 + 9] = tags[i]; /* token tag */
    assert_int_equal(pr_hello_decode(t + 8, n - 8, &(pr_hello){0}), PR_E_PROTOCOL);
  }
}

/* Decoders leave *out untouched on failure. */
static void test_no_output_on_failure(void **state) {
  (void)state;
  pr_event e;
  memset(&e, 0xab, sizeof e);
  pr_event saved = e;
  assert_int_equal(pr_event_decode(EV_BCAST + 8, sizeof EV_BCAST - 9, &e), PR_E_PROTOCOL);
  assert_memory_equal(&e, &saved, sizeof e);
  assert_int_equal(pr_event_decode(NULL, 0, &e), PR_E_PROTOCOL);
  assert_int_equal(pr_hello_decode(NULL, 0, &(pr_hello){0}), PR_E_PROTOCOL);
  assert_int_equal(pr_reply_decode(NULL, 0, &(pr_reply){0}), PR_E_PROTOCOL);
}

/* ---- headers and framing ------------------------------------------------ */

static void test_header(void **state) {
  (void)state;
  uint8_t h[PR_HDR_LEN];
  pr_hdr d;
  pr_hdr_encode(h, PR_FT_PRESENCE, 0x01020304);
  const uint8_t want[] = {0x49, 0x53, 0x01, 0x21, 0x04, 0x03, 0x02, 0x01};
  assert_memory_equal(h, want, 8);
  assert_int_equal(pr_hdr_decode(h, 8, UINT32_MAX, &d), 0);
  assert_int_equal(d.type, PR_FT_PRESENCE);
  assert_int_equal(d.len, 0x01020304);

  for (size_t n = 0; n < PR_HDR_LEN; n++)
    assert_int_equal(pr_hdr_decode(h, n, MAXF, &d), PR_E_PROTOCOL);

  pr_hdr_encode(h, PR_FT_EVENT, 10);
  h[0] = 'X';
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), PR_E_PROTOCOL);
  h[0] = 'I';
  h[1] = 's';
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), PR_E_PROTOCOL);
  h[1] = 'S';
  h[2] = 2;
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), PR_E_UNSUPPORTED_VERSION);
  h[2] = 0;
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), PR_E_UNSUPPORTED_VERSION);
  h[2] = 0xff;
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), PR_E_UNSUPPORTED_VERSION);
  /* bad magic wins over a bad version */
  h[0] = 0;
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), PR_E_PROTOCOL);

  pr_hdr_encode(h, PR_FT_EVENT, MAXF);
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), 0);
  pr_hdr_encode(h, PR_FT_EVENT, MAXF + 1);
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), PR_E_FRAME_TOO_LARGE);
  pr_hdr_encode(h, PR_FT_EVENT, UINT32_MAX);
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), PR_E_FRAME_TOO_LARGE);
  assert_int_equal(pr_hdr_decode(h, 8, UINT32_MAX, &d), 0);
  pr_hdr_encode(h, PR_FT_EVENT, 1201);
  assert_int_equal(pr_hdr_decode(h, 8, 1200, &d), PR_E_FRAME_TOO_LARGE);
  /* an unknown type is not the header's business */
  pr_hdr_encode(h, 0x7f, 0);
  assert_int_equal(pr_hdr_decode(h, 8, MAXF, &d), 0);
  assert_int_equal(d.type, 0x7f);
}

static void test_frame_next_partial(void **state) {
  (void)state;
  pr_hdr h;
  const uint8_t *p;
  size_t used = 99;
  /* every strict prefix of a valid frame asks for more */
  for (size_t n = 0; n < sizeof EV_BCAST; n++) {
    uint8_t tmp[sizeof EV_BCAST];
    memcpy(tmp, EV_BCAST, n);
    used = 99;
    assert_int_equal(pr_frame_next(tmp, n, MAXF, &h, &p, &used), 0);
    assert_int_equal(used, 0);
    assert_null(p);
    if (n >= PR_HDR_LEN)
      assert_int_equal(h.len, sizeof EV_BCAST - 8); /* header known early */
  }
  assert_int_equal(pr_frame_next(EV_BCAST, sizeof EV_BCAST, MAXF, &h, &p, &used), 0);
  assert_int_equal(used, sizeof EV_BCAST);
  assert_ptr_equal(p, EV_BCAST + 8);
  assert_int_equal(h.type, PR_FT_EVENT);

  /* a bad prefix is refused as soon as the offending byte arrives */
  assert_int_equal(pr_frame_next((const uint8_t *)"X", 1, MAXF, &h, &p, &used), PR_E_PROTOCOL);
  assert_int_equal(pr_frame_next((const uint8_t *)"Ix", 2, MAXF, &h, &p, &used), PR_E_PROTOCOL);
  assert_int_equal(pr_frame_next((const uint8_t *)"IS\x02", 3, MAXF, &h, &p, &used),
                   PR_E_UNSUPPORTED_VERSION);
  assert_int_equal(pr_frame_next((const uint8_t *)"GET / HTTP/1.1", 14, MAXF, &h, &p, &used),
                   PR_E_PROTOCOL);
  assert_int_equal(used, 0);

  /* an oversized length is refused from the header alone: nothing buffered */
  uint8_t big[PR_HDR_LEN];
  pr_hdr_encode(big, PR_FT_EVENT, MAXF + 1);
  assert_int_equal(pr_frame_next(big, sizeof big, MAXF, &h, &p, &used), PR_E_FRAME_TOO_LARGE);
  assert_int_equal(used, 0);

  /* an empty payload is a whole frame with the header alone */
  uint8_t empty[PR_HDR_LEN];
  pr_hdr_encode(empty, 0x7f, 0);
  assert_int_equal(pr_frame_next(empty, sizeof empty, MAXF, &h, &p, &used), 0);
  assert_int_equal(used, PR_HDR_LEN);
  assert_int_equal(h.type, 0x7f);
  assert_int_equal(h.len, 0);
}

/* A receiver: appends chunks to a buffer, splits off whole frames, and
 * records their types and payload lengths. */
typedef struct rx {
  uint8_t buf[1024];
  size_t len;
  uint8_t types[16];
  size_t plens[16];
  size_t frames;
  int err;
} rx;

static void rx_feed(rx *r, const uint8_t *p, size_t n) {
  assert_true(n <= sizeof r->buf - r->len);
  memcpy(r->buf + r->len, p, n);
  r->len += n;
  for (;;) {
    pr_hdr h;
    const uint8_t *pl;
    size_t used;
    int rv = pr_frame_next(r->buf, r->len, MAXF, &h, &pl, &used);
    if (rv != 0) {
      r->err = rv;
      return;
    }
    if (used == 0)
      return;
    assert_true(r->frames < 16);
    assert_int_equal(decode_any(h.type, pl, h.len), 0);
    r->types[r->frames] = h.type;
    r->plens[r->frames] = h.len;
    r->frames++;
    memmove(r->buf, r->buf + used, r->len - used);
    r->len -= used;
  }
}

static void test_frame_next_stream(void **state) {
  (void)state;
  uint8_t stream[512];
  size_t n = 0;
  memcpy(stream + n, HELLO_VEC, sizeof HELLO_VEC);
  n += sizeof HELLO_VEC;
  memcpy(stream + n, EV_BCAST, sizeof EV_BCAST);
  n += sizeof EV_BCAST;
  n += pr_enc_heartbeat(stream + n, sizeof stream - n, 1);
  memcpy(stream + n, EV_TARGET, sizeof EV_TARGET);
  n += sizeof EV_TARGET;
  const uint8_t want_types[] = {PR_FT_HELLO, PR_FT_EVENT, PR_FT_HEARTBEAT, PR_FT_EVENT};
  const size_t want_lens[] = {37, 63, 8, 71};

  /* two frames back to back: split one at a time */
  pr_hdr h;
  const uint8_t *p;
  size_t used;
  assert_int_equal(pr_frame_next(stream, n, MAXF, &h, &p, &used), 0);
  assert_int_equal(used, sizeof HELLO_VEC);
  assert_int_equal(h.type, PR_FT_HELLO);
  assert_int_equal(pr_frame_next(stream + used, n - used, MAXF, &h, &p, &used), 0);
  assert_int_equal(h.type, PR_FT_EVENT);
  assert_int_equal(used, sizeof EV_BCAST);

  /* the whole stream at once, then split in two at every byte */
  for (size_t cut = 0; cut <= n; cut++) {
    rx r;
    memset(&r, 0, sizeof r);
    rx_feed(&r, stream, cut);
    rx_feed(&r, stream + cut, n - cut);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.frames, 4);
    assert_int_equal(r.len, 0);
    for (size_t i = 0; i < 4; i++) {
      assert_int_equal(r.types[i], want_types[i]);
      assert_int_equal(r.plens[i], want_lens[i]);
    }
  }
  /* one byte at a time */
  rx r;
  memset(&r, 0, sizeof r);
  for (size_t i = 0; i < n; i++)
    rx_feed(&r, stream + i, 1);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.frames, 4);
  assert_int_equal(r.len, 0);
}

static void test_datagram(void **state) {
  (void)state;
  uint8_t d[256];
  const uint8_t *p = NULL;
  size_t pl = 0;
  assert_int_equal(pr_datagram_check(EV_TARGET, sizeof EV_TARGET, MAXF, &p, &pl), 0);
  assert_ptr_equal(p, EV_TARGET + 8);
  assert_int_equal(pl, sizeof EV_TARGET - 8);
  pr_event e;
  assert_int_equal(pr_event_decode(p, pl, &e), 0);
  assert_int_equal(e.target, 42);

  /* two EVENT frames */
  memcpy(d, EV_BCAST, sizeof EV_BCAST);
  memcpy(d + sizeof EV_BCAST, EV_BCAST, sizeof EV_BCAST);
  assert_int_equal(pr_datagram_check(d, 2 * sizeof EV_BCAST, MAXF, &p, &pl), PR_E_PROTOCOL);
  /* trailing bytes */
  memcpy(d, EV_BCAST, sizeof EV_BCAST);
  d[sizeof EV_BCAST] = 0;
  assert_int_equal(pr_datagram_check(d, sizeof EV_BCAST + 1, MAXF, &p, &pl), PR_E_PROTOCOL);
  /* short: the length says more than the datagram holds */
  assert_int_equal(pr_datagram_check(EV_BCAST, sizeof EV_BCAST - 1, MAXF, &p, &pl), PR_E_PROTOCOL);
  for (size_t n = 0; n < PR_HDR_LEN; n++)
    assert_int_equal(pr_datagram_check(EV_BCAST, n, MAXF, &p, &pl), PR_E_PROTOCOL);
  /* non-EVENT frames, known and unknown */
  size_t n = pr_enc_heartbeat(d, sizeof d, 5);
  assert_int_equal(pr_datagram_check(d, n, MAXF, &p, &pl), PR_E_PROTOCOL);
  memcpy(d, HELLO_VEC, sizeof HELLO_VEC);
  assert_int_equal(pr_datagram_check(d, sizeof HELLO_VEC, MAXF, &p, &pl), PR_E_PROTOCOL);
  memcpy(d, EV_BCAST, sizeof EV_BCAST);
  d[3] = 0x7f;
  assert_int_equal(pr_datagram_check(d, sizeof EV_BCAST, MAXF, &p, &pl), PR_E_PROTOCOL);
  /* header errors keep their codes */
  memcpy(d, EV_BCAST, sizeof EV_BCAST);
  d[2] = 2;
  assert_int_equal(pr_datagram_check(d, sizeof EV_BCAST, MAXF, &p, &pl), PR_E_UNSUPPORTED_VERSION);
  d[2] = 1;
  d[1] = 0;
  assert_int_equal(pr_datagram_check(d, sizeof EV_BCAST, MAXF, &p, &pl), PR_E_PROTOCOL);
  assert_int_equal(pr_datagram_check(EV_BCAST, sizeof EV_BCAST, 62, &p, &pl), PR_E_FRAME_TOO_LARGE);
  assert_int_equal(pr_datagram_check(EV_BCAST, sizeof EV_BCAST, 63, &p, &pl), 0);
}

/* ---- encoders: capacity, REPLY rollback, pr_buf ------------------------- */

static void test_encoder_capacity(void **state) {
  (void)state;
  static sample s[NFRAMES];
  size_t n = make_samples(s);
  uint8_t out[512];
  for (size_t i = 0; i < n; i++) {
    pr_event e;
    pr_hello h;
    pr_ack a;
    uint8_t type = s[i].buf[3];
    const uint8_t *p = s[i].buf + 8;
    size_t pl = s[i].len - 8;
    if (type != PR_FT_EVENT && type != PR_FT_HELLO && type != PR_FT_ACK)
      continue;
    assert_int_equal(type == PR_FT_EVENT   ? pr_event_decode(p, pl, &e)
                     : type == PR_FT_HELLO ? pr_hello_decode(p, pl, &h)
                                           : pr_ack_decode(p, pl, &a),
                     0);
    for (size_t cap = 0; cap <= s[i].len; cap++) {
      size_t got = type == PR_FT_EVENT   ? pr_enc_event(out, cap, &e)
                   : type == PR_FT_HELLO ? pr_enc_hello(out, cap, &h)
                                         : pr_enc_ack(out, cap, &a);
      assert_int_equal(got, cap == s[i].len ? s[i].len : 0);
    }
    assert_memory_equal(out, s[i].buf, s[i].len);
  }
  assert_int_equal(pr_enc_heartbeat(out, 15, 1), 0);
  assert_int_equal(pr_enc_heartbeat(out, 16, 1), 16);
  assert_int_equal(pr_enc_error(out, 17, 1, ""), 0);
  assert_int_equal(pr_enc_error(out, 18, 1, ""), 18);
  assert_int_equal(pr_enc_room_simple(out, 11, PR_FT_ROOM_LIST, 1), 0);
  assert_int_equal(pr_enc_presence(out, 32, &(pr_presence){0}), 0);
  assert_int_equal(pr_enc_room_join(out, 19, &(pr_room_join){0}), 0);
  assert_int_equal(pr_enc_room_create(out, 8 + 4 + 8 + 4 + 7, &(pr_room_create){0}), 0);
  assert_int_equal(pr_enc_room_create(out, 8 + 4 + 8 + 4 + 8, &(pr_room_create){0}), 32);
}

static void test_reply_rollback(void **state) {
  (void)state;
  uint8_t out[256];
  const uint64_t members[] = {1, 2};
  pr_buf b;
  pr_reply_state st;
  /* header 8 + request_id 4 + status 2 + count 8 = 22; a room named "a" with
   * 2 members and no metadata is 8+9+1+8+4+24+8 = 62 bytes. */
  pr_buf_init(&b, out, 22 + 62 + 61);
  pr_reply_begin(&b, &st, 1, 0);
  assert_int_equal(b.len, 22);
  assert_int_equal(
      pr_reply_add_room(&b, &st, 10, (const uint8_t *)"a", 1, 0, 1, 4, members, 2, NULL), 0);
  assert_int_equal(b.len, 84);
  /* the same room again needs 62 bytes, 61 are left */
  assert_int_equal(
      pr_reply_add_room(&b, &st, 11, (const uint8_t *)"a", 1, 0, 1, 4, members, 2, NULL), -1);
  assert_int_equal(b.len, 84);
  assert_int_equal(b.err, 0);
  assert_int_equal(st.count, 1);
  /* a huge name fails on its length alone */
  assert_int_equal(
      pr_reply_add_room(&b, &st, 12, (const uint8_t *)"x", SIZE_MAX, 0, 1, 4, NULL, 0, NULL), -1);
  assert_int_equal(b.len, 84);
  assert_int_equal(b.err, 0);
  /* a smaller room (one member) still fits: 54 bytes */
  assert_int_equal(
      pr_reply_add_room(&b, &st, 13, (const uint8_t *)"a", 1, 0, 1, 4, members, 1, NULL), 0);
  pr_reply_finish(&b, &st);
  assert_int_equal(b.err, 0);
  assert_int_equal(b.len, 22 + 62 + 54);

  pr_hdr h;
  const uint8_t *p;
  size_t used, off = 0;
  assert_int_equal(pr_frame_next(out, b.len, MAXF, &h, &p, &used), 0);
  assert_int_equal(used, b.len);
  pr_reply r;
  pr_room_info ri;
  assert_int_equal(pr_reply_decode(p, h.len, &r), 0);
  assert_int_equal(r.room_count, 2);
  assert_int_equal(pr_room_next(&r, &off, &ri), 1);
  assert_int_equal(ri.room_id, 10);
  assert_int_equal(pr_room_next(&r, &off, &ri), 1);
  assert_int_equal(ri.room_id, 13);
  assert_int_equal(ri.members.count, 1);
  assert_int_equal(pr_room_next(&r, &off, &ri), 0);

  /* when not even the empty REPLY fits, add_room fails and the error stays */
  pr_buf_init(&b, out, 21);
  pr_reply_begin(&b, &st, 1, 0);
  assert_int_equal(b.err, 1);
  assert_int_equal(pr_reply_add_room(&b, &st, 10, (const uint8_t *)"a", 1, 0, 1, 4, NULL, 0, NULL),
                   -1);
  assert_int_equal(b.err, 1);
  pr_reply_finish(&b, &st);
  assert_int_equal(b.err, 1);
}

static void test_buf(void **state) {
  (void)state;
  uint8_t out[16];
  pr_buf b;
  pr_buf_init(&b, out, 10);
  pr_put_u16(&b, 0x0201);
  pr_put_u32(&b, 0x06050403);
  pr_put_u8(&b, 7);
  assert_int_equal(b.len, 7);
  pr_put_u64(&b, 1); /* does not fit: dropped, error set */
  assert_int_equal(b.err, 1);
  assert_int_equal(b.len, 7);
  pr_put_u8(&b, 8); /* would fit, but the error is sticky */
  assert_int_equal(b.len, 7);
  const uint8_t want[] = {1, 2, 3, 4, 5, 6, 7};
  assert_memory_equal(out, want, 7);

  pr_buf_init(&b, out, sizeof out);
  size_t f = pr_frame_begin(&b, 0x42);
  pr_put_u32(&b, 0xaabbccdd);
  pr_frame_end(&b, f);
  assert_int_equal(b.err, 0);
  const uint8_t fr[] = {0x49, 0x53, 0x01, 0x42, 0x04, 0, 0, 0, 0xdd, 0xcc, 0xbb, 0xaa};
  assert_int_equal(b.len, sizeof fr);
  assert_memory_equal(out, fr, sizeof fr);

  uint8_t le[8];
  pr_le64(le, 0x0807060504030201ull);
  const uint8_t lw[] = {1, 2, 3, 4, 5, 6, 7, 8};
  assert_memory_equal(le, lw, 8);
  assert_int_equal(pr_rd64(le), 0x0807060504030201ull);
}

static void test_sender_overwrite(void **state) {
  (void)state;
  /* the relay stamps the sender in place and forwards the rest untouched */
  uint8_t f[sizeof EV_TARGET];
  memcpy(f, EV_TARGET, sizeof f);
  pr_le64(f + PR_EVENT_SENDER_OFF, 0xabcdef);
  pr_event e;
  assert_int_equal(pr_event_decode(f + 8, sizeof f - 8, &e), 0);
  assert_int_equal(e.sender, 0xabcdef);
  assert_int_equal(e.target, 42);
  assert_memory_equal(f + 16, EV_TARGET + 16, sizeof f - 16);
}

static void test_iterators_defensive(void **state) {
  (void)state;
  /* hand-built lists that claim more than they hold end the walk */
  uint8_t raw[32];
  pr_buf b;
  pr_buf_init(&b, raw, sizeof raw);
  pr_put_u64(&b, 3);
  pr_put_u64(&b, 5);
  pr_put_u32(&b, 6); /* half an item */
  pr_u64list ul = {3, {raw, b.len}};
  size_t off = 0;
  uint64_t v;
  assert_int_equal(pr_u64_next(&ul, &off, &v), 1);
  assert_int_equal(v, 5);
  assert_int_equal(pr_u64_next(&ul, &off, &v), 0);
  off = 1000;
  assert_int_equal(pr_u64_next(&ul, &off, &v), 0);

  pr_buf_init(&b, raw, sizeof raw);
  pr_put_u64(&b, 1);
  pr_put_u64(&b, 100); /* key length past the end */
  pr_kvlist kl = {1, {raw, b.len}};
  pr_bytes k, val;
  off = 0;
  assert_int_equal(pr_kv_next(&kl, &off, &k, &val), 0);
  pr_kvlist empty = {0, {NULL, 0}};
  off = 0;
  assert_int_equal(pr_kv_next(&empty, &off, &k, &val), 0);

  pr_reply r = {.room_count = 1, .rooms_raw = {raw, 20}};
  pr_room_info ri;
  off = 0;
  assert_int_equal(pr_room_next(&r, &off, &ri), 0);
}

/* ---- error codes -------------------------------------------------------- */

static void test_codes(void **state) {
  (void)state;
  static const struct {
    unsigned code;
    const char *name;
    int fatal;
  } table[] = {
      {0x00, "NO_ERROR", 0},
      {0x01, "PROTOCOL_ERROR", 1},
      {0x02, "FRAME_TOO_LARGE", 1},
      {0x03, "UNAUTHORIZED", 1},
      {0x04, "SERVER_FULL", 1},
      {0x05, "RATE_LIMITED", 0},
      {0x06, "TIMEOUT", 1},
      {0x07, "DUPLICATE_NODE", 1},
      {0x08, "SESSION_TAKEN_OVER", 1},
      {0x09, "SHUTTING_DOWN", 1},
      {0x0A, "UNSUPPORTED_VERSION", 1},
      {0x0B, "SLOW_CONSUMER", 1},
      {0x10, "ROOMS_DISABLED", 0},
      {0x11, "ROOM_NOT_FOUND", 0},
      {0x12, "ROOM_FULL", 0},
      {0x13, "ALREADY_IN_ROOM", 0},
      {0x14, "NOT_IN_ROOM", 0},
      {0x15, "NOT_HOST", 0},
      {0x16, "ROOM_NOT_WAITING", 0},
      {0x17, "TOO_MANY_ROOMS", 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(table); i++) {
    assert_string_equal(pr_code_name(table[i].code), table[i].name);
    assert_int_equal(pr_code_is_fatal(table[i].code), table[i].fatal);
  }
  const unsigned unknown[] = {0x0C, 0x0F, 0x18, 0x20, 0xFFFF, UINT32_MAX};
  for (size_t i = 0; i < ARRAY_LEN(unknown); i++) {
    assert_string_equal(pr_code_name(unknown[i]), "UNKNOWN");
    assert_int_equal(pr_code_is_fatal(unknown[i]), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bytes_event),
      cmocka_unit_test(test_bytes_hello),
      cmocka_unit_test(test_bytes_ack),
      cmocka_unit_test(test_bytes_reply),
      cmocka_unit_test(test_roundtrip_event),
      cmocka_unit_test(test_roundtrip_hello),
      cmocka_unit_test(test_roundtrip_ack),
      cmocka_unit_test(test_roundtrip_error_heartbeat),
      cmocka_unit_test(test_roundtrip_room_requests),
      cmocka_unit_test(test_roundtrip_presence),
      cmocka_unit_test(test_roundtrip_reply),
      cmocka_unit_test(test_truncation_and_trailing),
      cmocka_unit_test(test_overruns),
      cmocka_unit_test(test_list_count_wraps),
      cmocka_unit_test(test_utf8),
      cmocka_unit_test(test_field_limits),
      cmocka_unit_test(test_no_output_on_failure),
      cmocka_unit_test(test_header),
      cmocka_unit_test(test_frame_next_partial),
      cmocka_unit_test(test_frame_next_stream),
      cmocka_unit_test(test_datagram),
      cmocka_unit_test(test_encoder_capacity),
      cmocka_unit_test(test_reply_rollback),
      cmocka_unit_test(test_buf),
      cmocka_unit_test(test_sender_overwrite),
      cmocka_unit_test(test_iterators_defensive),
      cmocka_unit_test(test_codes),
  };
  return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
