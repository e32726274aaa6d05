/*
 * Rooms (protocol section 7), sans I/O.  See rooms.h.
 *
 * Every live room is in two structures: a chained hash table keyed by room
 * id (chained through room.hnext, doubled when the rooms outnumber the
 * buckets) and a doubly linked list in creation order (room.older/newer)
 * that ROOM_LIST walks oldest first.  A room leaves both when its last
 * member leaves, and is freed there and then.
 *
 * Allocation failures never abort: rooms_create and rooms_join return
 * PR_E_PROTOCOL and leave everything as it was; a failed growth of the hash
 * table is ignored (chains just get longer).
 */
#include "server/rooms.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define ROOMS_MIN_BUCKETS ((size_t)16)
#define ROOM_MIN_SLOTS 4u

struct rooms {
  uint32_t max_rooms;
  uint32_t default_size;
  uint32_t max_size;
  uint64_t rng; /* splitmix64 state for room ids */
  size_t count;
  room **buckets;
  size_t nbuckets; /* a power of two */
  room *oldest, *newest;
};

/* The splitmix64 output function: a bijective 64-bit mixer. */
static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  x ^= x >> 31;
  return x;
}

static inline size_t bucket_of(size_t nbuckets, uint64_t id) {
  return (size_t)(mix64(id) & (uint64_t)(nbuckets - 1));
}

rooms *rooms_new(uint32_t max_rooms, uint32_t default_size, uint32_t max_size, uint64_t seed) {
  rooms *rs = calloc(1, sizeof(*rs));
  if (rs == NULL)
    return NULL;
  rs->buckets = calloc(ROOMS_MIN_BUCKETS, sizeof(*rs->buckets));
  if (rs->buckets == NULL) {
    free(rs);
    return NULL;
  }
  rs->nbuckets = ROOMS_MIN_BUCKETS;
  rs->max_rooms = max_rooms;
  rs->default_size = default_size;
  rs->max_size = max_size;
  rs->rng = seed;
  return rs;
}

static void room_destroy(room *r) {
  free(r->name);
  free(r->meta_raw);
  free(r->member_ids);
  free(r->member_udata);
  free(r);
}

void rooms_free(rooms *rs) {
  if (rs == NULL)
    return;
  room *r = rs->oldest;
  while (r != NULL) {
    room *next = r->newer;
    room_destroy(r);
    r = next;
  }
  free(rs->buckets);
  free(rs);
}

size_t rooms_count(const rooms *rs) {
  return rs->count;
}

room *rooms_find(rooms *rs, uint64_t room_id) {
  if (room_id == 0)
    return NULL;
  room *r = rs->buckets[bucket_of(rs->nbuckets, room_id)];
  while (r != NULL && r->id != room_id)
    r = r->hnext;
  return r;
}

/* A random id, non-zero and not in use by a live room. */
static uint64_t new_room_id(rooms *rs) {
  for (;;) {
    rs->rng += UINT64_C(0x9e3779b97f4a7c15);
    uint64_t id = mix64(rs->rng);
    if (id != 0 && rooms_find(rs, id) == NULL)
      return id;
  }
}

/* Doubles the bucket array, relinking every room.  Failure is harmless. */
static void grow_buckets(rooms *rs) {
  if (rs->nbuckets > SIZE_MAX / 2 / sizeof(*rs->buckets))
    return;
  size_t n = rs->nbuckets * 2;
  room **b = calloc(n, sizeof(*b));
  if (b == NULL)
    return;
  for (room *r = rs->oldest; r != NULL; r = r->newer) {
    size_t i = bucket_of(n, r->id);
    r->hnext = b[i];
    b[i] = r;
  }
  free(rs->buckets);
  rs->buckets = b;
  rs->nbuckets = n;
}

static void link_room(rooms *rs, room *r) {
  if (rs->count >= rs->nbuckets)
    grow_buckets(rs);
  size_t i = bucket_of(rs->nbuckets, r->id);
  r->hnext = rs->buckets[i];
  rs->buckets[i] = r;
  r->older = rs->newest;
  r->newer = NULL;
  if (rs->newest != NULL)
    rs->newest->newer = r;
  else
    rs->oldest = r;
  rs->newest = r;
  rs->count++;
}

static void unlink_room(rooms *rs, room *r) {
  room **pp = &rs->buckets[bucket_of(rs->nbuckets, r->id)];
  while (*pp != r) {
    assert(*pp != NULL);
    pp = &(*pp)->hnext;
  }
  *pp = r->hnext;
  if (r->older != NULL)
    r->older->newer = r->newer;
  else
    rs->oldest = r->newer;
  if (r->newer != NULL)
    r->newer->older = r->older;
  else
    rs->newest = r->older;
  r->hnext = r->older = r->newer = NULL;
  rs->count--;
}

/* Makes room for at least `want` members (want <= max_clients).  Growth
 * doubles, capped at max_clients.  Returns 0 or -1; on failure r->cap and
 * the members are unchanged. */
static int reserve_members(room *r, uint32_t want) {
  if (r->cap >= want)
    return 0;
  uint32_t cap = r->cap < ROOM_MIN_SLOTS ? ROOM_MIN_SLOTS : r->cap;
  while (cap < want)
    cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
  if (cap > r->max_clients)
    cap = r->max_clients;
  if (cap < want)
    cap = want;
#if SIZE_MAX / 8 < UINT32_MAX
  if ((size_t)cap > SIZE_MAX / 8)
    return -1; /* 32-bit size_t only */
#endif
  uint64_t *ids = realloc(r->member_ids, (size_t)cap * sizeof(*ids));
  if (ids == NULL)
    return -1;
  r->member_ids = ids; /* now at least as large as needed: fine to keep */
  void **ud = realloc(r->member_udata, (size_t)cap * sizeof(*ud));
  if (ud == NULL)
    return -1;
  r->member_udata = ud;
  r->cap = cap;
  return 0;
}

int rooms_create(rooms *rs, uint64_t node, void *udata, const uint8_t *name, size_t name_len,
                 uint32_t max_clients, const pr_kvlist *metadata, room **out) {
  static const uint8_t empty_list[8] = {0};
  *out = NULL;
  if (rs->count >= rs->max_rooms)
    return PR_E_TOO_MANY_ROOMS;

  uint32_t size = max_clients != 0 ? max_clients : rs->default_size;
  if (size > rs->max_size)
    size = rs->max_size;
  if (size == 0)
    size = 1; /* the creator is a member: never below one */

  const uint8_t *meta = empty_list;
  size_t meta_len = sizeof(empty_list);
  if (metadata != NULL && metadata->raw.len > 0) {
    meta = metadata->raw.ptr;
    meta_len = metadata->raw.len;
  }

  room *r = calloc(1, sizeof(*r));
  if (r == NULL)
    goto fail;
  r->max_clients = size;
  r->name = malloc(name_len > 0 ? name_len : 1);
  if (r->name == NULL)
    goto fail;
  if (name_len > 0)
    memcpy(r->name, name, name_len);
  r->name_len = name_len;
  r->meta_raw = malloc(meta_len);
  if (r->meta_raw == NULL)
    goto fail;
  memcpy(r->meta_raw, meta, meta_len);
  r->meta_len = meta_len;
  if (reserve_members(r, size < ROOM_MIN_SLOTS ? size : ROOM_MIN_SLOTS) != 0)
    goto fail;

  r->id = new_room_id(rs);
  r->state = PR_ROOM_WAITING;
  r->host = node;
  r->member_ids[0] = node;
  r->member_udata[0] = udata;
  r->count = 1;
  link_room(rs, r);
  *out = r;
  return 0;

fail:
  if (r != NULL)
    room_destroy(r);
  return PR_E_PROTOCOL;
}

int rooms_join(rooms *rs, uint64_t room_id, uint64_t node, void *udata, room **out) {
  *out = NULL;
  room *r = rooms_find(rs, room_id);
  if (r == NULL)
    return PR_E_ROOM_NOT_FOUND;
  if (r->state != PR_ROOM_WAITING)
    return PR_E_ROOM_NOT_WAITING;
  if (r->count >= r->max_clients)
    return PR_E_ROOM_FULL;
  if (reserve_members(r, r->count + 1) != 0)
    return PR_E_PROTOCOL;
  r->member_ids[r->count] = node;
  r->member_udata[r->count] = udata;
  r->count++;
  *out = r;
  return 0;
}

static uint32_t member_index(const room *r, uint64_t node) {
  uint32_t i = 0;
  while (i < r->count && r->member_ids[i] != node)
    i++;
  return i;
}

void rooms_leave(rooms *rs, room *r, uint64_t node, rooms_leave_result *res) {
  res->room_id = r->id;
  res->deleted = 0;
  res->host_changed = 0;
  res->new_host = r->host;

  uint32_t i = member_index(r, node);
  assert(i < r->count && "rooms_leave: node is not a member");
  if (i >= r->count)
    return;

  size_t tail = (size_t)(r->count - i - 1);
  memmove(&r->member_ids[i], &r->member_ids[i + 1], tail * sizeof(*r->member_ids));
  memmove(&r->member_udata[i], &r->member_udata[i + 1], tail * sizeof(*r->member_udata));
  r->count--;

  if (r->count == 0) {
    unlink_room(rs, r);
    room_destroy(r);
    res->deleted = 1;
    res->new_host = 0;
    return;
  }
  if (r->host == node) {
    r->host = r->member_ids[0]; /* join order: present the longest */
    res->host_changed = 1;
  }
  res->new_host = r->host;
}

int rooms_start(rooms *rs, room *r, uint64_t node) {
  (void)rs;
  if (r->host != node)
    return PR_E_NOT_HOST;
  if (r->state != PR_ROOM_WAITING)
    return PR_E_ROOM_NOT_WAITING;
  r->state = PR_ROOM_IN_PROGRESS;
  return 0;
}

void rooms_set_udata(room *r, uint64_t node, void *udata) {
  uint32_t i = member_index(r, node);
  assert(i < r->count && "rooms_set_udata: node is not a member");
  if (i < r->count)
    r->member_udata[i] = udata;
}

room *rooms_oldest(rooms *rs) {
  return rs->oldest;
}

room *rooms_newer(room *r) {
  return r->newer;
}

int rooms_reply_add(pr_buf *b, pr_reply_state *st, const room *r) {
  pr_bytes meta = {r->meta_raw, r->meta_len};
  return pr_reply_add_room(b, st, r->id, r->name, r->name_len, r->state, r->host, r->max_clients,
                           r->member_ids, r->count, &meta);
}

/* ---- cluster mirror ------------------------------------------------------ */

room *rooms_adopt(rooms *rs, uint64_t id, const uint8_t *name, size_t name_len,
                  uint32_t max_clients, const uint8_t *meta_raw, size_t meta_len) {
  if (id == 0 || rooms_find(rs, id) != NULL || meta_raw == NULL || meta_len == 0)
    return NULL;
  room *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->max_clients = max_clients ? max_clients : 1;
  r->name = malloc(name_len > 0 ? name_len : 1);
  r->meta_raw = malloc(meta_len);
  if (r->name == NULL || r->meta_raw == NULL) {
    room_destroy(r);
    return NULL;
  }
  if (name_len > 0)
    memcpy(r->name, name, name_len);
  r->name_len = name_len;
  memcpy(r->meta_raw, meta_raw, meta_len);
  r->meta_len = meta_len;
  r->id = id;
  r->state = PR_ROOM_WAITING;
  link_room(rs, r);
  return r;
}

int rooms_set_members(room *r, const uint64_t *ids, void *const *udata, uint32_t n) {
  if (n > 0 && reserve_members(r, n) != 0)
    return -1;
  if (n > 0) {
    memcpy(r->member_ids, ids, (size_t)n * sizeof(*ids));
    memcpy(r->member_udata, udata, (size_t)n * sizeof(*udata));
  }
  r->count = n;
  return 0;
}

void rooms_remove(rooms *rs, room *r) {
  unlink_room(rs, r);
  room_destroy(r);
}
