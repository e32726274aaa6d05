/*
 * Per-address limits: an open-addressing hash table (linear probing,
 * backward-shift deletion) of fixed capacity, keyed by a 16-byte address
 * key, with a connection count and a handshake token bucket per entry.
 */
#include "server/iplimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000ull

typedef struct ipl_entry {
  uint8_t key[16];
  uint8_t used;
  uint32_t conns;
  uint64_t tokens_us; /* handshake tokens, in millionths */
  uint64_t last_ns;   /* last refill */
} ipl_entry;

struct iplimit {
  ipl_entry *slots;
  uint32_t cap; /* power of two, > max_entries */
  uint32_t n;
  uint32_t max_entries;
  uint32_t max_conns;
  uint32_t hs_per_sec;
  uint64_t seed;
};

/* key: 0x04 + IPv4, or 0x06 + the /64 prefix; the rest zero. */
static int make_key(const struct sockaddr *sa, uint8_t key[16]) {
  memset(key, 0, 16);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)sa;
    key[0] = 4;
    memcpy(key + 1, &a->sin_addr, 4);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)sa;
    const uint8_t *b = a->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(b, mapped, 12) == 0) {
      key[0] = 4;
      memcpy(key + 1, b + 12, 4);
    } else {
      key[0] = 6;
      memcpy(key + 1, b, 8);
    }
    return 0;
  }
  return -1;
}

static uint64_t hash_key(const iplimit *t, const uint8_t key[16]) {
  uint64_t a, b;
  memcpy(&a, key, 8);
  memcpy(&b, key + 8, 8);
  uint64_t h = (a ^ t->seed) * 0x9E3779B97F4A7C15ull;
  h ^= (b + (h >> 29)) * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 31;
  return h;
}

iplimit *iplimit_new(uint32_t max_conns, uint32_t hs_per_sec, uint32_t max_entries, uint64_t seed) {
  iplimit *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  if (max_entries < 16) max_entries = 16;
  uint32_t cap = 32;
  while (cap < max_entries + max_entries / 2) cap *= 2; /* load factor <= 2/3 */
  t->slots = calloc(cap, sizeof *t->slots);
  if (!t->slots) {
    free(t);
    return NULL;
  }
  t->cap = cap;
  t->max_entries = max_entries;
  t->max_conns = max_conns;
  t->hs_per_sec = hs_per_sec;
  t->seed = seed | 1;
  return t;
}

void iplimit_free(iplimit *t) {
  if (!t) return;
  free(t->slots);
  free(t);
}

static ipl_entry *find(const iplimit *t, const uint8_t key[16]) {
  uint32_t mask = t->cap - 1;
  for (uint32_t i = (uint32_t)hash_key(t, key) & mask;; i = (i + 1) & mask) {
    ipl_entry *e = &t->slots[i];
    if (!e->used) return NULL;
    if (memcmp(e->key, key, 16) == 0) return e;
  }
}

static void remove_at(iplimit *t, uint32_t i) {
  uint32_t mask = t->cap - 1;
  t->slots[i].used = 0;
  t->n--;
  /* backward-shift: move later entries of the cluster into the hole */
  for (uint32_t j = (i + 1) & mask; t->slots[j].used; j = (j + 1) & mask) {
    uint32_t home = (uint32_t)hash_key(t, t->slots[j].key) & mask;
    /* can j's entry live at i?  yes when home is not in (i, j] cyclically */
    int between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!between) {
      t->slots[i] = t->slots[j];
      t->slots[j].used = 0;
      i = j;
    }
  }
}

static void refill(const iplimit *t, ipl_entry *e, uint64_t now) {
  uint64_t cap = (uint64_t)t->hs_per_sec * 1000000ull;
  if (now > e->last_ns) {
    uint64_t dt = now - e->last_ns;
    uint64_t add = dt >= NS_PER_S ? cap : (dt / 1000ull) * t->hs_per_sec;
    e->tokens_us = e->tokens_us + add > cap ? cap : e->tokens_us + add;
  }
  e->last_ns = now;
}

static int idle(const iplimit *t, const ipl_entry *e, uint64_t now) {
  return e->conns == 0 && (t->hs_per_sec == 0 || now - e->last_ns >= NS_PER_S ||
                           e->tokens_us >= (uint64_t)t->hs_per_sec * 1000000ull);
}

/* Drops every idle entry.  O(cap), only run when the table is full. */
static void sweep(iplimit *t, uint64_t now) {
  for (uint32_t i = 0; i < t->cap;) {
    ipl_entry *e = &t->slots[i];
    if (e->used && idle(t, e, now)) {
      remove_at(t, i); /* another entry may have shifted into i */
      continue;
    }
    i++;
  }
}

static int verdict(const iplimit *t, const ipl_entry *e) {
  if (t->max_conns && e && e->conns >= t->max_conns) return IPL_CONNS;
  if (t->hs_per_sec && e && e->tokens_us < 1000000ull) return IPL_RATE;
  return IPL_OK;
}

int iplimit_check(iplimit *t, const struct sockaddr *sa, uint64_t now_ns) {
  uint8_t key[16];
  if (!t || make_key(sa, key) != 0) return IPL_OK;
  ipl_entry *e = find(t, key);
  if (e) refill(t, e, now_ns);
  return verdict(t, e);
}

int iplimit_admit(iplimit *t, const struct sockaddr *sa, uint64_t now_ns) {
  uint8_t key[16];
  if (!t || make_key(sa, key) != 0) return IPL_OK;
  ipl_entry *e = find(t, key);
  if (e) {
    refill(t, e, now_ns);
    int v = verdict(t, e);
    if (v != IPL_OK) return v;
  } else {
    if (t->n >= t->max_entries) sweep(t, now_ns);
    if (t->n >= t->max_entries) return IPL_TABLE_FULL;
    uint32_t mask = t->cap - 1;
    uint32_t i = (uint32_t)hash_key(t, key) & mask;
    while (t->slots[i].used) i = (i + 1) & mask;
    e = &t->slots[i];
    memcpy(e->key, key, 16);
    e->used = 1;
    e->conns = 0;
    e->tokens_us = (uint64_t)t->hs_per_sec * 1000000ull;
    e->last_ns = now_ns;
    t->n++;
  }
  if (t->hs_per_sec) e->tokens_us -= 1000000ull;
  e->conns++;
  return IPL_OK;
}

void iplimit_release(iplimit *t, const struct sockaddr *sa, uint64_t now_ns) {
  uint8_t key[16];
  if (!t || make_key(sa, key) != 0) return;
  ipl_entry *e = find(t, key);
  if (!e || e->conns == 0) return;
  e->conns--;
  if (e->conns == 0) {
    refill(t, e, now_ns);
    if (idle(t, e, now_ns)) remove_at(t, (uint32_t)(e - t->slots));
  }
}

uint32_t iplimit_conns(const iplimit *t, const struct sockaddr *sa) {
  uint8_t key[16];
  if (!t || make_key(sa, key) != 0) return 0;
  const ipl_entry *e = find(t, key);
  return e ? e->conns : 0;
}

size_t iplimit_entries(const iplimit *t) {
  return t ? t->n : 0;
}
