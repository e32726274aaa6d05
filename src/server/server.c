/*
 * The relay's QUIC layer and event loop: sockets, ngtcp2 connections,
 * batched receive, one write pass per dirty connection per turn with GSO and
 * sendmmsg, a timer heap.  The issun/1 protocol itself lives in relay.c.
 *
 * One loop turn (docs/internals.md):
 *   1. epoll_wait (timerfd armed for the earliest connection deadline)
 *   2. read every socket dry with recvmmsg (GRO), feed ngtcp2; the relay
 *      queues frames and marks recipients dirty
 *   3. fire due timers (ngtcp2 expiry, HELLO deadline, heartbeats, liveness)
 *   4. write pass: every dirty connection packs its queue into packets once
 *   5. free connections that ended, re-arm the timerfd
 */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "server/guard.h"
#include "server/cluster.h"
#include "server/metrics.h"
#include "server/server_int.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define RX_BATCH 32
#define RX_BUF 65536
#define TX_BATCH 64
#define GSO_BYTES 65000 /* a GSO send carries at most 64 KiB */
#define CLOSE_FLUSH_NS (100 * NGTCP2_MILLISECONDS) /* ERROR-before-close grace */
#define FLUSH_EVAL_NS (100 * NGTCP2_MILLISECONDS)  /* flush window: auto-mode decisions */
#define FLUSH_SLICE_NS (1 * NGTCP2_MILLISECONDS)   /* longest window sleep or write pass between reads */
#define RCVBUF_ROOMY (2u << 20) /* a receive buffer that holds a long window's arrivals */

/* ---- clock and randomness ------------------------------------------- */

uint64_t srv_clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t srv_unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

void srv_random(srv *s, void *p, size_t n) {
  (void)s;
  if (gnutls_rnd(GNUTLS_RND_RANDOM, p, n) != 0) {
    /* GnuTLS's generator does not fail in practice; never leave it zero. */
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(srv_clock_ns() >> (i % 8));
  }
}

static void rand_cb(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  (void)gnutls_rnd(GNUTLS_RND_NONCE, dest, destlen);
}

/* ---- buffers --------------------------------------------------------- */

evbuf *evbuf_new(size_t len) {
  evbuf *b = malloc(sizeof(evbuf) + len);
  if (!b) return NULL;
  b->refs = 1;
  b->len = (uint32_t)len;
  b->rx_ns = 0;
  b->scope = 0;
  return b;
}

void evbuf_unref(evbuf *b) {
  if (b && --b->refs == 0) free(b);
}

/* ---- connection-id map ---------------------------------------------- */

static uint64_t cid_key(const uint8_t *cid, size_t len) {
  uint64_t k = 0;
  memcpy(&k, cid, len < 8 ? len : 8); /* one load, not a byte loop: once per packet */
  k ^= (uint64_t)len << 56;
  return k ? k : 1;
}

static conn *cid_lookup(srv *s, const uint8_t *cid, size_t len) {
  conn *c = u64map_get(&s->by_cid, cid_key(cid, len));
  if (!c) return NULL;
  for (int i = 0; i < c->ncids; i++)
    if (c->cid_lens[i] == len && memcmp(c->cids[i], cid, len) == 0) return c;
  return NULL;
}

static int cid_add(conn *c, const uint8_t *cid, size_t len) {
  srv *s = c->s;
  uint64_t k = cid_key(cid, len);
  if (c->ncids >= SRV_MAX_CIDS || len > NGTCP2_MAX_CIDLEN) return -1;
  if (u64map_get(&s->by_cid, k)) return -1; /* taken (a collision is as good as taken) */
  if (u64map_put(&s->by_cid, k, c) != 0) return -1;
  memcpy(c->cids[c->ncids], cid, len);
  c->cid_lens[c->ncids] = (uint8_t)len;
  c->ncids++;
  return 0;
}

static void cid_remove(conn *c, const uint8_t *cid, size_t len) {
  for (int i = 0; i < c->ncids; i++) {
    if (c->cid_lens[i] == len && memcmp(c->cids[i], cid, len) == 0) {
      u64map_del(&c->s->by_cid, cid_key(cid, len));
      c->ncids--;
      memmove(c->cids[i], c->cids[c->ncids], NGTCP2_MAX_CIDLEN);
      c->cid_lens[i] = c->cid_lens[c->ncids];
      return;
    }
  }
}

/* ---- ngtcp2 callbacks ----------------------------------------------- */

static ngtcp2_conn *get_conn_cb(ngtcp2_crypto_conn_ref *ref) {
  conn *c = ref->user_data;
  return c->q;
}

static int handshake_completed_cb(ngtcp2_conn *q, void *ud) {
  relay_on_handshake(ud);
  return 0;
}

/* A client has no TLS message to send after its Finished (RFC 9001, 6:
 * KeyUpdate is forbidden; post-handshake authentication is not used), so
 * 1-RTT CRYPTO data is a protocol violation.  It must never reach GnuTLS: a
 * KeyUpdate there makes GnuTLS install keys under ngtcp2, which aborts the
 * whole process on an assertion (ngtcp2 0.12.1, ngtcp2_conn_install_rx_key).
 * It may arrive in the same datagram as the Finished, before conn_drop_tls
 * has run, hence the level check and not only the session check. */
static int recv_crypto_data_cb(ngtcp2_conn *q, ngtcp2_crypto_level level, uint64_t off,
                               const uint8_t *data, size_t len, void *ud) {
  conn *c = ud;
  if (!c->tls || level == NGTCP2_CRYPTO_LEVEL_APPLICATION) return NGTCP2_ERR_PROTO;
  return ngtcp2_crypto_recv_crypto_data_cb(q, level, off, data, len, ud);
}

static int recv_stream_data_cb(ngtcp2_conn *q, uint32_t flags, int64_t sid, uint64_t off,
                               const uint8_t *data, size_t len, void *ud, void *sud) {
  conn *c = ud;
  (void)off;
  if (relay_on_stream(c, sid, data, len, (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0) != 0)
    return 0; /* the relay flagged the connection for closing */
  /* Frames are consumed as they arrive, so the credit goes straight back. */
  ngtcp2_conn_extend_max_stream_offset(q, sid, len);
  ngtcp2_conn_extend_max_offset(q, len);
  return 0;
}

static int stream_open_cb(ngtcp2_conn *q, int64_t sid, void *ud) {
  conn *c = ud;
  if (c->legacy) {
    legacy_on_stream_open(c, sid); /* unidirectional streams only */
    return 0;
  }
  /* issun/1: exactly one stream, the client's first bidirectional one. */
  if (sid != 0) relay_fatal(c, PR_E_PROTOCOL, "only the session stream (0) may be opened");
  return 0;
}

static int stream_reset_cb(ngtcp2_conn *q, int64_t sid, uint64_t final_size, uint64_t app_error,
                           void *ud, void *sud) {
  conn *c = ud;
  if (c->legacy) legacy_on_stream_reset(c, sid);
  return 0;
}

static int stream_close_cb(ngtcp2_conn *q, uint32_t flags, int64_t sid, uint64_t app_error,
                           void *ud, void *sud) {
  conn *c = ud;
  if (c->legacy) {
    legacy_on_stream_close(c, sid);
    return 0;
  }
  if (sid == c->stream_id && c->state == CS_SESSION && !c->close_pending) {
    /* The peer reset its session stream: treat it as leaving. */
    conn_close(c, PR_E_NO_ERROR, "session stream closed");
  }
  return 0;
}

static int acked_cb(ngtcp2_conn *q, int64_t sid, uint64_t off, uint64_t len, void *ud,
                    void *sud) {
  conn *c = ud;
  txq *t = &c->tx;
  if (c->legacy) return 0; /* one frame per stream: released when its stream closes */
  /* ngtcp2 reports acknowledged stream data in order; drop fully acked frames. */
  uint64_t left = len;
  t->inflight -= len < t->inflight ? len : t->inflight;
  while (left > 0 && t->head != t->sent) {
    evbuf *b = t->ring[t->head & (t->cap - 1)];
    size_t rem = b->len - t->head_acked;
    if (left < rem) {
      t->head_acked += left;
      left = 0;
      break;
    }
    left -= rem;
    t->head_acked = 0;
    evbuf_unref(b);
    t->head++;
  }
  /* The partially sent entry at `sent` may also be partly acked. */
  if (left > 0 && t->head == t->sent) t->head_acked += left;
  return 0;
}

static int recv_datagram_cb(ngtcp2_conn *q, uint32_t flags, const uint8_t *data, size_t len,
                            void *ud) {
  relay_on_datagram(ud, data, len);
  return 0;
}

static int get_new_cid_cb(ngtcp2_conn *q, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                          void *ud) {
  conn *c = ud;
  for (int tries = 0; tries < 8; tries++) {
    srv_random(c->s, cid->data, cidlen);
    cid->datalen = cidlen;
    if (cid_add(c, cid->data, cidlen) == 0) break;
    if (tries == 7) return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  if (ngtcp2_crypto_generate_stateless_reset_token(token, c->s->static_secret,
                                                   sizeof c->s->static_secret, cid) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static int remove_cid_cb(ngtcp2_conn *q, const ngtcp2_cid *cid, void *ud) {
  cid_remove(ud, cid->data, cid->datalen);
  return 0;
}

static const ngtcp2_callbacks server_callbacks = {
    .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
    .recv_crypto_data = recv_crypto_data_cb,
    .handshake_completed = handshake_completed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data_cb,
    .acked_stream_data_offset = acked_cb,
    .stream_open = stream_open_cb,
    .stream_close = stream_close_cb,
    .stream_reset = stream_reset_cb,
    .rand = rand_cb,
    .get_new_connection_id = get_new_cid_cb,
    .remove_connection_id = remove_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .recv_datagram = recv_datagram_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ---- connection lifecycle ------------------------------------------- */

static void addr_to_str(const struct sockaddr *sa, char *out, size_t n) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)sa;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    snprintf(out, n, "%s:%u", host, port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    snprintf(out, n, "[%s]:%u", host, port);
  } else {
    snprintf(out, n, "?");
  }
}

void conn_mark_dirty(conn *c) {
  if (c->dirty || c->state == CS_DEAD) return;
  c->dirty = 1;
  c->dirty_next = c->s->dirty;
  c->s->dirty = c;
  /* The flush window (ISSUN_FLUSH_US) starts with the first dirty connection. */
  if (!c->s->flush_due) c->s->flush_due = c->s->now + (uint64_t)srv_flush_window_us(c->s) * 1000ull;
}

void conn_rearm(conn *c) {
  if (c->state == CS_DEAD) {
    heap_remove(&c->s->timers, &c->timer);
    return;
  }
  uint64_t t = UINT64_MAX;
  if (c->state == CS_CLOSING || c->state == CS_DRAINING) {
    t = c->close_deadline;
  } else {
    t = ngtcp2_conn_get_expiry(c->q);
    uint64_t r = relay_next_deadline(c);
    if (r < t) t = r;
    if (c->close_pending && c->close_flush_deadline < t) t = c->close_flush_deadline;
  }
  if (t == UINT64_MAX) {
    heap_remove(&c->s->timers, &c->timer);
    return;
  }
  heap_set(&c->s->timers, &c->timer, t);
}

/* Marks a connection for freeing at the end of the loop turn; the count
 * lets the turn skip the scan over every connection when nothing died. */
static void conn_set_dead(conn *c) {
  if (c->state == CS_DEAD) return;
  c->state = CS_DEAD;
  c->s->ndead++;
}

/* With the handshake complete, GnuTLS has nothing left to do: packet
 * protection and key updates run on keys ngtcp2 holds, the handshake's
 * CRYPTO data for retransmission is buffered by ngtcp2, and the relay read
 * the ALPN in relay_on_handshake.  Freeing the session then saves about
 * 14 KB per connection (the session, its handshake state and buffers). */
static void conn_drop_tls(conn *c) {
  ngtcp2_conn_set_tls_native_handle(c->q, NULL);
  gnutls_deinit(c->tls);
  c->tls = NULL;
}

static void conn_kill(conn *c) {
  if (c->state == CS_DEAD) return;
  relay_set_disc_reason(c, ST_DISC_PEER);
  relay_release(c, "connection dropped");
  conn_set_dead(c);
  heap_remove(&c->s->timers, &c->timer);
}

void conn_close(conn *c, uint16_t code, const char *why) {
  if (c->state >= CS_CLOSING || c->close_pending) return;
  relay_set_disc_reason(c, code);
  relay_release(c, why);
  c->close_pending = 1;
  c->close_app = 1;
  c->close_code = code;
  c->close_reason = why;
  c->close_flush_deadline = c->s->now + CLOSE_FLUSH_NS;
  conn_mark_dirty(c);
}

/* Closes with a QUIC transport error derived from an ngtcp2 error code. */
static void conn_close_liberr(conn *c, int liberr) {
  if (c->state >= CS_CLOSING || c->close_pending) return;
  relay_set_disc_reason(c, PR_E_PROTOCOL);
  relay_release(c, ngtcp2_strerror(liberr));
  c->close_pending = 1;
  c->close_app = 0;
  c->close_code = (uint64_t)(int64_t)liberr;
  c->close_reason = ngtcp2_strerror(liberr);
  conn_mark_dirty(c);
}

static void conn_free(conn *c) {
  srv *s = c->s;
  for (int i = 0; i < c->ncids; i++) u64map_del(&s->by_cid, cid_key(c->cids[i], c->cid_lens[i]));
  heap_remove(&s->timers, &c->timer);
  if (c->all_prev)
    c->all_prev->all_next = c->all_next;
  else
    s->all = c->all_next;
  if (c->all_next) c->all_next->all_prev = c->all_prev;
  if (c->ip_counted) guard_conn_gone(s, (const struct sockaddr *)&c->remote);
  if (c->q) ngtcp2_conn_del(c->q);
  if (c->qlog) fclose(c->qlog);
  if (c->tls) gnutls_deinit(c->tls);
  txq_free(&c->tx);
  dgq_free(&c->dg);
  legacy_free(c);
  free(c->rx);
  free(c->close_pkt);
  s->nconns--;
  free(c);
}

/* ISSUN_QLOG_DIR: ngtcp2 hands us its trace in pieces. */
static void qlog_write_cb(void *user_data, uint32_t flags, const void *data, size_t len) {
  conn *c = user_data;
  (void)flags;
  if (c->qlog && fwrite(data, 1, len, c->qlog) != len) {
    fclose(c->qlog); /* disk full or the like: stop tracing this one */
    c->qlog = NULL;
  }
}

/* Opens <qlog_dir>/<original DCID in hex>-<n>.sqlog (n keeps names unique
 * when a client reuses a DCID).  The name holds only hex digits and a
 * counter, whatever the client sent.  NULL when it cannot be opened. */
static FILE *qlog_open(srv *s, const ngtcp2_cid *odcid) {
  size_t n = odcid->datalen < NGTCP2_MAX_CIDLEN ? odcid->datalen : NGTCP2_MAX_CIDLEN;
  char hex[2 * NGTCP2_MAX_CIDLEN + 1] = "";
  for (size_t i = 0; i < n; i++)
    snprintf(hex + 2 * i, 3, "%02x", odcid->data[i]);
  char path[CFG_PATH_MAX + 80];
  snprintf(path, sizeof path, "%s/%s-%llu.sqlog", s->cfg.qlog_dir, hex,
           (unsigned long long)++s->qlog_seq);
  FILE *f = fopen(path, "we");
  if (!f)
    LOG_WARN(&s->log, "qlog file not opened", "path=%s error=\"%s\"", path, strerror(errno));
  return f;
}

static conn *conn_new(srv *s, int fd, const ngtcp2_pkt_hd *hd, const struct sockaddr *local,
                      socklen_t local_len, const struct sockaddr *remote, socklen_t remote_len,
                      const guard_admit *ga) {
  conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->s = s;
  c->fd = fd;
  c->state = CS_HANDSHAKE;
  c->stream_id = -1;
  c->deliv_gap_us = 1000000; /* cold until events arrive */
  c->lobby_idx = UINT32_MAX;
  c->timer.idx = HEAP_NONE;
  c->started_ns = s->now;
  memcpy(&c->local, local, local_len);
  c->local_len = local_len;
  memcpy(&c->remote, remote, remote_len);
  c->remote_len = remote_len;
  addr_to_str(remote, c->addr_str, sizeof c->addr_str);

  ngtcp2_cid scid;
  scid.datalen = SRV_SCID_LEN;
  int ok = 0;
  for (int tries = 0; tries < 8 && !ok; tries++) {
    srv_random(s, scid.data, scid.datalen);
    ok = cid_add(c, scid.data, scid.datalen) == 0;
  }
  /* Retransmitted Initials still carry the client's chosen DCID. */
  if (!ok || cid_add(c, hd->dcid.data, hd->dcid.datalen) != 0) goto fail;

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = s->now;
  if (s->cfg.qlog_dir[0] && (c->qlog = qlog_open(s, &hd->dcid)) != NULL) {
    settings.qlog.write = qlog_write_cb;
    settings.qlog.odcid = hd->dcid;
  }
  settings.max_tx_udp_payload_size = SRV_MAX_PKT;
  settings.handshake_timeout = (uint64_t)s->cfg.handshake_timeout_ms * NGTCP2_MILLISECONDS;
  static const ngtcp2_cc_algo cc_algos[] = {NGTCP2_CC_ALGO_CUBIC, NGTCP2_CC_ALGO_RENO,
                                            NGTCP2_CC_ALGO_BBR, NGTCP2_CC_ALGO_BBR2};
  settings.cc_algo = cc_algos[s->cfg.cc_algo]; /* enum cfg_cc, range checked by config.c */
  settings.max_window = 4u << 20;
  settings.max_stream_window = 2u << 20;

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_streams_bidi = 2; /* a second one is refused with PROTOCOL_ERROR */
  /* likewise; a legacy connection (unknown until ALPN) needs more, which
   * issun/1 connections are given too but may not use. */
  params.initial_max_streams_uni = legacy_allowed(s) ? SRV_LEGACY_STREAMS : 1;
  params.initial_max_stream_data_bidi_remote = 256 * 1024;
  params.initial_max_stream_data_uni = 16 * 1024;
  params.initial_max_data = 1024 * 1024;
  params.max_idle_timeout = 3ull * s->cfg.heartbeat_ms * NGTCP2_MILLISECONDS;
  params.max_datagram_frame_size = 65535;
  params.active_connection_id_limit = 4;
  params.original_dcid = hd->dcid;
  guard_apply(ga, hd, &settings, &params); /* after a Retry: original DCID, retry_scid, token */
  params.stateless_reset_token_present = 1;
  if (ngtcp2_crypto_generate_stateless_reset_token(params.stateless_reset_token, s->static_secret,
                                                   sizeof s->static_secret, &scid) != 0)
    goto fail;

  ngtcp2_path path = {
      .local = {.addr = (struct sockaddr *)&c->local, .addrlen = c->local_len},
      .remote = {.addr = (struct sockaddr *)&c->remote, .addrlen = c->remote_len},
  };
  if (ngtcp2_conn_server_new(&c->q, &hd->scid, &scid, &path, hd->version, &server_callbacks,
                             &settings, &params, NULL, c) != 0)
    goto fail;
  if (iq_tls_server_session(s->tls, legacy_allowed(s), &c->tls) != 0) goto fail;
  c->conn_ref.get_conn = get_conn_cb;
  c->conn_ref.user_data = c;
  gnutls_session_set_ptr(c->tls, &c->conn_ref);
  ngtcp2_conn_set_tls_native_handle(c->q, c->tls);

  c->all_next = s->all;
  if (s->all) s->all->all_prev = c;
  s->all = c;
  s->nconns++;
  return c;

fail:
  for (int i = 0; i < c->ncids; i++) u64map_del(&s->by_cid, cid_key(c->cids[i], c->cid_lens[i]));
  if (c->q) ngtcp2_conn_del(c->q);
  if (c->tls) gnutls_deinit(c->tls);
  if (c->qlog) fclose(c->qlog);
  free(c);
  return NULL;
}

/* ---- output: packets, GSO, sendmmsg --------------------------------- */

typedef struct txmsg {
  int fd;
  struct sockaddr_storage to;
  socklen_t tolen;
  struct sockaddr_storage from; /* local address, for IP_PKTINFO */
  size_t off, len;              /* in the arena */
  size_t seg;                   /* GSO segment size (0: one packet) */
} txmsg;

#define CTL_SPACE (CMSG_SPACE(sizeof(uint16_t)) + CMSG_SPACE(sizeof(struct in6_pktinfo)))

typedef struct txbatch {
  uint8_t *arena;
  size_t used, cap;
  txmsg msgs[TX_BATCH];
  uint8_t ctl[TX_BATCH][CTL_SPACE];
  int n;
} txbatch;

static void send_one(srv *s, int fd, struct mmsghdr *mh, int n);

static size_t put_cmsgs(srv *s, const txmsg *m, uint8_t *ctl, size_t ctlcap, int gso) {
  size_t len = 0;
  struct msghdr tmp = {.msg_control = ctl, .msg_controllen = ctlcap};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&tmp);
  memset(ctl, 0, ctlcap);
  if (gso && m->seg && m->len > m->seg) {
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = (uint16_t)m->seg;
    memcpy(CMSG_DATA(cm), &seg, sizeof seg);
    len += CMSG_SPACE(sizeof(uint16_t));
    cm = (struct cmsghdr *)((uint8_t *)cm + CMSG_SPACE(sizeof(uint16_t)));
  }
  if (m->from.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)&m->from;
    if (a->sin_addr.s_addr != htonl(INADDR_ANY)) {
      struct in_pktinfo pi = {0};
      pi.ipi_spec_dst = a->sin_addr;
      cm->cmsg_level = IPPROTO_IP;
      cm->cmsg_type = IP_PKTINFO;
      cm->cmsg_len = CMSG_LEN(sizeof pi);
      memcpy(CMSG_DATA(cm), &pi, sizeof pi);
      len += CMSG_SPACE(sizeof pi);
    }
  } else if (m->from.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)&m->from;
    if (!IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr)) {
      struct in6_pktinfo pi = {0};
      pi.ipi6_addr = a->sin6_addr;
      cm->cmsg_level = IPPROTO_IPV6;
      cm->cmsg_type = IPV6_PKTINFO;
      cm->cmsg_len = CMSG_LEN(sizeof pi);
      memcpy(CMSG_DATA(cm), &pi, sizeof pi);
      len += CMSG_SPACE(sizeof pi);
    }
  }
  (void)s;
  return len;
}

/* Sends a batch: one sendmmsg per socket run.  GSO is dropped for good when
 * the kernel refuses it, and the packets go out one by one instead. */
static void batch_flush(srv *s, txbatch *b) {
  struct mmsghdr mh[TX_BATCH];
  struct iovec iov[TX_BATCH];
  int i = 0;
  while (i < b->n) {
    int fd = b->msgs[i].fd, n = 0;
    for (int j = i; j < b->n && b->msgs[j].fd == fd; j++, n++) {
      txmsg *m = &b->msgs[j];
      iov[n].iov_base = b->arena + m->off;
      iov[n].iov_len = m->len;
      memset(&mh[n], 0, sizeof mh[n]);
      mh[n].msg_hdr.msg_name = &m->to;
      mh[n].msg_hdr.msg_namelen = m->tolen;
      mh[n].msg_hdr.msg_iov = &iov[n];
      mh[n].msg_hdr.msg_iovlen = 1;
      size_t cl = put_cmsgs(s, m, b->ctl[n], CTL_SPACE, s->use_gso);
      mh[n].msg_hdr.msg_control = cl ? b->ctl[n] : NULL;
      mh[n].msg_hdr.msg_controllen = cl;
    }
    send_one(s, fd, mh, n);
    i += n;
  }
  b->n = 0;
  b->used = 0;
}

static void send_split(srv *s, int fd, struct mmsghdr *src) {
  /* Re-send one GSO message as individual packets. */
  struct msghdr *h = &src->msg_hdr;
  uint8_t *base = h->msg_iov[0].iov_base;
  size_t len = h->msg_iov[0].iov_len;
  uint16_t seg = 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm))
    if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_SEGMENT) memcpy(&seg, CMSG_DATA(cm), 2);
  if (!seg) seg = (uint16_t)len;
  for (size_t off = 0; off < len; off += seg) {
    struct iovec v = {base + off, len - off < seg ? len - off : seg};
    struct msghdr m = {.msg_name = h->msg_name, .msg_namelen = h->msg_namelen, .msg_iov = &v,
                       .msg_iovlen = 1};
    ssize_t r;
    do r = sendmsg(fd, &m, 0);
    while (r < 0 && errno == EINTR);
    s->stats.send_syscalls++;
  }
}

static void send_one(srv *s, int fd, struct mmsghdr *mh, int n) {
  int done = 0;
  while (done < n) {
    int r = sendmmsg(fd, mh + done, (unsigned)(n - done), 0);
    s->stats.send_syscalls++;
    if (r < 0) {
      if (errno == EINTR) continue;
      if ((errno == EIO || errno == EINVAL) && s->use_gso) {
        LOG_WARN(&s->log, "UDP GSO refused by the kernel, sending packets one by one",
                 "errno=%d", errno);
        s->use_gso = 0;
        for (int j = done; j < n; j++) send_split(s, fd, &mh[j]);
        return;
      }
      /* EAGAIN/ENOBUFS/EMSGSIZE: the packets are lost; QUIC retransmits. */
      s->stats.dropped[ST_DROP_SEND_ERROR]++;
      done++;
      continue;
    }
    done += r;
  }
}

static void batch_add(srv *s, txbatch *b, conn *c, const ngtcp2_path *path, size_t off,
                      size_t len, size_t seg) {
  txmsg *m = &b->msgs[b->n++];
  m->fd = c->fd;
  memcpy(&m->to, path->remote.addr, path->remote.addrlen);
  m->tolen = path->remote.addrlen;
  memset(&m->from, 0, sizeof m->from);
  memcpy(&m->from, path->local.addr, path->local.addrlen);
  m->off = off;
  m->len = len;
  m->seg = seg;
  s->stats.bytes_sent += len;
  s->stats.packets_sent += seg ? (len + seg - 1) / seg : 1;
}

/* Fills the vector with the unsent part of the reliable queue. */
static size_t txq_vec(txq *t, ngtcp2_vec *v, size_t max) {
  size_t n = 0;
  for (uint32_t i = t->sent; i != t->tail && n < max; i++) {
    evbuf *b = t->ring[i & (t->cap - 1)];
    size_t skip = (i == t->sent) ? t->sent_off : 0;
    v[n].base = b->data + skip;
    v[n].len = b->len - skip;
    n++;
  }
  return n;
}

static void txq_advance(txq *t, size_t n) {
  t->unsent -= n;
  t->inflight += n;
  while (n > 0) {
    evbuf *b = t->ring[t->sent & (t->cap - 1)];
    size_t rem = b->len - t->sent_off;
    if (n < rem) {
      t->sent_off += n;
      return;
    }
    n -= rem;
    t->sent_off = 0;
    t->sent++;
  }
}

/* Runs ngtcp2's due timers, noting when its loss timer is among them: a PTO
 * queues probe packets, which conn_write must not leave behind. */
static int conn_handle_expiry(srv *s, conn *c) {
  ngtcp2_conn_stat st;
  ngtcp2_conn_get_conn_stat(c->q, &st);
  if (st.loss_detection_timer <= s->now) c->loss_timer_ran = 1;
  return ngtcp2_conn_handle_expiry(c->q, s->now);
}

/* Writes everything a connection has to send, packed into as few packets
 * as possible, into one GSO message of the batch. */
static void conn_write(srv *s, txbatch *b, conn *c) {
  if (c->state == CS_DEAD || c->state == CS_CLOSING || c->state == CS_DRAINING) return;
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi;
  size_t pktcap = ngtcp2_conn_get_max_tx_udp_payload_size(c->q);
  if (pktcap > SRV_MAX_PKT) pktcap = SRV_MAX_PKT;

  if (b->n == TX_BATCH || b->cap - b->used < GSO_BYTES + SRV_MAX_PKT) batch_flush(s, b);
  if (c->pace_ts) {
    /* The last pass drained the queue: tell the pacer now, stamped with
     * when it ran (see the end of this function). */
    ngtcp2_conn_update_pkt_tx_time(c->q, c->pace_ts);
    c->pace_ts = 0;
    (void)conn_handle_expiry(s, c);
  }
  /* Stopping once a packet took the last of our data (below) is right only
   * when nothing but probes can follow it and none can be queued, and when
   * the controller does not need the empty call's app-limited mark (BBR
   * samples the delivery rate with it; cubic and reno only take a maximum). */
  int stop_when_drained = !c->loss_timer_ran && c->state == CS_SESSION && !c->legacy &&
                          (s->cfg.cc_algo == CFG_CC_CUBIC || s->cfg.cc_algo == CFG_CC_RENO);
  size_t start = b->used, seg = 0, total = 0;
  int npkts = 0, stream_blocked = 0, more = 0, wrote = 0;
  int took_stream = 0, took_dgram = 0; /* the packet being built holds data of ours */
  ngtcp2_path first_path;
  struct sockaddr_storage fp_local, fp_remote;

  for (;;) {
    if (npkts >= SRV_GSO_MAX || total + pktcap > GSO_BYTES) {
      more = 1;
      break;
    }
    uint8_t *dst = b->arena + start + total;
    ngtcp2_ssize nw;
    if (c->dg.len > 0 && c->stream_id >= 0) {
      evbuf *d = c->dg.ring[c->dg.head % DGQ_CAP];
      ngtcp2_vec v = {d->data, d->len};
      int accepted = 0;
      nw = ngtcp2_conn_writev_datagram(c->q, &ps.path, &pi, dst, pktcap, &accepted,
                                       NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &v, 1, s->now);
      if (accepted) took_dgram = 1;
      if (accepted || nw == NGTCP2_ERR_INVALID_ARGUMENT || nw == NGTCP2_ERR_INVALID_STATE) {
        if (!accepted) s->stats.dropped[ST_DROP_TOO_BIG]++;
        evbuf_unref(d);
        c->dg.head++;
        c->dg.len--;
      }
      if (nw == NGTCP2_ERR_WRITE_MORE) continue;
      if (nw == NGTCP2_ERR_INVALID_ARGUMENT || nw == NGTCP2_ERR_INVALID_STATE) continue;
    } else if (c->legacy) {
      nw = legacy_write(c, &ps.path, &pi, dst, pktcap, &stream_blocked, s->now);
      if (nw == NGTCP2_ERR_WRITE_MORE) continue;
    } else {
      ngtcp2_vec vec[16];
      size_t nv = 0;
      int64_t sid = -1;
      uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_NONE;
      if (!stream_blocked && c->stream_id >= 0 && c->tx.unsent > 0) {
        nv = txq_vec(&c->tx, vec, 16);
        sid = c->stream_id;
        /* FLAG_MORE asks ngtcp2 to keep the packet open for more of our
         * data; when the vector holds all of it there is none, and closing
         * the packet in this call saves a second call that would only do
         * so (2-7% of user-space instructions per packet). */
        if (nv < (size_t)(c->tx.tail - c->tx.sent)) flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
      }
      ngtcp2_ssize ndata = -1;
      nw = ngtcp2_conn_writev_stream(c->q, &ps.path, &pi, dst, pktcap, &ndata, flags, sid,
                                     nv ? vec : NULL, nv, s->now);
      if (ndata > 0) {
        txq_advance(&c->tx, (size_t)ndata);
        took_stream = 1;
      }
      if (nw == NGTCP2_ERR_WRITE_MORE) continue;
      if (nw == NGTCP2_ERR_STREAM_DATA_BLOCKED || nw == NGTCP2_ERR_STREAM_SHUT_WR ||
          nw == NGTCP2_ERR_STREAM_NOT_FOUND) {
        stream_blocked = 1;
        continue;
      }
    }
    if (nw < 0) {
      LOG_DEBUG(&s->log, "write failed", "node_id=%llu addr=%s error=\"%s\"",
                (unsigned long long)c->node_id, c->addr_str, ngtcp2_strerror((int)nw));
      conn_close_liberr(c, (int)nw);
      break;
    }
    if (nw == 0) {
      c->loss_timer_ran = 0; /* ngtcp2 has nothing left, probes included */
      break;
    }
    wrote = 1;
    /* ngtcp2 writes our stream data into a packet only after every frame it
     * had queued itself (ACK, control frames, retransmissions), so once a
     * packet took the last of ours, another call finds nothing, unless a
     * PTO queued two probe packets: see stop_when_drained.  Skipping that
     * call saves 7-12% of user-space instructions per packet.  A DATAGRAM
     * needs one more condition: ngtcp2 adds it whenever it fits, even after
     * a retransmitted STREAM frame did not (its header alone can need 12
     * bytes), so the packet must have had room to spare. */
    int drained = stop_when_drained && c->tx.unsent == 0 && c->dg.len == 0 &&
                  (took_stream || (took_dgram && (size_t)nw + 64 <= NGTCP2_MAX_UDP_PAYLOAD_SIZE));
    took_stream = took_dgram = 0;
    if (npkts == 0) {
      memcpy(&fp_local, ps.path.local.addr, ps.path.local.addrlen);
      memcpy(&fp_remote, ps.path.remote.addr, ps.path.remote.addrlen);
      first_path.local.addr = (struct sockaddr *)&fp_local;
      first_path.local.addrlen = ps.path.local.addrlen;
      first_path.remote.addr = (struct sockaddr *)&fp_remote;
      first_path.remote.addrlen = ps.path.remote.addrlen;
      seg = (size_t)nw;
    } else if (!ngtcp2_path_eq(&first_path, &ps.path) || (size_t)nw > seg) {
      /* Another path, or a bigger packet: it needs a message of its own.
       * Move it to a fresh slot after flushing what we have. */
      uint8_t tmp[SRV_MAX_PKT];
      memcpy(tmp, dst, (size_t)nw);
      batch_add(s, b, c, &first_path, start, total, npkts > 1 ? seg : 0);
      b->used = start + total;
      if (b->n == TX_BATCH) batch_flush(s, b);
      start = b->used;
      memcpy(b->arena + start, tmp, (size_t)nw);
      memcpy(&fp_local, ps.path.local.addr, ps.path.local.addrlen);
      memcpy(&fp_remote, ps.path.remote.addr, ps.path.remote.addrlen);
      first_path.local.addrlen = ps.path.local.addrlen;
      first_path.remote.addrlen = ps.path.remote.addrlen;
      total = 0;
      npkts = 0;
      seg = (size_t)nw;
    }
    total += (size_t)nw;
    npkts++;
    if (s->use_gso == 0 || (size_t)nw < seg) {
      /* A short packet ends a GSO run. */
      batch_add(s, b, c, &first_path, start, total, npkts > 1 ? seg : 0);
      b->used = start + total;
      if (b->n == TX_BATCH || b->cap - b->used < GSO_BYTES + SRV_MAX_PKT) batch_flush(s, b);
      start = b->used;
      total = 0;
      npkts = 0;
    }
    if (drained) break;
  }
  if (npkts > 0) {
    batch_add(s, b, c, &first_path, start, total, npkts > 1 ? seg : 0);
    b->used = start + total;
  }
  /* ngtcp2's pacer must be told the bytes of every pass: it sums what was
   * written since it was last told, and the call sets the next send instant
   * to its time plus that sum over the current sending rate.  (Telling it
   * only when data was left over charged every drained pass since the last
   * time to that one: after a loss had shrunk the window, seconds of
   * silence for that player.)  With data left over, tell it now, so the
   * timer wakes the connection when the pacer allows.  With the queue
   * drained, an instant set now would only wake the loop for an empty write
   * (ngtcp2_conn_get_expiry includes it: that doubled the timer turns in the
   * room workload).  So the pass is told at the start of the next one, with
   * this pass's time, and ngtcp2_conn_handle_expiry right after drops the
   * instant if it is within ngtcp2's 1 ms tolerance.  That call also runs
   * any ngtcp2 timer already due, so its probes go out in that pass; an
   * error it returns is left to run_timers, which calls it again at once
   * (get_expiry is then in the past), as closing here would disturb the
   * dirty list being walked. */
  if (c->q && c->state != CS_DEAD) {
    if (more || stream_blocked || c->tx.unsent > 0 || c->dg.len > 0)
      ngtcp2_conn_update_pkt_tx_time(c->q, s->now);
    else if (wrote)
      c->pace_ts = s->now; /* (a pass that wrote nothing has nothing to tell) */
  }

  if (c->close_pending && c->state < CS_CLOSING && c->close_app && c->tx.unsent > 0 &&
      !stream_blocked && s->now < c->close_flush_deadline) {
    /* The ERROR frame is still queued (pacing or congestion held it back).
     * CONNECTION_CLOSE would discard it, so wait for the next write
     * opportunity, but never longer than CLOSE_FLUSH_NS. */
    conn_rearm(c);
    return;
  }
  if (c->close_pending && c->state < CS_CLOSING) {
    /* The ERROR frame (if any) went out above; now the CONNECTION_CLOSE. */
    uint8_t pkt[SRV_MAX_PKT];
    ngtcp2_connection_close_error ce;
    if (c->close_app)
      ngtcp2_connection_close_error_set_application_error(
          &ce, c->close_code, (const uint8_t *)(c->close_reason ? c->close_reason : ""),
          c->close_reason ? strlen(c->close_reason) : 0);
    else if (ngtcp2_conn_get_tls_alert(c->q))
      ngtcp2_connection_close_error_set_transport_error_tls_alert(
          &ce, ngtcp2_conn_get_tls_alert(c->q), NULL, 0);
    else
      ngtcp2_connection_close_error_set_transport_error_liberr(&ce, (int)(int64_t)c->close_code,
                                                               NULL, 0);
    ngtcp2_ssize nw = ngtcp2_conn_write_connection_close(c->q, &ps.path, &pi, pkt, sizeof pkt,
                                                         &ce, s->now);
    uint64_t pto = ngtcp2_conn_get_pto(c->q);
    uint64_t linger = 3 * pto;
    if (linger < 20 * NGTCP2_MILLISECONDS) linger = 20 * NGTCP2_MILLISECONDS;
    if (linger > NGTCP2_SECONDS) linger = NGTCP2_SECONDS;
    c->state = CS_CLOSING;
    c->close_deadline = s->now + linger;
    if (nw > 0 && (c->close_pkt = malloc((size_t)nw)) != NULL) {
      memcpy(c->close_pkt, pkt, (size_t)nw);
      c->close_pkt_len = (size_t)nw;
      if (b->n == TX_BATCH || b->cap - b->used < SRV_MAX_PKT) batch_flush(s, b);
      memcpy(b->arena + b->used, pkt, (size_t)nw);
      const ngtcp2_path *p = ps.path.remote.addrlen ? &ps.path : ngtcp2_conn_get_path(c->q);
      batch_add(s, b, c, p, b->used, (size_t)nw, 0);
      b->used += (size_t)nw;
    } else {
      conn_set_dead(c);
    }
    more = 0;
  }
  if (more && c->state < CS_CLOSING) conn_mark_dirty(c);
  conn_rearm(c);
}

/* ---- input ----------------------------------------------------------- */

static void send_version_negotiation(srv *s, int fd, const ngtcp2_version_cid *vc,
                                     const struct sockaddr *to, socklen_t tolen) {
  uint8_t buf[256];
  uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
  uint8_t r;
  srv_random(s, &r, 1);
  ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(buf, sizeof buf, r, vc->scid, vc->scidlen,
                                                         vc->dcid, vc->dcidlen, sv, 1);
  if (n > 0) {
    (void)sendto(fd, buf, (size_t)n, 0, to, tolen);
    s->stats.send_syscalls++;
  }
}

static void handle_packet(srv *s, int fd, const struct sockaddr *local, socklen_t local_len,
                          const struct sockaddr *remote, socklen_t remote_len, uint8_t *data,
                          size_t len) {
  ngtcp2_version_cid vc;
  s->stats.bytes_received += len;
  s->stats.packets_received++;
  int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, SRV_SCID_LEN);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    /* Only for a datagram as large as a client's first Initial (RFC 9000 14.1). */
    if (!s->stopping && len >= NGTCP2_MAX_UDP_PAYLOAD_SIZE)
      send_version_negotiation(s, fd, &vc, remote, remote_len);
    return;
  }
  if (rv != 0) {
    s->stats.limits[ST_LIM_BAD_PACKET]++;
    return;
  }

  conn *c = cid_lookup(s, vc.dcid, vc.dcidlen);
  if (!c) {
    if (s->stopping) return;
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, data, len) != 0) { /* not an acceptable Initial */
      s->stats.limits[ST_LIM_BAD_PACKET]++;
      return;
    }
    guard_admit ga; /* per-address limits and Retry, before any TLS work */
    if (guard_on_initial(s, fd, &hd, local, local_len, remote, remote_len, &ga) != 0) return;
    c = conn_new(s, fd, &hd, local, local_len, remote, remote_len, &ga);
    if (!c) {
      guard_conn_gone(s, remote);
      return;
    }
    c->ip_counted = 1;
  }
  if (c->state == CS_DEAD) return;
  if (c->state == CS_CLOSING) {
    /* Answer anything with the CONNECTION_CLOSE again, at most every 10 ms. */
    if (c->close_pkt && s->now - c->close_resend_ns > 10 * NGTCP2_MILLISECONDS) {
      c->close_resend_ns = s->now;
      (void)sendto(fd, c->close_pkt, c->close_pkt_len, 0, remote, remote_len);
      s->stats.send_syscalls++;
    }
    return;
  }
  if (c->state == CS_DRAINING) return;

  ngtcp2_path path = {
      .local = {.addr = (struct sockaddr *)local, .addrlen = local_len},
      .remote = {.addr = (struct sockaddr *)remote, .addrlen = remote_len},
  };
  ngtcp2_pkt_info pi = {0};
  c->fd = fd;
  rv = ngtcp2_conn_read_pkt(c->q, &path, &pi, data, len, s->now);
  if (rv != 0) {
    switch (rv) {
    case NGTCP2_ERR_DRAINING:
      /* The peer closed.  Its session ends now; nothing more to send. */
      relay_set_disc_reason(c, ST_DISC_PEER);
      relay_release(c, "closed by peer");
      conn_set_dead(c);
      break;
    case NGTCP2_ERR_DROP_CONN:
      conn_kill(c);
      break;
    case NGTCP2_ERR_RETRY:
    case NGTCP2_ERR_DISCARD_PKT:
      break;
    case NGTCP2_ERR_CRYPTO:
      if (c->state == CS_HANDSHAKE) s->stats.handshakes[ST_HS_TLS_FAILED]++;
      LOG_DEBUG(&s->log, "TLS handshake failed", "addr=%s alert=%u", c->addr_str,
                ngtcp2_conn_get_tls_alert(c->q));
      conn_close_liberr(c, rv);
      break;
    default:
      LOG_DEBUG(&s->log, "QUIC error", "node_id=%llu addr=%s error=\"%s\"",
                (unsigned long long)c->node_id, c->addr_str, ngtcp2_strerror(rv));
      if (c->state == CS_HANDSHAKE) s->stats.handshakes[ST_HS_TLS_FAILED]++;
      conn_close_liberr(c, rv);
      break;
    }
  } else if (c->tls && ngtcp2_conn_get_handshake_completed(c->q)) {
    conn_drop_tls(c);
  }
  if (c->state != CS_DEAD) conn_mark_dirty(c);
}

static void local_addr_from_cmsg(struct msghdr *h, struct sockaddr_storage *local,
                                 socklen_t *local_len, int *gro) {
  *gro = 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm)) {
    if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO &&
        local->ss_family == AF_INET) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(cm), sizeof pi);
      ((struct sockaddr_in *)local)->sin_addr = pi.ipi_addr;
    } else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO &&
               local->ss_family == AF_INET6) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(cm), sizeof pi);
      ((struct sockaddr_in6 *)local)->sin6_addr = pi.ipi6_addr;
    } else if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
      int v;
      memcpy(&v, CMSG_DATA(cm), sizeof v);
      *gro = v;
    }
  }
  (void)local_len;
}

typedef struct rxbufs {
  uint8_t *data; /* RX_BATCH * RX_BUF */
  struct mmsghdr mh[RX_BATCH];
  struct iovec iov[RX_BATCH];
  struct sockaddr_storage from[RX_BATCH];
  uint8_t ctl[RX_BATCH][256];
  struct sockaddr_storage bound[2]; /* each socket's bound address, asked once */
  socklen_t bound_len[2];
} rxbufs;

/* Entry i ready for the next recvmmsg: the lengths the kernel rewrote. */
static void rx_reset(rxbufs *rb, int i) {
  rb->mh[i].msg_hdr.msg_namelen = sizeof rb->from[i];
  rb->mh[i].msg_hdr.msg_controllen = sizeof rb->ctl[i];
  rb->mh[i].msg_hdr.msg_flags = 0;
}

/* Points every receive header at its buffers, once per srv_run. */
static void rx_init(rxbufs *rb) {
  for (int i = 0; i < RX_BATCH; i++) {
    rb->iov[i].iov_base = rb->data + (size_t)i * RX_BUF;
    rb->iov[i].iov_len = RX_BUF;
    memset(&rb->mh[i].msg_hdr, 0, sizeof rb->mh[i].msg_hdr);
    rb->mh[i].msg_hdr.msg_name = &rb->from[i];
    rb->mh[i].msg_hdr.msg_iov = &rb->iov[i];
    rb->mh[i].msg_hdr.msg_iovlen = 1;
    rb->mh[i].msg_hdr.msg_control = rb->ctl[i];
    rx_reset(rb, i);
  }
}

static void read_socket(srv *s, rxbufs *rb, int fdi) {
  int fd = s->fds[fdi];
  /* The bound address never changes: ask once per srv_run, not per turn. */
  if (!rb->bound_len[fdi]) {
    rb->bound_len[fdi] = sizeof rb->bound[fdi];
    if (getsockname(fd, (struct sockaddr *)&rb->bound[fdi], &rb->bound_len[fdi]) != 0)
      rb->bound_len[fdi] = 0;
  }
  struct sockaddr_storage bound = rb->bound[fdi];
  socklen_t bound_len = rb->bound_len[fdi];
  for (int rounds = 0; rounds < 64; rounds++) {
    /* The headers are set up once (rx_init); a call rewrites only the
     * lengths of the entries it fills, which are reset after use below. */
    int n = recvmmsg(fd, rb->mh, RX_BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
      struct sockaddr_storage local = bound;
      socklen_t local_len = bound_len;
      int gro = 0;
      local_addr_from_cmsg(&rb->mh[i].msg_hdr, &local, &local_len, &gro);
      size_t len = rb->mh[i].msg_len;
      uint8_t *p = rb->iov[i].iov_base;
      size_t seg = gro > 0 ? (size_t)gro : len;
      for (size_t off = 0; off < len; off += seg) {
        size_t l = len - off < seg ? len - off : seg;
        handle_packet(s, fd, (struct sockaddr *)&local, local_len,
                      (struct sockaddr *)&rb->from[i], rb->mh[i].msg_hdr.msg_namelen, p + off, l);
      }
      rx_reset(rb, i);
    }
    if (n < RX_BATCH) return;
  }
}

/* ---- timers ---------------------------------------------------------- */

static void run_timers(srv *s) {
  for (;;) {
    heap_node *hn = heap_min(&s->timers);
    if (!hn || hn->key > s->now) return;
    conn *c = (conn *)((char *)hn - offsetof(conn, timer));
    heap_remove(&s->timers, hn);
    if (c->state == CS_CLOSING || c->state == CS_DRAINING) {
      conn_set_dead(c);
      continue;
    }
    if (ngtcp2_conn_get_expiry(c->q) <= s->now) {
      int rv = conn_handle_expiry(s, c);
      if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        if (rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT || c->state == CS_HANDSHAKE) {
          s->stats.handshakes[ST_HS_TLS_FAILED]++;
          s->stats.limits[ST_LIM_HANDSHAKE_TIMEOUT]++;
        }
        relay_set_disc_reason(c, rv == NGTCP2_ERR_IDLE_CLOSE ? ST_DISC_IDLE : PR_E_TIMEOUT);
        relay_release(c, rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout" : "handshake timeout");
        conn_set_dead(c);
        continue;
      }
      if (rv != 0) {
        conn_close_liberr(c, rv);
        continue;
      }
    }
    relay_on_timer(c);
    conn_mark_dirty(c);
    conn_rearm(c);
    /* A deadline that is still due (a close waiting for this turn's write
     * pass, whose grace period ran out; a pacing instant only a write moves)
     * is handled after the write pass, in the next turn.  Re-running it here,
     * with s->now fixed, would spin forever: a client that stops reading
     * could hang the relay that way. */
    if (c->timer.idx != HEAP_NONE && c->timer.key <= s->now)
      heap_set(&s->timers, &c->timer, s->now + 1);
  }
}

static void arm_timerfd(srv *s) {
  heap_node *hn = heap_min(&s->timers);
  uint64_t t = hn ? hn->key : 0;
  if (s->stopping && (t == 0 || t > s->stop_deadline)) t = s->stop_deadline;
  if (s->dirty && s->flush_due && (t == 0 || s->flush_due < t)) t = s->flush_due;
  if (t == s->timer_armed) return;
  /* An earlier deadline is still armed: let it fire (the turn then finds
   * nothing due and re-arms) instead of a timerfd_settime every turn. */
  if (s->timer_armed > s->now && (t == 0 || t > s->timer_armed)) return;
  s->timer_armed = t;
  struct itimerspec its = {0};
  if (t) {
    if (t <= s->now) t = s->now + 1;
    its.it_value.tv_sec = (time_t)(t / 1000000000ull);
    its.it_value.tv_nsec = (long)(t % 1000000000ull);
  }
  timerfd_settime(s->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ---- sockets --------------------------------------------------------- */

static int open_socket(srv *s, const struct sockaddr_storage *addr, socklen_t len, char *err,
                       size_t errlen) {
  int fd = socket(addr->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  int one = 1, zero = 0;
  if (addr->ss_family == AF_INET6) {
    /* "[::]:port" serves IPv4 too. */
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
  } else {
    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    int pmtu = IP_PMTUDISC_PROBE;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
  }
  int bufsz = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof bufsz) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsz, sizeof bufsz) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
  int got = 0; /* what the kernel granted; it reports twice the usable size */
  socklen_t gotlen = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &gotlen) == 0)
    s->rcvbuf = (uint32_t)got / 2;
  if (bind(fd, (const struct sockaddr *)addr, len) != 0) {
    snprintf(err, errlen, "ISSUN_BIND_ADDR (--bind): cannot bind %s: %s", s->cfg.bind_addr,
             strerror(errno));
    close(fd);
    return -1;
  }
  s->use_gro = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  return fd;
}

/* ---- public ---------------------------------------------------------- */

int srv_new(srv **out, const srv_config *cfg, char *err, size_t errlen) {
  srv *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  s->cfg = *cfg;
  s->log.level = cfg->log_level;
  s->log.format = cfg->log_format;
  s->log.out = stderr;
  s->epfd = s->timerfd = s->sigfd = -1;
  s->fds[0] = s->fds[1] = -1;
  s->now = srv_clock_ns();
  s->use_gso = 1;
  heap_init(&s->timers);
  srv_random(s, s->static_secret, sizeof s->static_secret);
  uint64_t seed;
  srv_random(s, &seed, sizeof seed);
  if (u64map_init(&s->by_cid, 1024, seed) != 0 || u64map_init(&s->by_node, 1024, seed ^ 0x9e37) != 0)
    goto oom;
  s->rooms = rooms_new(cfg->max_rooms, cfg->default_room_size, cfg->max_room_size, seed ^ 0x51ed);
  s->scratch = malloc(PR_HDR_LEN + (size_t)cfg->max_frame_payload);
  if (!s->rooms || !s->scratch) goto oom;
  if (guard_init(s, err, errlen) != 0) {
    srv_free(s);
    return -1;
  }

  int generated = 0;
  if (iq_tls_server_new(&s->tls, cfg->cert_path, cfg->key_path, !cfg->cert_path_set, &generated,
                        err, errlen) != 0) {
    /* Name the settings that led here, as for any bad configuration. */
    char why[512];
    snprintf(why, sizeof why, "%s", err);
    snprintf(err, errlen, "ISSUN_CERT_PATH/ISSUN_KEY_PATH (--cert/--key): %s", why);
    srv_free(s);
    return -1;
  }
  if (cfg->qlog_dir[0]) {
    if (access(cfg->qlog_dir, W_OK | X_OK) != 0) {
      snprintf(err, errlen, "ISSUN_QLOG_DIR (--qlog-dir): cannot write to %s: %s", cfg->qlog_dir,
               strerror(errno));
      srv_free(s);
      return -1;
    }
    LOG_WARN(&s->log, "Writing a qlog trace of every connection (debugging)", "dir=%s",
             cfg->qlog_dir);
  }
  if (generated) {
    LOG_WARN(&s->log, "No certificate found; using an in-memory self-signed certificate",
             "cert_path=%s sha256=%s", cfg->cert_path, iq_tls_server_fingerprint(s->tls));
    LOG_WARN(&s->log, "Clients must pin this fingerprint or run insecure; do not use in production",
             "%s", "");
  } else {
    LOG_INFO(&s->log, "Certificate loaded", "cert_path=%s sha256=%s", cfg->cert_path,
             iq_tls_server_fingerprint(s->tls));
  }

  s->fds[0] = open_socket(s, &cfg->bind, cfg->bind_len, err, errlen);
  if (s->fds[0] < 0) {
    srv_free(s);
    return -1;
  }
  s->nfds = 1;

  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  s->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  s->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (s->epfd < 0 || s->timerfd < 0 || s->sigfd < 0) {
    snprintf(err, errlen, "epoll/timerfd/signalfd: %s", strerror(errno));
    srv_free(s);
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLIN};
  for (int i = 0; i < s->nfds; i++) {
    ev.data.u32 = (uint32_t)i;
    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->fds[i], &ev);
  }
  ev.data.u32 = 100;
  epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->timerfd, &ev);
  ev.data.u32 = 101;
  epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sigfd, &ev);
  if (cfg->metrics_port && metrics_new(&s->metrics, s, s->epfd, err, errlen) != 0) {
    srv_free(s);
    return -1;
  }
  if (cfg->nats_url[0] && cluster_new(&s->cluster, s, s->epfd, err, errlen) != 0) {
    srv_free(s);
    return -1;
  }
  *out = s;
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
  srv_free(s);
  return -1;
}

uint16_t srv_port(const srv *s) {
  struct sockaddr_storage a;
  socklen_t l = sizeof a;
  if (getsockname(s->fds[0], (struct sockaddr *)&a, &l) != 0) return 0;
  if (a.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&a)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
}

const srv_stats *srv_get_stats(const srv *s) {
  return &s->stats;
}

static void begin_shutdown(srv *s, const char *why) {
  if (s->stopping) return;
  s->stopping = 1;
  s->stop_deadline = s->now + 1500ull * 1000000ull;
  LOG_INFO(&s->log, "Shutting down", "reason=%s sessions=%u", why, s->nsessions);
  relay_shutdown_all(s);
}

/* The flush window under load.  When the loop was busy for at least
 * ISSUN_FLUSH_BUSY_PCT of the last interval, every write waits for a
 * window that doubles each interval, from twice ISSUN_FLUSH_US (at least
 * 1 ms) up to ISSUN_FLUSH_MAX_US; below five eighths of that share it
 * halves again, and goes back to the normal rule under its first step.
 * A loop that cannot keep up would otherwise queue without bound; a
 * longer window packs more events per packet and takes reads and writes
 * in larger batches, which buys CPU for a few ms of latency.  Between the
 * two thresholds the window holds, so a load near the line does not make
 * it swing every interval.  Returns the next widened window (0: none). */
uint32_t flush_load_step(const srv_config *cfg, uint32_t load_us, unsigned busy_pct) {
  if (cfg->flush_max_us <= cfg->flush_us) return 0;
  uint32_t first = cfg->flush_us >= 500 ? 2 * cfg->flush_us : 1000;
  if (first > cfg->flush_max_us) first = cfg->flush_max_us;
  if (busy_pct >= cfg->flush_busy_pct) {
    if (!load_us) return first;
    return load_us >= cfg->flush_max_us / 2 ? cfg->flush_max_us : 2 * load_us;
  }
  if (load_us && busy_pct * 8 < cfg->flush_busy_pct * 5) {
    load_us /= 2;
    return load_us < first ? 0 : load_us;
  }
  return load_us;
}

/* Flush window, every 100 ms.  Auto mode keeps the window in force while
 * most deliveries went to hot connections (relay.c note_delivery: events
 * less than two windows apart), where holding a write packs events into
 * shared packets.  On at a half, off below two fifths, so that a load near
 * the line does not flip the mode every decision.  Then the loop's busy
 * share may widen the window (flush_load_step). */
static void flush_evaluate(srv *s) {
  int on;
  if (s->cfg.flush_us == 0)
    on = 0;
  else if (s->cfg.flush_mode == CFG_FLUSH_ALWAYS)
    on = 1;
  else if (s->flush_all == 0)
    on = 0;
  else if (s->flush_active)
    on = s->flush_hot * 5 >= s->flush_all * 2;
  else
    on = s->flush_hot * 2 >= s->flush_all;
  if (srv_flush_window_us(s) && s->flush_last_eval) /* the interval that ends */
    s->stats.flush_active_ns += s->now - s->flush_last_eval;
  if (on != s->flush_active && s->cfg.flush_mode != CFG_FLUSH_ALWAYS)
    LOG_DEBUG(&s->log, on ? "Flush window on" : "Flush window off",
              "window_us=%u hot_deliveries=%llu deliveries=%llu", s->cfg.flush_us,
              (unsigned long long)s->flush_hot, (unsigned long long)s->flush_all);
  s->flush_active = on;

  /* The loop's busy share since the last decision (none before the first). */
  uint64_t span = s->now - s->flush_last_eval, idle = s->idle_ns - s->idle_at_eval;
  s->idle_at_eval = s->idle_ns;
  if (s->flush_last_eval && span) {
    unsigned busy = idle >= span ? 0 : (unsigned)((span - idle) * 100 / span);
    uint32_t load = flush_load_step(&s->cfg, s->flush_load_us, busy);
    /* One line when the window widens and one when it is back, at most
     * one pair per 10 s: a load on the line would otherwise log every
     * few hundred ms.  Pairs left out are counted in the next line. */
    if (load && !s->flush_load_us) {
      s->load_logged = s->now >= s->load_log_at;
      if (s->load_logged) {
        LOG_WARN(&s->log, "Relay loop short of CPU, widening the flush window",
                 "busy_pct=%u window_us=%u max_window_us=%u unlogged=%u", busy, load,
                 s->cfg.flush_max_us, s->load_unlogged);
        s->load_unlogged = 0;
        s->load_log_at = s->now + 10ull * NGTCP2_SECONDS;
      } else {
        s->load_unlogged++;
      }
    } else if (!load && s->flush_load_us && s->load_logged) {
      LOG_INFO(&s->log, "Relay loop has CPU to spare, flush window back to normal",
               "busy_pct=%u window_us=%u", busy, on ? s->cfg.flush_us : 0);
      s->load_logged = 0;
    }
    s->flush_load_us = load;
  }
  s->flush_hot = s->flush_all = 0;
  s->flush_last_eval = s->now;
  s->flush_eval_at = s->now + FLUSH_EVAL_NS;
}

int srv_run(srv *s) {
  rxbufs *rb = calloc(1, sizeof *rb);
  txbatch *tb = malloc(sizeof *tb);
  uint8_t *rxmem = malloc((size_t)RX_BATCH * RX_BUF);
  size_t arena_cap = 4u << 20;
  uint8_t *arena = malloc(arena_cap);
  if (!rb || !tb || !rxmem || !arena) {
    free(rb);
    free(tb);
    free(rxmem);
    free(arena);
    LOG_ERROR(&s->log, "out of memory", "%s", "");
    return -1;
  }
  rb->data = rxmem;
  rx_init(rb);
  tb->arena = arena;
  tb->cap = arena_cap;
  tb->used = 0;
  tb->n = 0;

  char addr[64];
  addr_to_str((struct sockaddr *)&s->cfg.bind, addr, sizeof addr);
  {
    struct sockaddr_storage a;
    socklen_t l = sizeof a;
    getsockname(s->fds[0], (struct sockaddr *)&a, &l);
    addr_to_str((struct sockaddr *)&a, addr, sizeof addr);
  }
  LOG_INFO(&s->log, "Relay server listening on",
           "addr=%s alpn=issun/1 legacy=%s gro=%d rcvbuf_kib=%u", addr,
           legacy_allowed(s) ? "on" : "off", s->use_gro, s->rcvbuf / 1024);
  if (s->rcvbuf < RCVBUF_ROOMY)
    LOG_WARN(&s->log, "UDP receive buffer is small: bursts will be dropped and retransmitted",
             "rcvbuf_kib=%u wanted_kib=8192 fix=\"raise net.core.rmem_max and wmem_max to 8388608 "
             "(docs/operations.md, Kernel UDP buffers)\"",
             s->rcvbuf / 1024);
  LOG_INFO(&s->log, "Relay server started, waiting for connections...",
           "max_clients=%u heartbeat_ms=%u rooms=%s cc=%s", s->cfg.max_clients,
           s->cfg.heartbeat_ms, s->cfg.enable_rooms ? "on" : "off", cfg_cc_name(s->cfg.cc_algo));

  struct epoll_event evs[16];
  s->loop_started_ns = srv_clock_ns();
  for (;;) {
    int n;
    uint64_t wait_from = srv_clock_ns(); /* idle time, for the flush window under load */
    if (s->dirty && s->flush_due > s->now && !s->stopping) {
      /* A flush window is open (ISSUN_FLUSH_US): sleep it out instead of
       * waking for every datagram, then take whatever is ready.  Reads,
       * relaying and writes then run once per window, in batches. */
      uint64_t wake = s->flush_due;
      /* On a small socket buffer (208 KiB where the relay may not raise
       * it) a window longer than a slice (a widened one, or ISSUN_FLUSH_US
       * above 1 ms) is slept in slices with a read between them, so that
       * the buffer does not overflow meanwhile.  Slicing costs CPU (reads
       * in smaller batches): with the 8 MiB the relay asks for, the window
       * is slept in one go. */
      if (s->rcvbuf < RCVBUF_ROOMY && wake > s->now + FLUSH_SLICE_NS)
        wake = s->now + FLUSH_SLICE_NS;
      struct timespec ts = {(time_t)(wake / 1000000000ull), (long)(wake % 1000000000ull)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
      }
      n = epoll_wait(s->epfd, evs, 16, 0);
    } else {
      n = epoll_wait(s->epfd, evs, 16, -1);
    }
    if (n < 0 && errno != EINTR) {
      LOG_ERROR(&s->log, "epoll_wait failed", "error=\"%s\"", strerror(errno));
      break;
    }
    s->now = srv_clock_ns();
    s->idle_ns += s->now - wait_from;
    for (int i = 0; i < n; i++) {
      uint32_t id = evs[i].data.u32;
      if (id < (uint32_t)s->nfds) {
        read_socket(s, rb, (int)id);
      } else if (id == 100) {
        uint64_t x;
        while (read(s->timerfd, &x, sizeof x) > 0) {
        }
        s->timer_armed = 0;
      } else if (id == 101) {
        struct signalfd_siginfo si;
        while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
          begin_shutdown(s, si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
      } else if (id - METRICS_EPOLL_ID < METRICS_EPOLL_SPAN) {
        metrics_on_epoll(s->metrics, id, evs[i].events);
      } else if (id - CLUSTER_EPOLL_ID < CLUSTER_EPOLL_SPAN) {
        cluster_on_epoll(s->cluster, id);
      }
    }
    run_timers(s);
    if (s->now >= s->flush_eval_at) flush_evaluate(s);

    /* Write pass: every dirty connection once (when the flush window,
     * ISSUN_FLUSH_US, has passed: events for one recipient share packets). */
    conn *d = NULL;
    if (s->now >= s->flush_due || s->stopping) {
      d = s->dirty;
      s->dirty = NULL;
      s->flush_due = 0;
    }
    uint64_t read_again = s->now + FLUSH_SLICE_NS;
    for (unsigned written = 1; d; written++) {
      conn *next = d->dirty_next;
      d->dirty = 0;
      d->dirty_next = NULL;
      conn_write(s, tb, d);
      d = next;
      /* A long pass (a thousand busy players, a widened window) reads the
       * sockets every millisecond, so that what arrives meanwhile does
       * not overflow their buffers.  Connections it makes dirty that are
       * still ahead in this pass are written in it; the others join the
       * next pass. */
      if (written % 64 == 0 && (s->now = srv_clock_ns()) >= read_again) {
        for (int i = 0; i < s->nfds; i++)
          read_socket(s, rb, i);
        read_again = s->now + FLUSH_SLICE_NS;
      }
    }
    if (tb->n) batch_flush(s, tb);

    /* Free what ended.  The scan over every connection runs only when one
     * died (plus once a second as a safety net): scanning every turn was
     * 6% of the loop's CPU at 500 connections and 9% at 5,000. */
    if (s->ndead || s->stopping || s->now >= s->next_reap) {
      s->next_reap = s->now + NGTCP2_SECONDS;
      s->ndead = 0;
      for (conn *c = s->all, *next; c; c = next) {
        next = c->all_next;
        if (c->state != CS_DEAD) continue;
        if (c->dirty)
          s->ndead++; /* freed on a later turn */
        else
          conn_free(c);
      }
    }

    if (s->stopping) {
      int open = 0;
      for (conn *c = s->all; c; c = c->all_next)
        if (c->state < CS_CLOSING) open++;
      /* An HTTP request being answered (/health says 503) also holds the exit. */
      if ((open == 0 && !metrics_busy(s->metrics)) || s->now >= s->stop_deadline) break;
    }
    arm_timerfd(s);
  }
  guard_log_summary(s);
  LOG_INFO(&s->log, "Relay server stopped", "connections=%u", s->nconns);
  free(rb);
  free(tb);
  free(rxmem);
  free(arena);
  return 0;
}

void srv_free(srv *s) {
  if (!s) return;
  while (s->all) {
    conn *c = s->all;
    c->takeover_victim = 1; /* no presence to anyone: everything goes */
    conn_free(c);
  }
  cluster_free(s->cluster); /* says goodbye: the other relays clean up at once */
  u64map_free(&s->by_cid);
  u64map_free(&s->by_node);
  if (s->rooms) rooms_free(s->rooms);
  free(s->lobby);
  free(s->scratch);
  heap_free(&s->timers);
  if (s->tls) iq_tls_server_free(s->tls);
  metrics_free(s->metrics);
  guard_free(s);
  for (int i = 0; i < 2; i++)
    if (s->fds[i] >= 0) close(s->fds[i]);
  if (s->epfd >= 0) close(s->epfd);
  if (s->timerfd >= 0) close(s->timerfd);
  if (s->sigfd >= 0) close(s->sigfd);
  free(s);
}
