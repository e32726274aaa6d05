/*
 * flush_load_step: the flush window under load (server.c).  How the window
 * widens while the loop is busy, holds between the two thresholds, narrows
 * again and turns off; its bounds for every setting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/config.h"
#include "server/server_int.h"

static srv_config cfg(uint32_t flush_us, uint32_t max_us, uint32_t busy_pct) {
  srv_config c;
  memset(&c, 0, sizeof c);
  c.flush_us = flush_us;
  c.flush_max_us = max_us;
  c.flush_busy_pct = busy_pct;
  return c;
}

static void test_defaults_widen_hold_and_narrow(void **state) {
  (void)state;
  srv_config c = cfg(1000, 8000, 80);
  /* Below the threshold nothing happens. */
  assert_int_equal(flush_load_step(&c, 0, 0), 0);
  assert_int_equal(flush_load_step(&c, 0, 79), 0);
  /* At it the window starts at twice ISSUN_FLUSH_US and doubles each
   * interval up to the maximum. */
  assert_int_equal(flush_load_step(&c, 0, 80), 2000);
  assert_int_equal(flush_load_step(&c, 2000, 95), 4000);
  assert_int_equal(flush_load_step(&c, 4000, 100), 8000);
  assert_int_equal(flush_load_step(&c, 8000, 100), 8000);
  /* Between five eighths of the threshold (50) and the threshold it holds. */
  assert_int_equal(flush_load_step(&c, 8000, 79), 8000);
  assert_int_equal(flush_load_step(&c, 8000, 50), 8000);
  assert_int_equal(flush_load_step(&c, 2000, 50), 2000);
  /* Below, it halves, and under its first step it is off. */
  assert_int_equal(flush_load_step(&c, 8000, 49), 4000);
  assert_int_equal(flush_load_step(&c, 4000, 10), 2000);
  assert_int_equal(flush_load_step(&c, 2000, 10), 0);
  assert_int_equal(flush_load_step(&c, 0, 10), 0);
}

static void test_off_when_the_maximum_is_not_above_the_window(void **state) {
  (void)state;
  srv_config off = cfg(1000, 0, 80);
  assert_int_equal(flush_load_step(&off, 0, 100), 0);
  assert_int_equal(flush_load_step(&off, 4000, 100), 0);
  srv_config same = cfg(4000, 4000, 80);
  assert_int_equal(flush_load_step(&same, 0, 100), 0);
  srv_config both0 = cfg(0, 0, 80);
  assert_int_equal(flush_load_step(&both0, 0, 100), 0);
}

static void test_first_step_and_maximum_odd_settings(void **state) {
  (void)state;
  /* No window at all normally: under load it starts at 1 ms. */
  srv_config zero = cfg(0, 1500, 80);
  assert_int_equal(flush_load_step(&zero, 0, 90), 1000);
  assert_int_equal(flush_load_step(&zero, 1000, 90), 1500);
  assert_int_equal(flush_load_step(&zero, 1500, 90), 1500);
  assert_int_equal(flush_load_step(&zero, 1500, 0), 0); /* 750 < 1000 */
  /* A first step above the maximum is clamped to it. */
  srv_config near = cfg(3000, 5000, 80);
  assert_int_equal(flush_load_step(&near, 0, 90), 5000);
  assert_int_equal(flush_load_step(&near, 5000, 90), 5000);
  assert_int_equal(flush_load_step(&near, 5000, 0), 0);
  /* The largest settings do not overflow. */
  srv_config big = cfg(1000000, 1000000, 1);
  assert_int_equal(flush_load_step(&big, 0, 1), 0);
  srv_config wide = cfg(400000, 1000000, 1);
  assert_int_equal(flush_load_step(&wide, 0, 1), 800000);
  assert_int_equal(flush_load_step(&wide, 800000, 1), 1000000);
  assert_int_equal(flush_load_step(&wide, 1000000, 0), 0); /* 500000 < 800000 */
}

static void test_random_walks_stay_in_bounds(void **state) {
  (void)state;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int run = 0; run < 200; run++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    uint32_t flush = (uint32_t)(x % 20000);
    uint32_t max = (uint32_t)((x >> 20) % 40000);
    uint32_t pct = 1 + (uint32_t)((x >> 40) % 99);
    srv_config c = cfg(flush, max, pct);
    uint32_t first = flush >= 500 ? 2 * flush : 1000;
    if (first > max) first = max;
    uint32_t w = 0;
    for (int i = 0; i < 200; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      unsigned busy = (unsigned)(x % 101);
      uint32_t next = flush_load_step(&c, w, busy);
      if (max <= flush) {
        assert_int_equal(next, 0);
      } else if (next) {
        assert_true(next >= first && next <= max);
        /* it moves only in the direction the load says */
        if (busy >= pct) assert_true(next >= w);
        if (busy < pct) assert_true(next <= w);
      }
      w = next;
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_widen_hold_and_narrow),
      cmocka_unit_test(test_off_when_the_maximum_is_not_above_the_window),
      cmocka_unit_test(test_first_step_and_maximum_odd_settings),
      cmocka_unit_test(test_random_walks_stay_in_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
