/*
 * Unit tests for the legacy wire codec (src/proto/legacy.c, protocol.md
 * section 9): the 8-byte NodeId handshake and the one-EVENT-frame-per-stream
 * rule, judged prefix by prefix as bytes arrive.
 *
 * The event vector is written out field by field from bincode 1.x's default
 * encoding of issun's RawNetworkEvent (fixed-width little-endian integers,
 * u64 lengths, u32 enum variant index), not produced by our encoder; the
 * integration test it_legacy checks the same bytes against a real Rust
 * serde/bincode peer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/legacy.h"

#define MAXF PR_DEFAULT_MAX_FRAME_PAYLOAD

/* RawNetworkEvent { metadata: { sender: 0x0102030405060708, timestamp:
 * 1700000000123, sequence: 42 }, scope: Targeted(NodeId(7)), type_name:
 * "pong::PaddleMove", payload: [0xde, 0xad] } as one EVENT frame. */
static const uint8_t ev_frame[] = {
    0x49, 0x53, 0x01, 0x01, 0x46, 0x00, 0x00, 0x00, /* header, 70 */
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* sender */
    0x7b, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, /* timestamp */
    0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* sequence */
    0x02, 0x00, 0x00, 0x00,                         /* Targeted */
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* NodeId(7) */
    0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 16 bytes */
    'p',  'o',  'n',  'g',  ':',  ':',  'P',  'a',  'd',  'd',  'l',  'e',  'M',
    'o',  'v',  'e',  0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xde, 0xad, /* payload */
};

static void test_hello_status(void **state) {
  (void)state;
  for (size_t have = 0; have <= 12; have++) {
    int open = lg_hello_status(have, 0), fin = lg_hello_status(have, 1);
    if (have > LG_HELLO_LEN) {
      assert_int_equal(open, PR_E_PROTOCOL);
      assert_int_equal(fin, PR_E_PROTOCOL);
    } else {
      assert_int_equal(open, LG_MORE);
      assert_int_equal(fin, have == LG_HELLO_LEN ? 0 : PR_E_PROTOCOL);
    }
  }
}

static void test_hello_codec(void **state) {
  (void)state;
  uint8_t b[LG_HELLO_LEN];
  lg_hello_encode(b, 0x1122334455667788ull);
  const uint8_t want[] = {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
  assert_memory_equal(b, want, sizeof want);
  uint64_t id = 0;
  assert_int_equal(lg_hello_decode(b, sizeof b, &id), 0);
  assert_int_equal(id, 0x1122334455667788ull);
  /* NodeId 0 is refused; so is any length but 8. */
  memset(b, 0, sizeof b);
  id = 5;
  assert_int_equal(lg_hello_decode(b, sizeof b, &id), PR_E_PROTOCOL);
  assert_int_equal(id, 5);
  b[7] = 0x80;
  assert_int_equal(lg_hello_decode(b, 7, &id), PR_E_PROTOCOL);
  assert_int_equal(lg_hello_decode(b, 8, &id), 0);
  assert_int_equal(id, 0x8000000000000000ull);
}

static void test_event_decode(void **state) {
  (void)state;
  pr_event e;
  assert_int_equal(lg_event_decode(ev_frame, sizeof ev_frame, MAXF, &e), 0);
  assert_int_equal(e.sender, 0x0102030405060708ull);
  assert_int_equal(e.timestamp, 1700000000123ull);
  assert_int_equal(e.sequence, 42);
  assert_int_equal(e.scope, PR_SCOPE_TARGETED);
  assert_int_equal(e.target, 7);
  assert_int_equal(e.type_name.len, 16);
  assert_memory_equal(e.type_name.ptr, "pong::PaddleMove", 16);
  assert_int_equal(e.payload.len, 2);
  assert_memory_equal(e.payload.ptr, "\xde\xad", 2);
  /* The same frame with a limit just big enough, and one byte too small. */
  assert_int_equal(lg_event_decode(ev_frame, sizeof ev_frame, 70, &e), 0);
  assert_int_equal(lg_event_decode(ev_frame, sizeof ev_frame, 69, &e), PR_E_FRAME_TOO_LARGE);
}

/* Every prefix of a valid stream is LG_MORE without FIN and PROTOCOL_ERROR
 * with it; the whole frame is LG_MORE until the FIN, then complete; the
 * total is known as soon as the header is in. */
static void test_event_status_prefixes(void **state) {
  (void)state;
  size_t n = sizeof ev_frame, total;
  for (size_t have = 0; have < n; have++) {
    assert_int_equal(lg_event_status(ev_frame, have, 0, MAXF, &total), LG_MORE);
    assert_int_equal(total, have >= PR_HDR_LEN ? n : 0);
    assert_int_equal(lg_event_status(ev_frame, have, 1, MAXF, &total), PR_E_PROTOCOL);
  }
  assert_int_equal(lg_event_status(ev_frame, n, 0, MAXF, &total), LG_MORE);
  assert_int_equal(total, n);
  assert_int_equal(lg_event_status(ev_frame, n, 1, MAXF, &total), 0);
  assert_int_equal(total, n);
  /* Anything after the frame: a second frame on the stream. */
  assert_int_equal(lg_event_status(ev_frame, n + 1, 0, MAXF, &total), PR_E_PROTOCOL);
  assert_int_equal(lg_event_status(ev_frame, 2 * n, 1, MAXF, &total), PR_E_PROTOCOL);
  uint8_t two[2 * sizeof ev_frame];
  memcpy(two, ev_frame, n);
  memcpy(two + n, ev_frame, n);
  pr_event e;
  assert_int_equal(lg_event_decode(two, sizeof two, MAXF, &e), PR_E_PROTOCOL);
  assert_int_equal(lg_event_decode(ev_frame, n - 1, MAXF, &e), PR_E_PROTOCOL);
}

/* A bad header byte is refused as soon as it arrives. */
static void test_event_status_early_reject(void **state) {
  (void)state;
  uint8_t h[PR_HDR_LEN];
  size_t total;
  memcpy(h, ev_frame, sizeof h);
  h[0] = 'X';
  assert_int_equal(lg_event_status(h, 1, 0, MAXF, &total), PR_E_PROTOCOL);
  memcpy(h, ev_frame, sizeof h);
  h[1] = 'T';
  assert_int_equal(lg_event_status(h, 2, 0, MAXF, &total), PR_E_PROTOCOL);
  memcpy(h, ev_frame, sizeof h);
  h[2] = 0x02;
  assert_int_equal(lg_event_status(h, 3, 0, MAXF, &total), PR_E_UNSUPPORTED_VERSION);
  assert_int_equal(lg_event_status(h, 8, 0, MAXF, &total), PR_E_UNSUPPORTED_VERSION);
  /* Every frame type but EVENT, known or not. */
  for (unsigned t = 0; t < 256; t++) {
    memcpy(h, ev_frame, sizeof h);
    h[3] = (uint8_t)t;
    int want = t == PR_FT_EVENT ? LG_MORE : PR_E_PROTOCOL;
    assert_int_equal(lg_event_status(h, 4, 0, MAXF, &total), want);
    assert_int_equal(lg_event_status(h, 8, 0, MAXF, &total), want);
  }
  /* Length over the limit: refused with the header, before any payload. */
  memcpy(h, ev_frame, sizeof h);
  h[4] = 0x01;
  h[5] = 0x04; /* 1025 */
  assert_int_equal(lg_event_status(h, 8, 0, 1024, &total), PR_E_FRAME_TOO_LARGE);
  h[4] = 0x00; /* 1024 */
  assert_int_equal(lg_event_status(h, 8, 0, 1024, &total), LG_MORE);
  assert_int_equal(total, PR_HDR_LEN + 1024);
  /* The largest length field cannot overflow the total. */
  memset(h + 4, 0xff, 4);
  assert_int_equal(lg_event_status(h, 8, 0, UINT32_MAX, &total), LG_MORE);
  assert_int_equal(total, (size_t)PR_HDR_LEN + UINT32_MAX);
}

/* A payload that is not a valid RawNetworkEvent fails to decode even when
 * the framing is right. */
static void test_event_bad_payloads(void **state) {
  (void)state;
  uint8_t f[sizeof ev_frame];
  pr_event e;
  memcpy(f, ev_frame, sizeof f);
  f[8 + 24] = 3; /* scope 3 */
  assert_int_equal(lg_event_decode(f, sizeof f, MAXF, &e), PR_E_PROTOCOL);
  memcpy(f, ev_frame, sizeof f);
  f[8 + 24 + 4 + 8 + 8] = 0xff; /* type_name not UTF-8 */
  assert_int_equal(lg_event_decode(f, sizeof f, MAXF, &e), PR_E_PROTOCOL);
  memcpy(f, ev_frame, sizeof f);
  f[sizeof f - 10] = 3; /* payload length runs past the end */
  assert_int_equal(lg_event_decode(f, sizeof f, MAXF, &e), PR_E_PROTOCOL);
  /* An empty type name (44-byte payload). */
  const uint8_t empty_type[] = {
      0x49, 0x53, 0x01, 0x01, 0x2c, 0x00, 0x00, 0x00, /* 44 */
      0,    0,    0,    0,    0,    0,    0,    0,    0, 0, 0,    0,    0,    0,
      0,    0,    0,    0,    0,    0,    0,    0,    0, 0, 0x00, 0x00, 0x00, 0x00, /* Broadcast */
      0,    0,    0,    0,    0,    0,    0,    0, /* type_name "" */
      0,    0,    0,    0,    0,    0,    0,    0, /* payload [] */
  };
  assert_int_equal(lg_event_decode(empty_type, sizeof empty_type, MAXF, &e), PR_E_PROTOCOL);
}

/* Feeding the stream in random pieces, as a server does, keeping only the
 * header bytes: the status is LG_MORE at every step and complete at the
 * end, never an error. */
static void test_event_status_chunked(void **state) {
  (void)state;
  uint32_t x = 12345;
  for (int round = 0; round < 200; round++) {
    size_t have = 0, total = 0, n = sizeof ev_frame;
    uint8_t head[PR_HDR_LEN];
    while (have < n) {
      x = x * 1103515245u + 12345u;
      size_t piece = 1 + (x >> 16) % 9;
      if (piece > n - have)
        piece = n - have;
      for (size_t k = have; k < have + piece && k < PR_HDR_LEN; k++)
        head[k] = ev_frame[k];
      have += piece;
      int fin = have == n && (round & 1);
      int rv = lg_event_status(head, have, fin, MAXF, &total);
      assert_int_equal(rv, fin ? 0 : LG_MORE);
    }
    if (!(round & 1)) /* the FIN alone, later */
      assert_int_equal(lg_event_status(head, have, 1, MAXF, &total), 0);
    assert_int_equal(total, n);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hello_status),
      cmocka_unit_test(test_hello_codec),
      cmocka_unit_test(test_event_decode),
      cmocka_unit_test(test_event_status_prefixes),
      cmocka_unit_test(test_event_status_early_reject),
      cmocka_unit_test(test_event_bad_payloads),
      cmocka_unit_test(test_event_status_chunked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
