/*
 * iplimit: per-address connection counts and handshake buckets, address
 * keys (IPv4, IPv6 /64, IPv4-mapped), the bounded table and its sweep, and
 * a randomized run against a simple model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "server/iplimit.h"

#define S 1000000000ull

static struct sockaddr_storage v4(const char *ip, uint16_t port) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *a = (struct sockaddr_in *)&ss;
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
  return ss;
}

static struct sockaddr_storage v6(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
  a->sin6_family = AF_INET6;
  assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
  return ss;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void test_connection_limit(void **state) {
  iplimit *t = iplimit_new(2, 0, 100, 1);
  struct sockaddr_storage a = v4("10.0.0.1", 1000), a2 = v4("10.0.0.1", 2000),
                          b = v4("10.0.0.2", 1000);
  assert_int_equal(iplimit_admit(t, SA(a), 0), IPL_OK);
  assert_int_equal(iplimit_admit(t, SA(a2), 0), IPL_OK); /* the port does not matter */
  assert_int_equal(iplimit_check(t, SA(a), 0), IPL_CONNS);
  assert_int_equal(iplimit_admit(t, SA(a), 0), IPL_CONNS);
  assert_int_equal(iplimit_conns(t, SA(a)), 2);
  assert_int_equal(iplimit_admit(t, SA(b), 0), IPL_OK); /* others are not affected */
  iplimit_release(t, SA(a), 0);
  assert_int_equal(iplimit_admit(t, SA(a), 0), IPL_OK);
  iplimit_release(t, SA(a), 0);
  iplimit_release(t, SA(a), 0);
  iplimit_release(t, SA(b), 0);
  assert_int_equal(iplimit_conns(t, SA(a)), 0);
  assert_int_equal(iplimit_entries(t), 0); /* no handshake limit: idle entries go at once */
  iplimit_release(t, SA(a), 0);            /* an extra release is harmless */
  iplimit_free(t);
}

static void test_handshake_rate(void **state) {
  iplimit *t = iplimit_new(0, 3, 100, 2);
  struct sockaddr_storage a = v4("192.0.2.7", 1);
  uint64_t now = 5 * S;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(iplimit_admit(t, SA(a), now), IPL_OK);
    iplimit_release(t, SA(a), now); /* the connection ending gives no token back */
  }
  assert_int_equal(iplimit_check(t, SA(a), now), IPL_RATE);
  assert_int_equal(iplimit_admit(t, SA(a), now + S / 10), IPL_RATE);
  /* one token comes back after a third of a second */
  assert_int_equal(iplimit_admit(t, SA(a), now + S / 3 + 1000), IPL_OK);
  assert_int_equal(iplimit_admit(t, SA(a), now + S / 3 + 2000), IPL_RATE);
  /* after a second the bucket is full again */
  assert_int_equal(iplimit_admit(t, SA(a), now + 2 * S), IPL_OK);
  assert_int_equal(iplimit_admit(t, SA(a), now + 2 * S), IPL_OK);
  assert_int_equal(iplimit_admit(t, SA(a), now + 2 * S), IPL_OK);
  assert_int_equal(iplimit_admit(t, SA(a), now + 2 * S), IPL_RATE);
  iplimit_free(t);
}

static void test_check_charges_nothing(void **state) {
  iplimit *t = iplimit_new(1, 1, 100, 3);
  struct sockaddr_storage a = v4("198.51.100.1", 1);
  for (int i = 0; i < 10; i++) assert_int_equal(iplimit_check(t, SA(a), 0), IPL_OK);
  assert_int_equal(iplimit_admit(t, SA(a), 0), IPL_OK);
  iplimit_free(t);
}

static void test_address_keys(void **state) {
  iplimit *t = iplimit_new(1, 0, 100, 4);
  /* one /64 is one key */
  struct sockaddr_storage x = v6("2001:db8:1:2::1"), y = v6("2001:db8:1:2:ffff::9"),
                          z = v6("2001:db8:1:3::1");
  assert_int_equal(iplimit_admit(t, SA(x), 0), IPL_OK);
  assert_int_equal(iplimit_admit(t, SA(y), 0), IPL_CONNS);
  assert_int_equal(iplimit_admit(t, SA(z), 0), IPL_OK);
  /* an IPv4-mapped address is its IPv4 address */
  struct sockaddr_storage m = v6("::ffff:203.0.113.5"), p = v4("203.0.113.5", 9);
  assert_int_equal(iplimit_admit(t, SA(m), 0), IPL_OK);
  assert_int_equal(iplimit_admit(t, SA(p), 0), IPL_CONNS);
  /* ::1 and 127.0.0.1 are different keys */
  struct sockaddr_storage l6 = v6("::1"), l4 = v4("127.0.0.1", 1);
  assert_int_equal(iplimit_admit(t, SA(l6), 0), IPL_OK);
  assert_int_equal(iplimit_admit(t, SA(l4), 0), IPL_OK);
  /* an unknown family is never limited */
  struct sockaddr un = {.sa_family = AF_UNIX};
  assert_int_equal(iplimit_admit(t, &un, 0), IPL_OK);
  assert_int_equal(iplimit_admit(t, &un, 0), IPL_OK);
  /* NULL table: limits off */
  assert_int_equal(iplimit_admit(NULL, SA(x), 0), IPL_OK);
  iplimit_free(t);
}

static void test_table_bound_and_sweep(void **state) {
  iplimit *t = iplimit_new(0, 10, 16, 5);
  struct sockaddr_storage a[17];
  char ip[32];
  for (int i = 0; i < 17; i++) {
    snprintf(ip, sizeof ip, "10.1.0.%d", i + 1);
    a[i] = v4(ip, 1);
  }
  for (int i = 0; i < 16; i++) assert_int_equal(iplimit_admit(t, SA(a[i]), 0), IPL_OK);
  assert_int_equal(iplimit_entries(t), 16);
  /* full of live entries: a new address is refused, known ones are not */
  assert_int_equal(iplimit_admit(t, SA(a[16]), 0), IPL_TABLE_FULL);
  assert_int_equal(iplimit_admit(t, SA(a[3]), 0), IPL_OK);
  /* once they are idle (no connection, bucket refilled) a sweep makes room */
  for (int i = 0; i < 16; i++) iplimit_release(t, SA(a[i]), S / 100);
  iplimit_release(t, SA(a[3]), S / 100);
  assert_int_equal(iplimit_entries(t), 16); /* buckets not full yet: entries stay */
  assert_int_equal(iplimit_admit(t, SA(a[16]), S / 50), IPL_TABLE_FULL);
  assert_int_equal(iplimit_admit(t, SA(a[16]), 2 * S), IPL_OK);
  assert_int_equal(iplimit_entries(t), 1);
  iplimit_free(t);
}

/* Random admits and releases over 40 addresses against a model, with
 * deletions in the middle of probe clusters (backward shift). */
static void test_random_against_model(void **state) {
  enum { N = 40, OPS = 20000 };
  iplimit *t = iplimit_new(3, 0, 64, 6);
  struct sockaddr_storage a[N];
  uint32_t model[N] = {0};
  char ip[32];
  for (int i = 0; i < N; i++) {
    snprintf(ip, sizeof ip, "172.16.%d.%d", i / 7, i % 7 + 1);
    a[i] = v4(ip, 1);
  }
  srand(12345);
  for (int op = 0; op < OPS; op++) {
    int i = rand() % N;
    if (rand() % 2) {
      int r = iplimit_admit(t, SA(a[i]), 0);
      if (model[i] < 3) {
        assert_int_equal(r, IPL_OK);
        model[i]++;
      } else {
        assert_int_equal(r, IPL_CONNS);
      }
    } else if (model[i] > 0) {
      iplimit_release(t, SA(a[i]), 0);
      model[i]--;
    }
    if (op % 97 == 0) {
      size_t live = 0;
      for (int k = 0; k < N; k++) {
        assert_int_equal(iplimit_conns(t, SA(a[k])), model[k]);
        live += model[k] > 0;
      }
      assert_int_equal(iplimit_entries(t), live);
    }
  }
  iplimit_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_connection_limit),   cmocka_unit_test(test_handshake_rate),
      cmocka_unit_test(test_check_charges_nothing), cmocka_unit_test(test_address_keys),
      cmocka_unit_test(test_table_bound_and_sweep), cmocka_unit_test(test_random_against_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
