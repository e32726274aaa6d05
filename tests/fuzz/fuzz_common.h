/*
 * Shared by the libFuzzer targets: decode a payload with the decoder for its
 * frame type, check what every successful decode promises (views inside the
 * input, UTF-8, field limits) and walk every list iterator to its end.
 */
#ifndef ISSUN_FUZZ_COMMON_H
#define ISSUN_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto/proto.h"

/* An invariant the codec broke: abort so libFuzzer records the input. */
#define FUZZ_CHECK(c)                                                                              \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);                  \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* A borrowed view must lie inside the decoded input. */
static inline int fz_inside(pr_bytes b, const uint8_t *p, size_t n) {
  if (b.len == 0)
    return 1;
  return b.ptr >= p && b.len <= n && (size_t)(b.ptr - p) <= n - b.len;
}

static inline void fz_str(pr_bytes b, const uint8_t *p, size_t n) {
  FUZZ_CHECK(fz_inside(b, p, n));
  FUZZ_CHECK(pr_utf8_valid(b.ptr, b.len));
}

static inline void fz_walk_kv(const pr_kvlist *l, const uint8_t *p, size_t n) {
  FUZZ_CHECK(fz_inside(l->raw, p, n) && l->raw.len >= 8);
  FUZZ_CHECK(pr_rd64(l->raw.ptr) == l->count);
  size_t off = 0;
  uint64_t seen = 0;
  pr_bytes k, v;
  while (pr_kv_next(l, &off, &k, &v)) {
    fz_str(k, l->raw.ptr, l->raw.len);
    fz_str(v, l->raw.ptr, l->raw.len);
    seen++;
  }
  FUZZ_CHECK(seen == l->count);
  FUZZ_CHECK(off == (l->count ? l->raw.len : 0));
}

static inline void fz_walk_u64(const pr_u64list *l, const uint8_t *p, size_t n) {
  FUZZ_CHECK(fz_inside(l->raw, p, n) && l->raw.len == 8 + 8 * l->count);
  size_t off = 0;
  uint64_t seen = 0, v;
  while (pr_u64_next(l, &off, &v))
    seen++;
  FUZZ_CHECK(seen == l->count);
}

static inline void fz_walk_reply(const pr_reply *r, const uint8_t *p, size_t n) {
  FUZZ_CHECK(fz_inside(r->rooms_raw, p, n));
  size_t off = 0;
  uint64_t seen = 0;
  pr_room_info ri;
  while (pr_room_next(r, &off, &ri)) {
    fz_str(ri.name, p, n);
    fz_walk_u64(&ri.members, p, n);
    fz_walk_kv(&ri.metadata, p, n);
    seen++;
  }
  FUZZ_CHECK(seen == r->room_count);
  FUZZ_CHECK(off == r->rooms_raw.len);
}

/* Decodes p[0..n) as a payload of `type`, checks and walks the result.
 * Returns the decoder's result, or -1 for a type without a decoder. */
static inline int fz_decode_walk(uint8_t type, const uint8_t *p, size_t n) {
  int rv;
  switch (type) {
  case PR_FT_EVENT: {
    pr_event e;
    if ((rv = pr_event_decode(p, n, &e)) != 0)
      break;
    FUZZ_CHECK(e.scope <= PR_SCOPE_TARGETED);
    FUZZ_CHECK(e.scope == PR_SCOPE_TARGETED || e.target == 0);
    FUZZ_CHECK(e.type_name.len >= 1 && e.type_name.len <= PR_MAX_TYPE_NAME_LEN);
    fz_str(e.type_name, p, n);
    FUZZ_CHECK(fz_inside(e.payload, p, n));
    FUZZ_CHECK(e.payload.len == 0 || e.payload.ptr + e.payload.len == p + n); /* last field */
    break;
  }
  case PR_FT_HELLO: {
    pr_hello h;
    if ((rv = pr_hello_decode(p, n, &h)) != 0)
      break;
    FUZZ_CHECK(h.has_resume == 0 || h.has_resume == 1);
    FUZZ_CHECK(h.has_token == 0 || h.has_token == 1);
    if (h.has_token)
      fz_str(h.token, p, n);
    FUZZ_CHECK(h.name.len <= PR_MAX_NAME_LEN);
    fz_str(h.name, p, n);
    break;
  }
  case PR_FT_ACK: {
    pr_ack a;
    rv = pr_ack_decode(p, n, &a);
    FUZZ_CHECK(rv != 0 || n == 44);
    break;
  }
  case PR_FT_HEARTBEAT: {
    pr_heartbeat h;
    rv = pr_heartbeat_decode(p, n, &h);
    FUZZ_CHECK(rv != 0 || n == 8);
    break;
  }
  case PR_FT_ERROR: {
    pr_error e;
    if ((rv = pr_error_decode(p, n, &e)) != 0)
      break;
    fz_str(e.message, p, n);
    break;
  }
  case PR_FT_ROOM_CREATE: {
    pr_room_create c;
    if ((rv = pr_room_create_decode(p, n, &c)) != 0)
      break;
    fz_str(c.name, p, n);
    fz_walk_kv(&c.metadata, p, n);
    break;
  }
  case PR_FT_ROOM_JOIN: {
    pr_room_join j;
    rv = pr_room_join_decode(p, n, &j);
    FUZZ_CHECK(rv != 0 || n == 12);
    break;
  }
  case PR_FT_ROOM_LEAVE:
  case PR_FT_ROOM_LIST:
  case PR_FT_ROOM_START: {
    pr_room_simple s;
    rv = pr_room_simple_decode(p, n, &s);
    FUZZ_CHECK(rv != 0 || n == 4);
    break;
  }
  case PR_FT_REPLY: {
    pr_reply r;
    if ((rv = pr_reply_decode(p, n, &r)) != 0)
      break;
    fz_walk_reply(&r, p, n);
    break;
  }
  case PR_FT_PRESENCE: {
    pr_presence pp;
    rv = pr_presence_decode(p, n, &pp);
    FUZZ_CHECK(rv != 0 || n == 25);
    break;
  }
  default:
    return -1;
  }
  FUZZ_CHECK(rv == 0 || rv == PR_E_PROTOCOL); /* payload decoders know one error */
  return rv;
}

#endif
