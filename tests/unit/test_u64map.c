/*
 * u64map: put/get/replace/del, key 0, growth and load factor, 100,000
 * random keys against a sorted reference, and backward-shift deletion in
 * clusters of keys that share a home slot (wrapping round the table end).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/u64map.h"

#define SEED UINT64_C(0x5eed0f0e1d2c3b4a)

typedef struct rng {
  uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
  uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Uniform enough in [0, n) for tests. */
static size_t rng_below(rng *r, size_t n) {
  return (size_t)(rng_next(r) % n);
}

static void *V(uintptr_t x) {
  return (void *)x;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Structure checks that need no knowledge of the hash: cap a power of two,
 * at most half full, count matches the occupied slots, every stored key is
 * found at its own slot, and no stored value is reachable for key 0. */
static void check_structure(const u64map *m) {
  assert_true(m->cap >= 8);
  assert_int_equal(m->cap & (m->cap - 1), 0);
  assert_true(m->count * 2 <= m->cap);
  size_t used = 0;
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == 0)
      continue;
    used++;
    assert_ptr_equal(u64map_get(m, m->keys[i]), m->vals[i]);
  }
  assert_int_equal(used, m->count);
  assert_int_equal(u64map_count(m), m->count);
}

static void test_basic(void **state) {
  (void)state;
  u64map m;
  assert_int_equal(u64map_init(&m, 0, SEED), 0);
  assert_int_equal(u64map_count(&m), 0);
  assert_null(u64map_get(&m, 1));
  assert_null(u64map_del(&m, 1));

  assert_int_equal(u64map_put(&m, 1, V(10)), 0);
  assert_int_equal(u64map_put(&m, 2, V(20)), 0);
  assert_int_equal(u64map_put(&m, UINT64_MAX, V(30)), 0);
  assert_int_equal(u64map_count(&m), 3);
  assert_ptr_equal(u64map_get(&m, 1), V(10));
  assert_ptr_equal(u64map_get(&m, 2), V(20));
  assert_ptr_equal(u64map_get(&m, UINT64_MAX), V(30));
  assert_null(u64map_get(&m, 3));

  /* replace keeps the count */
  assert_int_equal(u64map_put(&m, 2, V(21)), 0);
  assert_int_equal(u64map_count(&m), 3);
  assert_ptr_equal(u64map_get(&m, 2), V(21));
  /* a NULL value is storable, though get cannot tell it from absence */
  assert_int_equal(u64map_put(&m, 4, NULL), 0);
  assert_int_equal(u64map_count(&m), 4);
  assert_null(u64map_del(&m, 4));
  assert_int_equal(u64map_count(&m), 3);

  assert_ptr_equal(u64map_del(&m, 2), V(21));
  assert_int_equal(u64map_count(&m), 2);
  assert_null(u64map_get(&m, 2));
  assert_null(u64map_del(&m, 2));
  assert_ptr_equal(u64map_get(&m, 1), V(10));
  assert_ptr_equal(u64map_get(&m, UINT64_MAX), V(30));
  check_structure(&m);

  u64map_free(&m);
  assert_int_equal(u64map_count(&m), 0);
  assert_null(u64map_get(&m, 1));
  u64map_free(&m); /* twice is harmless */
}

static void test_key_zero(void **state) {
  (void)state;
  u64map m;
  assert_int_equal(u64map_init(&m, 16, SEED), 0);
  assert_int_equal(u64map_put(&m, 0, V(1)), -1);
  assert_int_equal(u64map_count(&m), 0);
  assert_null(u64map_get(&m, 0));
  assert_null(u64map_del(&m, 0));
  assert_int_equal(u64map_put(&m, 5, V(5)), 0);
  assert_null(u64map_get(&m, 0));
  assert_null(u64map_del(&m, 0));
  assert_int_equal(u64map_count(&m), 1);
  u64map_free(&m);
}

static void test_init_caps(void **state) {
  (void)state;
  static const size_t want[] = {0, 1, 7, 8, 9, 100, 1024, 1025};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    u64map m;
    assert_int_equal(u64map_init(&m, want[i], SEED), 0);
    assert_true(m.cap >= 8 && m.cap >= want[i]);
    assert_int_equal(m.cap & (m.cap - 1), 0);
    assert_true(m.cap < 16 || m.cap / 2 < want[i]); /* the smallest such power */
    assert_int_equal(m.count, 0);
    assert_int_equal(m.seed, SEED);
    u64map_free(&m);
  }
}

static void test_init_failure_then_usable(void **state) {
  (void)state;
  u64map m;
  assert_int_equal(u64map_init(&m, SIZE_MAX, SEED), -1);
  assert_int_equal(m.cap, 0);
  assert_int_equal(u64map_count(&m), 0);
  assert_null(u64map_get(&m, 9));
  assert_null(u64map_del(&m, 9));
  assert_int_equal(u64map_put(&m, 9, V(9)), 0); /* the first put allocates */
  assert_ptr_equal(u64map_get(&m, 9), V(9));
  check_structure(&m);
  u64map_free(&m);

  u64map z = {0}; /* so does a zeroed map */
  assert_int_equal(u64map_put(&z, 3, V(3)), 0);
  assert_ptr_equal(u64map_get(&z, 3), V(3));
  u64map_free(&z);
}

/* The map never goes above half full and grows by doubling. */
static void test_growth_load_factor(void **state) {
  (void)state;
  u64map m;
  assert_int_equal(u64map_init(&m, 8, SEED), 0);
  size_t prev_cap = m.cap;
  for (uint64_t k = 1; k <= 5000; k++) {
    assert_int_equal(u64map_put(&m, k, V(k)), 0);
    assert_true(m.count * 2 <= m.cap);
    assert_true(m.cap == prev_cap || m.cap == prev_cap * 2);
    prev_cap = m.cap;
  }
  assert_int_equal(m.cap, 16384); /* 5000 keys need 10000 <= cap */
  for (uint64_t k = 1; k <= 5000; k++)
    assert_ptr_equal(u64map_get(&m, k), V(k));
  check_structure(&m);
  u64map_free(&m);
}

/* 100,000 distinct random keys, inserted, checked, half deleted, re-put,
 * then a long random mix of operations against the sorted reference. */
static void test_random_against_reference(void **state) {
  (void)state;
  enum { N = 100000 };
  rng r = {42};
  uint64_t *keys = malloc(N * sizeof(*keys));
  uintptr_t *ref = calloc(N, sizeof(*ref)); /* 0 = absent */
  assert_non_null(keys);
  assert_non_null(ref);
  size_t n = 0;
  while (n < N) {
    /* draw a few more than needed, then drop duplicates and zeros */
    for (size_t i = n; i < N; i++)
      keys[i] = rng_next(&r) >> (rng_below(&r, 4) * 8);
    qsort(keys, N, sizeof(*keys), cmp_u64);
    n = 0;
    for (size_t i = 0; i < N; i++)
      if (keys[i] != 0 && (n == 0 || keys[n - 1] != keys[i]))
        keys[n++] = keys[i];
  }

  u64map m;
  assert_int_equal(u64map_init(&m, 0, rng_next(&r)), 0);
  for (size_t i = 0; i < N; i++) {
    ref[i] = i + 1;
    assert_int_equal(u64map_put(&m, keys[i], V(ref[i])), 0);
  }
  assert_int_equal(u64map_count(&m), N);
  for (size_t i = 0; i < N; i++)
    assert_ptr_equal(u64map_get(&m, keys[i]), V(ref[i]));
  check_structure(&m);

  for (size_t i = 0; i < N; i++) {
    if (rng_below(&r, 2))
      continue;
    assert_ptr_equal(u64map_del(&m, keys[i]), V(ref[i]));
    ref[i] = 0;
  }
  size_t live = 0;
  for (size_t i = 0; i < N; i++) {
    assert_ptr_equal(u64map_get(&m, keys[i]), ref[i] ? V(ref[i]) : NULL);
    live += ref[i] != 0;
  }
  assert_int_equal(u64map_count(&m), live);
  check_structure(&m);

  for (size_t op = 0; op < 400000; op++) {
    size_t i = rng_below(&r, N);
    switch (rng_below(&r, 4)) {
    case 0:
    case 1: {
      uintptr_t v = op + 1;
      assert_int_equal(u64map_put(&m, keys[i], V(v)), 0);
      live += ref[i] == 0;
      ref[i] = v;
      break;
    }
    case 2:
      assert_ptr_equal(u64map_del(&m, keys[i]), ref[i] ? V(ref[i]) : NULL);
      live -= ref[i] != 0;
      ref[i] = 0;
      break;
    default: {
      assert_ptr_equal(u64map_get(&m, keys[i]), ref[i] ? V(ref[i]) : NULL);
      uint64_t other = rng_next(&r);
      if (other != 0 && bsearch(&other, keys, N, sizeof(*keys), cmp_u64) == NULL) {
        assert_null(u64map_get(&m, other));
        assert_null(u64map_del(&m, other));
      }
      break;
    }
    }
    assert_int_equal(u64map_count(&m), live);
  }
  for (size_t i = 0; i < N; i++)
    assert_ptr_equal(u64map_get(&m, keys[i]), ref[i] ? V(ref[i]) : NULL);
  check_structure(&m);

  /* delete everything: the table ends empty */
  for (size_t i = 0; i < N; i++)
    assert_ptr_equal(u64map_del(&m, keys[i]), ref[i] ? V(ref[i]) : NULL);
  assert_int_equal(u64map_count(&m), 0);
  for (size_t i = 0; i < m.cap; i++)
    assert_int_equal(m.keys[i], 0);

  u64map_free(&m);
  free(keys);
  free(ref);
}

/* The home slot of key in a map of m's seed and cap, found by putting it
 * alone in an empty map of the same shape: with no other key, it lands at
 * its home. */
static size_t home_of(u64map *probe, uint64_t key) {
  assert_int_equal(u64map_count(probe), 0);
  assert_int_equal(u64map_put(probe, key, V(1)), 0);
  size_t home = SIZE_MAX;
  for (size_t i = 0; i < probe->cap; i++)
    if (probe->keys[i] == key)
      home = i;
  assert_ptr_equal(u64map_del(probe, key), V(1));
  assert_true(home != SIZE_MAX);
  return home;
}

typedef struct homed {
  uint64_t key;
  size_t home;
} homed;

/* The linear-probing invariant: between a key's home and its slot, no
 * slot is empty.  Also every listed key present is found. */
static void check_runs(const u64map *m, const homed *ks, size_t n, const int *present) {
  size_t mask = m->cap - 1;
  for (size_t i = 0; i < n; i++) {
    if (!present[i]) {
      assert_null(u64map_get(m, ks[i].key));
      continue;
    }
    assert_ptr_equal(u64map_get(m, ks[i].key), V(ks[i].key));
    size_t at = SIZE_MAX;
    for (size_t j = 0; j < m->cap; j++)
      if (m->keys[j] == ks[i].key)
        at = j;
    assert_true(at != SIZE_MAX);
    for (size_t j = ks[i].home; j != at; j = (j + 1) & mask)
      assert_int_not_equal(m->keys[j], 0);
  }
}

/* Keys forced into a few home slots of a 64-slot table, including the last
 * two slots so runs wrap round to slot 0; deletion anywhere in a run must
 * shift back exactly the keys that may move. */
static void test_backward_shift_collisions(void **state) {
  (void)state;
  enum { CAP = 64 };
  /* wanted home slot -> how many keys */
  static const struct {
    size_t home;
    int n;
  } plan[] = {{61, 3}, {62, 5}, {63, 3}, {0, 2}, {2, 3}, {5, 2}, {30, 4}, {31, 1}, {33, 2}};
  homed ks[32];
  size_t n = 0;
  u64map probe;
  assert_int_equal(u64map_init(&probe, CAP, SEED), 0);
  assert_int_equal(probe.cap, CAP);
  int have[CAP] = {0};
  int need[CAP] = {0};
  for (size_t p = 0; p < sizeof(plan) / sizeof(plan[0]); p++)
    need[plan[p].home] = plan[p].n;
  for (uint64_t k = 1; n < 25; k++) {
    assert_true(k < 1000000); /* a 1/64 chance per key: found long before */
    size_t h = home_of(&probe, k);
    if (have[h] < need[h]) {
      have[h]++;
      ks[n].key = k;
      ks[n].home = h;
      n++;
    }
  }
  assert_int_equal(n, 25);
  u64map_free(&probe);

  rng r = {7};
  for (int trial = 0; trial < 500; trial++) {
    /* insert in a random order, so runs form in many shapes */
    homed order[32];
    memcpy(order, ks, n * sizeof(*ks));
    for (size_t i = n - 1; i > 0; i--) {
      size_t j = rng_below(&r, i + 1);
      homed t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    u64map m;
    assert_int_equal(u64map_init(&m, CAP, SEED), 0);
    int present[32];
    for (size_t i = 0; i < n; i++) {
      assert_int_equal(u64map_put(&m, order[i].key, V(order[i].key)), 0);
      present[i] = 1;
    }
    assert_int_equal(m.cap, CAP); /* 25 <= 32: no growth, collisions kept */
    check_runs(&m, order, n, present);
    /* the 18 keys homed in 61..5 make one run that wraps round slot 0 */
    size_t run = 0;
    for (size_t j = 61; m.keys[j] != 0; j = (j + 1) & (CAP - 1))
      run++;
    assert_int_equal(run, 18);

    /* delete in another random order, checking after every step */
    size_t idx[32];
    for (size_t i = 0; i < n; i++)
      idx[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
      size_t j = rng_below(&r, i + 1);
      size_t t = idx[i];
      idx[i] = idx[j];
      idx[j] = t;
    }
    for (size_t d = 0; d < n; d++) {
      size_t i = idx[d];
      assert_ptr_equal(u64map_del(&m, order[i].key), V(order[i].key));
      present[i] = 0;
      assert_null(u64map_del(&m, order[i].key));
      check_runs(&m, order, n, present);
      assert_int_equal(u64map_count(&m), n - d - 1);
      /* and re-put sometimes, to delete it again later */
      if (d + 1 < n && rng_below(&r, 4) == 0) {
        assert_int_equal(u64map_put(&m, order[i].key, V(order[i].key)), 0);
        present[i] = 1;
        check_runs(&m, order, n, present);
        assert_ptr_equal(u64map_del(&m, order[i].key), V(order[i].key));
        present[i] = 0;
        check_runs(&m, order, n, present);
      }
    }
    for (size_t j = 0; j < CAP; j++)
      assert_int_equal(m.keys[j], 0);
    u64map_free(&m);
  }

  /* the seed is mixed in: under another seed, the five keys that shared
   * slot 62 do not all share a slot any more */
  u64map other;
  assert_int_equal(u64map_init(&other, CAP, SEED ^ 1), 0);
  size_t first = SIZE_MAX;
  int same = 0;
  for (size_t i = 0; i < n; i++) {
    if (ks[i].home != 62)
      continue;
    size_t h = home_of(&other, ks[i].key);
    if (first == SIZE_MAX)
      first = h;
    same += h == first;
  }
  assert_true(same < 5);
  u64map_free(&other);
}

/* Structured keys (sequential, only high bits differing, multiples of a
 * large power of two) must not pile up: the longest run of occupied slots
 * stays short. */
static void test_structured_keys_spread(void **state) {
  (void)state;
  enum { N = 50000 };
  for (int pattern = 0; pattern < 3; pattern++) {
    u64map m;
    assert_int_equal(u64map_init(&m, 0, SEED), 0);
    for (uint64_t i = 1; i <= N; i++) {
      uint64_t k = pattern == 0 ? i : pattern == 1 ? i << 40 : i * (UINT64_C(1) << 20);
      assert_int_equal(u64map_put(&m, k, V(i)), 0);
    }
    size_t longest = 0, run = 0;
    for (size_t j = 0; j < 2 * m.cap; j++) { /* twice round: runs that wrap */
      run = m.keys[j & (m.cap - 1)] != 0 ? run + 1 : 0;
      if (run > longest)
        longest = run;
    }
    /* random placement at load <= 1/2 gives runs of a few dozen at most */
    assert_true(longest < 200);
    for (uint64_t i = 1; i <= N; i++) {
      uint64_t k = pattern == 0 ? i : pattern == 1 ? i << 40 : i * (UINT64_C(1) << 20);
      assert_ptr_equal(u64map_get(&m, k), V(i));
    }
    u64map_free(&m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basic),
      cmocka_unit_test(test_key_zero),
      cmocka_unit_test(test_init_caps),
      cmocka_unit_test(test_init_failure_then_usable),
      cmocka_unit_test(test_growth_load_factor),
      cmocka_unit_test(test_random_against_reference),
      cmocka_unit_test(test_backward_shift_collisions),
      cmocka_unit_test(test_structured_keys_spread),
  };
  return cmocka_run_group_tests_name("u64map", tests, NULL, NULL);
}
