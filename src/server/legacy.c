/*
 * Legacy connections: clients that negotiate no ALPN and speak the wire
 * behaviour of issun's Rust QuicClientBackend (protocol.md section 9).
 *
 * Input.  The client opens unidirectional streams 2, 6, 10, ... (index =
 * stream ID / 4).  Index 0 carries its NodeId (8 bytes + FIN); every later
 * one carries one EVENT frame + FIN.  Streams are processed strictly in
 * index order, as the Rust relay did (it read them one after the other), so
 * a sender's events keep their order whatever order the packets came in.
 * A stream that arrives ahead of its turn waits in `in[]`, a ring of
 * SRV_LEGACY_STREAMS slots: the client has SRV_LEGACY_STREAMS streams of
 * credit, and one more is granted only when the relay has processed one,
 * so a stream can never be more than SRV_LEGACY_STREAMS ahead and the ring
 * never overflows.  A slot holds at most one frame (8 + max_frame_payload
 * bytes): a legacy connection can make the server hold at most
 * SRV_LEGACY_STREAMS such frames.
 *
 * Output.  The handshake echo and every event to the client go out on a
 * server unidirectional stream of their own (3, 7, 11, ...) with FIN.  They
 * use the connection's reliable queue `tx` (so the slow-consumer limit
 * counts them exactly as for issun/1), with one difference: an entry is not
 * a run of bytes on one stream but one whole stream.
 *   [head, sent)  handed to ngtcp2, each on its own stream; NULL once that
 *                 stream closed (acknowledged or reset).  Entry head + k is
 *                 on stream out_head + 4k: our streams are opened in order,
 *                 one per entry.
 *   sent          the entry being written, on stream out_cur (-1: none
 *                 opened yet), sent_off bytes of it taken by ngtcp2.
 *   [sent, tail)  not sent yet; a new stream is opened for each when the
 *                 client's stream credit allows.
 * ngtcp2 keeps pointers into an entry until its stream closes, which is
 * when the entry's reference is dropped.
 *
 * Liveness: the legacy client sends no heartbeats; ngtcp2 sends a PING
 * every heartbeat interval and the QUIC idle timeout (3 intervals) closes
 * a connection that stopped answering.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/legacy.h"
#include "server/cluster.h"
#include "server/ratelimit.h"
#include "server/server_int.h"

#define MS (1000000ull)
#define NSLOTS SRV_LEGACY_STREAMS

/* SLOT_ABORTED: reset after it was opened (its credit is ours to return);
 * SLOT_SKIP: reset before it was ever opened (ngtcp2 returned its credit). */
enum { SLOT_EMPTY = 0, SLOT_OPEN, SLOT_DONE, SLOT_ABORTED, SLOT_SKIP };

typedef struct lg_slot {
  uint8_t *buf; /* the stream's bytes so far (NULL until some arrive) */
  uint32_t len, cap;
  uint8_t state;
} lg_slot;

struct lg_conn {
  lg_slot in[NSLOTS];
  uint64_t next_in; /* index of the next client stream to process */
  int64_t out_cur;  /* stream of the entry at tx.sent, or -1 */
  int64_t out_head; /* stream of the entry at tx.head */
};

int legacy_allowed(const srv *s) {
  return s->cfg.allow_legacy && !s->cfg.auth_enabled;
}

static void slot_clear(lg_slot *sl) {
  free(sl->buf);
  memset(sl, 0, sizeof *sl);
}

void legacy_free(conn *c) {
  if (!c->legacy)
    return;
  for (size_t i = 0; i < NSLOTS; i++)
    slot_clear(&c->legacy->in[i]);
  free(c->legacy);
  c->legacy = NULL;
}

void legacy_on_handshake(conn *c) {
  srv *s = c->s;
  if (!legacy_allowed(s)) {
    /* TLS refuses these while legacy is off; never serve one regardless. */
    conn_close(c, PR_E_PROTOCOL, "ALPN issun/1 required");
    return;
  }
  c->legacy = calloc(1, sizeof *c->legacy);
  if (!c->legacy) {
    conn_close(c, PR_E_SERVER_FULL, "out of memory");
    return;
  }
  c->legacy->out_cur = -1;
  c->legacy->out_head = 3; /* the server's first unidirectional stream */
  c->state = CS_WAIT_HELLO;
  c->hello_deadline = s->now + (uint64_t)s->cfg.hello_timeout_ms * MS;
  c->last_rx_frame = s->now;
  /* The legacy client never reads DATAGRAMs, whatever its QUIC stack
   * advertises: unreliable events to it are dropped and counted. */
  c->dgram_ok = 0;
  ngtcp2_conn_set_keep_alive_timeout(c->q, (uint64_t)s->cfg.heartbeat_ms * NGTCP2_MILLISECONDS);
  LOG_DEBUG(&s->log, "legacy connection (no ALPN)", "addr=%s", c->addr_str);
  conn_rearm(c);
}

void legacy_on_stream_open(conn *c, int64_t sid) {
  struct lg_conn *L = c->legacy;
  if ((sid & 0x3) != 0x2) {
    relay_fatal(c, PR_E_PROTOCOL, "a legacy client may open unidirectional streams only");
    return;
  }
  uint64_t idx = (uint64_t)sid >> 2;
  if (idx >= L->next_in && idx - L->next_in < NSLOTS && L->in[idx % NSLOTS].state == SLOT_EMPTY)
    L->in[idx % NSLOTS].state = SLOT_OPEN;
}

int legacy_takes_frame(const evbuf *b) {
  /* Only events have a meaning to a legacy client: it decodes whatever
   * arrives as a RawNetworkEvent, and anything else would break it. */
  return b->len >= PR_HDR_LEN && b->data[3] == PR_FT_EVENT;
}

/* The handshake stream, processed: the session starts, or the connection
 * closes with the reason as its application error code (a legacy client
 * has no stream on which an ERROR frame would mean anything). */
static int start_session(conn *c, const uint8_t *p, size_t n) {
  srv *s = c->s;
  uint64_t id;
  if (lg_hello_decode(p, n, &id) != 0) {
    relay_fatal(c, PR_E_PROTOCOL, "legacy NodeId 0");
    return -1;
  }
  if (u64map_get(&s->by_node, id)) {
    LOG_INFO(&s->log, "Legacy client refused", "node_id=%llu addr=%s reason=DUPLICATE_NODE",
             (unsigned long long)id, c->addr_str);
    relay_fatal(c, PR_E_DUPLICATE_NODE, "node id in use");
    return -1;
  }
  if (s->nsessions >= s->cfg.max_clients) {
    relay_fatal(c, PR_E_SERVER_FULL, "server full");
    return -1;
  }
  if (s->cluster && cluster_claim_node(s->cluster, &id, 0) != 0) {
    relay_fatal(c, PR_E_DUPLICATE_NODE, "node id in use on another relay");
    return -1;
  }
  evbuf *echo = evbuf_new(LG_HELLO_LEN);
  if (!echo || u64map_put(&s->by_node, id, c) != 0) {
    evbuf_unref(echo);
    if (s->cluster)
      cluster_release_node(s->cluster, id);
    relay_fatal(c, PR_E_SERVER_FULL, "out of memory");
    return -1;
  }
  c->name[0] = 0;
  relay_session_start(c, id);
  s->nsessions++;
  lobby_add(c); /* legacy sessions are in no room */
  LOG_INFO(&s->log, "Client connected", "node_id=%llu addr=%s legacy=1 clients=%u",
           (unsigned long long)id, c->addr_str, s->nsessions);
  lg_hello_encode(echo->data, id);
  return relay_enqueue(c, echo);
}

/* Processes the stream at next_in and every complete one after it. */
static int drain(conn *c) {
  struct lg_conn *L = c->legacy;
  while (!c->close_pending && c->state < CS_CLOSING) {
    lg_slot *sl = &L->in[L->next_in % NSLOTS];
    if (L->next_in == 0 && (sl->state == SLOT_ABORTED || sl->state == SLOT_SKIP)) {
      /* Events must never be taken from a connection without a session. */
      relay_fatal(c, PR_E_PROTOCOL, "legacy handshake stream reset");
      break;
    }
    if (sl->state == SLOT_DONE) {
      if (L->next_in == 0)
        start_session(c, sl->buf, sl->len);
      else
        relay_event_from_legacy(c, sl->buf, sl->len);
    } else if (sl->state != SLOT_ABORTED && sl->state != SLOT_SKIP) {
      break;
    }
    int credit = sl->state != SLOT_SKIP;
    slot_clear(sl);
    L->next_in++;
    if (credit)
      ngtcp2_conn_extend_max_streams_uni(c->q, 1);
  }
  return c->close_pending || c->state >= CS_CLOSING ? -1 : 0;
}

int legacy_on_stream(conn *c, int64_t sid, const uint8_t *data, size_t len, int fin) {
  srv *s = c->s;
  struct lg_conn *L = c->legacy;
  if ((sid & 0x3) != 0x2)
    return -1; /* refused in legacy_on_stream_open */
  if (c->state != CS_WAIT_HELLO && c->state != CS_SESSION)
    return -1;
  uint64_t idx = (uint64_t)sid >> 2;
  if (idx < L->next_in)
    return 0; /* processed: its FIN came, nothing can follow */
  if (idx - L->next_in >= NSLOTS) {
    /* Beyond the credit we granted; ngtcp2 enforces that, so only a stream
     * limit raised behind our back (a reset stream we never saw) gets here. */
    relay_fatal(c, PR_E_PROTOCOL, "legacy stream beyond the granted credit");
    return -1;
  }
  lg_slot *sl = &L->in[idx % NSLOTS];
  if (sl->state == SLOT_DONE || sl->state == SLOT_ABORTED || sl->state == SLOT_SKIP)
    return 0;

  /* Judge the stream as it stands with these bytes. */
  size_t have = (size_t)sl->len + len, total = 0;
  int rv;
  if (idx == 0) {
    rv = lg_hello_status(have, fin);
  } else {
    uint8_t head[PR_HDR_LEN];
    size_t hn = sl->len < PR_HDR_LEN ? sl->len : PR_HDR_LEN;
    if (hn)
      memcpy(head, sl->buf, hn);
    size_t more = len < PR_HDR_LEN - hn ? len : PR_HDR_LEN - hn;
    if (more)
      memcpy(head + hn, data, more); /* a FIN alone may come with no data */
    rv = lg_event_status(head, have, fin, s->cfg.max_frame_payload, &total);
  }
  if (rv != 0 && rv != LG_MORE) {
    relay_fatal(c, (uint16_t)rv,
                idx == 0 ? "bad legacy handshake stream" : "bad legacy event stream");
    return -1;
  }
  c->last_rx_frame = s->now;

  if (rv == 0 && sl->len == 0 && idx == L->next_in) {
    /* The whole stream in one piece, and its turn: no copy. */
    sl->state = SLOT_OPEN;
    if (idx == 0)
      start_session(c, data, len);
    else
      relay_event_from_legacy(c, data, len);
    slot_clear(sl);
    L->next_in++;
    ngtcp2_conn_extend_max_streams_uni(c->q, 1);
    return drain(c);
  }

  if (len > 0) {
    /* have <= the stream's final size (8, or 8 + payload once the header
     * is in), as the status check refused anything longer. */
    if (have > sl->cap) {
      size_t ncap = idx == 0 ? LG_HELLO_LEN : (total ? total : PR_HDR_LEN);
      if (ncap < have)
        ncap = have;
      uint8_t *nb = realloc(sl->buf, ncap);
      if (!nb) {
        relay_fatal(c, PR_E_PROTOCOL, "out of memory");
        return -1;
      }
      sl->buf = nb;
      sl->cap = (uint32_t)ncap;
    }
    memcpy(sl->buf + sl->len, data, len);
    sl->len = (uint32_t)have;
  }
  sl->state = rv == 0 ? SLOT_DONE : SLOT_OPEN;
  return rv == 0 ? drain(c) : 0;
}

/* A client stream reset.  One that was opened is settled when it closes
 * (legacy_on_stream_close); one reset before it was ever opened gets no
 * other callback, and ngtcp2 has already granted a new stream for it, so it
 * is skipped in its turn without granting another. */
void legacy_on_stream_reset(conn *c, int64_t sid) {
  struct lg_conn *L = c->legacy;
  if ((sid & 0x3) != 0x2)
    return;
  uint64_t idx = (uint64_t)sid >> 2;
  if (idx < L->next_in || idx - L->next_in >= NSLOTS)
    return;
  lg_slot *sl = &L->in[idx % NSLOTS];
  if (sl->state != SLOT_EMPTY)
    return;
  sl->state = SLOT_SKIP;
  if (c->state == CS_WAIT_HELLO || c->state == CS_SESSION)
    drain(c);
}

/* Drops the reference of entries whose streams closed, from the head. */
static void out_collect(conn *c) {
  struct lg_conn *L = c->legacy;
  txq *t = &c->tx;
  while (t->head != t->sent && t->ring[t->head & (t->cap - 1)] == NULL) {
    t->head++;
    L->out_head += 4;
  }
}

void legacy_on_stream_close(conn *c, int64_t sid) {
  struct lg_conn *L = c->legacy;
  txq *t = &c->tx;
  if ((sid & 0x3) == 0x2) {
    /* A client stream closed.  One that never completed (reset by the
     * client) is skipped in its turn rather than waited for forever. */
    uint64_t idx = (uint64_t)sid >> 2;
    if (idx < L->next_in || idx - L->next_in >= NSLOTS)
      return;
    lg_slot *sl = &L->in[idx % NSLOTS];
    if (sl->state == SLOT_DONE || sl->state == SLOT_SKIP)
      return;
    slot_clear(sl);
    sl->state = SLOT_ABORTED;
    if (c->state == CS_WAIT_HELLO || c->state == CS_SESSION)
      drain(c);
    return;
  }
  if ((sid & 0x3) != 0x3 || t->cap == 0)
    return;
  if (sid == L->out_cur) {
    /* Closed before all of it was written (the client stopped it): the
     * rest is not sent. */
    uint32_t i = t->sent & (t->cap - 1);
    t->unsent -= t->ring[i]->len - t->sent_off;
    evbuf_unref(t->ring[i]);
    t->ring[i] = NULL;
    t->sent++;
    t->sent_off = 0;
    L->out_cur = -1;
  } else {
    if (sid < L->out_head)
      return;
    uint64_t k = (uint64_t)(sid - L->out_head) / 4;
    if (k >= t->sent - t->head)
      return;
    uint32_t i = (t->head + (uint32_t)k) & (t->cap - 1);
    evbuf_unref(t->ring[i]);
    t->ring[i] = NULL;
  }
  out_collect(c);
}

/* Takes n more bytes of the entry at `sent`; a finished entry moves to the
 * handed-over part of the queue, its stream now closed for writing. */
static void out_advance(conn *c, size_t n) {
  struct lg_conn *L = c->legacy;
  txq *t = &c->tx;
  evbuf *b = t->ring[t->sent & (t->cap - 1)];
  t->unsent -= n;
  t->sent_off += n;
  if (t->sent_off == b->len) {
    t->sent++;
    t->sent_off = 0;
    L->out_cur = -1;
  }
}

ngtcp2_ssize legacy_write(conn *c, ngtcp2_path *path, ngtcp2_pkt_info *pi, uint8_t *dst, size_t cap,
                          int *blocked, uint64_t ts) {
  struct lg_conn *L = c->legacy;
  txq *t = &c->tx;
  for (;;) {
    int64_t sid = -1;
    ngtcp2_vec v;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_NONE;
    if (!*blocked && t->sent != t->tail) {
      if (L->out_cur < 0) {
        int64_t id;
        int rv = ngtcp2_conn_open_uni_stream(c->q, &id, NULL);
        if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) {
          *blocked = 1; /* until the client grants more streams */
        } else if (rv != 0) {
          return rv;
        } else {
          if (t->head == t->sent)
            L->out_head = id;
          L->out_cur = id;
        }
      }
      if (L->out_cur >= 0) {
        evbuf *b = t->ring[t->sent & (t->cap - 1)];
        v.base = b->data + t->sent_off;
        v.len = b->len - t->sent_off;
        sid = L->out_cur;
        flags = NGTCP2_WRITE_STREAM_FLAG_MORE | NGTCP2_WRITE_STREAM_FLAG_FIN;
      }
    }
    ngtcp2_ssize ndata = -1;
    ngtcp2_ssize nw = ngtcp2_conn_writev_stream(c->q, path, pi, dst, cap, &ndata, flags, sid,
                                                sid >= 0 ? &v : NULL, sid >= 0 ? 1 : 0, ts);
    if (sid >= 0 && ndata > 0)
      out_advance(c, (size_t)ndata);
    if (nw == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
      *blocked = 1; /* the client's window for this stream is full */
      continue;
    }
    if (nw == NGTCP2_ERR_STREAM_SHUT_WR || nw == NGTCP2_ERR_STREAM_NOT_FOUND) {
      /* The stream went away under us; its entry is dropped like a
       * stopped one, and the next entry gets a new stream. */
      if (sid >= 0 && sid == L->out_cur)
        legacy_on_stream_close(c, sid);
      continue;
    }
    return nw;
  }
}
