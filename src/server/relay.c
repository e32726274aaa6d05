/*
 * The issun/1 protocol on top of a QUIC connection: HELLO/ACK and NodeIds,
 * takeover, event routing with rate limits and slow-consumer cut-off, rooms
 * and presence, heartbeats and liveness, fatal errors.
 *
 * Nothing here writes to the network: frames are queued on recipients
 * (conn_mark_dirty) and the loop's write pass sends them.  An event is
 * encoded once into a reference-counted buffer shared by all recipients.
 */
#include <stdlib.h>
#include <string.h>

#include "server/cluster.h"
#include "server/guard.h"
#include "server/server_int.h"

#define MS (1000000ull)

/* ---- queues ---------------------------------------------------------- */

void txq_free(txq *q) {
  for (uint32_t i = q->head; i != q->tail; i++) evbuf_unref(q->ring[i & (q->cap - 1)]);
  free(q->ring);
  memset(q, 0, sizeof *q);
}

void dgq_free(dgq *q) {
  for (uint32_t i = 0; i < q->len; i++) evbuf_unref(q->ring[(q->head + i) % DGQ_CAP]);
  q->len = 0;
}

int txq_push(txq *q, evbuf *b) {
  uint32_t used = q->tail - q->head;
  if (used == q->cap) {
    uint32_t ncap = q->cap ? q->cap * 2 : 16;
    evbuf **nr = malloc(sizeof *nr * ncap);
    if (!nr) return -1;
    for (uint32_t i = 0; i < used; i++) nr[i] = q->ring[(q->head + i) & (q->cap - 1)];
    uint32_t sent = q->sent - q->head;
    free(q->ring);
    q->ring = nr;
    q->cap = ncap;
    q->head = 0;
    q->sent = sent;
    q->tail = used;
  }
  q->ring[q->tail & (q->cap - 1)] = b;
  q->tail++;
  q->unsent += b->len;
  return 0;
}

/* Appends a frame to a connection's send queue without any limit check:
 * the session stream's bytes, or for a legacy connection its next
 * unidirectional stream.  Takes the caller's reference. */
int relay_enqueue(conn *c, evbuf *b) {
  if (c->close_pending || c->state >= CS_CLOSING || txq_push(&c->tx, b) != 0) {
    evbuf_unref(b);
    return -1;
  }
  c->last_tx_stream = c->s->now;
  conn_mark_dirty(c);
  return 0;
}

/* Queues a control frame on the session stream; a legacy connection has
 * none (its client would read anything as an event), so it gets nothing. */
static int queue_raw(conn *c, evbuf *b) {
  if (c->stream_id < 0 || c->legacy) {
    evbuf_unref(b);
    return -1;
  }
  return relay_enqueue(c, b);
}

/* Queues a reliable frame for a live session, cutting off a recipient whose
 * unsent backlog passed the limit.  Takes the caller's reference. */
int relay_send_frame(conn *c, evbuf *b) {
  if (c->state != CS_SESSION || c->close_pending) {
    evbuf_unref(b);
    return -1;
  }
  if (c->legacy && !legacy_takes_frame(b)) {
    evbuf_unref(b);
    return -1;
  }
  if ((c->legacy ? relay_enqueue(c, b) : queue_raw(c, b)) != 0) return -1;
  if (c->tx.unsent > c->s->cfg.slow_consumer_bytes) {
    c->s->stats.dropped[ST_DROP_SLOW_CONSUMER]++;
    relay_fatal(c, PR_E_SLOW_CONSUMER, "reliable backlog over the limit");
    return -1;
  }
  return 0;
}

static evbuf *frame_copy(const uint8_t *p, size_t n) {
  evbuf *b = evbuf_new(n);
  if (b) memcpy(b->data, p, n);
  return b;
}

static void send_error(conn *c, uint16_t code, const char *msg) {
  uint8_t tmp[512];
  size_t n = pr_enc_error(tmp, sizeof tmp, code, msg);
  evbuf *b = n ? frame_copy(tmp, n) : NULL;
  if (b) queue_raw(c, b);
}

void relay_fatal(conn *c, uint16_t code, const char *msg) {
  if (c->close_pending || c->state >= CS_CLOSING) return;
  srv *s = c->s;
  if (c->state == CS_WAIT_HELLO && code != PR_E_SHUTTING_DOWN)
    s->stats.handshakes[code == PR_E_TIMEOUT ? ST_HS_TIMEOUT : ST_HS_REFUSED]++;
  guard_count_fatal(c, code);
  send_error(c, code, msg);
  LOG_DEBUG(&s->log, "closing connection", "node_id=%llu addr=%s code=%s message=\"%s\"",
            (unsigned long long)c->node_id, c->addr_str, pr_code_name(code), msg);
  conn_close(c, code, msg);
}

/* ---- lobby: sessions in no room -------------------------------------- */

void lobby_add(conn *c) {
  srv *s = c->s;
  if (c->lobby_idx != UINT32_MAX) return;
  if (s->lobby_len == s->lobby_cap) {
    uint32_t ncap = s->lobby_cap ? s->lobby_cap * 2 : 64;
    conn **nl = realloc(s->lobby, sizeof *nl * ncap);
    if (!nl) return; /* out of memory: this session misses global broadcasts */
    s->lobby = nl;
    s->lobby_cap = ncap;
  }
  c->lobby_idx = s->lobby_len;
  s->lobby[s->lobby_len++] = c;
}

static void lobby_remove(conn *c) {
  srv *s = c->s;
  uint32_t i = c->lobby_idx;
  if (i == UINT32_MAX) return;
  conn *last = s->lobby[--s->lobby_len];
  s->lobby[i] = last;
  last->lobby_idx = i;
  c->lobby_idx = UINT32_MAX;
}

/* ---- rooms ----------------------------------------------------------- */

static void presence_to_members(conn *from, room *r, uint64_t node, uint8_t change, uint64_t host) {
  uint8_t tmp[64];
  pr_presence p = {.room_id = r->id, .node_id = node, .change = change, .host = host};
  size_t n = pr_enc_presence(tmp, sizeof tmp, &p);
  evbuf *b = frame_copy(tmp, n);
  if (!b) return;
  for (uint32_t i = 0; i < r->count; i++) {
    conn *m = r->member_udata[i];
    if (m == from || !m) continue;
    relay_send_frame(m, evbuf_ref(b));
  }
  evbuf_unref(b);
}

static void leave_room(conn *c) {
  room *r = c->room;
  if (!r) return;
  srv *s = c->s;
  if (s->cluster) { /* the room lives in the cluster's directory */
    cluster_leave_room(s->cluster, c);
    return;
  }
  rooms_leave_result res;
  uint64_t rid = r->id;
  rooms_leave(s->rooms, r, c->node_id, &res);
  c->room = NULL;
  if (!res.deleted && !s->stopping) {
    presence_to_members(c, r, c->node_id, PR_PRESENCE_LEAVE, res.new_host);
    if (res.host_changed) presence_to_members(c, r, res.new_host, PR_PRESENCE_HOST, res.new_host);
  }
  LOG_DEBUG(&s->log, "left room", "node_id=%llu room_id=%llu deleted=%d",
            (unsigned long long)c->node_id, (unsigned long long)rid, res.deleted);
}

/* Sends REPLY {request_id, status, rooms: [r] or []}. */
static void reply(conn *c, uint32_t request_id, uint16_t status, const room *r) {
  srv *s = c->s;
  pr_buf b;
  pr_reply_state st;
  guard_count_reply(s, status);
  pr_buf_init(&b, s->scratch, PR_HDR_LEN + s->cfg.max_frame_payload);
  pr_reply_begin(&b, &st, request_id, status);
  if (r && status == 0) rooms_reply_add(&b, &st, r);
  pr_reply_finish(&b, &st);
  if (b.err) return;
  evbuf *e = frame_copy(b.p, b.len);
  if (e) relay_send_frame(c, e);
}

static void reply_list(conn *c, uint32_t request_id) {
  srv *s = c->s;
  pr_buf b;
  pr_reply_state st;
  pr_buf_init(&b, s->scratch, PR_HDR_LEN + s->cfg.max_frame_payload);
  pr_reply_begin(&b, &st, request_id, 0);
  for (room *r = rooms_oldest(s->rooms); r; r = rooms_newer(r)) {
    if (r->state != PR_ROOM_WAITING) continue;
    if (rooms_reply_add(&b, &st, r) != 0) break; /* as many as fit in one frame */
  }
  pr_reply_finish(&b, &st);
  if (b.err) return;
  evbuf *e = frame_copy(b.p, b.len);
  if (e) relay_send_frame(c, e);
}

static void on_room_frame(conn *c, uint8_t type, const uint8_t *p, size_t n) {
  srv *s = c->s;
  uint32_t rid;
  pr_room_create cr;
  pr_room_join jn;
  pr_room_simple sm;
  int rv;
  /* Decode first: a malformed request is a protocol error even with rooms off. */
  if (type == PR_FT_ROOM_CREATE) {
    rv = pr_room_create_decode(p, n, &cr);
    rid = cr.request_id;
  } else if (type == PR_FT_ROOM_JOIN) {
    rv = pr_room_join_decode(p, n, &jn);
    rid = jn.request_id;
  } else {
    rv = pr_room_simple_decode(p, n, &sm);
    rid = sm.request_id;
  }
  if (rv != 0) {
    relay_fatal(c, PR_E_PROTOCOL, "malformed room request");
    return;
  }
  if (!s->cfg.enable_rooms) {
    reply(c, rid, PR_E_ROOMS_DISABLED, NULL);
    return;
  }
  /* ROOM_LIST reads the local mirror, unless it must wait behind a pending request */
  if (s->cluster && (type != PR_FT_ROOM_LIST || cluster_busy(s->cluster, c))) {
    if (type == PR_FT_ROOM_CREATE && guard_room_create(c, &cr) != 0) return;
    cluster_room_request(s->cluster, c, type, rid, type == PR_FT_ROOM_CREATE ? &cr : NULL,
                         type == PR_FT_ROOM_JOIN ? jn.room_id : 0);
    return;
  }
  room *r = NULL;
  switch (type) {
  case PR_FT_ROOM_CREATE:
    if (guard_room_create(c, &cr) != 0) return;
    if (c->room) {
      reply(c, rid, PR_E_ALREADY_IN_ROOM, NULL);
      return;
    }
    rv = rooms_create(s->rooms, c->node_id, c, cr.name.ptr, cr.name.len, cr.max_clients,
                      &cr.metadata, &r);
    if (rv == PR_E_PROTOCOL) {
      relay_fatal(c, PR_E_PROTOCOL, "out of memory");
      return;
    }
    if (rv == 0) {
      lobby_remove(c);
      c->room = r;
      LOG_DEBUG(&s->log, "room created", "node_id=%llu room_id=%llu",
                (unsigned long long)c->node_id, (unsigned long long)r->id);
    }
    reply(c, rid, (uint16_t)rv, r);
    return;
  case PR_FT_ROOM_JOIN:
    if (c->room) {
      reply(c, rid, PR_E_ALREADY_IN_ROOM, NULL);
      return;
    }
    rv = rooms_join(s->rooms, jn.room_id, c->node_id, c, &r);
    if (rv == PR_E_PROTOCOL) {
      relay_fatal(c, PR_E_PROTOCOL, "out of memory");
      return;
    }
    if (rv == 0) {
      lobby_remove(c);
      c->room = r;
    }
    reply(c, rid, (uint16_t)rv, r);
    if (rv == 0) presence_to_members(c, r, c->node_id, PR_PRESENCE_JOIN, r->host);
    return;
  case PR_FT_ROOM_LEAVE:
    if (!c->room) {
      reply(c, rid, PR_E_NOT_IN_ROOM, NULL);
      return;
    }
    leave_room(c);
    lobby_add(c);
    reply(c, rid, 0, NULL);
    return;
  case PR_FT_ROOM_LIST:
    reply_list(c, rid);
    return;
  case PR_FT_ROOM_START:
    if (!c->room) {
      reply(c, rid, PR_E_NOT_IN_ROOM, NULL);
      return;
    }
    rv = rooms_start(s->rooms, c->room, c->node_id);
    reply(c, rid, (uint16_t)rv, c->room);
    return;
  }
}

/* ---- events ---------------------------------------------------------- */

/* One token bucket per session: max_events_per_sec tokens per second, the
 * same capacity, full at start.  Tokens are counted in millionths. */
static int rate_take(conn *c) {
  return tb_take(&c->rl, c->s->cfg.max_events_per_sec, c->s->now);
}

/* Flush window bookkeeping, once per queued delivery: a connection is hot
 * while its events arrive less than two windows apart on average; then
 * holding its write for a window packs events into shared packets. */
static inline void note_delivery(srv *s, conn *to) {
  uint64_t gap = s->now - to->last_deliv_ns;
  uint32_t g = gap >= 1000000000ull ? 1000000u : (uint32_t)(gap / 1000u);
  to->last_deliv_ns = s->now;
  to->deliv_gap_us = to->deliv_gap_us - (to->deliv_gap_us >> 3) + (g >> 3);
  s->flush_all++;
  if (to->deliv_gap_us < 2 * s->cfg.flush_us) s->flush_hot++;
}

static void deliver(conn *to, evbuf *b, int reliable) {
  srv *s = to->s;
  if (to->state != CS_SESSION || to->close_pending) return;
  if (reliable) {
    if (relay_send_frame(to, evbuf_ref(b)) == 0) {
      s->stats.deliveries++;
      note_delivery(s, to);
    }
    return;
  }
  if (!to->dgram_ok) {
    s->stats.dropped[ST_DROP_DATAGRAM_UNSUPPORTED]++;
    return;
  }
  if (b->len > to->dgram_max) {
    s->stats.dropped[ST_DROP_TOO_BIG]++;
    return;
  }
  dgq *q = &to->dg;
  if (q->len == DGQ_CAP) {
    /* Unreliable means fresh: the oldest waiting datagram gives way. */
    evbuf_unref(q->ring[q->head % DGQ_CAP]);
    q->head++;
    q->len--;
    s->stats.dropped[ST_DROP_DATAGRAM_QUEUE]++;
  }
  q->ring[(q->head + q->len) % DGQ_CAP] = evbuf_ref(b);
  q->len++;
  s->stats.deliveries++;
  note_delivery(s, to);
  conn_mark_dirty(to);
}

/* frame/flen: the whole EVENT frame as received (header included). */
static void on_event(conn *c, const uint8_t *frame, size_t flen, int reliable) {
  srv *s = c->s;
  pr_event ev;
  if (pr_event_decode(frame + PR_HDR_LEN, flen - PR_HDR_LEN, &ev) != 0) {
    guard_count_bad_event(s, frame + PR_HDR_LEN, flen - PR_HDR_LEN);
    relay_fatal(c, PR_E_PROTOCOL, "malformed EVENT");
    return;
  }
  if (!rate_take(c)) {
    s->stats.dropped[ST_DROP_RATE_LIMITED]++;
    if (c->rl_last_err_ns == 0 || s->now - c->rl_last_err_ns >= 1000 * MS) {
      c->rl_last_err_ns = s->now;
      send_error(c, PR_E_RATE_LIMITED, "events dropped by the rate limit");
    }
    return;
  }
  if (ev.scope == PR_SCOPE_TO_SERVER) {
    s->stats.dropped[ST_DROP_TO_SERVER]++;
    return;
  }
  conn *target = NULL;
  if (ev.scope == PR_SCOPE_TARGETED) {
    target = u64map_get(&s->by_node, ev.target);
    if (!target || target == c) {
      if (!target && s->cluster &&
          cluster_route_targeted(s->cluster, c->node_id, ev.target, frame, flen, reliable) == 0) {
        s->stats.events_relayed[ST_SCOPE_TARGETED]++; /* to the relay holding the target */
        return;
      }
      s->stats.dropped[ST_DROP_NO_TARGET]++;
      return;
    }
  }
  /* Encode once: the received frame with the sender overwritten. */
  evbuf *b = frame_copy(frame, flen);
  if (!b) return;
  pr_le64(b->data + PR_EVENT_SENDER_OFF, c->node_id);
  b->rx_ns = s->now;
  b->scope = (uint8_t)ev.scope;
  uint64_t queued_before = s->stats.deliveries;
  if (target) {
    s->stats.events_relayed[ST_SCOPE_TARGETED]++;
    deliver(target, b, reliable);
  } else if (c->room) {
    s->stats.events_relayed[ST_SCOPE_BROADCAST]++;
    room *r = c->room;
    for (uint32_t i = 0; i < r->count; i++) {
      conn *m = r->member_udata[i];
      if (m != c && m) deliver(m, b, reliable);
    }
    if (s->cluster) cluster_room_event(s->cluster, r, b, reliable); /* once, for other relays */
  } else {
    s->stats.events_relayed[ST_SCOPE_BROADCAST]++;
    for (uint32_t i = 0; i < s->lobby_len; i++) {
      conn *m = s->lobby[i];
      if (m != c) deliver(m, b, reliable);
    }
    if (s->cluster) cluster_lobby_event(s->cluster, b, reliable);
  }
  if (s->stats.deliveries != queued_before) /* queued for its last recipient now */
    stat_observe_latency(&s->stats, b->scope, (srv_clock_ns() - b->rx_ns) / 1000);
  evbuf_unref(b);
}

/* An EVENT that arrived on a legacy stream: relayed as a reliable event. */
void relay_event_from_legacy(conn *c, const uint8_t *frame, size_t flen) {
  on_event(c, frame, flen, 1);
}

/* ---- session start --------------------------------------------------- */

static void srv_rnd(void *ctx, void *out, size_t n) {
  srv_random(ctx, out, n);
}

/* What every session start shares (issun/1 HELLO or legacy handshake),
 * once its NodeId is registered in by_node. */
void relay_session_start(conn *c, uint64_t id) {
  srv *s = c->s;
  c->node_id = id;
  srv_random(s, c->resume, PR_RESUME_LEN); /* legacy: never sent, so never taken over */
  c->state = CS_SESSION;
  c->session_ns = s->now;
  tb_init(&c->rl, s->cfg.max_events_per_sec, s->now);
  s->stats.handshakes[ST_HS_OK]++;
}

static int secret_eq(const uint8_t *a, const uint8_t *b) {
  uint8_t d = 0;
  for (size_t i = 0; i < PR_RESUME_LEN; i++) d |= (uint8_t)(a[i] ^ b[i]);
  return d == 0;
}

static void send_ack(conn *c) {
  srv *s = c->s;
  pr_ack a = {.node_id = c->node_id,
              .heartbeat_ms = s->cfg.heartbeat_ms,
              .max_frame_payload = s->cfg.max_frame_payload,
              .max_events_per_sec = s->cfg.max_events_per_sec,
              .server_time_ms = srv_unix_ms()};
  memcpy(a.resume, c->resume, PR_RESUME_LEN);
  uint8_t tmp[128];
  size_t n = pr_enc_ack(tmp, sizeof tmp, &a);
  evbuf *b = frame_copy(tmp, n);
  if (b) queue_raw(c, b);
}

static void on_hello(conn *c, const uint8_t *p, size_t n) {
  srv *s = c->s;
  pr_hello h;
  if (pr_hello_decode(p, n, &h) != 0) {
    relay_fatal(c, PR_E_PROTOCOL, "malformed HELLO");
    return;
  }
  if (guard_hello(c, &h) != 0) return; /* authentication: the token decides the NodeId */
  conn *old = NULL;
  uint64_t id = h.node_id;
  if (id != 0) {
    conn *holder = u64map_get(&s->by_node, id);
    if (holder) {
      if (h.has_resume && secret_eq(h.resume, holder->resume)) {
        old = holder;
      } else {
        relay_fatal(c, PR_E_DUPLICATE_NODE, "node id in use");
        return;
      }
    }
  }
  if (!old && s->nsessions >= s->cfg.max_clients) {
    relay_fatal(c, PR_E_SERVER_FULL, "server full");
    return;
  }
  if (id == 0 && (id = node_id_pick(&s->by_node, srv_rnd, s)) == 0) {
    relay_fatal(c, PR_E_SERVER_FULL, "no free node id");
    return;
  }
  if (s->cluster && !old && cluster_claim_node(s->cluster, &id, h.node_id == 0) != 0) {
    relay_fatal(c, PR_E_DUPLICATE_NODE, "node id in use on another relay");
    return;
  }
  if (u64map_put(&s->by_node, id, c) != 0) {
    relay_fatal(c, PR_E_SERVER_FULL, "out of memory");
    return;
  }
  memcpy(c->name, h.name.ptr, h.name.len);
  c->name[h.name.len] = 0;
  relay_session_start(c, id);

  if (old) {
    /* Takeover: the new connection inherits the session, silently. */
    c->room = old->room;
    if (c->room) rooms_set_udata(c->room, id, c);
    if (old->lobby_idx != UINT32_MAX) {
      c->lobby_idx = old->lobby_idx;
      s->lobby[c->lobby_idx] = c;
      old->lobby_idx = UINT32_MAX;
    }
    old->room = NULL;
    old->takeover_victim = 1;
    LOG_INFO(&s->log, "Session taken over", "node_id=%llu addr=%s old_addr=%s",
             (unsigned long long)id, c->addr_str, old->addr_str);
    relay_fatal(old, PR_E_SESSION_TAKEN_OVER, "session resumed by another connection");
  } else {
    s->nsessions++;
    lobby_add(c);
    char name[4 * PR_MAX_NAME_LEN + 1]; /* the peer's choice: escaped for the log */
    LOG_INFO(&s->log, "Client connected", "node_id=%llu addr=%s name=\"%s\" clients=%u",
             (unsigned long long)id, c->addr_str, log_escape(name, sizeof name, c->name),
             s->nsessions);
  }
  send_ack(c);
}

/* ---- entry points from the QUIC layer -------------------------------- */

void relay_on_handshake(conn *c) {
  srv *s = c->s;
  if (!iq_tls_alpn_is_issun(c->tls)) {
    legacy_on_handshake(c); /* no ALPN: TLS let it through, so legacy is allowed */
    return;
  }
  c->state = CS_WAIT_HELLO;
  c->hello_deadline = s->now + (uint64_t)s->cfg.hello_timeout_ms * MS;
  c->last_rx_frame = s->now;
  const ngtcp2_transport_params *tp = ngtcp2_conn_get_remote_transport_params(c->q);
  if (tp && tp->max_datagram_frame_size > 0) {
    c->dgram_ok = 1;
    /* DATAGRAM frame type + length varint take at most 9 bytes; a datagram
     * must also fit one packet next to the short header and AEAD tag. */
    uint64_t m = tp->max_datagram_frame_size > 9 ? tp->max_datagram_frame_size - 9 : 0;
    c->dgram_max = m < SRV_MAX_PKT - 64 ? (size_t)m : SRV_MAX_PKT - 64;
  }
  conn_rearm(c);
}

static void on_frame(conn *c, const pr_hdr *h, const uint8_t *frame) {
  const uint8_t *p = frame + PR_HDR_LEN;
  c->last_rx_frame = c->s->now;
  if (c->state == CS_WAIT_HELLO) {
    if (h->type != PR_FT_HELLO) {
      relay_fatal(c, PR_E_PROTOCOL, "the first frame must be HELLO");
      return;
    }
    on_hello(c, p, h->len);
    return;
  }
  switch (h->type) {
  case PR_FT_EVENT:
    on_event(c, frame, PR_HDR_LEN + h->len, 1);
    return;
  case PR_FT_HEARTBEAT: {
    pr_heartbeat hb;
    if (pr_heartbeat_decode(p, h->len, &hb) != 0) relay_fatal(c, PR_E_PROTOCOL, "malformed HEARTBEAT");
    return;
  }
  case PR_FT_HELLO:
    relay_fatal(c, PR_E_PROTOCOL, "second HELLO");
    return;
  case PR_FT_ACK:
  case PR_FT_ERROR:
  case PR_FT_REPLY:
  case PR_FT_PRESENCE:
    relay_fatal(c, PR_E_PROTOCOL, "server-to-client frame sent by a client");
    return;
  case PR_FT_ROOM_CREATE:
  case PR_FT_ROOM_JOIN:
  case PR_FT_ROOM_LEAVE:
  case PR_FT_ROOM_LIST:
  case PR_FT_ROOM_START:
    on_room_frame(c, h->type, p, h->len);
    return;
  default:
    return; /* unknown frame type: skipped for forward compatibility */
  }
}

int relay_on_stream(conn *c, int64_t sid, const uint8_t *data, size_t len, int fin) {
  srv *s = c->s;
  if (c->close_pending || c->state >= CS_CLOSING) return -1;
  if (c->legacy) return legacy_on_stream(c, sid, data, len, fin);
  if (sid != 0) return -1; /* refused in stream_open */
  if (c->state != CS_WAIT_HELLO && c->state != CS_SESSION) return -1;
  c->stream_id = sid;
  uint32_t max = s->cfg.max_frame_payload;

  /* Complete a frame split across packets first. */
  while (c->rx_len > 0 && len > 0) {
    pr_hdr h;
    const uint8_t *pl;
    size_t used, need;
    if (c->rx_len < PR_HDR_LEN) {
      need = PR_HDR_LEN - c->rx_len;
    } else {
      int rv = pr_hdr_decode(c->rx, c->rx_len, max, &h);
      if (rv != 0) {
        relay_fatal(c, (uint16_t)rv, "bad frame header");
        return -1;
      }
      need = PR_HDR_LEN + h.len - c->rx_len;
    }
    size_t take = need < len ? need : len;
    if (c->rx_len + take > c->rx_cap) {
      size_t ncap = PR_HDR_LEN + (c->rx_len >= PR_HDR_LEN ? h.len : 0);
      if (ncap < c->rx_len + take) ncap = c->rx_len + take;
      uint8_t *nb = realloc(c->rx, ncap);
      if (!nb) {
        relay_fatal(c, PR_E_PROTOCOL, "out of memory");
        return -1;
      }
      c->rx = nb;
      c->rx_cap = ncap;
    }
    memcpy(c->rx + c->rx_len, data, take);
    c->rx_len += take;
    data += take;
    len -= take;
    int rv = pr_frame_next(c->rx, c->rx_len, max, &h, &pl, &used);
    if (rv != 0) {
      relay_fatal(c, (uint16_t)rv, "bad frame header");
      return -1;
    }
    if (used == 0) continue; /* still incomplete (header just completed) */
    c->rx_len = 0;
    on_frame(c, &h, c->rx);
    if (c->close_pending) return -1;
    if (c->rx_cap > 4096) { /* don't keep a large buffer around */
      free(c->rx);
      c->rx = NULL;
      c->rx_cap = 0;
    }
  }
  /* Whole frames straight from the packet. */
  while (len > 0) {
    pr_hdr h;
    const uint8_t *pl;
    size_t used;
    int rv = pr_frame_next(data, len, max, &h, &pl, &used);
    if (rv != 0) {
      relay_fatal(c, (uint16_t)rv, "bad frame header");
      return -1;
    }
    if (used == 0) {
      /* Keep the partial frame: at most one frame's worth. */
      if (len > c->rx_cap) {
        uint8_t *nb = realloc(c->rx, len < 256 ? 256 : len);
        if (!nb) {
          relay_fatal(c, PR_E_PROTOCOL, "out of memory");
          return -1;
        }
        c->rx = nb;
        c->rx_cap = len < 256 ? 256 : len;
      }
      memcpy(c->rx, data, len);
      c->rx_len = len;
      break;
    }
    on_frame(c, &h, data);
    if (c->close_pending) return -1;
    data += used;
    len -= used;
  }
  if (fin) {
    conn_close(c, PR_E_NO_ERROR, "client finished its session stream");
    return -1;
  }
  return 0;
}

int relay_on_datagram(conn *c, const uint8_t *data, size_t len) {
  if (c->close_pending || c->state != CS_SESSION) return -1;
  if (c->legacy) {
    relay_fatal(c, PR_E_PROTOCOL, "DATAGRAM on a legacy connection");
    return -1;
  }
  const uint8_t *pl;
  size_t plen;
  int rv = pr_datagram_check(data, len, c->s->cfg.max_frame_payload, &pl, &plen);
  if (rv != 0) {
    relay_fatal(c, (uint16_t)rv, "malformed DATAGRAM");
    return -1;
  }
  c->last_rx_frame = c->s->now;
  on_event(c, data, len, 0);
  return 0;
}

uint64_t relay_next_deadline(const conn *c) {
  const srv *s = c->s;
  if (c->close_pending) return UINT64_MAX;
  if (c->state == CS_WAIT_HELLO) return c->hello_deadline;
  if (c->state != CS_SESSION || c->legacy) return UINT64_MAX; /* legacy: QUIC PINGs + idle timeout */
  uint64_t hb = (uint64_t)s->cfg.heartbeat_ms * MS;
  uint64_t a = c->last_tx_stream + hb, b = c->last_rx_frame + 3 * hb;
  return a < b ? a : b;
}

void relay_on_timer(conn *c) {
  srv *s = c->s;
  if (c->close_pending) return;
  if (c->state == CS_WAIT_HELLO && s->now >= c->hello_deadline) {
    relay_fatal(c, PR_E_TIMEOUT, "no HELLO in time");
    return;
  }
  if (c->state != CS_SESSION || c->legacy) return;
  uint64_t hb = (uint64_t)s->cfg.heartbeat_ms * MS;
  if (s->now >= c->last_rx_frame + 3 * hb) {
    relay_fatal(c, PR_E_TIMEOUT, "peer went silent");
    return;
  }
  if (s->now >= c->last_tx_stream + hb) {
    uint8_t tmp[32];
    size_t n = pr_enc_heartbeat(tmp, sizeof tmp, srv_unix_ms());
    evbuf *b = frame_copy(tmp, n);
    if (b) relay_send_frame(c, b);
  }
}

void relay_set_disc_reason(conn *c, int reason) {
  if (!c->released) c->disc_reason = reason;
}

/* Ends the session (if any) held by this connection: NodeId freed, room
 * told, counters moved.  Idempotent; a takeover victim releases nothing. */
void relay_release(conn *c, const char *why) {
  srv *s = c->s;
  if (c->released) return;
  c->released = 1;
  if (c->state != CS_SESSION || c->takeover_victim) return;
  if (u64map_get(&s->by_node, c->node_id) == c) u64map_del(&s->by_node, c->node_id);
  leave_room(c);
  lobby_remove(c);
  if (s->cluster) cluster_release_node(s->cluster, c->node_id);
  s->nsessions--;
  int reason = c->disc_reason;
  if (reason >= 0 && reason < ST_DISC_N) s->stats.disconnects[reason]++;
  uint64_t dur_ms = (s->now - c->session_ns) / MS;
  stat_observe_session(&s->stats, reason, dur_ms);
  LOG_INFO(&s->log, "Client disconnected",
           "node_id=%llu addr=%s reason=%s detail=\"%s\" duration_ms=%llu clients=%u",
           (unsigned long long)c->node_id, c->addr_str, stat_disc_name(reason), why ? why : "",
           (unsigned long long)dur_ms, s->nsessions);
}

void relay_shutdown_all(srv *s) {
  for (conn *c = s->all; c; c = c->all_next) {
    if (c->state == CS_SESSION || c->state == CS_WAIT_HELLO)
      relay_fatal(c, PR_E_SHUTTING_DOWN, "server shutting down");
    else if (c->state == CS_HANDSHAKE)
      conn_close(c, PR_E_SHUTTING_DOWN, "server shutting down");
  }
}

/* ---- for cluster.c: the local sends, reused for cluster traffic -------- */

void relay_reply(conn *c, uint32_t request_id, uint16_t status, const room *r) {
  reply(c, request_id, status, r);
}

void relay_reply_list(conn *c, uint32_t request_id) {
  reply_list(c, request_id);
}

void relay_presence(conn *from, room *r, uint64_t node, uint8_t change, uint64_t host) {
  presence_to_members(from, r, node, change, host);
}

void relay_deliver(conn *to, evbuf *b, int reliable) {
  deliver(to, b, reliable);
}

void relay_lobby_add(conn *c) {
  lobby_add(c);
}

void relay_lobby_remove(conn *c) {
  lobby_remove(c);
}
