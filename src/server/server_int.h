/*
 * The relay's internal state, shared by the QUIC layer (server.c: sockets,
 * ngtcp2, the loop) and the protocol layer (relay.c: sessions, routing,
 * rooms, limits).  Nothing here is public.
 */
#ifndef ISSUN_SERVER_INT_H
#define ISSUN_SERVER_INT_H

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "proto/proto.h"
#include "quic/tls.h"
#include "server/config.h"
#include "server/heap.h"
#include "server/log.h"
#include "server/ratelimit.h"
#include "server/rooms.h"
#include "server/stats.h"
#include "server/u64map.h"

#define SRV_SCID_LEN 16
#define SRV_MAX_CIDS 8
#define SRV_MAX_PKT 1452 /* largest UDP payload we write */
#define SRV_GSO_MAX 64   /* packets per connection per write pass */

/* A reference-counted, encoded frame (header included).  An EVENT is encoded
 * once and the same buffer is queued to every recipient. */
typedef struct evbuf {
  uint32_t refs;
  uint32_t len;
  uint64_t rx_ns; /* when the event arrived (latency metrics); 0 for control */
  uint8_t scope;  /* for latency metrics */
  uint8_t data[];
} evbuf;

evbuf *evbuf_new(size_t len);
static inline evbuf *evbuf_ref(evbuf *b) {
  b->refs++;
  return b;
}
void evbuf_unref(evbuf *b);

/* The reliable send queue of one connection: a ring of frame references.
 * [head, sent) are handed to ngtcp2 and wait for acknowledgment (ngtcp2
 * keeps pointers to stream data until it is acked); [sent, tail) are unsent.
 * sent_off is how far into entry `sent` ngtcp2 has taken bytes. */
typedef struct txq {
  evbuf **ring;
  uint32_t cap; /* power of two */
  uint32_t head, sent, tail;
  size_t sent_off;
  size_t head_acked;    /* bytes of entry `head` already acked */
  uint64_t unsent;      /* bytes in [sent, tail) minus sent_off */
  uint64_t inflight;    /* bytes handed to ngtcp2, not yet acked */
} txq;

/* Datagrams waiting to go out: a small bounded ring, oldest dropped. */
#define DGQ_CAP 64
typedef struct dgq {
  evbuf *ring[DGQ_CAP];
  uint32_t head, len;
} dgq;

enum conn_state {
  CS_HANDSHAKE = 0, /* QUIC handshake running */
  CS_WAIT_HELLO,    /* handshake done, no HELLO yet */
  CS_SESSION,       /* ACK sent: a live session */
  CS_CLOSING,       /* CONNECTION_CLOSE written; answering with it until freed */
  CS_DRAINING,      /* peer closed; waiting out the draining period */
  CS_DEAD,          /* to be freed at the end of the loop turn */
};

typedef struct srv srv;

typedef struct conn {
  srv *s;
  ngtcp2_conn *q;
  gnutls_session_t tls;
  ngtcp2_crypto_conn_ref conn_ref;
  int state;

  /* addressing */
  struct sockaddr_storage local, remote;
  socklen_t local_len, remote_len;
  int fd; /* socket it arrived on */
  uint8_t cids[SRV_MAX_CIDS][NGTCP2_MAX_CIDLEN];
  uint8_t cid_lens[SRV_MAX_CIDS];
  uint8_t ncids;
  char addr_str[64];

  /* timers: one heap entry, keyed by the earliest of the deadlines below */
  heap_node timer;
  uint64_t hello_deadline;  /* CS_WAIT_HELLO */
  uint64_t last_rx_frame;   /* liveness (protocol section 5) */
  uint64_t last_tx_stream;  /* heartbeat sending */
  uint64_t last_deliv_ns;   /* flush window: when the last event was queued to us */
  uint32_t deliv_gap_us;    /* flush window: moving average of the gaps between them */
  uint64_t pace_ts;         /* a pass that drained the queue, not yet told to the pacer */
  int loss_timer_ran;       /* ngtcp2's loss timer fired since a write pass last wrote
                             * until ngtcp2 had nothing left: probes may be queued */
  uint64_t close_deadline;  /* CS_CLOSING / CS_DRAINING */
  uint64_t started_ns;      /* connection accepted */
  uint64_t session_ns;      /* ACK sent */

  /* session */
  uint64_t node_id;
  int64_t stream_id; /* session stream, -1 until opened */
  uint8_t resume[PR_RESUME_LEN];
  char name[PR_MAX_NAME_LEN + 1];
  int dgram_ok;           /* peer advertised DATAGRAM */
  size_t dgram_max;       /* largest DATAGRAM frame payload it accepts */
  room *room;
  uint32_t lobby_idx;     /* index in srv.lobby when in no room, else UINT32_MAX */
  int takeover_victim;    /* lost its session to a takeover: release nothing */
  int released;           /* relay_release ran */
  int disc_reason;        /* ST_DISC_* or a wire code, for logs and metrics */
  int ip_counted;         /* admitted by guard_on_initial: release on free */
  struct lg_conn *legacy; /* non-NULL: a legacy (no-ALPN) connection, see legacy.c */

  /* rate limit: token bucket in micro-tokens */
  tbucket rl;            /* events rate limit */
  uint64_t rl_last_err_ns;

  /* stream reassembly: bytes of an incomplete frame */
  uint8_t *rx;
  size_t rx_len, rx_cap;

  /* output */
  txq tx;
  dgq dg;
  int dirty;       /* in srv.dirty */
  struct conn *dirty_next;
  FILE *qlog;               /* ISSUN_QLOG_DIR: this connection's trace, or NULL */
  uint64_t close_code; /* application error code when closing */
  int close_app;       /* close with an application error */
  int close_pending;   /* write CONNECTION_CLOSE on the next write pass */
  uint64_t close_flush_deadline; /* give a pending ERROR frame until then */
  const char *close_reason;
  uint8_t *close_pkt;  /* the CONNECTION_CLOSE packet, resent while closing */
  size_t close_pkt_len;
  uint64_t close_resend_ns;

  struct conn *all_next, *all_prev; /* every connection */
} conn;

struct srv {
  srv_config cfg;
  srv_log log;
  srv_stats stats;
  iq_tls_server *tls;
  struct metrics *metrics; /* the /metrics + /health endpoint, NULL when off */
  struct guard *guard;     /* admission control and limits (guard.c) */
  struct cluster *cluster; /* clustering over NATS (cluster.c), NULL when off */

  int fds[2];
  int nfds;
  int epfd, timerfd, sigfd;
  int use_gso, use_gro;
  uint32_t rcvbuf;      /* UDP receive buffer the kernel granted, bytes */
  uint64_t timer_armed; /* timerfd deadline currently set (0 = none) */
  uint64_t flush_due;   /* flush window: no write pass before this (0 = nothing dirty) */
  int flush_active;     /* auto mode's decision: the window packs events (flush_evaluate) */
  uint32_t flush_load_us; /* widened window while the loop is short of CPU (0: not widened) */
  uint64_t loop_started_ns;             /* srv_run began */
  uint64_t idle_ns, idle_at_eval;       /* loop: time spent waiting (epoll, window sleep) */
  uint64_t load_log_at;                 /* no window-widening log line before this */
  uint32_t load_unlogged;               /* widenings not logged since the last one */
  int load_logged;                      /* this widening was logged: log its end too */
  uint64_t flush_eval_at, flush_last_eval; /* next and last flush_evaluate */
  uint64_t flush_all, flush_hot; /* deliveries since then: all, and to hot connections */
  uint64_t qlog_seq;    /* ISSUN_QLOG_DIR: files opened, for unique names */
  uint64_t next_reap;   /* next safety-net scan for dead connections */
  uint32_t ndead;       /* connections marked CS_DEAD, not yet freed */

  uint8_t static_secret[32]; /* stateless reset tokens */
  uint64_t rng[2];            /* xorshift128+ for non-crypto choices */

  u64map by_cid;  /* first 8 bytes of a CID -> conn */
  u64map by_node; /* NodeId -> conn holding the session */
  rooms *rooms;
  conn **lobby;   /* sessions in no room, for global broadcast */
  uint32_t lobby_len, lobby_cap;

  heap timers;
  conn *all;
  conn *dirty;
  uint32_t nconns;
  uint32_t nsessions;

  uint8_t *scratch; /* PR_HDR_LEN + max_frame_payload, for building REPLY frames */
  uint64_t now; /* CLOCK_MONOTONIC ns, read once per loop turn */
  int stopping;
  uint64_t stop_deadline;
};

/* The flush window in force, µs (0: write at the end of every turn): the
 * widened one while the loop is short of CPU, else auto mode's decision. */
static inline uint32_t srv_flush_window_us(const srv *s) {
  return s->flush_load_us ? s->flush_load_us : s->flush_active ? s->cfg.flush_us : 0;
}

/* server.c */
uint64_t srv_clock_ns(void);
uint64_t srv_unix_ms(void);
void conn_mark_dirty(conn *c);
void conn_rearm(conn *c);
void conn_close(conn *c, uint16_t code, const char *why);
void srv_random(srv *s, void *p, size_t n);
uint32_t flush_load_step(const srv_config *cfg, uint32_t load_us, unsigned busy_pct);

/* relay.c: the protocol on top of a QUIC connection */
void relay_on_handshake(conn *c);
int relay_on_stream(conn *c, int64_t stream_id, const uint8_t *data, size_t len, int fin);
int relay_on_datagram(conn *c, const uint8_t *data, size_t len);
void relay_on_timer(conn *c);
void relay_release(conn *c, const char *why);
void relay_set_disc_reason(conn *c, int reason);
int relay_send_frame(conn *c, evbuf *b);
int relay_enqueue(conn *c, evbuf *b);
void relay_session_start(conn *c, uint64_t node_id);
/* ERROR {code, msg} then CONNECTION_CLOSE with the same code.  msg is kept
 * as the close reason until the close is written: pass a string that lives
 * at least as long as the connection (a literal), never a stack buffer. */
void relay_fatal(conn *c, uint16_t code, const char *msg);
void relay_shutdown_all(srv *s);
void txq_free(txq *q);
void dgq_free(dgq *q);
uint64_t relay_next_deadline(const conn *c);
/* relay.c, for cluster.c: the same sends the local paths use */
void relay_reply(conn *c, uint32_t request_id, uint16_t status, const room *r);
void relay_reply_list(conn *c, uint32_t request_id);
void relay_presence(conn *from, room *r, uint64_t node, uint8_t change, uint64_t host);
void relay_deliver(conn *to, evbuf *b, int reliable);
void relay_lobby_add(conn *c);
void relay_lobby_remove(conn *c);
int txq_push(txq *q, evbuf *b);
void lobby_add(conn *c);
void relay_event_from_legacy(conn *c, const uint8_t *frame, size_t flen);

/* legacy.c: connections without ALPN, issun's Rust QuicClientBackend
 * (protocol.md section 9).  They get SRV_LEGACY_STREAMS unidirectional
 * streams of credit, replenished one for each stream the relay has
 * processed. */
#define SRV_LEGACY_STREAMS 100
int legacy_allowed(const srv *s);
void legacy_on_handshake(conn *c);
void legacy_on_stream_open(conn *c, int64_t stream_id);
int legacy_on_stream(conn *c, int64_t stream_id, const uint8_t *data, size_t len, int fin);
void legacy_on_stream_close(conn *c, int64_t stream_id);
void legacy_on_stream_reset(conn *c, int64_t stream_id);
/* 1 when a frame may go to a legacy client (EVENTs only). */
int legacy_takes_frame(const evbuf *b);
ngtcp2_ssize legacy_write(conn *c, ngtcp2_path *path, ngtcp2_pkt_info *pi, uint8_t *dst,
                          size_t cap, int *blocked, uint64_t ts);
void legacy_free(conn *c);

#endif
