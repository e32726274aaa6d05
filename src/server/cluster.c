/*
 * Clustering over NATS: the room directory in JetStream KV with
 * compare-and-set updates, cross-relay fan-out on NATS subjects, relay
 * liveness and failure cleanup.  See cluster.h for the threading rules and
 * docs/clustering.md for the operator's view.
 *
 * Subjects (core NATS):
 *   issun.room.<room hex>    events of a room; a relay subscribes while it
 *                            has local members there, and publishes each
 *                            event of a local member once
 *   issun.lobby              events of sessions in no room (global broadcast)
 *   issun.relay.<relay hex>  targeted events for sessions on that relay
 *   $KV.issun_rooms.>        every room record write (the directory mirror),
 *                            through an ordered consumer of the bucket's
 *                            stream: a refused compare-and-set is never seen
 *   $KV.issun_nodes.>        every NodeId claim / release (likewise)
 *   $KV.issun_relays.>       every liveness refresh / goodbye (plain
 *                            subscription: flows while JetStream elects)
 * An event message is [u8 1][u8 flags (bit 0: reliable)][u64 origin relay]
 * [u64 target or 0][the EVENT frame, sender already set].
 *
 * A room record (KV value) is
 *   u8 1, u64 version, u64 room id, u64 created (Unix ms), u8 state,
 *   u64 host, u32 max_clients, str name, bytes metadata (the encoded
 *   list<(str,str)>), u64 n, then n x (u64 node, u64 relay) in join order.
 * version grows by one with each compare-and-set write; a relay applies a
 * record only when it is newer than its mirror, and derives the PRESENCE
 * frames for its local members from the difference, so a change reaches
 * every member once whichever relay made it.
 */
#include "server/cluster.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "server/server_int.h"

_Static_assert(sizeof(void *) >= sizeof(uint64_t), "relay ids are stored in pointer slots");

#define MS_NS 1000000ull
#define TICK_MS 100
#define KV_WAIT_MS 1500
#define START_DEADLINE_MS 30000
#define CAS_TRIES 16
#define PENDING_MAX 4096
#define MSG_HDR 18

#define BUCKET_ROOMS "issun_rooms"
#define BUCKET_NODES "issun_nodes"
#define BUCKET_RELAYS "issun_relays"

enum { CAS_UNAVAILABLE = -2, CAS_NOOP = -3 };

/* A decoded room record.  name and meta point into the buffer it came from;
 * nodes/relays are owned, with room for one more member. */
typedef struct rec {
  uint64_t version, id, created_ms, host;
  uint8_t state;
  uint32_t max_clients;
  const uint8_t *name;
  size_t name_len;
  const uint8_t *meta;
  size_t meta_len;
  uint32_t n;
  uint64_t *nodes, *relays;
} rec;

/* The cluster side of a mirrored room. */
typedef struct croom {
  room *r;
  uint64_t version;
  uint64_t *owners; /* relay of each member, parallel to r->member_ids */
  uint32_t owners_cap;
  uint32_t nlocal; /* members that are sessions of this relay */
  natsSubscription *sub;
} croom;

typedef struct peer {
  uint64_t id;
  uint64_t last_seen; /* loop clock, ns */
} peer;

typedef struct pending_leave {
  uint64_t room_id, node;
} pending_leave;

struct cluster {
  srv *s;
  uint64_t id;
  char hex[17];
  uint64_t expiry_ns;

  natsOptions *opts;
  natsConnection *nc;
  jsCtx *js;
  kvStore *kv_rooms, *kv_nodes, *kv_relays;
  natsSubscription *subs[5];
  int nsubs;

  /* NATS threads -> loop */
  int efd, tfd;
  pthread_mutex_t mu;
  natsMsg **q;
  uint32_t qhead, qlen;
  atomic_uint_fast64_t q_dropped;
  atomic_uint_fast64_t disconnects;
  atomic_int closing;       /* cluster_free has begun: callbacks do nothing */
  pthread_cond_t closed_cv; /* with mu: the NATS closed callback has run */
  int closed;

  /* liveness thread */
  pthread_t hb;
  pthread_mutex_t hbmu;
  pthread_cond_t hbcv;
  int hbstop, hb_started;
  char hb_subject[64];

  /* loop-thread state */
  u64map rooms;  /* room id -> croom */
  u64map owners; /* node id -> owning relay id (as a pointer-sized integer) */
  u64map peers;  /* relay id -> peer */
  int was_up;
  uint64_t seen_disconnects;
  uint64_t grace_until;
  int cleanup_pending;
  pending_leave *pending;
  uint32_t npending;
  uint8_t *pub;
  size_t pubcap;

  /* KV worker: jobs in (wmu), results out (mu, with the message queue) */
  pthread_t worker;
  pthread_mutex_t wmu;
  pthread_cond_t wcv;
  struct job *jobs, *jobs_tail, *done, *done_tail;
  int wstop, w_started;
  atomic_int wabort;
  uint32_t jobs_inflight, cleanup_inflight;
  u64map busy;    /* node -> struct busy: a room request of that session is at the worker */
  u64map leaving; /* node -> room id: its leave is not in the directory yet */

  uint64_t published, received, malformed, kv_errors, kv_conflicts, peers_lost, publish_errors;
};

/* ---- small helpers -------------------------------------------------------- */

static void hex64(char out[17], uint64_t v) {
  snprintf(out, 17, "%016llx", (unsigned long long)v);
}

/* Parses exactly 16 lowercase/uppercase hex digits.  0 on failure (0 is never a
 * valid id). */
static uint64_t parse_hex64(const char *p, size_t n) {
  if (n != 16)
    return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < 16; i++) {
    char ch = p[i];
    unsigned d;
    if (ch >= '0' && ch <= '9')
      d = (unsigned)(ch - '0');
    else if (ch >= 'a' && ch <= 'f')
      d = (unsigned)(ch - 'a' + 10);
    else if (ch >= 'A' && ch <= 'F')
      d = (unsigned)(ch - 'A' + 10);
    else
      return 0;
    v = v << 4 | d;
  }
  return v;
}

static int nats_unavailable(natsStatus st) {
  return st == NATS_TIMEOUT || st == NATS_NO_RESPONDERS || st == NATS_CONNECTION_CLOSED ||
         st == NATS_CONNECTION_DISCONNECTED || st == NATS_NO_SERVER ||
         st == NATS_STALE_CONNECTION || st == NATS_NOT_YET_CONNECTED || st == NATS_IO_ERROR ||
         st == NATS_CONNECTION_AUTH_FAILED;
}

static int is_up(const cluster *cl) {
  return natsConnection_Status(cl->nc) == NATS_CONN_STATUS_CONNECTED;
}

static int relay_alive(cluster *cl, uint64_t relay) {
  return relay == cl->id || u64map_get(&cl->peers, relay) != NULL;
}

/* ---- room records ----------------------------------------------------------- */

typedef struct rd {
  const uint8_t *p;
  size_t n, off;
  int err;
} rd;

static uint64_t rd_u(rd *r, int bytes) {
  if (r->err || r->n - r->off < (size_t)bytes) {
    r->err = 1;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++)
    v |= (uint64_t)r->p[r->off + (size_t)i] << (8 * i);
  r->off += (size_t)bytes;
  return v;
}

static const uint8_t *rd_bytes(rd *r, size_t *len) {
  uint64_t l = rd_u(r, 8);
  if (r->err || l > r->n - r->off) {
    r->err = 1;
    return NULL;
  }
  const uint8_t *p = r->p + r->off;
  r->off += (size_t)l;
  *len = (size_t)l;
  return p;
}

/* A well-formed list<(str, str)> filling [p, p+n) exactly. */
static int meta_valid(const uint8_t *p, size_t n) {
  rd r = {p, n, 0, 0};
  uint64_t count = rd_u(&r, 8);
  if (r.err || count > n / 16)
    return 0;
  for (uint64_t i = 0; i < count * 2; i++) {
    size_t l;
    const uint8_t *s = rd_bytes(&r, &l);
    if (!s || !pr_utf8_valid(s, l))
      return 0;
  }
  return !r.err && r.off == n;
}

static void rec_free(rec *r) {
  free(r->nodes);
  free(r->relays);
  r->nodes = r->relays = NULL;
}

/* Decodes a record; every length is checked against the buffer.  0 or -1. */
static int rec_decode(const uint8_t *p, size_t n, rec *out) {
  memset(out, 0, sizeof *out);
  rd r = {p, n, 0, 0};
  if (rd_u(&r, 1) != 1)
    return -1;
  out->version = rd_u(&r, 8);
  out->id = rd_u(&r, 8);
  out->created_ms = rd_u(&r, 8);
  out->state = (uint8_t)rd_u(&r, 1);
  out->host = rd_u(&r, 8);
  out->max_clients = (uint32_t)rd_u(&r, 4);
  out->name = rd_bytes(&r, &out->name_len);
  out->meta = rd_bytes(&r, &out->meta_len);
  uint64_t cnt = rd_u(&r, 8);
  if (r.err || out->id == 0 || out->state > PR_ROOM_FINISHED || out->max_clients == 0 ||
      !pr_utf8_valid(out->name, out->name_len) || !meta_valid(out->meta, out->meta_len))
    return -1;
  if (cnt > (n - r.off) / 16 || cnt > 1000000 || cnt > out->max_clients)
    return -1;
  out->n = (uint32_t)cnt;
  out->nodes = malloc(sizeof(uint64_t) * (cnt + 1));
  out->relays = malloc(sizeof(uint64_t) * (cnt + 1));
  if (!out->nodes || !out->relays) {
    rec_free(out);
    return -1;
  }
  int host_ok = cnt == 0 && out->host == 0;
  for (uint32_t i = 0; i < out->n; i++) {
    out->nodes[i] = rd_u(&r, 8);
    out->relays[i] = rd_u(&r, 8);
    if (out->nodes[i] == 0 || out->relays[i] == 0)
      r.err = 1;
    if (out->nodes[i] == out->host)
      host_ok = 1;
  }
  if (r.err || r.off != n || !host_ok) {
    rec_free(out);
    return -1;
  }
  return 0;
}

/* Encodes into a malloc'ed buffer; NULL when out of memory. */
static uint8_t *rec_encode(const rec *r, size_t *len) {
  size_t need =
      1 + 8 + 8 + 8 + 1 + 8 + 4 + 8 + r->name_len + 8 + r->meta_len + 8 + 16 * (size_t)r->n;
  uint8_t *mem = malloc(need);
  if (!mem)
    return NULL;
  pr_buf b;
  pr_buf_init(&b, mem, need);
  pr_put_u8(&b, 1);
  pr_put_u64(&b, r->version);
  pr_put_u64(&b, r->id);
  pr_put_u64(&b, r->created_ms);
  pr_put_u8(&b, r->state);
  pr_put_u64(&b, r->host);
  pr_put_u32(&b, r->max_clients);
  pr_put_str(&b, r->name, r->name_len);
  pr_put_str(&b, r->meta, r->meta_len);
  pr_put_u64(&b, r->n);
  for (uint32_t i = 0; i < r->n; i++) {
    pr_put_u64(&b, r->nodes[i]);
    pr_put_u64(&b, r->relays[i]);
  }
  if (b.err) {
    free(mem);
    return NULL;
  }
  *len = b.len;
  return mem;
}

/* Removes member i, moving the host to the longest-present member when
 * needed. */
static void rec_remove(rec *r, uint32_t i) {
  uint64_t node = r->nodes[i];
  memmove(&r->nodes[i], &r->nodes[i + 1], sizeof(uint64_t) * (r->n - i - 1));
  memmove(&r->relays[i], &r->relays[i + 1], sizeof(uint64_t) * (r->n - i - 1));
  r->n--;
  if (r->host == node)
    r->host = r->n ? r->nodes[0] : 0;
}

/* ---- the mirror ------------------------------------------------------------- */

static void room_sub_update(cluster *cl, croom *cr, int want);

static void on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);

static int rec_has(const uint64_t *ids, uint32_t n, uint64_t id) {
  for (uint32_t i = 0; i < n; i++)
    if (ids[i] == id)
      return 1;
  return 0;
}

static void drop_room(cluster *cl, croom *cr) {
  srv *s = cl->s;
  room *r = cr->r;
  for (uint32_t i = 0; i < r->count; i++) {
    conn *c = r->member_udata[i];
    if (c && c->room == r) { /* the directory lost a local member: back to the lobby */
      c->room = NULL;
      relay_lobby_add(c);
    }
  }
  room_sub_update(cl, cr, 0);
  u64map_del(&cl->rooms, r->id);
  rooms_remove(s->rooms, r);
  free(cr->owners);
  free(cr);
}

static void apply_record_as_is(cluster *cl, const rec *nr, int force);

/* Makes the mirror hold record nr (when it is newer, or always with force)
 * and tells this relay's members in the room what changed.  Our sessions
 * whose leave is not in the directory yet are left out of it. */
static void apply_record(cluster *cl, const rec *nr, int force) {
  int filter = 0;
  for (uint32_t i = 0; cl->leaving.count && i < nr->n && !filter; i++)
    filter = nr->relays[i] == cl->id &&
             (uint64_t)(uintptr_t)u64map_get(&cl->leaving, nr->nodes[i]) == nr->id;
  if (!filter) {
    apply_record_as_is(cl, nr, force);
    return;
  }
  rec f = *nr;
  f.nodes = malloc(sizeof(uint64_t) * (nr->n + 1));
  f.relays = malloc(sizeof(uint64_t) * (nr->n + 1));
  if (!f.nodes || !f.relays) {
    rec_free(&f);
    return;
  }
  memcpy(f.nodes, nr->nodes, sizeof(uint64_t) * nr->n);
  memcpy(f.relays, nr->relays, sizeof(uint64_t) * nr->n);
  for (uint32_t i = 0; i < f.n;) {
    if (f.relays[i] == cl->id && (uint64_t)(uintptr_t)u64map_get(&cl->leaving, f.nodes[i]) == f.id)
      rec_remove(&f, i);
    else
      i++;
  }
  apply_record_as_is(cl, &f, force);
  rec_free(&f);
}

static void apply_record_as_is(cluster *cl, const rec *nr, int force) {
  srv *s = cl->s;
  croom *cr = u64map_get(&cl->rooms, nr->id);
  if (cr && !force && nr->version <= cr->version)
    return;
  if (nr->n == 0) {
    if (cr)
      drop_room(cl, cr);
    return;
  }
  int adopted = 0;
  if (!cr) {
    room *r = rooms_adopt(s->rooms, nr->id, nr->name, nr->name_len, nr->max_clients, nr->meta,
                          nr->meta_len);
    if (!r)
      return;
    cr = calloc(1, sizeof *cr);
    if (!cr || u64map_put(&cl->rooms, nr->id, cr) != 0) {
      free(cr);
      rooms_remove(s->rooms, r);
      return;
    }
    cr->r = r;
    adopted = 1;
  }
  room *r = cr->r;
  uint32_t on = r->count;
  uint64_t old_host = r->host;
  uint64_t *old = malloc(sizeof(uint64_t) * (on + 1));
  void **ud = malloc(sizeof(void *) * nr->n);
  uint64_t *own =
      cr->owners_cap >= nr->n ? cr->owners : realloc(cr->owners, sizeof(uint64_t) * nr->n);
  if (!old || !ud || !own) {
    free(old);
    free(ud);
    if (own)
      cr->owners = own;
    return;
  }
  if (own != cr->owners) {
    cr->owners = own;
    cr->owners_cap = nr->n;
  }
  if (on)
    memcpy(old, r->member_ids, sizeof(uint64_t) * on);
  uint32_t nlocal = 0;
  for (uint32_t i = 0; i < nr->n; i++) {
    conn *c = NULL;
    if (nr->relays[i] == cl->id) {
      c = u64map_get(&s->by_node, nr->nodes[i]);
      if (c && c->state != CS_SESSION)
        c = NULL;
    }
    ud[i] = c;
    if (c)
      nlocal++;
  }
  for (uint32_t i = 0; i < on; i++) {
    conn *c = r->member_udata[i];
    if (c && c->room == r && !rec_has(nr->nodes, nr->n, old[i])) {
      c->room = NULL; /* removed by another relay (it thought we were gone) */
      relay_lobby_add(c);
    }
  }
  if (rooms_set_members(r, nr->nodes, ud, nr->n) != 0) {
    free(old);
    free(ud);
    return;
  }
  memcpy(cr->owners, nr->relays, sizeof(uint64_t) * nr->n);
  r->host = nr->host;
  r->state = nr->state;
  cr->version = nr->version;
  cr->nlocal = nlocal;
  if (!adopted) {
    /* protocol section 7: leaves (with the host after them), then the host
     * change, then joins */
    for (uint32_t i = 0; i < on; i++)
      if (!rec_has(nr->nodes, nr->n, old[i]))
        relay_presence(NULL, r, old[i], PR_PRESENCE_LEAVE, r->host);
    if (on > 0 && r->host != old_host)
      relay_presence(NULL, r, r->host, PR_PRESENCE_HOST, r->host);
    for (uint32_t i = 0; i < nr->n; i++)
      if (!rec_has(old, on, nr->nodes[i]))
        relay_presence(ud[i], r, nr->nodes[i], PR_PRESENCE_JOIN, r->host);
  }
  free(old);
  free(ud);
  room_sub_update(cl, cr, nlocal > 0);
}

/* A record built from the mirror without `node` (used when NATS cannot be
 * reached: the local view still has to move on). */
static void mirror_remove_local(cluster *cl, croom *cr, uint64_t node) {
  room *r = cr->r;
  rec nr = {.version = cr->version,
            .id = r->id,
            .host = r->host,
            .state = r->state,
            .max_clients = r->max_clients,
            .name = r->name,
            .name_len = r->name_len,
            .meta = r->meta_raw,
            .meta_len = r->meta_len,
            .n = r->count};
  nr.nodes = malloc(sizeof(uint64_t) * (r->count + 1));
  nr.relays = malloc(sizeof(uint64_t) * (r->count + 1));
  if (!nr.nodes || !nr.relays) {
    rec_free(&nr);
    return;
  }
  memcpy(nr.nodes, r->member_ids, sizeof(uint64_t) * r->count);
  memcpy(nr.relays, cr->owners, sizeof(uint64_t) * r->count);
  for (uint32_t i = 0; i < nr.n; i++)
    if (nr.nodes[i] == node) {
      rec_remove(&nr, i);
      break;
    }
  apply_record(cl, &nr, 1);
  rec_free(&nr);
}

static void room_sub_update(cluster *cl, croom *cr, int want) {
  if (want && !cr->sub) {
    char subj[64];
    snprintf(subj, sizeof subj, "issun.room.%016llx", (unsigned long long)cr->r->id);
    if (natsConnection_Subscribe(&cr->sub, cl->nc, subj, on_nats_msg, cl) != NATS_OK)
      cr->sub = NULL;
  } else if (!want && cr->sub) {
    natsSubscription_Unsubscribe(cr->sub);
    natsSubscription_Destroy(cr->sub);
    cr->sub = NULL;
  }
}

/* ---- compare-and-set on a room record (worker thread) --------------------------- *
 *
 * Room writes run on one worker thread, in submission order, so a KV round
 * trip never stalls the loop.  A job carries everything the worker needs
 * (no relay state is read there); the loop applies its result when it comes
 * back.  A session has at most one reply-bearing job in flight: its later
 * room requests wait in its own queue (struct busy), so REPLYs keep the
 * order of the requests. */

enum job_kind {
  JOB_CREATE,
  JOB_JOIN,
  JOB_LEAVE,
  JOB_START,
  JOB_CLEANUP,
  JOB_NODE_DEL,
  JOB_ANNOUNCE
};

typedef struct job {
  struct job *next;
  int kind;
  uint64_t room_id, node;
  uint32_t request_id;
  uint8_t *in; /* JOB_CREATE: the record to create */
  size_t in_len;
  uint64_t *ids; /* JOB_CLEANUP / NODE_DEL: relays alive; JOB_ANNOUNCE: NodeIds */
  size_t nids;
  /* results */
  int status;          /* 0, a PR_E_* refusal, CAS_NOOP or CAS_UNAVAILABLE */
  uint8_t *prev, *out; /* the record read, the record written (when any) */
  size_t prev_len, out_len;
  uint64_t conflicts, errors;
  natsStatus nats_st;  /* the last NATS error, for the log */
  uint64_t *done_ids; /* JOB_ANNOUNCE: the NodeIds now ours */
  size_t ndone;
} job;

/* A session's queued room request (copied out of the frame). */
typedef struct req {
  struct req *next;
  uint8_t type;
  uint32_t request_id;
  uint64_t join_room_id;
  uint32_t max_clients;
  uint8_t *name, *meta;
  size_t name_len, meta_len;
} req;

typedef struct busy {
  int ended; /* the session ended while its job ran */
  uint32_t queued;
  req *head, *tail;
} busy;

#define MAX_QUEUED_REQUESTS 64 /* room requests one session may pipeline */

static int alive_in(const job *j, uint64_t relay) {
  for (size_t i = 0; i < j->nids; i++)
    if (j->ids[i] == relay)
      return 1;
  return 0;
}

/* Applies the job to a record: 0 (write it), a refusal, or CAS_NOOP. */
static int mutate(const cluster *cl, const job *j, rec *r) {
  switch (j->kind) {
  case JOB_JOIN:
    if (r->state != PR_ROOM_WAITING)
      return PR_E_ROOM_NOT_WAITING;
    if (rec_has(r->nodes, r->n, j->node))
      return 0; /* (cannot happen: ALREADY_IN_ROOM first) */
    if (r->n >= r->max_clients)
      return PR_E_ROOM_FULL;
    r->nodes[r->n] = j->node;
    r->relays[r->n] = cl->id;
    r->n++;
    return 0;
  case JOB_LEAVE:
    for (uint32_t i = 0; i < r->n; i++)
      if (r->nodes[i] == j->node) {
        rec_remove(r, i);
        return 0;
      }
    return CAS_NOOP;
  case JOB_START:
    if (r->host != j->node)
      return PR_E_NOT_HOST;
    if (r->state != PR_ROOM_WAITING)
      return PR_E_ROOM_NOT_WAITING;
    r->state = PR_ROOM_IN_PROGRESS;
    return 0;
  case JOB_CLEANUP: {
    int changed = 0;
    for (uint32_t i = 0; i < r->n;) {
      if (!alive_in(j, r->relays[i])) {
        rec_remove(r, i);
        changed = 1;
      } else {
        i++;
      }
    }
    return changed ? 0 : CAS_NOOP;
  }
  default:
    return CAS_NOOP;
  }
}

static uint8_t *dup_bytes(const void *p, size_t n) {
  uint8_t *d = malloc(n ? n : 1);
  if (d && n)
    memcpy(d, p, n);
  return d;
}

/* Worker: read, mutate, write if unchanged meanwhile (else read again). */
static void work_cas(cluster *cl, job *j) {
  char key[17];
  hex64(key, j->room_id);
  j->status = CAS_UNAVAILABLE;
  for (int t = 0; t < CAS_TRIES; t++) {
    kvEntry *e = NULL;
    natsStatus st = kvStore_Get(&e, cl->kv_rooms, key);
    if (st == NATS_NOT_FOUND) {
      j->status = PR_E_ROOM_NOT_FOUND;
      return;
    }
    if (st != NATS_OK) {
      j->errors++;
      j->nats_st = st;
      return;
    }
    rec r;
    const uint8_t *v = (const uint8_t *)kvEntry_Value(e);
    size_t vlen = (size_t)kvEntry_ValueLen(e);
    if (rec_decode(v, vlen, &r) != 0 || r.n == 0) {
      if (r.nodes)
        rec_free(&r);
      kvEntry_Destroy(e);
      j->status = PR_E_ROOM_NOT_FOUND;
      return;
    }
    free(j->prev);
    j->prev = dup_bytes(v, vlen);
    j->prev_len = j->prev ? vlen : 0;
    uint64_t rev = kvEntry_Revision(e);
    int rv = mutate(cl, j, &r);
    if (rv != 0) {
      rec_free(&r);
      kvEntry_Destroy(e);
      j->status = rv;
      return;
    }
    r.version++;
    size_t len;
    uint8_t *buf = rec_encode(&r, &len);
    int empty = r.n == 0;
    rec_free(&r);
    kvEntry_Destroy(e); /* r's name and metadata pointed into it: encoded first */
    if (!buf) {
      j->errors++;
      return;
    }
    st = kvStore_Update(NULL, cl->kv_rooms, key, buf, (int)len, rev);
    if (st == NATS_OK) {
      j->out = buf;
      j->out_len = len;
      j->status = 0;
      if (empty)
        kvStore_Delete(cl->kv_rooms, key);
      return;
    }
    free(buf);
    if (nats_unavailable(st)) {
      j->errors++;
      j->nats_st = st;
      return;
    }
    j->conflicts++; /* someone wrote first: read again */
  }
  j->errors++;
}

static void work_create(cluster *cl, job *j) {
  j->status = CAS_UNAVAILABLE;
  for (int t = 0; t < 8; t++) {
    uint64_t id = 0;
    while (id == 0)
      gnutls_rnd(GNUTLS_RND_RANDOM, &id, sizeof id);
    pr_le64(j->in + 9, id); /* the record's room id (after format and version) */
    char key[17];
    hex64(key, id);
    natsStatus st = kvStore_Create(NULL, cl->kv_rooms, key, j->in, (int)j->in_len);
    if (st == NATS_OK) {
      j->room_id = id;
      j->out = j->in;
      j->out_len = j->in_len;
      j->in = NULL;
      j->status = 0;
      return;
    }
    if (nats_unavailable(st))
      break;
    j->conflicts++; /* that id exists: draw another */
  }
  j->errors++;
}

static void work_node_del(cluster *cl, job *j) {
  char key[17];
  hex64(key, j->node);
  kvEntry *e = NULL;
  natsStatus st = kvStore_Get(&e, cl->kv_nodes, key);
  j->status = 0;
  if (st == NATS_OK) {
    uint64_t owner = parse_hex64(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
    kvEntry_Destroy(e);
    if (owner && (owner == cl->id || alive_in(j, owner))) {
      j->status = CAS_NOOP; /* claimed again meanwhile */
      j->room_id = owner;
      return;
    }
    st = kvStore_Delete(cl->kv_nodes, key);
  }
  if (st != NATS_OK && st != NATS_NOT_FOUND) {
    j->status = CAS_UNAVAILABLE;
    j->errors++;
  }
}

static int relay_alive_kv(cluster *cl, uint64_t relay);

/* After a reconnect: the other relays may have judged us gone meanwhile and
 * forgotten where our sessions are.  Re-publish every NodeId we still hold
 * (never one another live relay has claimed since). */
static void work_announce(cluster *cl, job *j) {
  j->done_ids = malloc(sizeof(uint64_t) * (j->nids + 1));
  if (!j->done_ids)
    return;
  for (size_t i = 0; i < j->nids; i++) {
    char key[17];
    hex64(key, j->ids[i]);
    natsStatus st = kvStore_Create(NULL, cl->kv_nodes, key, cl->hex, 16);
    if (st != NATS_OK && !nats_unavailable(st)) {
      kvEntry *e = NULL;
      if (kvStore_Get(&e, cl->kv_nodes, key) == NATS_OK) {
        uint64_t owner = parse_hex64(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
        uint64_t rev = kvEntry_Revision(e);
        kvEntry_Destroy(e);
        if (owner == cl->id || !relay_alive_kv(cl, owner))
          st = kvStore_Update(NULL, cl->kv_nodes, key, cl->hex, 16, rev);
      }
    }
    if (st == NATS_OK)
      j->done_ids[j->ndone++] = j->ids[i];
  }
}

static void job_free(job *j) {
  free(j->in);
  free(j->ids);
  free(j->prev);
  free(j->out);
  free(j->done_ids);
  free(j);
}

static void *worker_main(void *arg) {
  cluster *cl = arg;
  pthread_mutex_lock(&cl->wmu);
  for (;;) {
    while (!cl->jobs && !cl->wstop)
      pthread_cond_wait(&cl->wcv, &cl->wmu);
    job *j = cl->jobs;
    if (!j)
      break; /* stopping, nothing left */
    cl->jobs = j->next;
    if (!cl->jobs)
      cl->jobs_tail = NULL;
    pthread_mutex_unlock(&cl->wmu);
    j->next = NULL;
    if (cl->wabort) {
      j->status = CAS_UNAVAILABLE;
    } else {
      switch (j->kind) {
      case JOB_CREATE:
        work_create(cl, j);
        break;
      case JOB_NODE_DEL:
        work_node_del(cl, j);
        break;
      case JOB_ANNOUNCE:
        work_announce(cl, j);
        break;
      default:
        work_cas(cl, j);
        break;
      }
    }
    pthread_mutex_lock(&cl->mu); /* hand it back to the loop */
    if (cl->done_tail)
      cl->done_tail->next = j;
    else
      cl->done = j;
    cl->done_tail = j;
    pthread_mutex_unlock(&cl->mu);
    uint64_t one = 1;
    ssize_t w = write(cl->efd, &one, sizeof one);
    (void)w;
    pthread_mutex_lock(&cl->wmu);
  }
  pthread_mutex_unlock(&cl->wmu);
  return NULL;
}

static void submit(cluster *cl, job *j) {
  cl->jobs_inflight++;
  pthread_mutex_lock(&cl->wmu);
  if (cl->jobs_tail)
    cl->jobs_tail->next = j;
  else
    cl->jobs = j;
  cl->jobs_tail = j;
  pthread_cond_signal(&cl->wcv);
  pthread_mutex_unlock(&cl->wmu);
}

static job *job_new(int kind, uint64_t room_id, uint64_t node, uint32_t request_id) {
  job *j = calloc(1, sizeof *j);
  if (j) {
    j->kind = kind;
    j->room_id = room_id;
    j->node = node;
    j->request_id = request_id;
  }
  return j;
}

/* Snapshot of the relays alive now (ourselves included), for the worker. */
static int alive_snapshot(cluster *cl, job *j) {
  j->ids = malloc(sizeof(uint64_t) * (cl->peers.count + 1));
  if (!j->ids)
    return -1;
  j->ids[j->nids++] = cl->id;
  for (size_t i = 0; i < cl->peers.cap; i++)
    if (cl->peers.keys[i])
      j->ids[j->nids++] = cl->peers.keys[i];
  return 0;
}

/* Decodes a record the worker read or wrote and applies it to the mirror. */
static void apply_bytes(cluster *cl, const uint8_t *p, size_t n) {
  rec r;
  if (!p || rec_decode(p, n, &r) != 0)
    return;
  apply_record(cl, &r, 0);
  rec_free(&r);
}

/* A record this relay wrote itself.  The mirror may already hold that same
 * version, from the KV watcher, but filtered: applied while a leave of ours
 * was still in flight, it left out a session that had joined again since.
 * The worker runs jobs in order, so by now that leave is in the directory:
 * at an equal version our own copy wins. */
static void apply_own_bytes(cluster *cl, const uint8_t *p, size_t n) {
  rec r;
  if (!p || rec_decode(p, n, &r) != 0)
    return;
  croom *cr = u64map_get(&cl->rooms, r.id);
  apply_record(cl, &r, cr && cr->version == r.version);
  rec_free(&r);
}

/* ---- room requests (loop thread) ----------------------------------------------- */

static void pending_add(cluster *cl, uint64_t room_id, uint64_t node) {
  if (!cl->pending)
    cl->pending = malloc(sizeof *cl->pending * PENDING_MAX);
  if (cl->npending >= PENDING_MAX || !cl->pending) {
    /* dropped: the directory keeps a stale member until this relay is gone */
    if ((uint64_t)(uintptr_t)u64map_get(&cl->leaving, node) == room_id)
      u64map_del(&cl->leaving, node);
    return;
  }
  cl->pending[cl->npending++] = (pending_leave){room_id, node};
}

static void submit_leave(cluster *cl, uint64_t room_id, uint64_t node) {
  /* Until the directory has it, records still listing this node in this
   * room are read without it (apply_record), so the mirror does not bring
   * it back. */
  u64map_put(&cl->leaving, node, (void *)(uintptr_t)room_id);
  job *j = job_new(JOB_LEAVE, room_id, node, 0);
  if (j)
    submit(cl, j);
  else
    pending_add(cl, room_id, node);
}

/* The local view moves on at once (presence to our members now); the
 * directory write follows on the worker. */
void cluster_leave_room(cluster *cl, conn *c) {
  room *r = c->room;
  if (!r)
    return;
  uint64_t rid = r->id, node = c->node_id;
  c->room = NULL;
  croom *cr = u64map_get(&cl->rooms, rid);
  if (cr && rec_has(cr->r->member_ids, cr->r->count, node))
    mirror_remove_local(cl, cr, node);
  submit_leave(cl, rid, node);
}

static void busy_free_queue(busy *b) {
  for (req *q = b->head, *n; q; q = n) {
    n = q->next;
    free(q->name);
    free(q->meta);
    free(q);
  }
  b->head = b->tail = NULL;
  b->queued = 0;
}

/* Starts one request.  Returns 1 when a job now holds the session's reply. */
static int start_request(cluster *cl, conn *c, const req *q) {
  srv *s = cl->s;
  uint64_t node = c->node_id;
  job *j;
  switch (q->type) {
  case PR_FT_ROOM_CREATE: {
    static const uint8_t empty_list[8] = {0};
    if (c->room) {
      relay_reply(c, q->request_id, PR_E_ALREADY_IN_ROOM, NULL);
      return 0;
    }
    if (rooms_count(s->rooms) >= s->cfg.max_rooms || !is_up(cl)) {
      relay_reply(c, q->request_id, PR_E_TOO_MANY_ROOMS, NULL);
      return 0;
    }
    uint32_t size = q->max_clients ? q->max_clients : s->cfg.default_room_size;
    if (size > s->cfg.max_room_size)
      size = s->cfg.max_room_size;
    if (size == 0)
      size = 1;
    uint64_t relay = cl->id;
    rec r = {.version = 1,
             .id = 1,
             .created_ms = srv_unix_ms(),
             .state = PR_ROOM_WAITING,
             .host = node,
             .max_clients = size,
             .name = q->name,
             .name_len = q->name_len,
             .meta = empty_list,
             .meta_len = sizeof empty_list,
             .n = 1,
             .nodes = &node,
             .relays = &relay};
    if (q->meta_len > 0) {
      r.meta = q->meta;
      r.meta_len = q->meta_len;
    }
    j = job_new(JOB_CREATE, 0, node, q->request_id);
    if (j)
      j->in = rec_encode(&r, &j->in_len);
    if (!j || !j->in) {
      if (j)
        job_free(j);
      relay_reply(c, q->request_id, PR_E_TOO_MANY_ROOMS, NULL);
      return 0;
    }
    submit(cl, j);
    return 1;
  }
  case PR_FT_ROOM_JOIN: {
    if (c->room) {
      relay_reply(c, q->request_id, PR_E_ALREADY_IN_ROOM, NULL);
      return 0;
    }
    if (!is_up(cl)) {
      relay_reply(c, q->request_id, PR_E_ROOM_NOT_FOUND, NULL);
      return 0;
    }
    j = job_new(JOB_JOIN, q->join_room_id, node, q->request_id);
    if (!j) {
      relay_reply(c, q->request_id, PR_E_ROOM_NOT_FOUND, NULL);
      return 0;
    }
    /* Subscribe before the write: no event published after it is missed. */
    croom *cr = u64map_get(&cl->rooms, q->join_room_id);
    if (cr)
      room_sub_update(cl, cr, 1);
    submit(cl, j);
    return 1;
  }
  case PR_FT_ROOM_LEAVE:
    if (!c->room) {
      relay_reply(c, q->request_id, PR_E_NOT_IN_ROOM, NULL);
      return 0;
    }
    cluster_leave_room(cl, c);
    relay_lobby_add(c);
    relay_reply(c, q->request_id, 0, NULL);
    return 0;
  case PR_FT_ROOM_START:
    if (!c->room) {
      relay_reply(c, q->request_id, PR_E_NOT_IN_ROOM, NULL);
      return 0;
    }
    if (!is_up(cl)) { /* the directory is away: the closest code START has */
      relay_reply(c, q->request_id, PR_E_ROOM_NOT_WAITING, NULL);
      return 0;
    }
    j = job_new(JOB_START, c->room->id, node, q->request_id);
    if (!j) {
      relay_reply(c, q->request_id, PR_E_ROOM_NOT_WAITING, NULL);
      return 0;
    }
    submit(cl, j);
    return 1;
  case PR_FT_ROOM_LIST:
    relay_reply_list(c, q->request_id);
    return 0;
  default:
    return 0;
  }
}

/* Runs the session's queued requests until one needs the worker. */
static void run_queue(cluster *cl, uint64_t node) {
  busy *b = u64map_get(&cl->busy, node);
  if (!b)
    return;
  conn *c = u64map_get(&cl->s->by_node, node);
  while (b->head) {
    req *q = b->head;
    b->head = q->next;
    if (!b->head)
      b->tail = NULL;
    b->queued--;
    int held = c && c->state == CS_SESSION && start_request(cl, c, q);
    free(q->name);
    free(q->meta);
    free(q);
    if (held)
      return;
  }
  u64map_del(&cl->busy, node);
  free(b);
}

int cluster_busy(const cluster *cl, const conn *c) {
  return u64map_get(&cl->busy, c->node_id) != NULL;
}

void cluster_room_request(cluster *cl, conn *c, uint8_t type, uint32_t request_id,
                          const pr_room_create *cq, uint64_t join_room_id) {
  req q = {.type = type, .request_id = request_id, .join_room_id = join_room_id};
  if (cq) {
    q.max_clients = cq->max_clients;
    q.name = (uint8_t *)cq->name.ptr;
    q.name_len = cq->name.len;
    q.meta = (uint8_t *)cq->metadata.raw.ptr;
    q.meta_len = cq->metadata.raw.len;
  }
  busy *b = u64map_get(&cl->busy, c->node_id);
  if (!b) {
    if (!start_request(cl, c, &q))
      return;
    b = calloc(1, sizeof *b);
    if (!b || u64map_put(&cl->busy, c->node_id, b) != 0)
      free(b); /* replies may then reorder */
    return;
  }
  /* A reply is pending: queue behind it, with copies of the borrowed bytes. */
  if (b->queued >= MAX_QUEUED_REQUESTS) {
    relay_fatal(c, PR_E_PROTOCOL, "too many room requests waiting for a reply");
    return;
  }
  req *n = calloc(1, sizeof *n);
  if (!n)
    return;
  b->queued++;
  *n = q;
  n->name = q.name_len ? dup_bytes(q.name, q.name_len) : NULL;
  n->meta = q.meta_len ? dup_bytes(q.meta, q.meta_len) : NULL;
  if (b->tail)
    b->tail->next = n;
  else
    b->head = n;
  b->tail = n;
}

/* The loop side of a finished job. */
static void job_done(cluster *cl, job *j) {
  srv *s = cl->s;
  cl->jobs_inflight--;
  cl->kv_conflicts += j->conflicts;
  cl->kv_errors += j->errors;
  if (j->prev)
    apply_bytes(cl, j->prev, j->prev_len);
  if (j->out)
    apply_own_bytes(cl, j->out, j->out_len);
  switch (j->kind) {
  case JOB_LEAVE:
    if (j->status == CAS_UNAVAILABLE) {
      pending_add(cl, j->room_id, j->node);
    } else if ((uint64_t)(uintptr_t)u64map_get(&cl->leaving, j->node) == j->room_id) {
      u64map_del(&cl->leaving, j->node);
    }
    return;
  case JOB_CLEANUP:
    cl->cleanup_inflight--;
    if (j->status == CAS_UNAVAILABLE)
      cl->cleanup_pending = 1;
    return;
  case JOB_NODE_DEL:
    cl->cleanup_inflight--;
    if (j->status == CAS_NOOP)
      u64map_put(&cl->owners, j->node, (void *)(uintptr_t)j->room_id);
    else if (j->status == 0)
      u64map_del(&cl->owners, j->node); /* our own deletion does not come back to us */
    else
      cl->cleanup_pending = 1;
    return;
  case JOB_ANNOUNCE:
    for (size_t i = 0; i < j->ndone; i++)
      u64map_put(&cl->owners, j->done_ids[i], (void *)(uintptr_t)cl->id);
    LOG_INFO(&s->log, "Cluster: NodeIds announced again", "relay=%s nodes=%zu of=%zu", cl->hex,
             j->ndone, j->nids);
    return;
  default:
    break;
  }
  /* CREATE / JOIN / START: the session's reply. */
  busy *b = u64map_get(&cl->busy, j->node);
  conn *c = u64map_get(&s->by_node, j->node);
  int gone = !c || c->state != CS_SESSION || (b && b->ended);
  croom *cr = u64map_get(&cl->rooms, j->room_id);
  int member = cr && rec_has(cr->r->member_ids, cr->r->count, j->node);
  if (gone) {
    /* nobody to answer; a seat it won goes back */
    if (j->status == 0 && j->kind != JOB_START)
      submit_leave(cl, j->room_id, j->node);
    if (cr)
      room_sub_update(cl, cr, cr->nlocal > 0);
    if (b)
      b->ended = 0; /* a new session with this NodeId may be queued behind */
  } else if (j->kind == JOB_START) {
    if (j->status == 0 && c->room) {
      relay_reply(c, j->request_id, 0, c->room);
    } else {
      int st = j->status;
      if (st == PR_E_ROOM_NOT_FOUND)
        st = PR_E_NOT_IN_ROOM; /* the closest START has */
      relay_reply(c, j->request_id, st > 0 ? (uint16_t)st : PR_E_ROOM_NOT_WAITING, NULL);
    }
  } else if (j->status == 0 && member) {
    relay_lobby_remove(c);
    c->room = cr->r;
    if (j->kind == JOB_CREATE)
      LOG_DEBUG(&s->log, "room created", "node_id=%llu room_id=%llu", (unsigned long long)j->node,
                (unsigned long long)j->room_id);
    relay_reply(c, j->request_id, 0, cr->r);
  } else {
    if (j->status == 0)
      submit_leave(cl, j->room_id, j->node); /* mirror failed: give it back */
    if (j->status <= 0) /* not a refusal of the request itself: say why */
      LOG_WARN(&s->log, "Cluster: room request failed",
               "node_id=%llu room_id=%llu kind=%s cause=%s nats=\"%s\" kv_errors=%u "
               "kv_conflicts=%u",
               (unsigned long long)j->node, (unsigned long long)j->room_id,
               j->kind == JOB_CREATE ? "create" : "join",
               j->status == 0 ? "mirror" : "directory_unavailable",
               j->errors ? natsStatus_GetText(j->nats_st) : "", (unsigned)j->errors,
               (unsigned)j->conflicts);
    if (cr)
      room_sub_update(cl, cr, cr->nlocal > 0);
    uint16_t st = j->status > 0
                      ? (uint16_t)j->status
                      : (j->kind == JOB_CREATE ? PR_E_TOO_MANY_ROOMS : PR_E_ROOM_NOT_FOUND);
    relay_reply(c, j->request_id, st, NULL);
  }
  run_queue(cl, j->node);
}

static void drain_done(cluster *cl) {
  for (;;) {
    pthread_mutex_lock(&cl->mu);
    job *j = cl->done;
    cl->done = cl->done_tail = NULL;
    pthread_mutex_unlock(&cl->mu);
    if (!j)
      return;
    while (j) {
      job *n = j->next;
      job_done(cl, j);
      job_free(j);
      j = n;
    }
  }
}

/* ---- NodeIds -------------------------------------------------------------------- */

static int relay_alive_kv(cluster *cl, uint64_t relay) {
  if (relay == cl->id)
    return 1;
  char key[17];
  hex64(key, relay);
  kvEntry *e = NULL;
  natsStatus st = kvStore_Get(&e, cl->kv_relays, key);
  if (e)
    kvEntry_Destroy(e);
  return st != NATS_NOT_FOUND; /* unknown (an error) counts as alive: never steal */
}

int cluster_claim_node(cluster *cl, uint64_t *id, int assign) {
  srv *s = cl->s;
  if (!is_up(cl))
    return 0; /* outage: grant locally, as a lone relay would */
  for (int t = 0; t < CAS_TRIES; t++) {
    char key[17];
    hex64(key, *id);
    natsStatus st = kvStore_Create(NULL, cl->kv_nodes, key, cl->hex, 16);
    if (st == NATS_OK) {
      u64map_put(&cl->owners, *id, (void *)(uintptr_t)cl->id);
      return 0;
    }
    if (nats_unavailable(st)) {
      cl->kv_errors++;
      return 0;
    }
    kvEntry *e = NULL;
    st = kvStore_Get(&e, cl->kv_nodes, key);
    if (st == NATS_NOT_FOUND)
      continue; /* released meanwhile */
    if (st != NATS_OK) {
      cl->kv_errors++;
      return 0;
    }
    uint64_t owner = parse_hex64(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
    uint64_t rev = kvEntry_Revision(e);
    kvEntry_Destroy(e);
    if (owner == 0 || owner == cl->id || !relay_alive_kv(cl, owner)) {
      /* a stale claim (ours, or of a relay that is gone): take it over */
      if (kvStore_Update(NULL, cl->kv_nodes, key, cl->hex, 16, rev) == NATS_OK) {
        u64map_put(&cl->owners, *id, (void *)(uintptr_t)cl->id);
        return 0;
      }
      cl->kv_conflicts++;
      continue;
    }
    if (!assign)
      return -1;
    uint64_t nid;
    do
      srv_random(s, &nid, sizeof nid);
    while (nid == 0 || u64map_get(&s->by_node, nid));
    *id = nid;
  }
  return -1;
}

void cluster_release_node(cluster *cl, uint64_t id) {
  busy *b = u64map_get(&cl->busy, id);
  if (b) { /* its pending room requests die with it */
    b->ended = 1;
    busy_free_queue(b);
  }
  if ((uint64_t)(uintptr_t)u64map_get(&cl->owners, id) == cl->id)
    u64map_del(&cl->owners, id);
  if (!is_up(cl))
    return;
  char key[17];
  hex64(key, id);
  kvEntry *e = NULL;
  if (kvStore_Get(&e, cl->kv_nodes, key) != NATS_OK)
    return;
  uint64_t owner = parse_hex64(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
  kvEntry_Destroy(e);
  if (owner == cl->id)
    kvStore_Delete(cl->kv_nodes, key);
}

/* ---- events out --------------------------------------------------------------------- */

static int publish(cluster *cl, const char *subj, int reliable, uint64_t target,
                   const uint8_t *frame, size_t flen, uint64_t sender) {
  size_t need = MSG_HDR + flen;
  if (need > cl->pubcap) {
    uint8_t *p = realloc(cl->pub, need);
    if (!p)
      return -1;
    cl->pub = p;
    cl->pubcap = need;
  }
  uint8_t *p = cl->pub;
  p[0] = 1;
  p[1] = reliable ? 1 : 0;
  pr_le64(p + 2, cl->id);
  pr_le64(p + 10, target);
  memcpy(p + MSG_HDR, frame, flen);
  if (sender)
    pr_le64(p + MSG_HDR + PR_EVENT_SENDER_OFF, sender);
  if (natsConnection_Publish(cl->nc, subj, p, (int)need) != NATS_OK) {
    cl->publish_errors++;
    return -1;
  }
  cl->published++;
  return 0;
}

void cluster_room_event(cluster *cl, const room *r, const evbuf *b, int reliable) {
  /* Published even when every member we know of is local: a member that
   * another relay admitted a moment ago is subscribed already (it subscribes
   * before its compare-and-set), but our mirror may not show it yet.  With
   * no remote subscriber, NATS drops the message at once. */
  char subj[64];
  snprintf(subj, sizeof subj, "issun.room.%016llx", (unsigned long long)r->id);
  publish(cl, subj, reliable, 0, b->data, b->len, 0);
}

void cluster_lobby_event(cluster *cl, const evbuf *b, int reliable) {
  if (cl->peers.count == 0)
    return; /* alone in the cluster */
  publish(cl, "issun.lobby", reliable, 0, b->data, b->len, 0);
}

int cluster_route_targeted(cluster *cl, uint64_t sender, uint64_t target, const uint8_t *frame,
                           size_t flen, int reliable) {
  uint64_t owner = (uint64_t)(uintptr_t)u64map_get(&cl->owners, target);
  if (owner == 0 || owner == cl->id || !relay_alive(cl, owner))
    return -1;
  char subj[64];
  snprintf(subj, sizeof subj, "issun.relay.%016llx", (unsigned long long)owner);
  return publish(cl, subj, reliable, target, frame, flen, sender);
}

/* ---- messages in (loop thread) ---------------------------------------------------- */

static void on_event_msg(cluster *cl, int kind, uint64_t room_id, const uint8_t *d, size_t n) {
  srv *s = cl->s;
  if (n < MSG_HDR + PR_HDR_LEN || d[0] != 1)
    goto bad;
  int reliable = d[1] & 1;
  uint64_t target = pr_rd64(d + 10);
  const uint8_t *frame = d + MSG_HDR;
  size_t flen = n - MSG_HDR;
  pr_hdr h;
  pr_event ev;
  if (pr_hdr_decode(frame, flen, s->cfg.max_frame_payload, &h) != 0 || h.type != PR_FT_EVENT ||
      PR_HDR_LEN + (size_t)h.len != flen || pr_event_decode(frame + PR_HDR_LEN, h.len, &ev) != 0)
    goto bad;
  evbuf *b = evbuf_new(flen);
  if (!b)
    return;
  memcpy(b->data, frame, flen);
  b->rx_ns = s->now;
  b->scope = (uint8_t)ev.scope;
  if (kind == 0) {
    croom *cr = u64map_get(&cl->rooms, room_id);
    if (cr) {
      room *r = cr->r;
      for (uint32_t i = 0; i < r->count; i++) {
        conn *m = r->member_udata[i];
        if (m && m->node_id != ev.sender)
          relay_deliver(m, b, reliable);
      }
    }
  } else if (kind == 1) {
    for (uint32_t i = 0; i < s->lobby_len; i++) {
      conn *m = s->lobby[i];
      if (m->node_id != ev.sender)
        relay_deliver(m, b, reliable);
    }
  } else {
    conn *t = u64map_get(&s->by_node, target);
    if (t && t->node_id != ev.sender)
      relay_deliver(t, b, reliable);
    else
      s->stats.dropped[ST_DROP_NO_TARGET]++;
  }
  evbuf_unref(b);
  return;
bad:
  cl->malformed++;
}

static int kv_deleted(natsMsg *m) {
  const char *op = NULL;
  if (natsMsgHeader_Get(m, "KV-Operation", &op) != NATS_OK || !op)
    return 0;
  return strcmp(op, "DEL") == 0 || strcmp(op, "PURGE") == 0;
}

static void peer_seen(cluster *cl, uint64_t id) {
  if (id == 0 || id == cl->id)
    return;
  peer *p = u64map_get(&cl->peers, id);
  if (!p) {
    p = calloc(1, sizeof *p);
    if (!p || u64map_put(&cl->peers, id, p) != 0) {
      free(p);
      return;
    }
    p->id = id;
    LOG_INFO(&cl->s->log, "Cluster: relay joined", "relay=%016llx relays=%zu",
             (unsigned long long)id, cl->peers.count + 1);
  }
  p->last_seen = cl->s->now;
}

static void peer_dead(cluster *cl, uint64_t id, const char *why) {
  peer *p = u64map_del(&cl->peers, id);
  if (!p)
    return;
  free(p);
  cl->peers_lost++;
  /* Its sessions are gone.  Targeted events to them are dropped from now
   * on (relay_alive); the cleaner deletes their NodeId keys, and the
   * deletions clear every relay's owner map. */
  size_t n = 0;
  for (size_t i = 0; i < cl->owners.cap; i++)
    if (cl->owners.keys[i] && (uint64_t)(uintptr_t)cl->owners.vals[i] == id)
      n++;
  cl->cleanup_pending = 1;
  LOG_WARN(&cl->s->log, "Cluster: relay gone", "relay=%016llx reason=%s sessions=%zu",
           (unsigned long long)id, why, n);
}

static void on_msg(cluster *cl, natsMsg *m) {
  const char *subj = natsMsg_GetSubject(m);
  const uint8_t *d = (const uint8_t *)natsMsg_GetData(m);
  int len = natsMsg_GetDataLength(m);
  size_t n = len > 0 ? (size_t)len : 0;
  static const char kr[] = "$KV." BUCKET_ROOMS ".", kn[] = "$KV." BUCKET_NODES ".",
                    kl[] = "$KV." BUCKET_RELAYS ".", er[] = "issun.room.", ed[] = "issun.relay.";
  cl->received++;
  if (strncmp(subj, kr, sizeof kr - 1) == 0) {
    const char *k = subj + sizeof kr - 1;
    uint64_t id = parse_hex64(k, strlen(k));
    if (!id)
      goto bad;
    if (kv_deleted(m)) {
      croom *cr = u64map_get(&cl->rooms, id);
      if (cr)
        drop_room(cl, cr);
      return;
    }
    rec r;
    if (rec_decode(d, n, &r) != 0 || r.id != id)
      goto bad;
    apply_record(cl, &r, 0);
    rec_free(&r);
  } else if (strncmp(subj, kn, sizeof kn - 1) == 0) {
    const char *k = subj + sizeof kn - 1;
    uint64_t node = parse_hex64(k, strlen(k));
    if (!node)
      goto bad;
    if (kv_deleted(m)) {
      u64map_del(&cl->owners, node);
      return;
    }
    uint64_t owner = parse_hex64((const char *)d, n);
    if (!owner)
      goto bad;
    u64map_put(&cl->owners, node, (void *)(uintptr_t)owner);
  } else if (strncmp(subj, kl, sizeof kl - 1) == 0) {
    const char *k = subj + sizeof kl - 1;
    uint64_t id = parse_hex64(k, strlen(k));
    if (!id)
      goto bad;
    if (kv_deleted(m))
      peer_dead(cl, id, "left");
    else
      peer_seen(cl, id);
  } else if (strncmp(subj, er, sizeof er - 1) == 0) {
    const char *k = subj + sizeof er - 1;
    uint64_t id = parse_hex64(k, strlen(k));
    if (!id)
      goto bad;
    on_event_msg(cl, 0, id, d, n);
  } else if (strcmp(subj, "issun.lobby") == 0) {
    on_event_msg(cl, 1, 0, d, n);
  } else if (strncmp(subj, ed, sizeof ed - 1) == 0) {
    on_event_msg(cl, 2, 0, d, n);
  }
  return;
bad:
  cl->malformed++;
}

/* NATS thread: queue for the loop, wake it when the queue was empty. */
static void on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  cluster *cl = closure;
  if (atomic_load(&cl->closing)) {
    natsMsg_Destroy(msg);
    return;
  }
  pthread_mutex_lock(&cl->mu);
  if (cl->qlen == CLUSTER_QUEUE_MAX) {
    pthread_mutex_unlock(&cl->mu);
    natsMsg_Destroy(msg);
    atomic_fetch_add(&cl->q_dropped, 1);
    return;
  }
  cl->q[(cl->qhead + cl->qlen) % CLUSTER_QUEUE_MAX] = msg;
  int wake = cl->qlen++ == 0;
  pthread_mutex_unlock(&cl->mu);
  if (wake) {
    uint64_t one = 1;
    ssize_t w = write(cl->efd, &one, sizeof one);
    (void)w;
  }
}

/* The last callback NATS makes for a connection: cluster_free waits for it
 * before freeing what the callbacks use. */
static void on_closed(natsConnection *nc, void *closure) {
  cluster *cl = closure;
  pthread_mutex_lock(&cl->mu);
  cl->closed = 1;
  pthread_cond_broadcast(&cl->closed_cv);
  pthread_mutex_unlock(&cl->mu);
}

static void on_disconnected(natsConnection *nc, void *closure) {
  cluster *cl = closure;
  if (atomic_load(&cl->closing))
    return;
  atomic_fetch_add(&cl->disconnects, 1);
  uint64_t one = 1;
  ssize_t w = write(cl->efd, &one, sizeof one);
  (void)w;
}

static void drain_queue(cluster *cl) {
  natsMsg *batch[256];
  for (;;) {
    uint32_t k = 0;
    pthread_mutex_lock(&cl->mu);
    while (k < 256 && cl->qlen > 0) {
      batch[k++] = cl->q[cl->qhead];
      cl->qhead = (cl->qhead + 1) % CLUSTER_QUEUE_MAX;
      cl->qlen--;
    }
    pthread_mutex_unlock(&cl->mu);
    if (k == 0)
      return;
    for (uint32_t i = 0; i < k; i++) {
      on_msg(cl, batch[i]);
      natsMsg_Destroy(batch[i]);
    }
  }
}

/* ---- liveness, failure, cleanup ------------------------------------------------- */

static void *hb_main(void *arg) {
  cluster *cl = arg;
  uint64_t interval_ns = cl->expiry_ns / 3;
  pthread_mutex_lock(&cl->hbmu);
  while (!cl->hbstop) {
    pthread_mutex_unlock(&cl->hbmu);
    /* A plain publish on the key's subject: the bucket's stream stores it
     * like a put, but this thread never waits for JetStream's ack, so a
     * JetStream leader election cannot make us look dead.  (Errors: NATS is
     * down; the reconnect buffer holds it meanwhile.) */
    (void)natsConnection_Publish(cl->nc, cl->hb_subject, cl->hex, 16);
    pthread_mutex_lock(&cl->hbmu);
    if (cl->hbstop)
      break;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + interval_ns;
    ts.tv_sec = (time_t)(t / 1000000000ull);
    ts.tv_nsec = (long)(t % 1000000000ull);
    pthread_cond_timedwait(&cl->hbcv, &cl->hbmu, &ts);
  }
  pthread_mutex_unlock(&cl->hbmu);
  return NULL;
}

/* After a reconnect: re-publish our NodeIds (JOB_ANNOUNCE, on the worker). */
static void reannounce_nodes(cluster *cl) {
  srv *s = cl->s;
  job *j = job_new(JOB_ANNOUNCE, 0, 0, 0);
  if (!j)
    return;
  j->ids = malloc(sizeof(uint64_t) * (s->by_node.count + 1));
  if (!j->ids) {
    job_free(j);
    return;
  }
  for (size_t i = 0; i < s->by_node.cap; i++)
    if (s->by_node.keys[i])
      j->ids[j->nids++] = s->by_node.keys[i];
  submit(cl, j);
}

static int i_am_cleaner(cluster *cl) {
  for (size_t i = 0; i < cl->peers.cap; i++)
    if (cl->peers.keys[i] && cl->peers.keys[i] < cl->id)
      return 0;
  return 1;
}

/* Removes the members of relays that are gone from the room records, then
 * deletes the NodeId keys those relays held: at most CLEANUP_BUDGET jobs for
 * the worker at a time; cleanup_pending stays set while work remains. */
#define CLEANUP_BUDGET 32
static void cleanup_rooms(cluster *cl) {
  srv *s = cl->s;
  size_t n = 0, k = 0;
  for (room *r = rooms_oldest(s->rooms); r && n < CLEANUP_BUDGET; r = rooms_newer(r)) {
    croom *cr = u64map_get(&cl->rooms, r->id);
    if (!cr)
      continue;
    for (uint32_t i = 0; i < r->count; i++)
      if (!relay_alive(cl, cr->owners[i])) {
        job *j = job_new(JOB_CLEANUP, r->id, 0, 0);
        if (j && alive_snapshot(cl, j) == 0) {
          submit(cl, j);
          cl->cleanup_inflight++;
          n++;
        } else if (j) {
          job_free(j);
        }
        break;
      }
  }
  for (size_t i = 0; i < cl->owners.cap && n + k < CLEANUP_BUDGET; i++) {
    uint64_t owner = cl->owners.keys[i] ? (uint64_t)(uintptr_t)cl->owners.vals[i] : 0;
    if (!owner || relay_alive(cl, owner))
      continue;
    job *j = job_new(JOB_NODE_DEL, 0, cl->owners.keys[i], 0);
    if (j && alive_snapshot(cl, j) == 0) {
      submit(cl, j);
      cl->cleanup_inflight++;
      k++;
    } else if (j) {
      job_free(j);
    }
  }
  if (n)
    LOG_INFO(&s->log, "Cluster: removing members of gone relays", "rooms=%zu nodes=%zu", n, k);
  cl->cleanup_pending = n + k == CLEANUP_BUDGET; /* failures set it again */
}

static void tick(cluster *cl) {
  srv *s = cl->s;
  int up = is_up(cl);
  uint64_t drops = atomic_load(&cl->disconnects);
  if (up && (!cl->was_up || drops != cl->seen_disconnects)) {
    cl->seen_disconnects = drops; /* a drop and reconnect may fall between two ticks */
    /* (Re)connected: every peer gets a fresh expiry before we judge it. */
    for (size_t i = 0; i < cl->peers.cap; i++)
      if (cl->peers.keys[i])
        ((peer *)cl->peers.vals[i])->last_seen = s->now;
    cl->grace_until = s->now + cl->expiry_ns;
    cl->cleanup_pending = 1;
    if (cl->hb_started) {
      char url[256] = "?";
      natsConnection_GetConnectedUrl(cl->nc, url, sizeof url);
      LOG_INFO(&s->log, "Cluster: connected to NATS again", "relay=%s nats_server=%s", cl->hex,
               url);
      reannounce_nodes(cl);
    }
  } else if (!up && cl->was_up) {
    LOG_WARN(&s->log, "Cluster: NATS unreachable; serving local sessions, reconnecting", "relay=%s",
             cl->hex);
  }
  cl->was_up = up;
  if (!up)
    return;
  uint64_t dead[64];
  size_t nd = 0;
  for (size_t i = 0; i < cl->peers.cap && nd < 64; i++) {
    peer *p = cl->peers.keys[i] ? cl->peers.vals[i] : NULL;
    if (p && s->now - p->last_seen > cl->expiry_ns)
      dead[nd++] = p->id;
  }
  for (size_t i = 0; i < nd; i++)
    peer_dead(cl, dead[i], "expired");
  if (cl->npending && cl->jobs_inflight == 0) { /* leaves NATS refused earlier */
    uint32_t n = cl->npending;
    cl->npending = 0;
    for (uint32_t i = 0; i < n; i++)
      submit_leave(cl, cl->pending[i].room_id, cl->pending[i].node);
  }
  if (cl->cleanup_pending && cl->cleanup_inflight == 0 && s->now >= cl->grace_until &&
      i_am_cleaner(cl))
    cleanup_rooms(cl);
}

void cluster_on_epoll(cluster *cl, uint32_t id) {
  uint64_t x;
  if (id == CLUSTER_EPOLL_ID) {
    while (read(cl->efd, &x, sizeof x) > 0) {
    }
    drain_queue(cl);
    drain_done(cl);
  } else {
    while (read(cl->tfd, &x, sizeof x) > 0) {
    }
    drain_queue(cl);
    drain_done(cl);
    tick(cl);
  }
}

/* ---- setup and teardown ------------------------------------------------------------ */

static natsStatus open_bucket(cluster *cl, kvStore **kv, const char *name, int64_t ttl_ms) {
  natsStatus st = js_KeyValue(kv, cl->js, name);
  if (st == NATS_OK)
    return st;
  kvConfig kc;
  kvConfig_Init(&kc);
  kc.Bucket = name;
  kc.History = 1;
  kc.StorageType = js_FileStorage; /* survives a NATS restart */
  kc.Replicas = (int)cl->s->cfg.nats_replicas;
  kc.TTL = ttl_ms * 1000000; /* cnats 3.4 passes it through as the stream MaxAge, in ns */
  st = js_CreateKeyValue(kv, cl->js, &kc);
  if (st != NATS_OK)
    st = js_KeyValue(kv, cl->js, name); /* another relay made it first */
  return st;
}

/* Loads a bucket's current keys into the mirror at start. */
static void load_bucket(cluster *cl, kvStore *kv, const char *bucket) {
  kvKeysList keys = {0};
  if (kvStore_Keys(&keys, kv, NULL) != NATS_OK)
    return;
  for (int i = 0; i < keys.Count; i++) {
    kvEntry *e = NULL;
    if (kvStore_Get(&e, kv, keys.Keys[i]) != NATS_OK)
      continue;
    /* feed it through the same path as a live update */
    char subj[128];
    snprintf(subj, sizeof subj, "$KV.%s.%s", bucket, keys.Keys[i]);
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subj, NULL, kvEntry_Value(e), kvEntry_ValueLen(e)) == NATS_OK) {
      on_msg(cl, m);
      natsMsg_Destroy(m);
    }
    kvEntry_Destroy(e);
  }
  kvKeysList_Destroy(&keys);
}

static uint64_t mono_ms(void) {
  return srv_clock_ns() / MS_NS;
}

int cluster_new(cluster **out, srv *s, int epfd, char *err, size_t errlen) {
  cluster *cl = calloc(1, sizeof *cl);
  natsStatus st;
  if (!cl) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  cl->s = s;
  cl->efd = cl->tfd = -1;
  cl->expiry_ns = (uint64_t)s->cfg.cluster_expiry_ms * MS_NS;
  pthread_mutex_init(&cl->mu, NULL);
  pthread_cond_init(&cl->closed_cv, NULL);
  pthread_mutex_init(&cl->hbmu, NULL);
  pthread_mutex_init(&cl->wmu, NULL);
  pthread_cond_init(&cl->wcv, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&cl->hbcv, &ca);
  pthread_condattr_destroy(&ca);
  do
    srv_random(s, &cl->id, sizeof cl->id);
  while (cl->id == 0);
  hex64(cl->hex, cl->id);
  uint64_t seed;
  srv_random(s, &seed, sizeof seed);
  cl->q = calloc(CLUSTER_QUEUE_MAX, sizeof *cl->q);
  if (!cl->q || u64map_init(&cl->rooms, 64, seed) != 0 ||
      u64map_init(&cl->owners, 1024, seed ^ 1) != 0 || u64map_init(&cl->peers, 16, seed ^ 2) != 0 ||
      u64map_init(&cl->busy, 64, seed ^ 3) != 0 || u64map_init(&cl->leaving, 64, seed ^ 4) != 0) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }

  /* The server list: "nats://a:4222,nats://b:4222" */
  char urls[CFG_PATH_MAX];
  snprintf(urls, sizeof urls, "%s", s->cfg.nats_url);
  const char *servers[32];
  int nservers = 0;
  for (char *save = NULL, *tok = strtok_r(urls, ",", &save); tok && nservers < 32;
       tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ')
      tok++;
    if (*tok)
      servers[nservers++] = tok;
  }
  if (nservers == 0) {
    snprintf(err, errlen, "ISSUN_NATS_URL (--nats-url): no server URL in '%s'", s->cfg.nats_url);
    goto fail;
  }
  char name[64];
  snprintf(name, sizeof name, "issun-relay %s", cl->hex);
  if (natsOptions_Create(&cl->opts) != NATS_OK ||
      natsOptions_SetServers(cl->opts, servers, nservers) != NATS_OK ||
      natsOptions_SetName(cl->opts, name) != NATS_OK ||
      natsOptions_SetNoEcho(cl->opts, true) != NATS_OK ||
      natsOptions_SetMaxReconnect(cl->opts, -1) != NATS_OK ||
      natsOptions_SetReconnectWait(cl->opts, 250) != NATS_OK ||
      natsOptions_SetTimeout(cl->opts, 2000) != NATS_OK ||
      natsOptions_SetPingInterval(cl->opts, 2000) != NATS_OK ||
      natsOptions_SetMaxPingsOut(cl->opts, 2) != NATS_OK ||
      natsOptions_SetFailRequestsOnDisconnect(cl->opts, true) != NATS_OK ||
      /* one delivery thread for every subscription: messages reach the
       * loop in the order NATS sent them */
      natsOptions_UseGlobalMessageDelivery(cl->opts, true) != NATS_OK ||
      natsOptions_SetDisconnectedCB(cl->opts, on_disconnected, cl) != NATS_OK ||
      natsOptions_SetClosedCB(cl->opts, on_closed, cl) != NATS_OK) {
    snprintf(err, errlen, "ISSUN_NATS_URL (--nats-url): cannot set up the NATS options: %s",
             nats_GetLastError(NULL));
    goto fail;
  }
  if (s->cfg.nats_creds[0] &&
      natsOptions_SetUserCredentialsFromFiles(cl->opts, s->cfg.nats_creds, NULL) != NATS_OK) {
    snprintf(err, errlen, "ISSUN_NATS_CREDS (--nats-creds): %s", nats_GetLastError(NULL));
    goto fail;
  }
  if (s->cfg.nats_ca[0] &&
      (natsOptions_SetSecure(cl->opts, true) != NATS_OK ||
       natsOptions_LoadCATrustedCertificates(cl->opts, s->cfg.nats_ca) != NATS_OK)) {
    snprintf(err, errlen, "ISSUN_NATS_CA (--nats-ca): %s", nats_GetLastError(NULL));
    goto fail;
  }
  nats_SetMessageDeliveryPoolSize(1);

  uint64_t deadline = mono_ms() + START_DEADLINE_MS;
  for (;;) {
    st = natsConnection_Connect(&cl->nc, cl->opts);
    if (st == NATS_OK)
      break;
    if (mono_ms() >= deadline) {
      snprintf(err, errlen, "ISSUN_NATS_URL (--nats-url): cannot connect to %s: %s",
               s->cfg.nats_url, natsStatus_GetText(st));
      goto fail;
    }
    usleep(250000);
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = KV_WAIT_MS;
  if (natsConnection_JetStream(&cl->js, cl->nc, &jo) != NATS_OK) {
    snprintf(err, errlen, "ISSUN_NATS_URL (--nats-url): no JetStream context: %s",
             nats_GetLastError(NULL));
    goto fail;
  }
  for (;;) {
    st = open_bucket(cl, &cl->kv_rooms, BUCKET_ROOMS, 0);
    if (st == NATS_OK)
      st = open_bucket(cl, &cl->kv_nodes, BUCKET_NODES, 0);
    if (st == NATS_OK)
      st = open_bucket(cl, &cl->kv_relays, BUCKET_RELAYS, (int64_t)s->cfg.cluster_expiry_ms);
    if (st == NATS_OK)
      break;
    if (mono_ms() >= deadline) {
      const char *why = nats_GetLastError(NULL);
      snprintf(err, errlen,
               "ISSUN_NATS_URL (--nats-url): JetStream key-value buckets unavailable (is JetStream "
               "enabled, with enough servers for ISSUN_NATS_REPLICAS=%u?): %s",
               s->cfg.nats_replicas, why ? why : natsStatus_GetText(st));
      goto fail;
    }
    kvStore_Destroy(cl->kv_rooms);
    kvStore_Destroy(cl->kv_nodes);
    kvStore_Destroy(cl->kv_relays);
    cl->kv_rooms = cl->kv_nodes = cl->kv_relays = NULL;
    usleep(250000);
  }

  cl->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  cl->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (cl->efd < 0 || cl->tfd < 0) {
    snprintf(err, errlen, "eventfd/timerfd: %s", strerror(errno));
    goto fail;
  }
  struct itimerspec its = {.it_interval = {0, TICK_MS * 1000000L},
                           .it_value = {0, TICK_MS * 1000000L}};
  timerfd_settime(cl->tfd, 0, &its, NULL);
  struct epoll_event ev = {.events = EPOLLIN};
  ev.data.u32 = CLUSTER_EPOLL_ID;
  epoll_ctl(epfd, EPOLL_CTL_ADD, cl->efd, &ev);
  ev.data.u32 = CLUSTER_EPOLL_ID + 1;
  epoll_ctl(epfd, EPOLL_CTL_ADD, cl->tfd, &ev);

  /* Subscribe first, then load: an update that races the load is applied
   * by version either way. */
  char relay_subj[64];
  snprintf(relay_subj, sizeof relay_subj, "issun.relay.%s", cl->hex);
  const char *subjects[] = {"$KV." BUCKET_ROOMS ".>", "$KV." BUCKET_NODES ".>",
                            "$KV." BUCKET_RELAYS ".>", "issun.lobby", relay_subj};
  for (int i = 0; i < 5; i++) {
    natsStatus sst;
    if (i < 2) {
      /* Room records and NodeId claims come from the buckets' streams (an
       * ordered JetStream consumer), never from the raw subjects: there a
       * compare-and-set write that the stream refused is seen too. */
      jsSubOptions so;
      jsSubOptions_Init(&so);
      so.Stream = i == 0 ? "KV_" BUCKET_ROOMS : "KV_" BUCKET_NODES;
      so.Ordered = true;
      so.Config.DeliverPolicy = js_DeliverNew;
      so.Config.Heartbeat = 1000000000; /* 1 s (ns): a lost consumer is remade quickly */
      sst = js_Subscribe(&cl->subs[i], cl->js, subjects[i], on_nats_msg, cl, NULL, &so, NULL);
    } else {
      /* liveness: plain puts, and they must flow even while JetStream
       * elects a leader */
      sst = natsConnection_Subscribe(&cl->subs[i], cl->nc, subjects[i], on_nats_msg, cl);
    }
    if (sst != NATS_OK) {
      snprintf(err, errlen, "ISSUN_NATS_URL (--nats-url): cannot subscribe to %s: %s", subjects[i],
               nats_GetLastError(NULL));
      goto fail;
    }
    natsSubscription_SetPendingLimits(cl->subs[i], -1, -1);
    cl->nsubs++;
  }
  natsConnection_Flush(cl->nc);
  s->now = srv_clock_ns();
  load_bucket(cl, cl->kv_relays, BUCKET_RELAYS);
  load_bucket(cl, cl->kv_nodes, BUCKET_NODES);
  load_bucket(cl, cl->kv_rooms, BUCKET_ROOMS);
  cl->was_up = 1;
  cl->grace_until = s->now + cl->expiry_ns;
  cl->cleanup_pending = 1;

  snprintf(cl->hb_subject, sizeof cl->hb_subject, "$KV." BUCKET_RELAYS ".%s", cl->hex);
  (void)kvStore_Put(NULL, cl->kv_relays, cl->hex, cl->hex, 16);
  if (pthread_create(&cl->hb, NULL, hb_main, cl) != 0) {
    snprintf(err, errlen, "cannot start the cluster liveness thread");
    goto fail;
  }
  cl->hb_started = 1;
  if (pthread_create(&cl->worker, NULL, worker_main, cl) != 0) {
    snprintf(err, errlen, "cannot start the cluster directory thread");
    goto fail;
  }
  cl->w_started = 1;
  char url[256] = "?";
  natsConnection_GetConnectedUrl(cl->nc, url, sizeof url);
  LOG_INFO(&s->log, "Cluster: joined over NATS",
           "relay=%s nats_server=%s relays=%zu rooms=%zu replicas=%u expiry_ms=%u", cl->hex, url,
           cl->peers.count + 1, rooms_count(s->rooms), s->cfg.nats_replicas,
           s->cfg.cluster_expiry_ms);
  *out = cl;
  return 0;
fail:
  cluster_free(cl);
  return -1;
}

void cluster_free(cluster *cl) {
  if (!cl)
    return;
  if (cl->hb_started) {
    pthread_mutex_lock(&cl->hbmu);
    cl->hbstop = 1;
    pthread_cond_signal(&cl->hbcv);
    pthread_mutex_unlock(&cl->hbmu);
    pthread_join(cl->hb, NULL);
  }
  if (cl->w_started) {
    /* The leaves of the sessions that just ended are queued: give them a
     * moment, then give up on the rest (the goodbye below covers them). */
    pthread_mutex_lock(&cl->wmu);
    cl->wstop = 1;
    pthread_cond_signal(&cl->wcv);
    pthread_mutex_unlock(&cl->wmu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 300000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    if (pthread_timedjoin_np(cl->worker, NULL, &ts) != 0) {
      atomic_store(&cl->wabort, 1);
      pthread_join(cl->worker, NULL);
    }
  }
  for (job *j = cl->done, *n; j; j = n) {
    n = j->next;
    job_free(j);
  }
  for (size_t i = 0; i < cl->busy.cap; i++)
    if (cl->busy.keys[i]) {
      busy_free_queue(cl->busy.vals[i]);
      free(cl->busy.vals[i]);
    }
  u64map_free(&cl->busy);
  u64map_free(&cl->leaving);
  if (cl->kv_relays && cl->nc && is_up(cl))
    kvStore_Delete(cl->kv_relays, cl->hex); /* goodbye */
  for (int i = 0; i < cl->nsubs; i++) {
    natsSubscription_Unsubscribe(cl->subs[i]);
    natsSubscription_Destroy(cl->subs[i]);
  }
  for (size_t i = 0; i < cl->rooms.cap; i++) {
    croom *cr = cl->rooms.keys[i] ? cl->rooms.vals[i] : NULL;
    if (!cr)
      continue;
    if (cr->sub) {
      natsSubscription_Unsubscribe(cr->sub);
      natsSubscription_Destroy(cr->sub);
    }
    free(cr->owners);
    free(cr);
  }
  for (size_t i = 0; i < cl->peers.cap; i++)
    if (cl->peers.keys[i])
      free(cl->peers.vals[i]);
  kvStore_Destroy(cl->kv_rooms);
  kvStore_Destroy(cl->kv_nodes);
  kvStore_Destroy(cl->kv_relays);
  jsCtx_Destroy(cl->js);
  if (cl->nc) {
    atomic_store(&cl->closing, 1);
    natsConnection_Close(cl->nc);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2;
    pthread_mutex_lock(&cl->mu);
    while (!cl->closed)
      if (pthread_cond_timedwait(&cl->closed_cv, &cl->mu, &ts) != 0)
        break;
    pthread_mutex_unlock(&cl->mu);
    natsConnection_Destroy(cl->nc);
  }
  natsOptions_Destroy(cl->opts);
  if (cl->q) {
    for (uint32_t i = 0; i < cl->qlen; i++)
      natsMsg_Destroy(cl->q[(cl->qhead + i) % CLUSTER_QUEUE_MAX]);
    free(cl->q);
  }
  u64map_free(&cl->rooms);
  u64map_free(&cl->owners);
  u64map_free(&cl->peers);
  if (cl->efd >= 0)
    close(cl->efd);
  if (cl->tfd >= 0)
    close(cl->tfd);
  free(cl->pending);
  free(cl->pub);
  pthread_mutex_destroy(&cl->mu);
  pthread_cond_destroy(&cl->closed_cv);
  pthread_mutex_destroy(&cl->hbmu);
  pthread_mutex_destroy(&cl->wmu);
  pthread_cond_destroy(&cl->wcv);
  pthread_cond_destroy(&cl->hbcv);
  free(cl);
}

/* ---- observability ---------------------------------------------------------------- */

int cluster_connected(const cluster *cl) {
  return is_up(cl);
}

size_t cluster_metrics_text(const cluster *cl, char *buf, size_t cap) {
  int n = snprintf(
      buf, cap,
      "# HELP issun_cluster_up 1 while the relay is connected to NATS (clustering on).\n"
      "# TYPE issun_cluster_up gauge\nissun_cluster_up %d\n"
      "# HELP issun_cluster_relays Relays this one sees alive, itself included.\n"
      "# TYPE issun_cluster_relays gauge\nissun_cluster_relays %zu\n"
      "# HELP issun_cluster_published_total Event messages published to NATS.\n"
      "# TYPE issun_cluster_published_total counter\nissun_cluster_published_total %llu\n"
      "# HELP issun_cluster_received_total NATS messages handled by the loop.\n"
      "# TYPE issun_cluster_received_total counter\nissun_cluster_received_total %llu\n"
      "# HELP issun_cluster_dropped_total NATS messages dropped, by reason.\n"
      "# TYPE issun_cluster_dropped_total counter\n"
      "issun_cluster_dropped_total{reason=\"queue_full\"} %llu\n"
      "issun_cluster_dropped_total{reason=\"malformed\"} %llu\n"
      "issun_cluster_dropped_total{reason=\"publish_failed\"} %llu\n"
      "# HELP issun_cluster_kv_errors_total Directory operations that failed (NATS unreachable or "
      "slow).\n"
      "# TYPE issun_cluster_kv_errors_total counter\nissun_cluster_kv_errors_total %llu\n"
      "# HELP issun_cluster_kv_conflicts_total Compare-and-set writes retried because another "
      "relay wrote first.\n"
      "# TYPE issun_cluster_kv_conflicts_total counter\nissun_cluster_kv_conflicts_total %llu\n"
      "# HELP issun_cluster_disconnects_total Times the NATS connection was lost.\n"
      "# TYPE issun_cluster_disconnects_total counter\nissun_cluster_disconnects_total %llu\n"
      "# HELP issun_cluster_relays_lost_total Relays declared gone (expired or left).\n"
      "# TYPE issun_cluster_relays_lost_total counter\nissun_cluster_relays_lost_total %llu\n",
      is_up(cl), cl->peers.count + 1, (unsigned long long)cl->published,
      (unsigned long long)cl->received, (unsigned long long)atomic_load(&cl->q_dropped),
      (unsigned long long)cl->malformed, (unsigned long long)cl->publish_errors,
      (unsigned long long)cl->kv_errors, (unsigned long long)cl->kv_conflicts,
      (unsigned long long)atomic_load(&cl->disconnects), (unsigned long long)cl->peers_lost);
  if (n < 0)
    return 0;
  return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- exposed for the unit tests ------------------------------------------------------ */

int cluster_record_check(const uint8_t *p, size_t n, uint64_t *room_id, uint32_t *members) {
  rec r;
  if (rec_decode(p, n, &r) != 0)
    return -1;
  if (room_id)
    *room_id = r.id;
  if (members)
    *members = r.n;
  rec_free(&r);
  return 0;
}

size_t cluster_record_example(uint8_t *out, size_t cap, uint64_t room_id, const uint64_t *nodes,
                              const uint64_t *relays, uint32_t n) {
  static const uint8_t meta[8] = {0};
  rec r = {.version = 1,
           .id = room_id,
           .created_ms = 1,
           .state = PR_ROOM_WAITING,
           .host = n ? nodes[0] : 0,
           .max_clients = 8,
           .name = (const uint8_t *)"room",
           .name_len = 4,
           .meta = meta,
           .meta_len = sizeof meta,
           .n = n,
           .nodes = (uint64_t *)nodes,
           .relays = (uint64_t *)relays};
  size_t len = 0;
  uint8_t *b = rec_encode(&r, &len);
  if (!b || len > cap) {
    free(b);
    return 0;
  }
  memcpy(out, b, len);
  free(b);
  return len;
}
