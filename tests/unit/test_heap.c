/*
 * heap: ordering, re-keying both ways, removal anywhere, idx bookkeeping,
 * and long random runs against a reference that scans for the minimum.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "server/heap.h"

typedef struct rng {
  uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
  uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static size_t rng_below(rng *r, size_t n) {
  return (size_t)(rng_next(r) % n);
}

/* How users embed the node. */
typedef struct timer {
  int id;
  heap_node hn;
  int in_heap; /* the reference's view */
} timer;

static timer *timer_of(heap_node *n) {
  return (timer *)(void *)((char *)n - offsetof(timer, hn));
}

/* The heap property and idx == position for every node. */
static void check_heap(const heap *h) {
  assert_true(h->len <= h->cap);
  for (size_t i = 0; i < h->len; i++) {
    assert_non_null(h->v[i]);
    assert_int_equal(h->v[i]->idx, i);
    if (i > 0)
      assert_true(h->v[(i - 1) / 2]->key <= h->v[i]->key);
  }
  if (h->len == 0)
    assert_null(heap_min(h));
  else
    assert_ptr_equal(heap_min(h), h->v[0]);
}

/* The reference: the nodes flagged in_heap, idx agreeing with the flag,
 * and heap_min holding a node of the true minimum key. */
static void check_against(const heap *h, const timer *ts, size_t n) {
  size_t live = 0;
  int have_min = 0;
  uint64_t min = 0;
  for (size_t i = 0; i < n; i++) {
    if (!ts[i].in_heap) {
      assert_int_equal(ts[i].hn.idx, HEAP_NONE);
      continue;
    }
    live++;
    assert_true(ts[i].hn.idx < h->len);
    assert_ptr_equal(h->v[ts[i].hn.idx], &ts[i].hn);
    if (!have_min || ts[i].hn.key < min)
      min = ts[i].hn.key;
    have_min = 1;
  }
  assert_int_equal(h->len, live);
  heap_node *m = heap_min(h);
  if (live == 0) {
    assert_null(m);
  } else {
    assert_non_null(m);
    assert_int_equal(m->key, min);
    assert_true(timer_of(m)->in_heap);
  }
}

static void test_empty(void **state) {
  (void)state;
  heap h;
  heap_init(&h);
  assert_null(heap_min(&h));
  assert_int_equal(h.len, 0);
  heap_node n = HEAP_NODE_INIT;
  assert_int_equal(n.idx, HEAP_NONE);
  assert_false(heap_node_active(&n));
  heap_remove(&h, &n); /* not in a heap: no-op */
  assert_int_equal(n.idx, HEAP_NONE);
  assert_null(heap_min(&h));
  heap_free(&h);
  heap_free(&h); /* an empty heap frees again harmlessly */
}

static void test_single(void **state) {
  (void)state;
  heap h;
  heap_init(&h);
  heap_node n;
  heap_node_init(&n);
  assert_int_equal(heap_set(&h, &n, 42), 0);
  assert_true(heap_node_active(&n));
  assert_int_equal(n.idx, 0);
  assert_int_equal(n.key, 42);
  assert_ptr_equal(heap_min(&h), &n);
  assert_int_equal(heap_set(&h, &n, 7), 0); /* re-key in place */
  assert_int_equal(h.len, 1);
  assert_int_equal(n.key, 7);
  heap_remove(&h, &n);
  assert_int_equal(n.idx, HEAP_NONE);
  assert_int_equal(h.len, 0);
  assert_null(heap_min(&h));
  heap_remove(&h, &n); /* second removal is a no-op */
  assert_int_equal(h.len, 0);
  assert_int_equal(heap_set(&h, &n, 9), 0); /* and it can go back in */
  assert_ptr_equal(heap_min(&h), &n);
  heap_remove(&h, &n);
  heap_free(&h);
}

/* Insert 2,000 keys with many duplicates and the extremes, then take the
 * minimum out repeatedly: a sorted sequence, every node seen once. */
static void test_sorted_drain(void **state) {
  (void)state;
  enum { N = 2000 };
  rng r = {1};
  timer *ts = calloc(N, sizeof(*ts));
  assert_non_null(ts);
  heap h;
  heap_init(&h);
  for (size_t i = 0; i < N; i++) {
    heap_node_init(&ts[i].hn);
    ts[i].id = (int)i;
    uint64_t key = i == 0 ? UINT64_MAX : i == 1 ? 0 : rng_below(&r, 300);
    assert_int_equal(heap_set(&h, &ts[i].hn, key), 0);
  }
  check_heap(&h);
  uint64_t last = 0;
  size_t taken = 0;
  while (heap_min(&h) != NULL) {
    heap_node *m = heap_min(&h);
    timer *t = timer_of(m);
    assert_true(m->key >= last);
    assert_false(t->in_heap); /* used here as "already taken" */
    t->in_heap = 1;
    last = m->key;
    heap_remove(&h, m);
    assert_int_equal(m->idx, HEAP_NONE);
    taken++;
    if (taken % 97 == 0)
      check_heap(&h);
  }
  assert_int_equal(taken, N);
  assert_int_equal(last, UINT64_MAX);
  heap_free(&h);
  free(ts);
}

/* Re-keying a node down makes it the minimum; up pushes it below others;
 * removing from the middle, the root and the last slot keeps order. */
static void test_rekey_and_remove_positions(void **state) {
  (void)state;
  enum { N = 31 };
  timer ts[N];
  heap h;
  heap_init(&h);
  for (size_t i = 0; i < N; i++) {
    heap_node_init(&ts[i].hn);
    ts[i].in_heap = 1;
    assert_int_equal(heap_set(&h, &ts[i].hn, 100 + i * 10), 0);
  }
  check_against(&h, ts, N);
  assert_ptr_equal(heap_min(&h), &ts[0].hn);

  assert_int_equal(heap_set(&h, &ts[20].hn, 5), 0); /* down: new minimum */
  check_heap(&h);
  check_against(&h, ts, N);
  assert_ptr_equal(heap_min(&h), &ts[20].hn);

  assert_int_equal(heap_set(&h, &ts[20].hn, 1000), 0); /* up: sinks to a leaf */
  check_heap(&h);
  check_against(&h, ts, N);
  assert_ptr_equal(heap_min(&h), &ts[0].hn);
  assert_true(ts[20].hn.idx >= N / 2); /* the largest key is a leaf */

  assert_int_equal(heap_set(&h, &ts[0].hn, 100), 0); /* same key: stays */
  assert_ptr_equal(heap_min(&h), &ts[0].hn);
  assert_int_equal(h.len, N);

  /* remove the node in the last slot, the root, then one in the middle */
  heap_node *lastn = h.v[h.len - 1];
  heap_remove(&h, lastn);
  timer_of(lastn)->in_heap = 0;
  check_heap(&h);
  check_against(&h, ts, N);

  heap_node *root = heap_min(&h);
  heap_remove(&h, root);
  timer_of(root)->in_heap = 0;
  check_heap(&h);
  check_against(&h, ts, N);

  heap_node *mid = h.v[h.len / 2];
  heap_remove(&h, mid);
  timer_of(mid)->in_heap = 0;
  check_heap(&h);
  check_against(&h, ts, N);

  /* removal where the moved-in last node must go up, not down: a subtree
   * of large keys under the root's right child, and a small last key */
  heap h2;
  heap_init(&h2);
  timer a[7];
  static const uint64_t keys[7] = {1, 50, 2, 60, 70, 3, 4};
  for (size_t i = 0; i < 7; i++) {
    heap_node_init(&a[i].hn);
    a[i].in_heap = 1;
    assert_int_equal(heap_set(&h2, &a[i].hn, keys[i]), 0);
  }
  check_heap(&h2);
  /* layout: [1, 50, 2, 60, 70, 3, 4]; removing 60 moves 4 under 50 */
  assert_int_equal(a[3].hn.idx, 3);
  heap_remove(&h2, &a[3].hn);
  a[3].in_heap = 0;
  check_heap(&h2);
  check_against(&h2, a, 7);
  assert_int_equal(a[6].hn.idx, 1); /* 4 rose above 50 */
  heap_free(&h2);
  heap_free(&h);
}

/* Long random runs against the reference, with narrow key ranges (ties)
 * and full 64-bit keys; every node goes in and out many times. */
static void test_random_against_reference(void **state) {
  (void)state;
  enum { N = 600, OPS = 200000 };
  timer *ts = calloc(N, sizeof(*ts));
  assert_non_null(ts);
  for (int round = 0; round < 2; round++) {
    rng r = {(uint64_t)round + 100};
    heap h;
    heap_init(&h);
    for (size_t i = 0; i < N; i++) {
      ts[i].id = (int)i;
      ts[i].in_heap = 0;
      heap_node_init(&ts[i].hn);
    }
    for (size_t op = 0; op < OPS; op++) {
      timer *t = &ts[rng_below(&r, N)];
      uint64_t key = round == 0 ? rng_below(&r, 50) : rng_next(&r);
      size_t what = rng_below(&r, 8);
      if (!t->in_heap) {
        if (what < 5) {
          assert_int_equal(heap_set(&h, &t->hn, key), 0);
          t->in_heap = 1;
        } else {
          heap_remove(&h, &t->hn); /* no-op */
        }
      } else if (what < 4) {
        assert_int_equal(heap_set(&h, &t->hn, key), 0); /* re-key */
      } else if (what < 7) {
        heap_remove(&h, &t->hn);
        t->in_heap = 0;
      } else {
        heap_node *m = heap_min(&h); /* pop, as a timer loop would */
        heap_remove(&h, m);
        timer_of(m)->in_heap = 0;
      }
      assert_int_equal(t->hn.idx == HEAP_NONE, !t->in_heap);
      if (op < 20000 || op % 16 == 0) {
        check_heap(&h);
        check_against(&h, ts, N);
      } else {
        /* cheap per-op checks: the root is a live node no larger than its
         * children */
        heap_node *m = heap_min(&h);
        if (m != NULL) {
          assert_int_equal(m->idx, 0);
          assert_true(timer_of(m)->in_heap);
          if (h.len > 1)
            assert_true(m->key <= h.v[1]->key);
          if (h.len > 2)
            assert_true(m->key <= h.v[2]->key);
        }
      }
    }
    check_heap(&h);
    check_against(&h, ts, N);
    heap_free(&h);
    assert_int_equal(h.len, 0);
    assert_null(h.v);
  }
  free(ts);
}

/* The array grows by doubling past its first allocation and keeps every
 * node: 100,000 inserts, all found, drained in order. */
static void test_growth(void **state) {
  (void)state;
  enum { N = 100000 };
  heap_node *ns = malloc(N * sizeof(*ns));
  assert_non_null(ns);
  heap h;
  heap_init(&h);
  for (size_t i = 0; i < N; i++) {
    heap_node_init(&ns[i]);
    /* descending keys: every insert sifts all the way up */
    assert_int_equal(heap_set(&h, &ns[i], (uint64_t)(N - i)), 0);
    assert_ptr_equal(heap_min(&h), &ns[i]);
  }
  assert_int_equal(h.len, N);
  assert_true(h.cap >= N);
  check_heap(&h);
  for (uint64_t k = 1; k <= N; k++) {
    heap_node *m = heap_min(&h);
    assert_int_equal(m->key, k);
    heap_remove(&h, m);
  }
  assert_null(heap_min(&h));
  for (size_t i = 0; i < N; i++)
    assert_int_equal(ns[i].idx, HEAP_NONE);
  heap_free(&h);
  free(ns);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_single),
      cmocka_unit_test(test_sorted_drain),
      cmocka_unit_test(test_rekey_and_remove_positions),
      cmocka_unit_test(test_random_against_reference),
      cmocka_unit_test(test_growth),
  };
  return cmocka_run_group_tests_name("heap", tests, NULL, NULL);
}
