/* Token bucket and NodeId picking (src/server/ratelimit.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "server/ratelimit.h"

#define SEC 1000000000ull
#define MS 1000000ull

static int drain(tbucket *b, uint32_t rate, uint64_t now) {
  int n = 0;
  while (tb_take(b, rate, now) && n < 10000000) n++;
  return n;
}

static void test_full_at_start_then_empty(void **state) {
  (void)state;
  tbucket b;
  tb_init(&b, 100, 5 * SEC);
  assert_int_equal(drain(&b, 100, 5 * SEC), 100);
  assert_int_equal(tb_take(&b, 100, 5 * SEC), 0);
}

static void test_refills_at_rate(void **state) {
  (void)state;
  tbucket b;
  tb_init(&b, 100, 0);
  drain(&b, 100, 0);
  /* 10 ms at 100/s earns exactly one token. */
  assert_int_equal(tb_take(&b, 100, 9 * MS), 0);
  assert_int_equal(tb_take(&b, 100, 10 * MS), 1);
  assert_int_equal(tb_take(&b, 100, 10 * MS), 0);
  /* Half a second earns 50. */
  assert_int_equal(drain(&b, 100, 510 * MS), 50);
}

static void test_capped_at_rate(void **state) {
  (void)state;
  tbucket b;
  tb_init(&b, 20, 0);
  drain(&b, 20, 0);
  /* A long idle refills to the burst size, not beyond. */
  assert_int_equal(drain(&b, 20, 60 * SEC), 20);
  /* Just under two seconds idle: also capped. */
  assert_int_equal(drain(&b, 20, 60 * SEC + 1900 * MS), 20);
}

/* Calls every 300 ns (faster than a microsecond of refill) must not lose
 * the fractions: over one second the sender gets rate tokens, not 0. */
static void test_fast_caller_loses_no_time(void **state) {
  (void)state;
  tbucket b;
  tb_init(&b, 1000, 0);
  drain(&b, 1000, 0);
  int got = 0;
  for (uint64_t t = 300; t <= SEC; t += 300) got += tb_take(&b, 1000, t);
  assert_true(got >= 999 && got <= 1000);
}

static void test_steady_sender_at_the_rate_is_never_limited(void **state) {
  (void)state;
  tbucket b;
  tb_init(&b, 30, 0);
  for (int i = 0; i < 3000; i++) assert_int_equal(tb_take(&b, 30, (uint64_t)i * SEC / 30), 1);
}

static void test_clock_going_back_is_harmless(void **state) {
  (void)state;
  tbucket b;
  tb_init(&b, 10, 10 * SEC);
  drain(&b, 10, 10 * SEC);
  assert_int_equal(tb_take(&b, 10, 9 * SEC), 0);
  assert_int_equal(tb_take(&b, 10, 10 * SEC + 100 * MS), 1);
}

static void test_zero_rate_is_unlimited(void **state) {
  (void)state;
  tbucket b;
  tb_init(&b, 0, 0);
  for (int i = 0; i < 1000; i++) assert_int_equal(tb_take(&b, 0, 0), 1);
}

/* A scripted generator: returns the values given, in turn. */
typedef struct script {
  const uint64_t *v;
  size_t n, i;
} script;

static void scripted(void *ctx, void *out, size_t n) {
  script *s = ctx;
  uint64_t v = s->i < s->n ? s->v[s->i] : 0;
  s->i++;
  memset(out, 0, n);
  memcpy(out, &v, n < sizeof v ? n : sizeof v);
}

static void test_node_id_skips_zero_and_taken(void **state) {
  (void)state;
  u64map m;
  assert_int_equal(u64map_init(&m, 16, 1), 0);
  int dummy;
  assert_int_equal(u64map_put(&m, 42, &dummy), 0);
  assert_int_equal(u64map_put(&m, 7, &dummy), 0);
  const uint64_t vals[] = {0, 42, 7, 0, 99};
  script s = {vals, 5, 0};
  assert_int_equal(node_id_pick(&m, scripted, &s), 99);
  assert_int_equal(s.i, 5);
  u64map_free(&m);
}

static void test_node_id_gives_up_on_a_broken_generator(void **state) {
  (void)state;
  u64map m;
  assert_int_equal(u64map_init(&m, 16, 1), 0);
  script s = {NULL, 0, 0}; /* always 0 */
  assert_int_equal(node_id_pick(&m, scripted, &s), 0);
  assert_int_equal(s.i, 64);
  u64map_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_at_start_then_empty),
      cmocka_unit_test(test_refills_at_rate),
      cmocka_unit_test(test_capped_at_rate),
      cmocka_unit_test(test_fast_caller_loses_no_time),
      cmocka_unit_test(test_steady_sender_at_the_rate_is_never_limited),
      cmocka_unit_test(test_clock_going_back_is_harmless),
      cmocka_unit_test(test_zero_rate_is_unlimited),
      cmocka_unit_test(test_node_id_skips_zero_and_taken),
      cmocka_unit_test(test_node_id_gives_up_on_a_broken_generator),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
