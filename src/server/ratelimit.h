/*
 * Token buckets and NodeId picking: the two small policies of session
 * handling, kept apart from the relay so they can be tested alone.
 */
#ifndef ISSUN_SERVER_RATELIMIT_H
#define ISSUN_SERVER_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "server/u64map.h"

/* A token bucket of `rate` tokens per second holding at most `rate` tokens.
 * Tokens are counted in millionths so refills need no floating point; time
 * is in nanoseconds.  Refill time that is too short to earn a millionth is
 * kept, not lost, so a fast sender is limited exactly at `rate`. */
typedef struct tbucket {
  uint64_t micro;   /* tokens x 1e6 */
  uint64_t last_ns; /* time up to which refills are accounted */
} tbucket;

/* Full bucket at time now. */
void tb_init(tbucket *b, uint32_t rate, uint64_t now_ns);

/* Takes one token at time now: 1 when there was one, 0 when the bucket is
 * empty (nothing is taken).  rate 0 means unlimited. */
int tb_take(tbucket *b, uint32_t rate, uint64_t now_ns);

/* A random generator: fills n bytes. */
typedef void (*rnd_fn)(void *ctx, void *out, size_t n);

/* Picks a random non-zero NodeId that `in_use` does not hold.  Gives up
 * and returns 0 after 64 tries (a map that full of ids cannot happen with
 * 64-bit ids and a bounded client count; only a broken generator gets
 * there). */
uint64_t node_id_pick(const u64map *in_use, rnd_fn rnd, void *ctx);

#endif
