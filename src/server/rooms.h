/*
 * Rooms (protocol section 7), sans I/O: the server calls these with NodeIds
 * and an opaque per-member pointer (its session), and sends the REPLY and
 * PRESENCE frames the results call for.  No sockets, no clock.
 *
 * Members are kept in join order, so members[0] is always the member that
 * has been present longest: host migration picks it.
 */
#ifndef ISSUN_SERVER_ROOMS_H
#define ISSUN_SERVER_ROOMS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

typedef struct room {
  uint64_t id;
  uint8_t *name; /* owned copy, name_len bytes (not NUL-terminated) */
  size_t name_len;
  uint8_t state; /* enum pr_room_state */
  uint32_t max_clients;
  uint64_t host;
  uint32_t count;       /* members */
  uint32_t cap;         /* allocated slots in the two arrays below */
  uint64_t *member_ids; /* join order */
  void **member_udata;  /* parallel to member_ids */
  uint8_t *meta_raw;    /* owned copy of the encoded list<(str,str)>, count included */
  size_t meta_len;
  /* internal: creation order list and hash chaining */
  struct room *older, *newer;
  struct room *hnext;
} room;

typedef struct rooms rooms;

/* max_rooms: TOO_MANY_ROOMS past it.  default_size: used for max_clients 0.
 * max_size: a larger max_clients request is clamped to it.  seed: for room
 * ids (random, non-zero, unique among live rooms).  NULL on allocation
 * failure. */
rooms *rooms_new(uint32_t max_rooms, uint32_t default_size, uint32_t max_size, uint64_t seed);
void rooms_free(rooms *rs);
size_t rooms_count(const rooms *rs);
room *rooms_find(rooms *rs, uint64_t room_id);

/* Creates a room with `node` as host and only member.  Returns 0 and *out,
 * PR_E_TOO_MANY_ROOMS, or PR_E_PROTOCOL on allocation failure.  The caller
 * checks ALREADY_IN_ROOM first.  metadata is the validated encoded list as
 * decoded by pr_room_create_decode (raw copied). */
int rooms_create(rooms *rs, uint64_t node, void *udata, const uint8_t *name, size_t name_len,
                 uint32_t max_clients, const pr_kvlist *metadata, room **out);

/* Adds `node` to room `room_id`.  Returns 0 and *out, or (in this order)
 * PR_E_ROOM_NOT_FOUND, PR_E_ROOM_NOT_WAITING, PR_E_ROOM_FULL.  The caller
 * checks ALREADY_IN_ROOM first.  The caller sends PRESENCE join to the
 * other members. */
int rooms_join(rooms *rs, uint64_t room_id, uint64_t node, void *udata, room **out);

typedef struct rooms_leave_result {
  uint64_t room_id;
  int deleted;       /* the room had no member left and is gone (r is freed) */
  int host_changed;  /* node was host and another member now is */
  uint64_t new_host; /* the room's host after the leave (0 when deleted) */
} rooms_leave_result;

/* Removes `node` from room r (it must be a member).  The caller then sends
 * PRESENCE leave (and, when host_changed, PRESENCE host) to the remaining
 * members, which it reads from r unless res->deleted. */
void rooms_leave(rooms *rs, room *r, uint64_t node, rooms_leave_result *res);

/* Starts room r on behalf of `node`.  Returns 0, PR_E_NOT_HOST or
 * PR_E_ROOM_NOT_WAITING.  (NOT_IN_ROOM is the caller's.) */
int rooms_start(rooms *rs, room *r, uint64_t node);

/* Replaces the per-member pointer of `node` (a session takeover). */
void rooms_set_udata(room *r, uint64_t node, void *udata);

/* Rooms in creation order, oldest first: rooms_oldest(rs), then
 * rooms_newer(r) until NULL. */
room *rooms_oldest(rooms *rs);
room *rooms_newer(room *r);

/* ---- cluster mirror (cluster.c) -------------------------------------------
 * With clustering on, s->rooms mirrors the cluster's room directory: rooms
 * are adopted with the id the directory gave them and their member list is
 * replaced wholesale from each directory record. */

/* Adds an empty room (no member, state Waiting, host 0) with the given id,
 * outside the max_rooms limit.  NULL when out of memory or the id is 0 or
 * already present. */
room *rooms_adopt(rooms *rs, uint64_t id, const uint8_t *name, size_t name_len,
                  uint32_t max_clients, const uint8_t *meta_raw, size_t meta_len);

/* Replaces r's members with ids/udata[0, n) in that order.  Returns 0, or -1
 * when out of memory (r unchanged). */
int rooms_set_members(room *r, const uint64_t *ids, void *const *udata, uint32_t n);

/* Removes r from the set and frees it, whatever its members. */
void rooms_remove(rooms *rs, room *r);

/* Appends r to a REPLY under construction (see pr_reply_add_room).
 * Returns 0, or -1 when it did not fit. */
int rooms_reply_add(pr_buf *b, pr_reply_state *st, const room *r);

#endif
