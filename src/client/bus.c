/*
 * libissun: the event bus (issun_bus), the seed's EventBus in C.
 *
 * Two frames, each an arena of payload bytes plus an array of event
 * records: publishes and remote events append to the write frame;
 * issun_bus_dispatch() turns the write frame into the read frame and
 * empties the old read frame for writing.  Both keep their memory, so a
 * game whose event volume is steady allocates nothing after warm-up.
 * Records of one type are chained (head/tail per type and frame), so a
 * reader walks only its own type.  Type names are found by a small
 * open-addressing hash table (remote events arrive by name).
 */
#include <stdlib.h>
#include <string.h>

#include "client/client_priv.h"

#define NONE UINT32_MAX

typedef struct bus_type {
  char *name;
  size_t name_len;
  issun_scope scope;
  issun_delivery delivery;
  int networked;
  uint32_t head[2];
  uint32_t tail[2];
  uint32_t count[2];
} bus_type;

typedef struct bus_rec {
  uint32_t type;
  uint32_t next; /* next record of the same type, NONE at the end */
  size_t off;    /* payload offset in the frame's arena */
  size_t len;
  issun_event_meta meta;
} bus_rec;

typedef struct bus_frame {
  ic_bytes arena;
  bus_rec *recs;
  size_t nrecs;
  size_t cap;
} bus_frame;

struct issun_bus {
  issun_client *client;
  bus_type *types;
  uint32_t ntypes;
  uint32_t tcap;
  uint32_t *hash; /* type index + 1, 0 = empty */
  size_t hcap;    /* power of two */
  bus_frame frames[2];
  int w; /* write frame; the read frame is 1 - w */
  uint64_t generation;
  uint64_t local_seq;
  issun_bus_stats st;
};

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (uint8_t)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

static int find_type(const issun_bus *b, const char *name, size_t n, uint32_t *out) {
  if (!b->hcap)
    return 0;
  size_t mask = b->hcap - 1;
  for (size_t i = (size_t)fnv1a(name, n) & mask;; i = (i + 1) & mask) {
    uint32_t v = b->hash[i];
    if (v == 0)
      return 0;
    const bus_type *t = &b->types[v - 1];
    if (t->name_len == n && memcmp(t->name, name, n) == 0) {
      *out = v - 1;
      return 1;
    }
  }
}

static void hash_insert(uint32_t *tab, size_t cap, const bus_type *types, uint32_t idx) {
  size_t mask = cap - 1;
  size_t i = (size_t)fnv1a(types[idx].name, types[idx].name_len) & mask;
  while (tab[i] != 0)
    i = (i + 1) & mask;
  tab[i] = idx + 1;
}

static int hash_grow(issun_bus *b) {
  size_t ncap = b->hcap ? b->hcap * 2 : 16;
  uint32_t *tab = calloc(ncap, sizeof(*tab));
  if (!tab)
    return ISSUN_ERR_NOMEM;
  for (uint32_t i = 0; i < b->ntypes; i++)
    hash_insert(tab, ncap, b->types, i);
  free(b->hash);
  b->hash = tab;
  b->hcap = ncap;
  return 0;
}

/* ---- lifecycle -------------------------------------------------------------- */

ISSUN_API int issun_bus_new(issun_bus **out, issun_client *client) {
  if (!out)
    return ISSUN_ERR_INVALID_ARG;
  *out = NULL;
  if (client && issun_client__bus(client))
    return ISSUN_ERR_STATE;
  issun_bus *b = calloc(1, sizeof(*b));
  if (!b)
    return ISSUN_ERR_NOMEM;
  if (client) {
    issun_client__set_bus(client, b);
    b->client = client;
  }
  *out = b;
  return 0;
}

ISSUN_API void issun_bus_free(issun_bus *b) {
  if (!b)
    return;
  if (b->client)
    issun_client__set_bus(b->client, NULL);
  for (uint32_t i = 0; i < b->ntypes; i++)
    free(b->types[i].name);
  free(b->types);
  free(b->hash);
  for (int f = 0; f < 2; f++) {
    ic_bytes_free(&b->frames[f].arena);
    free(b->frames[f].recs);
  }
  free(b);
}

void issun_bus__client_gone(struct issun_bus *b) {
  if (b)
    b->client = NULL;
}

ISSUN_API int issun_bus_attach(issun_bus *b, issun_client *client) {
  if (!b)
    return ISSUN_ERR_INVALID_ARG;
  if (b->client == client)
    return 0;
  if (client && issun_client__bus(client) && issun_client__bus(client) != b)
    return ISSUN_ERR_STATE;
  if (b->client)
    issun_client__set_bus(b->client, NULL);
  b->client = client;
  if (client)
    issun_client__set_bus(client, b);
  return 0;
}

/* ---- types ------------------------------------------------------------------- */

ISSUN_API int issun_bus_register(issun_bus *b, const char *type_name, issun_scope scope,
                                 issun_delivery delivery, int networked, issun_event_type *out) {
  if (!b || !type_name)
    return ISSUN_ERR_INVALID_ARG;
  size_t n = strnlen(type_name, ISSUN_MAX_TYPE_NAME_LEN + 1);
  if (n == 0 || n > ISSUN_MAX_TYPE_NAME_LEN)
    return ISSUN_ERR_INVALID_ARG;
  if (!pr_utf8_valid((const uint8_t *)type_name, n))
    return ISSUN_ERR_INVALID_ARG;
  if (scope != ISSUN_SCOPE_BROADCAST && scope != ISSUN_SCOPE_TO_SERVER &&
      scope != ISSUN_SCOPE_TARGETED)
    return ISSUN_ERR_INVALID_ARG;
  if (delivery != ISSUN_RELIABLE && delivery != ISSUN_UNRELIABLE)
    return ISSUN_ERR_INVALID_ARG;
  if (networked != 0 && networked != 1)
    return ISSUN_ERR_INVALID_ARG;
  uint32_t dummy;
  if (find_type(b, type_name, n, &dummy))
    return ISSUN_ERR_EXISTS;
  if (b->ntypes == NONE - 1)
    return ISSUN_ERR_NOMEM;
  if (b->ntypes == b->tcap) {
    uint32_t ncap = b->tcap ? b->tcap * 2 : 8;
    bus_type *t = realloc(b->types, (size_t)ncap * sizeof(*t));
    if (!t)
      return ISSUN_ERR_NOMEM;
    b->types = t;
    b->tcap = ncap;
  }
  if ((size_t)(b->ntypes + 1) * 2 > b->hcap && hash_grow(b) != 0)
    return ISSUN_ERR_NOMEM;
  char *name = malloc(n + 1);
  if (!name)
    return ISSUN_ERR_NOMEM;
  memcpy(name, type_name, n);
  name[n] = 0;
  bus_type *t = &b->types[b->ntypes];
  memset(t, 0, sizeof(*t));
  t->name = name;
  t->name_len = n;
  t->scope = scope;
  t->delivery = delivery;
  t->networked = networked;
  for (int f = 0; f < 2; f++)
    t->head[f] = t->tail[f] = NONE;
  hash_insert(b->hash, b->hcap, b->types, b->ntypes);
  if (out)
    *out = b->ntypes;
  b->ntypes++;
  return 0;
}

ISSUN_API int issun_bus_lookup(const issun_bus *b, const char *type_name, issun_event_type *out) {
  if (!b || !type_name || !out)
    return ISSUN_ERR_INVALID_ARG;
  size_t n = strnlen(type_name, ISSUN_MAX_TYPE_NAME_LEN + 1);
  if (n == 0 || n > ISSUN_MAX_TYPE_NAME_LEN)
    return ISSUN_ERR_INVALID_ARG;
  uint32_t idx;
  if (!find_type(b, type_name, n, &idx))
    return ISSUN_ERR_NOT_FOUND;
  *out = idx;
  return 0;
}

/* ---- frames ------------------------------------------------------------------- */

static int append(issun_bus *b, uint32_t type, const void *payload, size_t len,
                  const issun_event_meta *meta) {
  bus_frame *f = &b->frames[b->w];
  if (f->nrecs == NONE - 1)
    return ISSUN_ERR_QUEUE_FULL;
  if (f->nrecs == f->cap) {
    size_t ncap = f->cap ? f->cap * 2 : 64;
    bus_rec *r = realloc(f->recs, ncap * sizeof(*r));
    if (!r)
      return ISSUN_ERR_NOMEM;
    f->recs = r;
    f->cap = ncap;
  }
  if (ic_bytes_reserve(&f->arena, len) != 0)
    return ISSUN_ERR_NOMEM;
  uint32_t idx = (uint32_t)f->nrecs++;
  bus_rec *r = &f->recs[idx];
  r->type = type;
  r->next = NONE;
  r->off = f->arena.len;
  r->len = len;
  r->meta = *meta;
  if (len)
    memcpy(f->arena.p + f->arena.len, payload, len);
  f->arena.len += len;
  bus_type *t = &b->types[type];
  if (t->tail[b->w] == NONE)
    t->head[b->w] = idx;
  else
    f->recs[t->tail[b->w]].next = idx;
  t->tail[b->w] = idx;
  t->count[b->w]++;
  return 0;
}

ISSUN_API int issun_bus_publish_to(issun_bus *b, issun_event_type type, uint64_t target,
                                   const void *payload, size_t len) {
  if (!b || type >= b->ntypes || (!payload && len))
    return ISSUN_ERR_INVALID_ARG;
  const bus_type *t = &b->types[type];
  if (t->scope == ISSUN_SCOPE_TARGETED && target == 0)
    return ISSUN_ERR_INVALID_ARG;
  issun_event_meta meta;
  memset(&meta, 0, sizeof(meta));
  meta.sender = b->client ? issun_client_node_id(b->client) : 0;
  meta.timestamp_ms = issun__unix_ms();
  meta.scope = t->scope;
  meta.target = t->scope == ISSUN_SCOPE_TARGETED ? target : 0;
  meta.reliable = t->delivery == ISSUN_RELIABLE;
  meta.local = 1;
  int send_rv = 0;
  int sent = 0;
  if (t->networked && b->client) {
    issun_event_meta m;
    send_rv = issun_client__send_meta(b->client, t->name, t->name_len, t->scope, meta.target,
                                      t->delivery, payload, len, &m);
    if (send_rv == 0) {
      sent = 1;
      meta.sequence = m.sequence;
      meta.timestamp_ms = m.timestamp_ms;
    } else {
      b->st.send_failed++;
    }
  }
  if (!sent)
    meta.sequence = ++b->local_seq;
  int rv = append(b, type, payload, len, &meta);
  if (rv != 0)
    return rv;
  b->st.published++;
  return send_rv;
}

ISSUN_API int issun_bus_publish(issun_bus *b, issun_event_type type, const void *payload,
                                size_t len) {
  return issun_bus_publish_to(b, type, 0, payload, len);
}

void issun_bus__on_remote(struct issun_bus *b, const issun_event *ev) {
  uint32_t idx;
  if (!find_type(b, ev->type_name, ev->type_name_len, &idx) || !b->types[idx].networked) {
    b->st.unknown_dropped++;
    return;
  }
  issun_event_meta m = ev->meta;
  m.local = 0;
  if (append(b, idx, ev->payload, ev->payload_len, &m) == 0)
    b->st.received++;
  else
    b->st.unknown_dropped++;
}

ISSUN_API int issun_bus_poll_network(issun_bus *b) {
  if (!b)
    return ISSUN_ERR_INVALID_ARG;
  if (!b->client)
    return 0;
  return issun_client_poll(b->client, 0);
}

ISSUN_API int issun_bus_dispatch(issun_bus *b) {
  if (!b)
    return ISSUN_ERR_INVALID_ARG;
  b->w = 1 - b->w;
  bus_frame *f = &b->frames[b->w];
  f->arena.len = 0;
  f->nrecs = 0;
  for (uint32_t i = 0; i < b->ntypes; i++) {
    b->types[i].head[b->w] = b->types[i].tail[b->w] = NONE;
    b->types[i].count[b->w] = 0;
  }
  b->generation++;
  b->st.dispatches++;
  return 0;
}

/* ---- readers ------------------------------------------------------------------ */

ISSUN_API int issun_bus_reader_init(issun_bus_reader *r, const issun_bus *b,
                                    issun_event_type type) {
  if (!r || !b)
    return ISSUN_ERR_INVALID_ARG;
  if (type >= b->ntypes)
    return ISSUN_ERR_NOT_FOUND;
  r->bus = b;
  r->type = type;
  r->next = b->types[type].head[1 - b->w];
  r->generation = b->generation;
  return 0;
}

ISSUN_API int issun_bus_reader_next(issun_bus_reader *r, issun_event *ev) {
  if (!r || !ev || !r->bus)
    return ISSUN_ERR_INVALID_ARG;
  const issun_bus *b = r->bus;
  if (r->generation != b->generation)
    return ISSUN_ERR_STATE;
  if (r->type >= b->ntypes)
    return ISSUN_ERR_INVALID_ARG;
  if (r->next == NONE)
    return 0;
  const bus_frame *f = &b->frames[1 - b->w];
  if (r->next >= f->nrecs)
    return ISSUN_ERR_INVALID_ARG;
  const bus_rec *rec = &f->recs[r->next];
  const bus_type *t = &b->types[rec->type];
  ev->type_name = t->name;
  ev->type_name_len = t->name_len;
  ev->payload = rec->len ? (const void *)(f->arena.p + rec->off) : (const void *)"";
  ev->payload_len = rec->len;
  ev->meta = rec->meta;
  r->next = rec->next;
  return 1;
}

ISSUN_API size_t issun_bus_count(const issun_bus *b, issun_event_type type) {
  if (!b || type >= b->ntypes)
    return 0;
  return b->types[type].count[1 - b->w];
}

ISSUN_API int issun_bus_stats_get(const issun_bus *b, issun_bus_stats *out) {
  if (!b || !out)
    return ISSUN_ERR_INVALID_ARG;
  *out = b->st;
  return 0;
}
