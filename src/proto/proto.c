/*
 * issun/1 wire codec (see proto.h and protocol.md).
 *
 * Decoding goes through a cursor (`rd`) whose every read is checked against
 * what is left of the input.  Lengths read from the wire are u64 and are
 * only ever compared with the remaining byte count (`len > left`), never
 * added to an offset first, so no length can wrap size_t arithmetic.
 *
 * Encoding goes through pr_buf, whose error flag is sticky: once a put does
 * not fit, every later put is dropped, and one check at the end suffices.
 */
#include "proto/proto.h"

#include <string.h>

/* ---- error codes ------------------------------------------------------ */

/* Indexed by code; NULL marks the unassigned values between the ranges. */
static const char *const code_names[] = {
    [PR_E_NO_ERROR] = "NO_ERROR",
    [PR_E_PROTOCOL] = "PROTOCOL_ERROR",
    [PR_E_FRAME_TOO_LARGE] = "FRAME_TOO_LARGE",
    [PR_E_UNAUTHORIZED] = "UNAUTHORIZED",
    [PR_E_SERVER_FULL] = "SERVER_FULL",
    [PR_E_RATE_LIMITED] = "RATE_LIMITED",
    [PR_E_TIMEOUT] = "TIMEOUT",
    [PR_E_DUPLICATE_NODE] = "DUPLICATE_NODE",
    [PR_E_SESSION_TAKEN_OVER] = "SESSION_TAKEN_OVER",
    [PR_E_SHUTTING_DOWN] = "SHUTTING_DOWN",
    [PR_E_UNSUPPORTED_VERSION] = "UNSUPPORTED_VERSION",
    [PR_E_SLOW_CONSUMER] = "SLOW_CONSUMER",
    [PR_E_ROOMS_DISABLED] = "ROOMS_DISABLED",
    [PR_E_ROOM_NOT_FOUND] = "ROOM_NOT_FOUND",
    [PR_E_ROOM_FULL] = "ROOM_FULL",
    [PR_E_ALREADY_IN_ROOM] = "ALREADY_IN_ROOM",
    [PR_E_NOT_IN_ROOM] = "NOT_IN_ROOM",
    [PR_E_NOT_HOST] = "NOT_HOST",
    [PR_E_ROOM_NOT_WAITING] = "ROOM_NOT_WAITING",
    [PR_E_TOO_MANY_ROOMS] = "TOO_MANY_ROOMS",
};

const char *pr_code_name(unsigned code) {
  if (code >= sizeof code_names / sizeof code_names[0] || code_names[code] == NULL)
    return "UNKNOWN";
  return code_names[code];
}

int pr_code_is_fatal(unsigned code) {
  switch (code) {
  case PR_E_PROTOCOL:
  case PR_E_FRAME_TOO_LARGE:
  case PR_E_UNAUTHORIZED:
  case PR_E_SERVER_FULL:
  case PR_E_TIMEOUT:
  case PR_E_DUPLICATE_NODE:
  case PR_E_SESSION_TAKEN_OVER:
  case PR_E_SHUTTING_DOWN:
  case PR_E_UNSUPPORTED_VERSION:
  case PR_E_SLOW_CONSUMER:
    return 1;
  default:
    return 0; /* NO_ERROR, RATE_LIMITED, room codes, unknown codes */
  }
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Well-formed sequences per Unicode table 3-7: the first byte fixes the
 * sequence length and the allowed range of the second byte, which is how
 * overlongs (E0 80.., F0 80..), surrogates (ED A0..) and code points above
 * U+10FFFF (F4 90.., F5..FF) are excluded. */
int pr_utf8_valid(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* range for the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0)
        lo = 0xA0;
      if (c == 0xED)
        hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0)
        lo = 0x90;
      if (c == 0xF4)
        hi = 0x8F;
    } else {
      return 0; /* 80..C1 (continuation or overlong lead), F5..FF */
    }
    if (need > n - i - 1)
      return 0; /* truncated */
    if (p[i + 1] < lo || p[i + 1] > hi)
      return 0;
    for (size_t k = 2; k <= need; k++)
      if ((p[i + k] & 0xC0) != 0x80)
        return 0;
    i += need + 1;
  }
  return 1;
}

/* ---- frame header ------------------------------------------------------- */

static uint32_t rd32le(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int pr_hdr_decode(const uint8_t *buf, size_t len, uint32_t max_payload, pr_hdr *out) {
  if (len < PR_HDR_LEN)
    return PR_E_PROTOCOL;
  if (buf[0] != PR_MAGIC0 || buf[1] != PR_MAGIC1)
    return PR_E_PROTOCOL;
  if (buf[2] != PR_VERSION)
    return PR_E_UNSUPPORTED_VERSION;
  uint32_t n = rd32le(buf + 4);
  if (n > max_payload)
    return PR_E_FRAME_TOO_LARGE;
  out->type = buf[3];
  out->len = n;
  return 0;
}

void pr_hdr_encode(uint8_t *buf, uint8_t type, uint32_t payload_len) {
  buf[0] = PR_MAGIC0;
  buf[1] = PR_MAGIC1;
  buf[2] = PR_VERSION;
  buf[3] = type;
  for (int i = 0; i < 4; i++)
    buf[4 + i] = (uint8_t)(payload_len >> (8 * i));
}

int pr_frame_next(const uint8_t *buf, size_t len, uint32_t max_payload, pr_hdr *hdr,
                  const uint8_t **payload, size_t *consumed) {
  *consumed = 0;
  *payload = NULL;
  if (len < PR_HDR_LEN) {
    /* Reject a bad prefix as soon as its bytes are in, so a peer speaking
     * something else is cut off without waiting for 8 bytes. */
    if (len >= 1 && buf[0] != PR_MAGIC0)
      return PR_E_PROTOCOL;
    if (len >= 2 && buf[1] != PR_MAGIC1)
      return PR_E_PROTOCOL;
    if (len >= 3 && buf[2] != PR_VERSION)
      return PR_E_UNSUPPORTED_VERSION;
    return 0;
  }
  pr_hdr h;
  int rv = pr_hdr_decode(buf, len, max_payload, &h);
  if (rv != 0)
    return rv;
  *hdr = h; /* known as soon as the header is in, even if the payload is not */
  if (h.len > len - PR_HDR_LEN)
    return 0;
  *payload = buf + PR_HDR_LEN;
  *consumed = PR_HDR_LEN + (size_t)h.len;
  return 0;
}

int pr_datagram_check(const uint8_t *buf, size_t len, uint32_t max_payload, const uint8_t **payload,
                      size_t *plen) {
  pr_hdr h;
  int rv = pr_hdr_decode(buf, len, max_payload, &h);
  if (rv != 0)
    return rv;
  if (h.type != PR_FT_EVENT)
    return PR_E_PROTOCOL;
  if ((size_t)h.len != len - PR_HDR_LEN)
    return PR_E_PROTOCOL; /* short, or trailing bytes */
  *payload = buf + PR_HDR_LEN;
  *plen = h.len;
  return 0;
}

/* ---- decoding cursor ---------------------------------------------------- */

typedef struct rd {
  const uint8_t *p;
  size_t n;
  size_t off; /* invariant: off <= n */
} rd;

static void rd_init(rd *r, const uint8_t *p, size_t n) {
  r->p = p;
  r->n = n;
  r->off = 0;
}

static size_t rd_left(const rd *r) {
  return r->n - r->off;
}

static int rd_fixed(rd *r, size_t k, const uint8_t **out) {
  if (k > rd_left(r))
    return -1;
  *out = r->p + r->off;
  r->off += k;
  return 0;
}

static int rd_u8(rd *r, uint8_t *v) {
  const uint8_t *q;
  if (rd_fixed(r, 1, &q))
    return -1;
  *v = q[0];
  return 0;
}

static int rd_u16(rd *r, uint16_t *v) {
  const uint8_t *q;
  if (rd_fixed(r, 2, &q))
    return -1;
  *v = (uint16_t)(q[0] | q[1] << 8);
  return 0;
}

static int rd_u32(rd *r, uint32_t *v) {
  const uint8_t *q;
  if (rd_fixed(r, 4, &q))
    return -1;
  *v = rd32le(q);
  return 0;
}

static int rd_u64(rd *r, uint64_t *v) {
  const uint8_t *q;
  if (rd_fixed(r, 8, &q))
    return -1;
  *v = pr_rd64(q);
  return 0;
}

/* bytes: u64 length, then that many bytes.  The length is compared with
 * what is left before any arithmetic, so lengths near UINT64_MAX are safe. */
static int rd_bytes(rd *r, pr_bytes *out) {
  uint64_t len;
  if (rd_u64(r, &len))
    return -1;
  if (len > (uint64_t)rd_left(r))
    return -1;
  out->ptr = r->p + r->off;
  out->len = (size_t)len;
  r->off += (size_t)len;
  return 0;
}

static int rd_str(rd *r, pr_bytes *out) {
  if (rd_bytes(r, out))
    return -1;
  return pr_utf8_valid(out->ptr, out->len) ? 0 : -1;
}

/* opt<T> tag: 0 or 1, anything else is malformed. */
static int rd_opt(rd *r, int *present) {
  uint8_t tag;
  if (rd_u8(r, &tag) || tag > 1)
    return -1;
  *present = tag;
  return 0;
}

/* Smallest encodings of list items, used to refuse an impossible count
 * before walking it (keeps a huge count on a short payload cheap). */
#define KV_MIN 16u   /* two empty str */
#define ROOM_MIN 45u /* u64 + str + u8 + u64 + u32 + list + list, all empty */

static int rd_kvlist(rd *r, pr_kvlist *out) {
  size_t start = r->off;
  uint64_t count;
  if (rd_u64(r, &count))
    return -1;
  if (count > rd_left(r) / KV_MIN)
    return -1;
  for (uint64_t i = 0; i < count; i++) {
    pr_bytes k, v;
    if (rd_str(r, &k) || rd_str(r, &v))
      return -1;
  }
  out->count = count;
  out->raw.ptr = r->p + start;
  out->raw.len = r->off - start;
  return 0;
}

static int rd_u64list(rd *r, pr_u64list *out) {
  size_t start = r->off;
  uint64_t count;
  if (rd_u64(r, &count))
    return -1;
  if (count > rd_left(r) / 8)
    return -1;
  r->off += (size_t)count * 8; /* cannot overflow: count * 8 <= left */
  out->count = count;
  out->raw.ptr = r->p + start;
  out->raw.len = r->off - start;
  return 0;
}

static int rd_room(rd *r, pr_room_info *out) {
  pr_room_info ri;
  if (rd_u64(r, &ri.room_id) || rd_str(r, &ri.name) || rd_u8(r, &ri.state) || rd_u64(r, &ri.host) ||
      rd_u32(r, &ri.max_clients) || rd_u64list(r, &ri.members) || rd_kvlist(r, &ri.metadata))
    return -1;
  *out = ri;
  return 0;
}

/* Every decoder ends with this: the payload must be consumed exactly. */
static int rd_done(const rd *r) {
  return r->off == r->n ? 0 : -1;
}

/* ---- payload decoders --------------------------------------------------- */

int pr_hello_decode(const uint8_t *p, size_t n, pr_hello *out) {
  rd r;
  pr_hello h;
  const uint8_t *q;
  rd_init(&r, p, n);
  memset(&h, 0, sizeof h);
  if (rd_u64(&r, &h.node_id) || rd_opt(&r, &h.has_resume))
    return PR_E_PROTOCOL;
  if (h.has_resume) {
    if (rd_fixed(&r, PR_RESUME_LEN, &q))
      return PR_E_PROTOCOL;
    memcpy(h.resume, q, PR_RESUME_LEN);
  }
  if (rd_opt(&r, &h.has_token))
    return PR_E_PROTOCOL;
  if (h.has_token && rd_str(&r, &h.token))
    return PR_E_PROTOCOL;
  if (rd_str(&r, &h.name) || h.name.len > PR_MAX_NAME_LEN)
    return PR_E_PROTOCOL;
  if (rd_done(&r))
    return PR_E_PROTOCOL;
  *out = h;
  return 0;
}

int pr_ack_decode(const uint8_t *p, size_t n, pr_ack *out) {
  rd r;
  pr_ack a;
  const uint8_t *q;
  rd_init(&r, p, n);
  if (rd_u64(&r, &a.node_id) || rd_fixed(&r, PR_RESUME_LEN, &q))
    return PR_E_PROTOCOL;
  memcpy(a.resume, q, PR_RESUME_LEN);
  if (rd_u32(&r, &a.heartbeat_ms) || rd_u32(&r, &a.max_frame_payload) ||
      rd_u32(&r, &a.max_events_per_sec) || rd_u64(&r, &a.server_time_ms) || rd_done(&r))
    return PR_E_PROTOCOL;
  *out = a;
  return 0;
}

int pr_event_decode(const uint8_t *p, size_t n, pr_event *out) {
  rd r;
  pr_event e;
  rd_init(&r, p, n);
  if (rd_u64(&r, &e.sender) || rd_u64(&r, &e.timestamp) || rd_u64(&r, &e.sequence) ||
      rd_u32(&r, &e.scope))
    return PR_E_PROTOCOL;
  if (e.scope > PR_SCOPE_TARGETED)
    return PR_E_PROTOCOL;
  e.target = 0;
  /* bincode writes Targeted's u64 only for that variant */
  if (e.scope == PR_SCOPE_TARGETED && rd_u64(&r, &e.target))
    return PR_E_PROTOCOL;
  if (rd_str(&r, &e.type_name) || e.type_name.len == 0 || e.type_name.len > PR_MAX_TYPE_NAME_LEN)
    return PR_E_PROTOCOL;
  if (rd_bytes(&r, &e.payload) || rd_done(&r))
    return PR_E_PROTOCOL;
  *out = e;
  return 0;
}

int pr_error_decode(const uint8_t *p, size_t n, pr_error *out) {
  rd r;
  pr_error e;
  rd_init(&r, p, n);
  if (rd_u16(&r, &e.code) || rd_str(&r, &e.message) || rd_done(&r))
    return PR_E_PROTOCOL;
  *out = e;
  return 0;
}

int pr_heartbeat_decode(const uint8_t *p, size_t n, pr_heartbeat *out) {
  rd r;
  pr_heartbeat h;
  rd_init(&r, p, n);
  if (rd_u64(&r, &h.time_ms) || rd_done(&r))
    return PR_E_PROTOCOL;
  *out = h;
  return 0;
}

int pr_room_create_decode(const uint8_t *p, size_t n, pr_room_create *out) {
  rd r;
  pr_room_create c;
  rd_init(&r, p, n);
  if (rd_u32(&r, &c.request_id) || rd_str(&r, &c.name) || rd_u32(&r, &c.max_clients) ||
      rd_kvlist(&r, &c.metadata) || rd_done(&r))
    return PR_E_PROTOCOL;
  *out = c;
  return 0;
}

int pr_room_join_decode(const uint8_t *p, size_t n, pr_room_join *out) {
  rd r;
  pr_room_join j;
  rd_init(&r, p, n);
  if (rd_u32(&r, &j.request_id) || rd_u64(&r, &j.room_id) || rd_done(&r))
    return PR_E_PROTOCOL;
  *out = j;
  return 0;
}

int pr_room_simple_decode(const uint8_t *p, size_t n, pr_room_simple *out) {
  rd r;
  pr_room_simple s;
  rd_init(&r, p, n);
  if (rd_u32(&r, &s.request_id) || rd_done(&r))
    return PR_E_PROTOCOL;
  *out = s;
  return 0;
}

int pr_reply_decode(const uint8_t *p, size_t n, pr_reply *out) {
  rd r;
  pr_reply rp;
  rd_init(&r, p, n);
  if (rd_u32(&r, &rp.request_id) || rd_u16(&r, &rp.status) || rd_u64(&r, &rp.room_count))
    return PR_E_PROTOCOL;
  if (rp.room_count > rd_left(&r) / ROOM_MIN)
    return PR_E_PROTOCOL;
  size_t start = r.off;
  for (uint64_t i = 0; i < rp.room_count; i++) {
    pr_room_info ri;
    if (rd_room(&r, &ri))
      return PR_E_PROTOCOL;
  }
  if (rd_done(&r))
    return PR_E_PROTOCOL;
  rp.rooms_raw.ptr = p + start;
  rp.rooms_raw.len = r.off - start;
  *out = rp;
  return 0;
}

int pr_presence_decode(const uint8_t *p, size_t n, pr_presence *out) {
  rd r;
  pr_presence pp;
  rd_init(&r, p, n);
  if (rd_u64(&r, &pp.room_id) || rd_u64(&r, &pp.node_id) || rd_u8(&r, &pp.change) ||
      rd_u64(&r, &pp.host) || rd_done(&r))
    return PR_E_PROTOCOL;
  *out = pp;
  return 0;
}

/* ---- iterators ---------------------------------------------------------- */

/* The iterators re-check every read, so a hand-built (unvalidated) list
 * ends the walk instead of reading out of bounds.  For kv and u64 lists
 * *off counts from the start of `raw`, i.e. the count field is skipped on
 * the first call. */

int pr_kv_next(const pr_kvlist *l, size_t *off, pr_bytes *key, pr_bytes *val) {
  rd r;
  pr_bytes k, v;
  if (l->raw.len < 8 || *off > l->raw.len)
    return 0;
  rd_init(&r, l->raw.ptr, l->raw.len);
  r.off = *off < 8 ? 8 : *off;
  if (rd_left(&r) == 0)
    return 0;
  if (rd_str(&r, &k) || rd_str(&r, &v))
    return 0;
  *key = k;
  *val = v;
  *off = r.off;
  return 1;
}

int pr_u64_next(const pr_u64list *l, size_t *off, uint64_t *v) {
  rd r;
  if (l->raw.len < 8 || *off > l->raw.len)
    return 0;
  rd_init(&r, l->raw.ptr, l->raw.len);
  r.off = *off < 8 ? 8 : *off;
  if (rd_u64(&r, v))
    return 0;
  *off = r.off;
  return 1;
}

/* Here *off counts from the start of rooms_raw (which has no count). */
int pr_room_next(const pr_reply *rp, size_t *off, pr_room_info *out) {
  rd r;
  if (*off >= rp->rooms_raw.len)
    return 0;
  rd_init(&r, rp->rooms_raw.ptr, rp->rooms_raw.len);
  r.off = *off;
  if (rd_room(&r, out))
    return 0;
  *off = r.off;
  return 1;
}

/* ---- encoding ----------------------------------------------------------- */

void pr_buf_init(pr_buf *b, uint8_t *mem, size_t cap) {
  b->p = mem;
  b->len = 0;
  b->cap = cap;
  b->err = 0;
}

void pr_put_raw(pr_buf *b, const void *p, size_t n) {
  if (b->err || n > b->cap - b->len) {
    b->err = 1;
    return;
  }
  if (n > 0)
    memcpy(b->p + b->len, p, n);
  b->len += n;
}

void pr_put_u8(pr_buf *b, uint8_t v) {
  pr_put_raw(b, &v, 1);
}

void pr_put_u16(pr_buf *b, uint16_t v) {
  uint8_t t[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
  pr_put_raw(b, t, 2);
}

void pr_put_u32(pr_buf *b, uint32_t v) {
  uint8_t t[4];
  for (int i = 0; i < 4; i++)
    t[i] = (uint8_t)(v >> (8 * i));
  pr_put_raw(b, t, 4);
}

void pr_put_u64(pr_buf *b, uint64_t v) {
  uint8_t t[8];
  pr_le64(t, v);
  pr_put_raw(b, t, 8);
}

void pr_put_str(pr_buf *b, const void *p, size_t n) {
  pr_put_u64(b, (uint64_t)n);
  pr_put_raw(b, p, n);
}

size_t pr_frame_begin(pr_buf *b, uint8_t type) {
  size_t start = b->len;
  uint8_t h[PR_HDR_LEN];
  pr_hdr_encode(h, type, 0);
  pr_put_raw(b, h, PR_HDR_LEN);
  return start;
}

void pr_frame_end(pr_buf *b, size_t start) {
  if (b->err)
    return;
  if (start > b->len || b->len - start < PR_HDR_LEN) {
    b->err = 1; /* start does not name a header in this buffer */
    return;
  }
  size_t n = b->len - start - PR_HDR_LEN;
  if (n > UINT32_MAX) {
    b->err = 1;
    return;
  }
  pr_hdr_encode(b->p + start, b->p[start + 3], (uint32_t)n);
}

/* Encodes the empty list when the raw form is missing or too short to hold
 * a count, otherwise re-emits it byte for byte. */
static void put_list_raw(pr_buf *b, const pr_bytes *raw) {
  if (raw == NULL || raw->ptr == NULL || raw->len < 8)
    pr_put_u64(b, 0);
  else
    pr_put_raw(b, raw->ptr, raw->len);
}

static size_t enc_done(const pr_buf *b) {
  return b->err ? 0 : b->len;
}

size_t pr_enc_hello(uint8_t *buf, size_t cap, const pr_hello *h) {
  pr_buf b;
  pr_buf_init(&b, buf, cap);
  size_t f = pr_frame_begin(&b, PR_FT_HELLO);
  pr_put_u64(&b, h->node_id);
  pr_put_u8(&b, h->has_resume ? 1 : 0);
  if (h->has_resume)
    pr_put_raw(&b, h->resume, PR_RESUME_LEN);
  pr_put_u8(&b, h->has_token ? 1 : 0);
  if (h->has_token)
    pr_put_str(&b, h->token.ptr, h->token.len);
  pr_put_str(&b, h->name.ptr, h->name.len);
  pr_frame_end(&b, f);
  return enc_done(&b);
}

size_t pr_enc_ack(uint8_t *buf, size_t cap, const pr_ack *a) {
  pr_buf b;
  pr_buf_init(&b, buf, cap);
  size_t f = pr_frame_begin(&b, PR_FT_ACK);
  pr_put_u64(&b, a->node_id);
  pr_put_raw(&b, a->resume, PR_RESUME_LEN);
  pr_put_u32(&b, a->heartbeat_ms);
  pr_put_u32(&b, a->max_frame_payload);
  pr_put_u32(&b, a->max_events_per_sec);
  pr_put_u64(&b, a->server_time_ms);
  pr_frame_end(&b, f);
  return enc_done(&b);
}

size_t pr_enc_event(uint8_t *buf, size_t cap, const pr_event *e) {
  pr_buf b;
  pr_buf_init(&b, buf, cap);
  size_t f = pr_frame_begin(&b, PR_FT_EVENT);
  pr_put_u64(&b, e->sender);
  pr_put_u64(&b, e->timestamp);
  pr_put_u64(&b, e->sequence);
  pr_put_u32(&b, e->scope);
  if (e->scope == PR_SCOPE_TARGETED)
    pr_put_u64(&b, e->target);
  pr_put_str(&b, e->type_name.ptr, e->type_name.len);
  pr_put_str(&b, e->payload.ptr, e->payload.len);
  pr_frame_end(&b, f);
  return enc_done(&b);
}

size_t pr_enc_error(uint8_t *buf, size_t cap, uint16_t code, const char *msg) {
  pr_buf b;
  pr_buf_init(&b, buf, cap);
  size_t f = pr_frame_begin(&b, PR_FT_ERROR);
  pr_put_u16(&b, code);
  pr_put_str(&b, msg, msg ? strlen(msg) : 0);
  pr_frame_end(&b, f);
  return enc_done(&b);
}

size_t pr_enc_heartbeat(uint8_t *buf, size_t cap, uint64_t time_ms) {
  pr_buf b;
  pr_buf_init(&b, buf, cap);
  size_t f = pr_frame_begin(&b, PR_FT_HEARTBEAT);
  pr_put_u64(&b, time_ms);
  pr_frame_end(&b, f);
  return enc_done(&b);
}

size_t pr_enc_room_create(uint8_t *buf, size_t cap, const pr_room_create *c) {
  pr_buf b;
  pr_buf_init(&b, buf, cap);
  size_t f = pr_frame_begin(&b, PR_FT_ROOM_CREATE);
  pr_put_u32(&b, c->request_id);
  pr_put_str(&b, c->name.ptr, c->name.len);
  pr_put_u32(&b, c->max_clients);
  put_list_raw(&b, &c->metadata.raw);
  pr_frame_end(&b, f);
  return enc_done(&b);
}

size_t pr_enc_room_join(uint8_t *buf, size_t cap, const pr_room_join *j) {
  pr_buf b;
  pr_buf_init(&b, buf, cap);
  size_t f = pr_frame_begin(&b, PR_FT_ROOM_JOIN);
  pr_put_u32(&b, j->request_id);
  pr_put_u64(&b, j->room_id);
  pr_frame_end(&b, f);
  return enc_done(&b);
}

size_t pr_enc_room_simple(uint8_t *buf, size_t cap, uint8_t type, uint32_t request_id) {
  pr_buf b;
  pr_buf_init(&b, buf, cap);
  size_t f = pr_frame_begin(&b, type);
  pr_put_u32(&b, request_id);
  pr_frame_end(&b, f);
  return enc_done(&b);
}

size_t pr_enc_presence(uint8_t *buf, size_t cap, const pr_presence *p) {
  pr_buf b;
  pr_buf_init(&b, buf, cap);
  size_t f = pr_frame_begin(&b, PR_FT_PRESENCE);
  pr_put_u64(&b, p->room_id);
  pr_put_u64(&b, p->node_id);
  pr_put_u8(&b, p->change);
  pr_put_u64(&b, p->host);
  pr_frame_end(&b, f);
  return enc_done(&b);
}

/* ---- REPLY -------------------------------------------------------------- */

void pr_reply_begin(pr_buf *b, pr_reply_state *st, uint32_t request_id, uint16_t status) {
  st->frame_start = pr_frame_begin(b, PR_FT_REPLY);
  pr_put_u32(b, request_id);
  pr_put_u16(b, status);
  st->count_off = b->len;
  st->count = 0;
  pr_put_u64(b, 0); /* patched by pr_reply_finish */
}

int pr_reply_add_room(pr_buf *b, pr_reply_state *st, uint64_t room_id, const uint8_t *name,
                      size_t name_len, uint8_t state, uint64_t host, uint32_t max_clients,
                      const uint64_t *members, size_t member_count, const pr_bytes *metadata_raw) {
  if (b->err)
    return -1; /* the frame itself did not fit: nothing to roll back to */
  size_t mark = b->len;
  pr_put_u64(b, room_id);
  pr_put_str(b, name, name_len);
  pr_put_u8(b, state);
  pr_put_u64(b, host);
  pr_put_u32(b, max_clients);
  pr_put_u64(b, (uint64_t)member_count);
  for (size_t i = 0; i < member_count && !b->err; i++)
    pr_put_u64(b, members[i]);
  put_list_raw(b, metadata_raw);
  if (b->err) {
    b->len = mark;
    b->err = 0;
    return -1;
  }
  st->count++;
  return 0;
}

void pr_reply_finish(pr_buf *b, pr_reply_state *st) {
  if (b->err)
    return;
  pr_le64(b->p + st->count_off, st->count);
  pr_frame_end(b, st->frame_start);
}
