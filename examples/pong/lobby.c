/*
 * lobby.c: rooms.  Players meet in rooms named after --room ("pong") that
 * carry the metadata game=pong and hold 2.  The server tells the members
 * who comes and goes (PRESENCE), and picks a new host when the host leaves.
 */
#include <inttypes.h>
#include <string.h>

#include "pong.h"

void lobby_on_presence(issun_client *c, const issun_presence *p, void *ud) {
  app *a = ud;
  if (p->room_id != issun_client_room_id(c))
    return;
  if (p->change == ISSUN_PRESENCE_JOIN && (!a->peer || a->leaving)) {
    a->peer = a->last_peer = p->node_id;
    a->leaving = 0;
    a->peer_name[0] = 0;
    a->n.peers++;
    a->need_hello = 1; /* tell the newcomer who we are, and where our paddle is */
    say(a, "a player joined");
  } else if (p->change == ISSUN_PRESENCE_LEAVE && p->node_id == a->peer) {
    say(a, "%s left", peer_label(a));
    a->leaving = 1; /* after this frame's events: the last ones it sent are in there */
  } else if (p->change == ISSUN_PRESENCE_HOST && p->host == a->me) {
    a->n.host_changes++;
    say(a, "%s left; you run the ball now", a->leaving ? peer_label(a) : "the host");
  }
}

static void take_room(app *a, const issun_room_info *r) {
  a->peer = 0;
  a->leaving = 0;
  a->peer_top = PADDLE_MAX / 2;
  for (size_t i = 0; i < r->member_count; i++)
    if (r->members[i] != a->me && !a->peer) {
      a->peer = a->last_peer = r->members[i];
      a->n.peers++;
    }
  a->peer_name[0] = 0;
  a->need_hello = 1;
}

static int is_open_pong_room(const issun_room_info *r, const char *name) {
  if (strcmp(r->name, name) != 0 || r->state != ISSUN_ROOM_WAITING ||
      r->member_count >= r->max_clients)
    return 0;
  for (size_t i = 0; i < r->metadata_count; i++)
    if (!strcmp(r->metadata[i].key, "game") && !strcmp(r->metadata[i].value, "pong"))
      return 1;
  return 0;
}

/* Joins a waiting pong room with a free seat, or creates one.  Blocks for
 * at most a few round trips.  Returns 0, or an issun error. */
int lobby_find(app *a) {
  const issun_room_reply *r;
  uint32_t req;
  for (int attempt = 0; attempt < 5; attempt++) {
    int rv = issun_client_room_list(a->c, &req);
    if (rv == 0)
      rv = issun_client_room_wait(a->c, req, 5000, &r);
    if (rv != 0 || r->status != 0)
      return rv ? rv : r->error;
    uint64_t open[16];
    size_t n = 0;
    for (size_t i = 0; i < r->room_count && n < 16; i++)
      if (is_open_pong_room(&r->rooms[i], a->o.room))
        open[n++] = r->rooms[i].room_id;
    for (size_t i = 0; i < n; i++) { /* someone is waiting: join them */
      if ((rv = issun_client_room_join(a->c, open[i], &req)) != 0 ||
          (rv = issun_client_room_wait(a->c, req, 5000, &r)) != 0)
        return rv;
      if (r->status == 0) {
        take_room(a, &r->rooms[0]);
        return 0;
      }
    }
    issun_kv meta[] = {{"game", "pong"}}; /* nobody waiting: open a room of 2 */
    if ((rv = issun_client_room_create(a->c, a->o.room, 2, meta, 1, &req)) != 0 ||
        (rv = issun_client_room_wait(a->c, req, 5000, &r)) != 0)
      return rv;
    if (r->status == 0) {
      take_room(a, &r->rooms[0]);
      return 0;
    }
    if (r->error != ISSUN_ERR_ALREADY_IN_ROOM)
      return r->error;
    uint32_t leave; /* still in an old room (a reconnect): leave it and retry */
    if (issun_client_room_leave(a->c, &leave) == 0)
      issun_client_room_wait(a->c, leave, 5000, NULL);
  }
  return ISSUN_ERR_TIMEOUT;
}

/* After a reconnect: are we still in our room?  Joining it again answers:
 * ALREADY_IN_ROOM when the server kept our session, success when it had
 * dropped us but the room lives on, ROOM_NOT_FOUND when it is gone. */
void lobby_recheck(app *a) {
  const issun_room_reply *r;
  uint32_t req;
  uint64_t room = issun_client_room_id(a->c);
  a->need_room = 0;
  if (room && issun_client_room_join(a->c, room, &req) == 0 &&
      issun_client_room_wait(a->c, req, 5000, &r) == 0) {
    if (r->status == ISSUN_WIRE_ALREADY_IN_ROOM) {
      say(a, "reconnected: the game goes on");
      return;
    }
    if (r->status == 0) {
      take_room(a, &r->rooms[0]);
      say(a, "reconnected: back in room %" PRIu64, room);
      return;
    }
  }
  int rv = lobby_find(a);
  if (rv != 0 && issun_client_state(a->c) == ISSUN_STATE_CONNECTED)
    a->need_room = 1; /* try again next frame */
  else if (rv == 0)
    say(a, "reconnected: now in room %" PRIu64, issun_client_room_id(a->c));
}

/* Waiting alone: if an older pong room also waits for a player (two
 * players who looked at the same moment each opened one, e.g. after a server
 * restart), move there.  ROOM_LIST is oldest first, so both agree which. */
void lobby_merge(app *a) {
  const issun_room_reply *r;
  uint32_t req;
  uint64_t mine = issun_client_room_id(a->c), first = 0;
  if (issun_client_room_list(a->c, &req) != 0 || issun_client_room_wait(a->c, req, 5000, &r) != 0)
    return;
  for (size_t i = 0; i < r->room_count && !first; i++)
    if (r->rooms[i].room_id == mine || is_open_pong_room(&r->rooms[i], a->o.room))
      first = r->rooms[i].room_id;
  if (!first || first == mine)
    return;
  if (issun_client_room_leave(a->c, &req) != 0 || issun_client_room_wait(a->c, req, 5000, &r) != 0)
    return;
  if (issun_client_room_join(a->c, first, &req) == 0 &&
      issun_client_room_wait(a->c, req, 5000, &r) == 0 && r->status == 0)
    take_room(a, &r->rooms[0]);
  else if (lobby_find(a) != 0)
    a->need_room = 1;
  say(a, "moved to room %" PRIu64 " where a player was waiting", issun_client_room_id(a->c));
}
