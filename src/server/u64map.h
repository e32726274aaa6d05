/*
 * u64map: an open-addressing hash map from non-zero uint64_t keys to void*
 * values (the server's NodeId -> session table).
 *
 * Linear probing over a power-of-two table kept at most half full; deletion
 * shifts the following run back (no tombstones), so lookups never slow down
 * with churn.  Key 0 marks an empty slot and is never stored.  NodeIds are
 * chosen by peers, so slots come from a strong 64-bit mixer keyed with a
 * per-map random seed: colliding keys cannot be precomputed.
 *
 * The map owns its two arrays, never the values.  Not thread-safe.
 */
#ifndef ISSUN_SERVER_U64MAP_H
#define ISSUN_SERVER_U64MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct u64map {
  uint64_t *keys; /* cap slots, 0 = empty */
  void **vals;    /* parallel to keys */
  size_t cap, count;
  uint64_t seed;
} u64map;

/* Initialises *m with room for at least initial_cap slots (rounded up to a
 * power of two, at least 8) and the hashing seed (pass a random value).
 * Returns 0, or -1 on allocation failure or an absurd initial_cap (*m is
 * then empty but safe to pass to u64map_free and to use: the first put
 * allocates). */
int u64map_init(u64map *m, size_t initial_cap, uint64_t seed);

/* Frees the arrays (not the values) and leaves *m empty. */
void u64map_free(u64map *m);

/* The value stored under key, or NULL when absent (key 0 is never present). */
void *u64map_get(const u64map *m, uint64_t key);

/* Inserts key -> val, or replaces the value of an existing key (which never
 * allocates, so never fails).  Returns 0, or -1 for key 0 or when growing
 * the table failed (the map is then unchanged). */
int u64map_put(u64map *m, uint64_t key, void *val);

/* Removes key and returns its value, or NULL when absent. */
void *u64map_del(u64map *m, uint64_t key);

/* Number of keys stored. */
size_t u64map_count(const u64map *m);

#endif
