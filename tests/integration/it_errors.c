/*
 * Malformed input (protocol sections 1, 3, 4 and 6) against a real
 * issun-server: every case gets its ERROR code and a closed connection,
 * the server stays up, and two bystanders keep relaying.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "it.h"

static it_server srv;

static int setup(void **state) {
  (void)state;
  return it_server_start(&srv, NULL);
}

static int teardown(void **state) {
  (void)state;
  return it_server_stop(&srv) == 0 ? 0 : -1;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A bad client t must end with ERROR(code) then CONNECTION_CLOSE(code);
 * meanwhile bystanders a and b still relay to each other. */
static void expect_fatal(itc *t, uint16_t code) {
  itc *a = itc_new(&srv, "bystander-a", NULL), *b = itc_new(&srv, "bystander-b", NULL);
  assert_true(IT_WAIT(5000, itc_close_code(t) >= 0, t, a, b));
  assert_int_equal(itc_close_code(t), code);
  assert_true(itc_has_error(t, code));
  assert_int_equal(kill(srv.pid, 0), 0); /* the server is still running */
  assert_int_equal(issun_client_send(a->c, "bystander::Ping", ISSUN_SCOPE_TARGETED,
                                     issun_client_node_id(b->c), ISSUN_RELIABLE, "ok", 2, NULL),
                   0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "bystander::Ping") == 1, a, b));
  assert_int_equal(issun_client_state(a->c), ISSUN_STATE_CONNECTED);
  assert_int_equal(issun_client_state(b->c), ISSUN_STATE_CONNECTED);
  itc_free(a);
  itc_free(b);
}

static void send_raw(itc *t, const void *p, size_t n) {
  assert_int_equal(issun__send_raw_stream(t->c, p, n), 0);
}

static void test_bad_magic(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[16];
  size_t n = it_frame(f, sizeof f, 0x02, "\0\0\0\0\0\0\0\0", 8);
  f[0] = 'X';
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_unsupported_version(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[16];
  size_t n = it_frame(f, sizeof f, 0x02, "\0\0\0\0\0\0\0\0", 8);
  f[2] = 0x02;
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_UNSUPPORTED_VERSION);
  itc_free(t);
}

static void test_frame_too_large_header_only(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  /* Only the header: the server must refuse on the length alone, not wait
   * for (and buffer) 16 MiB of payload. */
  uint8_t h[8] = {0x49, 0x53, 0x01, 0x01};
  put_le(h + 4, 16u << 20, 4);
  send_raw(t, h, sizeof h);
  expect_fatal(t, ISSUN_WIRE_FRAME_TOO_LARGE);
  itc_free(t);
}

static void test_just_over_the_limit(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t h[8] = {0x49, 0x53, 0x01, 0x01};
  put_le(h + 4, 65537, 4);
  send_raw(t, h, sizeof h);
  expect_fatal(t, ISSUN_WIRE_FRAME_TOO_LARGE);
  itc_free(t);
}

static void test_first_frame_not_hello(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", &(itc_opts){.skip_hello = 1});
  uint8_t f[16];
  size_t n = it_frame(f, sizeof f, 0x02, "\1\0\0\0\0\0\0\0", 8); /* HEARTBEAT */
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  assert_int_equal(itc_has_state(t, ISSUN_STATE_CONNECTED), 0);
  itc_free(t);
}

static size_t hello_payload(uint8_t *p, const char *name) {
  size_t nl = strlen(name);
  put_le(p, 0, 8);     /* node_id: assign */
  p[8] = 0;            /* resume: none */
  p[9] = 0;            /* token: none */
  put_le(p + 10, nl, 8);
  memcpy(p + 18, name, nl);
  return 18 + nl;
}

static void test_second_hello(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t p[64], f[80];
  size_t n = it_frame(f, sizeof f, 0x04, p, hello_payload(p, "again"));
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_hello_name_too_long(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", &(itc_opts){.skip_hello = 1});
  char name[66];
  memset(name, 'n', 65);
  name[65] = 0;
  uint8_t p[128], f[160];
  size_t n = it_frame(f, sizeof f, 0x04, p, hello_payload(p, name));
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_hello_trailing_byte(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", &(itc_opts){.skip_hello = 1});
  uint8_t p[64], f[80];
  size_t pl = hello_payload(p, "x");
  p[pl++] = 0xAA;
  size_t n = it_frame(f, sizeof f, 0x04, p, pl);
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

/* Server-to-client frame types sent by a client. */
static void test_wrong_direction_frames(void **state) {
  (void)state;
  const uint8_t types[] = {0x03, 0x05, 0x20, 0x21};
  for (size_t i = 0; i < sizeof types; i++) {
    itc *t = itc_new(&srv, "t", NULL);
    uint8_t p[64] = {0}, f[80];
    size_t n = it_frame(f, sizeof f, types[i], p, 16);
    send_raw(t, f, n);
    expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
    itc_free(t);
  }
}

static void test_event_empty_type_name(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[128];
  size_t n = it_event_frame(f, sizeof f, 0, 1, 0, 0, "", "x", 1);
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_event_type_name_too_long(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  char name[258];
  memset(name, 'a', 257);
  name[257] = 0;
  uint8_t f[512];
  size_t n = it_event_frame(f, sizeof f, 0, 1, 0, 0, name, "x", 1);
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_event_bad_utf8(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[128];
  size_t n = it_event_frame(f, sizeof f, 0, 1, 0, 0, "bad\xc3(", "x", 1);
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_event_trailing_byte(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[128];
  size_t n = it_event_frame(f, sizeof f, 0, 1, 0, 0, "t::T", "x", 1);
  f[n] = 0;
  put_le(f + 4, n - 8 + 1, 4);
  send_raw(t, f, n + 1);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_event_length_overrun(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[128];
  size_t n = it_event_frame(f, sizeof f, 0, 1, 0, 0, "t::T", "xyz", 3);
  put_le(f + n - 3 - 8, 1000, 8); /* payload length runs past the frame */
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_event_bad_scope(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[128];
  size_t n = it_event_frame(f, sizeof f, 0, 1, 3, 0, "t::T", "x", 1);
  send_raw(t, f, n);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_unidirectional_stream(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  assert_int_equal(issun__open_stream(t->c, 0, "x", 1, 0, NULL), 0);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_second_bidi_stream(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  assert_int_equal(issun__open_stream(t->c, 1, "x", 1, 0, NULL), 0);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

/* After the handshake the server has freed its TLS session; a CRYPTO frame
 * at the 1-RTT level must close that one connection with a QUIC
 * PROTOCOL_VIOLATION, not reach the freed session. */
static void test_crypto_after_handshake(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  assert_int_equal(issun__send_post_handshake_crypto(t->c), 0);
  itc *a = itc_new(&srv, "bystander-a", NULL), *b = itc_new(&srv, "bystander-b", NULL);
  uint64_t code = 0;
  int app = 1;
  assert_true(IT_WAIT(5000, issun__close_error(t->c, &code, &app) == 0, t, a, b));
  assert_int_equal(app, 0);
  assert_int_equal(code, 0x0a); /* PROTOCOL_VIOLATION */
  assert_int_equal(kill(srv.pid, 0), 0);
  assert_int_equal(issun_client_send(a->c, "bystander::Ping", ISSUN_SCOPE_TARGETED,
                                     issun_client_node_id(b->c), ISSUN_RELIABLE, "ok", 2, NULL),
                   0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "bystander::Ping") == 1, a, b));
  itc_free(a);
  itc_free(b);
  itc_free(t);
}

static void test_datagram_two_frames(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[256];
  size_t n = it_event_frame(f, sizeof f, 0, 1, 0, 0, "t::T", "x", 1);
  memcpy(f + n, f, n);
  assert_int_equal(issun__send_raw_datagram(t->c, f, 2 * n), 0);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_datagram_not_an_event(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[16];
  size_t n = it_frame(f, sizeof f, 0x02, "\1\0\0\0\0\0\0\0", 8);
  assert_int_equal(issun__send_raw_datagram(t->c, f, n), 0);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

static void test_datagram_trailing_byte(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL);
  uint8_t f[128];
  size_t n = it_event_frame(f, sizeof f, 0, 1, 0, 0, "t::T", "x", 1);
  f[n] = 7; /* one byte after the frame, header length unchanged */
  assert_int_equal(issun__send_raw_datagram(t->c, f, n + 1), 0);
  expect_fatal(t, ISSUN_WIRE_PROTOCOL_ERROR);
  itc_free(t);
}

/* An unknown frame type on the stream is skipped; the session goes on and
 * the next frame is handled. */
static void test_unknown_frame_type_skipped(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL), *b = itc_new(&srv, "b", NULL);
  uint8_t f[256];
  size_t n = it_frame(f, sizeof f, 0x7E, "\xde\xad\xbe\xef\x00", 5);
  n += it_event_frame(f + n, sizeof f - n, 0, 1, 2, issun_client_node_id(b->c), "t::After",
                      "ok", 2);
  send_raw(t, f, n);
  assert_true(IT_WAIT(5000, itc_count_type(b, "t::After") == 1, t, b));
  assert_int_equal(itc_close_code(t), -1);
  assert_int_equal(issun_client_state(t->c), ISSUN_STATE_CONNECTED);
  assert_int_equal(t->nerrors, 0);
  itc_free(t);
  itc_free(b);
}

/* A frame split into single bytes still parses (stream reassembly). */
static void test_frame_split_byte_by_byte(void **state) {
  (void)state;
  itc *t = itc_new(&srv, "t", NULL), *b = itc_new(&srv, "b", NULL);
  uint8_t f[128];
  size_t n = it_event_frame(f, sizeof f, 0, 1, 2, issun_client_node_id(b->c), "t::Split",
                            "pieces", 6);
  for (size_t i = 0; i < n; i++) {
    send_raw(t, f + i, 1);
    it_poll(1, (itc *const[]){t}, 1);
  }
  assert_true(IT_WAIT(5000, itc_count_type(b, "t::Split") == 1, t, b));
  assert_memory_equal(b->ev[0].payload, "pieces", 6);
  itc_free(t);
  itc_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_magic),
      cmocka_unit_test(test_unsupported_version),
      cmocka_unit_test(test_frame_too_large_header_only),
      cmocka_unit_test(test_just_over_the_limit),
      cmocka_unit_test(test_first_frame_not_hello),
      cmocka_unit_test(test_second_hello),
      cmocka_unit_test(test_hello_name_too_long),
      cmocka_unit_test(test_hello_trailing_byte),
      cmocka_unit_test(test_wrong_direction_frames),
      cmocka_unit_test(test_event_empty_type_name),
      cmocka_unit_test(test_event_type_name_too_long),
      cmocka_unit_test(test_event_bad_utf8),
      cmocka_unit_test(test_event_trailing_byte),
      cmocka_unit_test(test_event_length_overrun),
      cmocka_unit_test(test_event_bad_scope),
      cmocka_unit_test(test_unidirectional_stream),
      cmocka_unit_test(test_second_bidi_stream),
      cmocka_unit_test(test_crypto_after_handshake),
      cmocka_unit_test(test_datagram_two_frames),
      cmocka_unit_test(test_datagram_not_an_event),
      cmocka_unit_test(test_datagram_trailing_byte),
      cmocka_unit_test(test_unknown_frame_type_skipped),
      cmocka_unit_test(test_frame_split_byte_by_byte),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
