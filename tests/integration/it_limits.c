/*
 * Per-client limits against a real issun-server: the token-bucket rate
 * limit with RATE_LIMITED at most once a second, and the SLOW_CONSUMER
 * cut-off of a recipient that stops reading while the others get
 * everything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "it.h"

static size_t count_errors(const itc *t, uint16_t code) {
  size_t n = 0;
  for (size_t i = 0; i < t->nerrors; i++) n += t->errors[i] == code;
  return n;
}

static int send_burst(itc *a, uint64_t to, int n, int *seq) {
  for (int i = 0; i < n; i++) {
    char body[16];
    int len = snprintf(body, sizeof body, "%d", (*seq)++);
    int rv = issun_client_send(a->c, "lim::Tick", ISSUN_SCOPE_TARGETED, to, ISSUN_RELIABLE, body,
                               (size_t)len, NULL);
    if (rv != 0) return rv;
  }
  return 0;
}

static void test_rate_limit(void **state) {
  (void)state;
  it_server s;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=20", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *a = itc_new(&s, "a", NULL), *b = itc_new(&s, "b", NULL);
  uint64_t idb = issun_client_node_id(b->c);
  int seq = 0;

  /* 100 events in one burst: the full bucket lets 20 through (plus the
   * trickle refilled while the burst is on the wire). */
  uint64_t t0 = it_now_ms();
  assert_int_equal(send_burst(a, idb, 100, &seq), 0);
  assert_true(IT_WAIT(5000, count_errors(a, ISSUN_WIRE_RATE_LIMITED) == 1, a, b));
  assert_true(IT_WAIT(5000, itc_count_type(b, "lim::Tick") >= 20, a, b));
  /* A second burst in the same second is dropped too, with no second
   * ERROR.  Its events can be seen only if the bucket refilled. */
  assert_int_equal(send_burst(a, idb, 50, &seq), 0);
  /* Let everything in flight land: b sees a's later targeted marker only
   * after all earlier events from a (per-sender order). */
  it_poll(1, (itc *const[]){a, b}, 2);
  uint64_t elapsed = it_now_ms() - t0;
  size_t got = itc_count_type(b, "lim::Tick");
  /* 20 tokens at the start, 20 per second after that. */
  size_t cap = 20 + (size_t)(elapsed * 20 / 1000) + 1;
  assert_true(got >= 20);
  assert_true(got <= cap + 20); /* generous: elapsed is measured late */
  if (elapsed < 900) assert_int_equal(count_errors(a, ISSUN_WIRE_RATE_LIMITED), 1);

  /* Delivered events are the earliest ones, in order. */
  for (size_t i = 1; i < got; i++) assert_true(b->ev[i].sequence > b->ev[i - 1].sequence);

  /* Not fatal: a is still connected and, a second later, the next burst
   * over the limit earns a second RATE_LIMITED. */
  assert_int_equal(issun_client_state(a->c), ISSUN_STATE_CONNECTED);
  assert_true(IT_WAIT(3000, it_now_ms() - t0 > 1100, a, b));
  assert_int_equal(send_burst(a, idb, 100, &seq), 0);
  assert_true(IT_WAIT(5000, count_errors(a, ISSUN_WIRE_RATE_LIMITED) == 2, a, b));
  assert_int_equal(issun_client_state(a->c), ISSUN_STATE_CONNECTED);
  /* b was never limited and never told. */
  assert_int_equal(count_errors(b, ISSUN_WIRE_RATE_LIMITED), 0);
  itc_free(a);
  itc_free(b);
  assert_int_equal(it_server_stop(&s), 0);
}

/* Datagram events draw on the same bucket. */
static void test_rate_limit_shared_with_datagrams(void **state) {
  (void)state;
  it_server s;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=10", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *a = itc_new(&s, "a", NULL), *b = itc_new(&s, "b", NULL);
  uint64_t idb = issun_client_node_id(b->c);
  int seq = 0;
  assert_int_equal(send_burst(a, idb, 10, &seq), 0); /* empties the bucket */
  assert_true(IT_WAIT(5000, itc_count_type(b, "lim::Tick") == 10, a, b));
  for (int i = 0; i < 5; i++)
    assert_int_equal(issun_client_send(a->c, "lim::Dg", ISSUN_SCOPE_TARGETED, idb,
                                       ISSUN_UNRELIABLE, "d", 1, NULL),
                     0);
  assert_true(IT_WAIT(5000, count_errors(a, ISSUN_WIRE_RATE_LIMITED) == 1, a, b));
  /* At most the refill since the burst can have passed. */
  assert_true(itc_count_type(b, "lim::Dg") < 5);
  itc_free(a);
  itc_free(b);
  assert_int_equal(it_server_stop(&s), 0);
}

static void test_slow_consumer(void **state) {
  (void)state;
  it_server s;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=1000000", "ISSUN_SLOW_CONSUMER_BYTES=65536",
                       NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  itc *a = itc_new(&s, "sender", NULL), *b = itc_new(&s, "reader", NULL);
  itc *c = itc_new(&s, "stuck", NULL);
  assert_int_equal(issun__stop_reading(c->c, 1), 0);

  /* 3 MB of broadcast, paced the way a game sends (b keeps up, so its
   * backlog stays small): c's flow-control credit runs out and its backlog
   * at the server passes 64 KiB; b reads everything. */
  enum { SZ = 1000, CHUNK = 16 };
  /* under valgrind (ISSUN_TEST_SLOW, scripts/valgrind.sh) everything is some
   * 50x slower: 1.5 MB still fills c's 1 MiB flow-control window and puts its
   * backlog at the server past 64 KiB */
  const int slow = getenv("ISSUN_TEST_SLOW") != NULL;
  const int N = slow ? 1500 : 3000, wait_ms = slow ? 60000 : 10000;
  static uint8_t body[SZ];
  int sent = 0;
  uint64_t deadline = it_now_ms() + (slow ? 600000 : 60000);
  while (sent < N && it_now_ms() < deadline) {
    for (int k = 0; k < CHUNK && sent < N; k++) {
      memcpy(body, &sent, sizeof sent);
      int rv = issun_client_send(a->c, "slow::Chunk", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE,
                                 body, sizeof body, NULL);
      if (rv == ISSUN_ERR_QUEUE_FULL) break; /* our own send buffer: poll and retry */
      assert_int_equal(rv, 0);
      sent++;
    }
    int target = sent - CHUNK;
    assert_true(IT_WAIT(wait_ms, (int)itc_count_type(b, "slow::Chunk") >= target, a, b, c));
  }
  assert_int_equal(sent, N);
  int all = IT_WAIT(3 * wait_ms, (int)itc_count_type(b, "slow::Chunk") == N, a, b, c);
  if (!all)
    print_message("b got %zu of %d, c got %zu, c close %ld, b state %d\n",
                  itc_count_type(b, "slow::Chunk"), N, itc_count_type(c, "slow::Chunk"),
                  itc_close_code(c), (int)issun_client_state(b->c));
  assert_true(all);
  assert_true(IT_WAIT(10000, itc_close_code(c) == ISSUN_WIRE_SLOW_CONSUMER, a, b, c));
  for (size_t i = 0; i < (size_t)N; i++) {
    int v;
    memcpy(&v, b->ev[i].payload, sizeof v);
    assert_int_equal(v, (int)i);
  }
  assert_int_equal(issun_client_state(a->c), ISSUN_STATE_CONNECTED);
  assert_int_equal(issun_client_state(b->c), ISSUN_STATE_CONNECTED);
  itc_free(a);
  itc_free(b);
  itc_free(c);
  assert_int_equal(it_server_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rate_limit),
      cmocka_unit_test(test_rate_limit_shared_with_datagrams),
      cmocka_unit_test(test_slow_consumer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
