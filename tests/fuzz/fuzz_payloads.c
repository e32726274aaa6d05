/*
 * libFuzzer target: the first byte picks a payload decoder (a frame type
 * byte picks its own decoder; any other value is mapped onto the list), the
 * rest is the payload.  Beyond the checks in fuzz_common.h, every payload
 * that decodes and has an encoder must re-encode to exactly the same bytes:
 * EVENT, HELLO, ACK, HEARTBEAT, PRESENCE, ROOM_JOIN, ROOM_CREATE, the three
 * request-id-only room requests, and REPLY (rebuilt room by room with
 * pr_reply_add_room from what the iterators return).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

static const uint8_t types[] = {
    PR_FT_EVENT,     PR_FT_HEARTBEAT,   PR_FT_ACK,       PR_FT_HELLO,
    PR_FT_ERROR,     PR_FT_ROOM_CREATE, PR_FT_ROOM_JOIN, PR_FT_ROOM_LEAVE,
    PR_FT_ROOM_LIST, PR_FT_ROOM_START,  PR_FT_REPLY,     PR_FT_PRESENCE,
};
#define NTYPES (sizeof types / sizeof types[0])

static uint8_t pick_type(uint8_t b) {
  for (size_t i = 0; i < NTYPES; i++)
    if (types[i] == b)
      return b;
  return types[b % NTYPES];
}

/* The frame an encoder produced must be `type` with exactly p[0..n). */
static void same_frame(const uint8_t *f, size_t flen, uint8_t type, const uint8_t *p, size_t n) {
  pr_hdr h;
  FUZZ_CHECK(flen == PR_HDR_LEN + n);
  FUZZ_CHECK(pr_hdr_decode(f, flen, UINT32_MAX, &h) == 0);
  FUZZ_CHECK(h.type == type && h.len == n);
  FUZZ_CHECK(n == 0 || memcmp(f + PR_HDR_LEN, p, n) == 0);
}

static size_t rebuild_reply(uint8_t *out, size_t cap, const uint8_t *p, size_t n) {
  pr_reply r;
  FUZZ_CHECK(pr_reply_decode(p, n, &r) == 0);
  pr_buf b;
  pr_reply_state st;
  pr_buf_init(&b, out, cap);
  pr_reply_begin(&b, &st, r.request_id, r.status);
  size_t off = 0;
  pr_room_info ri;
  while (pr_room_next(&r, &off, &ri)) {
    uint64_t *m = malloc(ri.members.count ? (size_t)ri.members.count * 8 : 1);
    if (m == NULL)
      abort();
    size_t moff = 0, k = 0;
    while (pr_u64_next(&ri.members, &moff, &m[k]))
      k++;
    FUZZ_CHECK(k == ri.members.count);
    int rv = pr_reply_add_room(&b, &st, ri.room_id, ri.name.ptr, ri.name.len, ri.state, ri.host,
                               ri.max_clients, m, k, &ri.metadata.raw);
    free(m);
    FUZZ_CHECK(rv == 0); /* cap is exactly the original size, so every room fits */
  }
  pr_reply_finish(&b, &st);
  FUZZ_CHECK(b.err == 0);
  return b.len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t type = pick_type(data[0]);
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  if (fz_decode_walk(type, p, n) != 0)
    return 0;

  /* exactly the frame size: an encoder that writes more would fail here */
  size_t cap = PR_HDR_LEN + n;
  uint8_t *out = malloc(cap);
  if (out == NULL)
    return 0;
  size_t flen = 0;
  int roundtrip = 1;
  switch (type) {
  case PR_FT_EVENT: {
    pr_event e;
    FUZZ_CHECK(pr_event_decode(p, n, &e) == 0);
    flen = pr_enc_event(out, cap, &e);
    break;
  }
  case PR_FT_HELLO: {
    pr_hello h;
    FUZZ_CHECK(pr_hello_decode(p, n, &h) == 0);
    flen = pr_enc_hello(out, cap, &h);
    break;
  }
  case PR_FT_ACK: {
    pr_ack a;
    FUZZ_CHECK(pr_ack_decode(p, n, &a) == 0);
    flen = pr_enc_ack(out, cap, &a);
    break;
  }
  case PR_FT_HEARTBEAT: {
    pr_heartbeat h;
    FUZZ_CHECK(pr_heartbeat_decode(p, n, &h) == 0);
    flen = pr_enc_heartbeat(out, cap, h.time_ms);
    break;
  }
  case PR_FT_PRESENCE: {
    pr_presence pp;
    FUZZ_CHECK(pr_presence_decode(p, n, &pp) == 0);
    flen = pr_enc_presence(out, cap, &pp);
    break;
  }
  case PR_FT_ROOM_JOIN: {
    pr_room_join j;
    FUZZ_CHECK(pr_room_join_decode(p, n, &j) == 0);
    flen = pr_enc_room_join(out, cap, &j);
    break;
  }
  case PR_FT_ROOM_CREATE: {
    pr_room_create c;
    FUZZ_CHECK(pr_room_create_decode(p, n, &c) == 0);
    flen = pr_enc_room_create(out, cap, &c);
    break;
  }
  case PR_FT_ROOM_LEAVE:
  case PR_FT_ROOM_LIST:
  case PR_FT_ROOM_START: {
    pr_room_simple s;
    FUZZ_CHECK(pr_room_simple_decode(p, n, &s) == 0);
    flen = pr_enc_room_simple(out, cap, type, s.request_id);
    break;
  }
  case PR_FT_REPLY:
    flen = rebuild_reply(out, cap, p, n);
    break;
  default:
    roundtrip = 0; /* ERROR's encoder takes a C string: a message with NUL cannot round-trip */
    break;
  }
  if (roundtrip)
    same_frame(out, flen, type, p, n);
  free(out);
  return 0;
}
