/*
 * u64map: linear probing, power-of-two capacity, load factor <= 1/2,
 * backward-shift deletion.  See u64map.h.
 */
#include "server/u64map.h"

#include <stdlib.h>

#define U64MAP_MIN_CAP ((size_t)8)
/* Largest table whose two arrays still have a representable size. */
#define U64MAP_MAX_CAP                                                                             \
  (SIZE_MAX / 2 / (sizeof(uint64_t) > sizeof(void *) ? sizeof(uint64_t) : sizeof(void *)))

/* A bijective 64-bit finaliser (the splitmix64 output function). */
static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  x ^= x >> 31;
  return x;
}

/* Two keyed rounds: without the seed, an adversary cannot tell which
 * NodeIds share a slot. */
static inline size_t home_slot(const u64map *m, uint64_t key) {
  uint64_t s2 = ((m->seed << 32) | (m->seed >> 32)) ^ UINT64_C(0x9e3779b97f4a7c15);
  return (size_t)(mix64(mix64(key ^ m->seed) + s2) & (uint64_t)(m->cap - 1));
}

/* Index of key, or of the empty slot ending its probe run.  cap > 0. */
static size_t probe(const u64map *m, uint64_t key) {
  size_t mask = m->cap - 1;
  size_t i = home_slot(m, key);
  while (m->keys[i] != 0 && m->keys[i] != key)
    i = (i + 1) & mask;
  return i;
}

/* Moves every entry into a fresh table of new_cap slots (a power of two,
 * more than twice the count).  On failure the map is unchanged. */
static int rehash(u64map *m, size_t new_cap) {
  uint64_t *keys = calloc(new_cap, sizeof(*keys));
  void **vals = calloc(new_cap, sizeof(*vals));
  if (keys == NULL || vals == NULL) {
    free(keys);
    free(vals);
    return -1;
  }
  u64map n = {keys, vals, new_cap, m->count, m->seed};
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == 0)
      continue;
    size_t j = probe(&n, m->keys[i]);
    n.keys[j] = m->keys[i];
    n.vals[j] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  *m = n;
  return 0;
}

int u64map_init(u64map *m, size_t initial_cap, uint64_t seed) {
  m->keys = NULL;
  m->vals = NULL;
  m->cap = 0;
  m->count = 0;
  m->seed = seed;
  if (initial_cap > U64MAP_MAX_CAP)
    return -1;
  size_t cap = U64MAP_MIN_CAP;
  while (cap < initial_cap)
    cap <<= 1;
  return rehash(m, cap);
}

void u64map_free(u64map *m) {
  free(m->keys);
  free(m->vals);
  m->keys = NULL;
  m->vals = NULL;
  m->cap = 0;
  m->count = 0;
}

void *u64map_get(const u64map *m, uint64_t key) {
  if (key == 0 || m->cap == 0)
    return NULL;
  size_t i = probe(m, key);
  return m->keys[i] == key ? m->vals[i] : NULL;
}

int u64map_put(u64map *m, uint64_t key, void *val) {
  if (key == 0)
    return -1;
  if (m->cap > 0) {
    size_t i = probe(m, key);
    if (m->keys[i] == key) {
      m->vals[i] = val;
      return 0;
    }
  }
  /* A new key: keep count <= cap / 2 after the insert. */
  if (m->cap == 0 || m->count + 1 > m->cap / 2) {
    size_t new_cap = m->cap == 0 ? U64MAP_MIN_CAP : m->cap;
    while (m->count + 1 > new_cap / 2) {
      if (new_cap > U64MAP_MAX_CAP / 2)
        return -1;
      new_cap <<= 1;
    }
    if (rehash(m, new_cap) != 0)
      return -1;
  }
  size_t i = probe(m, key);
  m->keys[i] = key;
  m->vals[i] = val;
  m->count++;
  return 0;
}

void *u64map_del(u64map *m, uint64_t key) {
  if (key == 0 || m->cap == 0)
    return NULL;
  size_t mask = m->cap - 1;
  size_t hole = probe(m, key);
  if (m->keys[hole] != key)
    return NULL;
  void *val = m->vals[hole];
  /* Walk the rest of the run; an entry whose home lies cyclically at or
   * before the hole moves into it, and its old slot becomes the hole. */
  for (size_t j = (hole + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
    size_t home = home_slot(m, m->keys[j]);
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      m->keys[hole] = m->keys[j];
      m->vals[hole] = m->vals[j];
      hole = j;
    }
  }
  m->keys[hole] = 0;
  m->vals[hole] = NULL;
  m->count--;
  return val;
}

size_t u64map_count(const u64map *m) {
  return m->count;
}
