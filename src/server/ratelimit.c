#include "server/ratelimit.h"

#define MICRO 1000000ull

void tb_init(tbucket *b, uint32_t rate, uint64_t now_ns) {
  b->micro = (uint64_t)rate * MICRO;
  b->last_ns = now_ns;
}

int tb_take(tbucket *b, uint32_t rate, uint64_t now_ns) {
  if (rate == 0) return 1;
  uint64_t cap = (uint64_t)rate * MICRO;
  if (now_ns > b->last_ns) {
    uint64_t dt = now_ns - b->last_ns;
    if (dt >= 2000000000ull) {
      /* Idle long enough to refill completely whatever the rate. */
      b->micro = cap;
      b->last_ns = now_ns;
    } else {
      /* rate tokens/s = rate micro-tokens per microsecond: refill whole
       * microseconds and keep the remainder of dt for next time. */
      uint64_t us = dt / 1000u;
      b->micro += us * rate;
      b->last_ns += us * 1000u;
      if (b->micro >= cap) {
        b->micro = cap;
        b->last_ns = now_ns;
      }
    }
  }
  if (b->micro < MICRO) return 0;
  b->micro -= MICRO;
  return 1;
}

uint64_t node_id_pick(const u64map *in_use, rnd_fn rnd, void *ctx) {
  for (int i = 0; i < 64; i++) {
    uint64_t id = 0;
    rnd(ctx, &id, sizeof id);
    if (id != 0 && !u64map_get(in_use, id)) return id;
  }
  return 0;
}
