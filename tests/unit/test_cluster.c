/*
 * cluster.c's directory record decoder: a record comes from NATS, so it is
 * checked like any network input.  A well-formed record decodes; every
 * truncation, a trailing byte, a member count past the data, a bad state, a
 * host that is no member, non-UTF-8 text and malformed metadata are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server/cluster.h"

/* Offsets in a record: u8 format, u64 version, u64 id, u64 created, u8
 * state, u64 host, u32 max, str name ("room"), bytes meta (8 zero bytes), u64
 * n, members. */
#define OFF_STATE 25
#define OFF_HOST 26
#define OFF_NAME 38
#define OFF_META (OFF_NAME + 8 + 4)
#define OFF_COUNT (OFF_META + 8 + 8)

static const uint64_t nodes[3] = {11, 22, 33};
static const uint64_t relays[3] = {0xa1, 0xa2, 0xa1};

static size_t example(uint8_t *buf, size_t cap) {
  size_t n = cluster_record_example(buf, cap, 0x1234567890abcdefull, nodes, relays, 3);
  assert_true(n > 0);
  return n;
}

static void test_roundtrip(void **state) {
  uint8_t buf[512];
  size_t n = example(buf, sizeof buf);
  assert_int_equal(n, OFF_COUNT + 8 + 3 * 16);
  uint64_t id = 0;
  uint32_t members = 0;
  assert_int_equal(cluster_record_check(buf, n, &id, &members), 0);
  assert_int_equal(id, 0x1234567890abcdefull);
  assert_int_equal(members, 3);
}

static void test_every_truncation_and_trailing_byte(void **state) {
  uint8_t buf[512];
  size_t n = example(buf, sizeof buf);
  for (size_t k = 0; k < n; k++)
    assert_int_equal(cluster_record_check(buf, k, NULL, NULL), -1);
  buf[n] = 0;
  assert_int_equal(cluster_record_check(buf, n + 1, NULL, NULL), -1);
}

static void test_bad_fields(void **state) {
  uint8_t buf[512], m[512];
  size_t n = example(buf, sizeof buf);

  memcpy(m, buf, n);
  m[0] = 2; /* unknown format */
  assert_int_equal(cluster_record_check(m, n, NULL, NULL), -1);

  memcpy(m, buf, n);
  m[OFF_STATE] = 3; /* no such room state */
  assert_int_equal(cluster_record_check(m, n, NULL, NULL), -1);

  memcpy(m, buf, n);
  m[OFF_HOST] = 99; /* host is not a member */
  assert_int_equal(cluster_record_check(m, n, NULL, NULL), -1);

  memcpy(m, buf, n);
  m[OFF_NAME + 8] = 0xff; /* name not UTF-8 */
  assert_int_equal(cluster_record_check(m, n, NULL, NULL), -1);

  memcpy(m, buf, n);
  m[OFF_META + 8] = 1; /* metadata claims a pair it does not hold */
  assert_int_equal(cluster_record_check(m, n, NULL, NULL), -1);

  memcpy(m, buf, n);
  m[OFF_COUNT] = 4; /* one member more than the data */
  assert_int_equal(cluster_record_check(m, n, NULL, NULL), -1);

  memcpy(m, buf, n);
  memset(m + OFF_COUNT, 0xff, 8); /* a count that would overflow n * 16 */
  assert_int_equal(cluster_record_check(m, n, NULL, NULL), -1);

  memcpy(m, buf, n);
  memset(m + OFF_NAME, 0xff, 8); /* a name length past the end */
  assert_int_equal(cluster_record_check(m, n, NULL, NULL), -1);

  memcpy(m, buf, n);
  memset(m + OFF_COUNT + 8, 0, 8); /* NodeId 0 */
  assert_int_equal(cluster_record_check(m, n, NULL, NULL), -1);
}

static void test_empty_room(void **state) {
  uint8_t buf[256];
  size_t n = cluster_record_example(buf, sizeof buf, 7, NULL, NULL, 0);
  assert_true(n > 0);
  uint32_t members = 9;
  assert_int_equal(cluster_record_check(buf, n, NULL, &members), 0); /* a deleted room */
  assert_int_equal(members, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_every_truncation_and_trailing_byte),
      cmocka_unit_test(test_bad_fields),
      cmocka_unit_test(test_empty_room),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
