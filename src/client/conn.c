/*
 * libissun: one QUIC connection over one connected UDP socket (ngtcp2 +
 * GnuTLS): socket setup, ngtcp2 callbacks, the read pass, the write pass
 * that packs queued frames into as few packets as possible, timers, close,
 * and the session-stream send buffer.
 *
 * Nothing here calls user callbacks directly; frames go to client.c.
 * ngtcp2 callbacks never tear the connection down: they record the error in
 * c->pending_err and fail, and the caller handles it once ngtcp2 returned.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "client/client_priv.h"

#define TLS_ALERT_BAD_CERTIFICATE 42

/* ---- helpers ---------------------------------------------------------- */

static void addr_str(const struct sockaddr_storage *ss, char *out, size_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
    snprintf(out, len, "%s:%u", host, port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
    snprintf(out, len, "[%s]:%u", host, port);
  } else {
    snprintf(out, len, "?");
  }
}

static void rnd(void *p, size_t n) {
  if (gnutls_rnd(GNUTLS_RND_NONCE, p, n) != 0) {
    /* GnuTLS' RNG does not fail once initialised; keep the bytes defined. */
    memset(p, 0x5a, n);
  }
}

/* ---- send buffer ------------------------------------------------------- */

static void chunk_release(issun_client *c, ic_chunk *k) {
  if (k->cap == IC_CHUNK && c->sb.nfree < IC_CHUNK_FREE_KEEP) {
    k->next = c->sb.free_list;
    c->sb.free_list = k;
    c->sb.nfree++;
  } else {
    free(k);
  }
}

uint8_t *ic_sb_reserve(issun_client *c, size_t n) {
  ic_sendbuf *sb = &c->sb;
  ic_chunk *t = sb->tail;
  if (t && t->cap - t->len >= n)
    return t->data + t->len;
  ic_chunk *k = NULL;
  size_t cap = n > IC_CHUNK ? n : IC_CHUNK;
  if (cap == IC_CHUNK && sb->free_list) {
    k = sb->free_list;
    sb->free_list = k->next;
    sb->nfree--;
  } else {
    k = malloc(sizeof(*k) + cap);
    if (!k)
      return NULL;
    k->cap = cap;
  }
  k->next = NULL;
  k->off = sb->end;
  k->len = 0;
  if (t)
    t->next = k;
  else
    sb->head = k;
  sb->tail = k;
  return k->data;
}

void ic_sb_commit(issun_client *c, size_t n) {
  c->sb.tail->len += n;
  c->sb.end += n;
}

size_t ic_sb_queued(const issun_client *c) {
  return (size_t)(c->sb.end - c->sb.acked);
}

static void sb_on_acked(issun_client *c, uint64_t upto) {
  ic_sendbuf *sb = &c->sb;
  if (upto > sb->acked)
    sb->acked = upto;
  while (sb->head && sb->head->off + sb->head->len <= sb->acked) {
    ic_chunk *k = sb->head;
    if (k == sb->tail) {
      if (sb->acked == sb->end && sb->sent == sb->end) {
        k->off = sb->end;
        k->len = 0;
      }
      break;
    }
    sb->head = k->next;
    chunk_release(c, k);
  }
}

void ic_sb_clear(issun_client *c) {
  ic_sendbuf *sb = &c->sb;
  ic_chunk *k = sb->head;
  while (k) {
    ic_chunk *n = k->next;
    chunk_release(c, k);
    k = n;
  }
  sb->head = sb->tail = NULL;
  sb->acked = sb->sent = sb->end = 0;
}

void ic_sb_free(issun_client *c) {
  ic_sb_clear(c);
  ic_chunk *k = c->sb.free_list;
  while (k) {
    ic_chunk *n = k->next;
    free(k);
    k = n;
  }
  c->sb.free_list = NULL;
  c->sb.nfree = 0;
}

void ic_sb_salvage(issun_client *c) {
  for (ic_chunk *k = c->sb.head; k; k = k->next) {
    size_t i = 0;
    while (i + PR_HDR_LEN <= k->len) {
      pr_hdr h;
      if (pr_hdr_decode(k->data + i, k->len - i, UINT32_MAX, &h) != 0)
        break;
      size_t flen = PR_HDR_LEN + (size_t)h.len;
      if (flen > k->len - i)
        break;
      if (k->off + i >= c->sb.sent && h.type == PR_FT_EVENT) {
        if (c->offline_count >= c->s.offline_queue_events ||
            c->offline.len + flen > c->s.offline_queue_bytes ||
            ic_bytes_reserve(&c->offline, flen) != 0) {
          c->st.offline_dropped++;
        } else {
          memcpy(c->offline.p + c->offline.len, k->data + i, flen);
          c->offline.len += flen;
          c->offline_count++;
        }
      }
      i += flen;
    }
  }
  c->st.offline_queued = c->offline_count;
}

/* ---- ngtcp2 callbacks -------------------------------------------------- */

static ngtcp2_conn *get_conn_cb(ngtcp2_crypto_conn_ref *ref) {
  issun_client *c = ref->user_data;
  return c->conn;
}

static void rand_cb(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *rand_ctx) {
  (void)rand_ctx;
  rnd(dest, destlen);
}

static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                      void *user_data) {
  (void)conn;
  (void)user_data;
  rnd(cid->data, cidlen);
  cid->datalen = cidlen;
  rnd(token, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *user_data) {
  issun_client *c = user_data;
  char why[256];
  (void)conn;
  why[0] = 0;
  if (iq_tls_client_check_peer(c->tls, c->tls_sess, why, sizeof(why)) != 0) {
    ic_seterr(c, "certificate check failed: %s", why[0] ? why : "peer certificate refused");
    c->pending_err = ISSUN_ERR_CERT;
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  c->handshake_done = 1;
  int rv = ic_on_handshake(c);
  if (rv != 0) {
    c->pending_err = rv;
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                               uint64_t offset, const uint8_t *data, size_t datalen,
                               void *user_data, void *stream_user_data) {
  issun_client *c = user_data;
  (void)flags;
  (void)offset;
  (void)stream_user_data;
  if (stream_id == c->sid && datalen > 0) {
    int rv = ic_on_stream_data(c, data, datalen);
    if (rv != 0) {
      c->pending_err = rv;
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
  }
  if (stream_id == c->sid && c->stop_reading) {
    c->credit_pending += datalen;
  } else {
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
    ngtcp2_conn_extend_max_offset(conn, datalen);
  }
  return 0;
}

static int acked_stream_data_offset_cb(ngtcp2_conn *conn, int64_t stream_id, uint64_t offset,
                                       uint64_t datalen, void *user_data, void *stream_user_data) {
  issun_client *c = user_data;
  (void)conn;
  (void)stream_user_data;
  if (stream_id == c->sid)
    sb_on_acked(c, offset + datalen);
  return 0;
}

static int recv_datagram_cb(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data, size_t datalen,
                            void *user_data) {
  issun_client *c = user_data;
  (void)conn;
  (void)flags;
  int rv = ic_on_datagram(c, data, datalen);
  if (rv != 0) {
    c->pending_err = rv;
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int extend_max_local_streams_bidi_cb(ngtcp2_conn *conn, uint64_t max_streams,
                                            void *user_data) {
  issun_client *c = user_data;
  (void)conn;
  (void)max_streams;
  if (c->handshake_done && c->sid < 0) {
    int rv = ic_open_session_stream(c);
    if (rv != 0) {
      c->pending_err = rv;
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
  }
  return 0;
}

/* TLS messages after the handshake (1-RTT CRYPTO data) are not given to
 * GnuTLS: the library uses no session tickets, so a NewSessionTicket is of
 * no use, and a KeyUpdate, which QUIC forbids, would make GnuTLS install
 * keys under ngtcp2 and abort the process in an ngtcp2 assertion (seen with
 * 0.12.1 on the server side).  Ignoring them keeps a hostile server from
 * crashing the game. */
static int recv_crypto_data_cb(ngtcp2_conn *conn, ngtcp2_crypto_level level, uint64_t off,
                               const uint8_t *data, size_t len, void *user_data) {
  if (level == NGTCP2_CRYPTO_LEVEL_APPLICATION)
    return 0;
  return ngtcp2_crypto_recv_crypto_data_cb(conn, level, off, data, len, user_data);
}

static const ngtcp2_callbacks conn_callbacks = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_crypto_data = recv_crypto_data_cb,
    .handshake_completed = handshake_completed_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_stream_data = recv_stream_data_cb,
    .acked_stream_data_offset = acked_stream_data_offset_cb,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .extend_max_local_streams_bidi = extend_max_local_streams_bidi_cb,
    .rand = rand_cb,
    .get_new_connection_id = new_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .recv_datagram = recv_datagram_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

/* ---- open / close -------------------------------------------------------- */

static int open_socket(issun_client *c, const struct sockaddr *ra, socklen_t ralen, int *out) {
  char as[80];
  addr_str((const struct sockaddr_storage *)ra, as, sizeof(as));
  int fd = socket(ra->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0)
    return ic_fail(c, ISSUN_ERR_SOCKET, "socket() for %s: %s", as, strerror(errno));
  /* A connected socket: the kernel filters other senders and reports ICMP
   * port unreachable as ECONNREFUSED. */
  if (connect(fd, ra, ralen) != 0) {
    int e = errno;
    close(fd);
    return ic_fail(c, e == ECONNREFUSED ? ISSUN_ERR_REFUSED : ISSUN_ERR_SOCKET,
                   "cannot reach %s: %s", as, strerror(e));
  }
  *out = fd;
  return 0;
}

int ic_conn_open(issun_client *c) {
  const struct sockaddr *ra = (const struct sockaddr *)&c->addrs[c->addr_idx];
  socklen_t ralen = c->addrlens[c->addr_idx];
  int fd = -1;
  int rv = open_socket(c, ra, ralen, &fd);
  if (rv != 0)
    return rv;

  c->local_len = sizeof(c->local);
  if (getsockname(fd, (struct sockaddr *)&c->local, &c->local_len) != 0) {
    int e = errno;
    close(fd);
    return ic_fail(c, ISSUN_ERR_SOCKET, "getsockname: %s", strerror(e));
  }
  memcpy(&c->remote, ra, ralen);
  c->remote_len = ralen;

  const char *sni = c->server_name ? c->server_name : c->host;
  if (iq_tls_client_session(c->tls, sni, &c->tls_sess) != 0) {
    close(fd);
    c->tls_sess = NULL;
    return ic_fail(c, ISSUN_ERR_TLS, "cannot set up a TLS session for %s", sni);
  }
  c->conn_ref.get_conn = get_conn_cb;
  c->conn_ref.user_data = c;
  gnutls_session_set_ptr(c->tls_sess, &c->conn_ref);

  ngtcp2_cid dcid, scid;
  dcid.datalen = 18;
  rnd(dcid.data, dcid.datalen);
  scid.datalen = 16;
  rnd(scid.data, scid.datalen);

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = ic_now_ns();
  settings.handshake_timeout = (ngtcp2_duration)c->s.connect_timeout_ms * NGTCP2_MILLISECONDS;

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = 1024 * 1024;
  params.initial_max_stream_data_bidi_remote = 0;
  params.initial_max_stream_data_uni = 0;
  params.initial_max_data = 2 * 1024 * 1024;
  params.initial_max_streams_bidi = 0;
  params.initial_max_streams_uni = 0;
  params.max_idle_timeout = (ngtcp2_duration)c->s.idle_timeout_ms * NGTCP2_MILLISECONDS;
  params.max_datagram_frame_size = c->s.enable_datagrams ? 65535 : 0;

  ngtcp2_path path = {
      .local = {(struct sockaddr *)&c->local, c->local_len},
      .remote = {(struct sockaddr *)&c->remote, c->remote_len},
      .user_data = NULL,
  };
  rv = ngtcp2_conn_client_new(&c->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &conn_callbacks,
                              &settings, &params, NULL, c);
  if (rv != 0) {
    gnutls_deinit(c->tls_sess);
    c->tls_sess = NULL;
    c->conn = NULL;
    close(fd);
    return ic_fail(c, rv == NGTCP2_ERR_NOMEM ? ISSUN_ERR_NOMEM : ISSUN_ERR_QUIC,
                   "ngtcp2_conn_client_new: %s", ngtcp2_strerror(rv));
  }
  ngtcp2_conn_set_tls_native_handle(c->conn, c->tls_sess);

  c->fd = fd;
  c->handshake_done = 0;
  c->attempt_handshaken = 0;
  c->acked = 0;
  c->sid = -1;
  c->hello_sent = 0;
  c->fin_requested = 0;
  c->fin_sent = 0;
  c->pending_err = 0;
  c->pending_close_app = 0;
  c->credit_pending = 0;
  c->rx.len = 0;
  c->ntx = 0;
  c->ack_hold = 0;
  c->write_now = 0;
  c->rx_since_write = 0;
  {
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    c->seen_recovery_ts = st.congestion_recovery_start_ts;
  }
  ic_sb_clear(c);
  return 0;
}

void ic_conn_teardown(issun_client *c) {
  if (c->conn) {
    ngtcp2_conn_del(c->conn);
    c->conn = NULL;
  }
  if (c->tls_sess) {
    gnutls_deinit(c->tls_sess);
    c->tls_sess = NULL;
  }
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  for (int i = 0; i < c->nextra; i++)
    free(c->extra[i].data);
  c->nextra = 0;
  c->handshake_done = 0;
  c->sid = -1;
  c->ntx = 0;
  c->st.send_refused += c->dgq_count; /* DATAGRAMs that never left */
  c->dgq.len = 0;
  c->dgq_head = 0;
  c->dgq_count = 0;
  c->rx.len = 0;
}

static void send_one(issun_client *c, const uint8_t *p, size_t n) {
  ssize_t w;
  do {
    w = send(c->fd, p, n, 0);
  } while (w < 0 && errno == EINTR);
}

static void conn_close_ccerr(issun_client *c, const ngtcp2_connection_close_error *ccerr) {
  if (c->conn && c->fd >= 0 && !ngtcp2_conn_is_in_closing_period(c->conn) &&
      !ngtcp2_conn_is_in_draining_period(c->conn)) {
    ngtcp2_pkt_info pi;
    size_t destlen = ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
    if (destlen > IC_PKT_CAP)
      destlen = IC_PKT_CAP;
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->conn, NULL, &pi, c->txbuf, destlen,
                                                        ccerr, ic_now_ns());
    if (n > 0)
      send_one(c, c->txbuf, (size_t)n);
  }
  ic_conn_teardown(c);
}

void ic_conn_close(issun_client *c, int app, uint64_t code, const char *reason) {
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  size_t rlen = reason ? strlen(reason) : 0;
  if (app)
    ngtcp2_connection_close_error_set_application_error(&ccerr, code, (const uint8_t *)reason,
                                                        rlen);
  else
    ngtcp2_connection_close_error_set_transport_error(&ccerr, code, (const uint8_t *)reason, rlen);
  conn_close_ccerr(c, &ccerr);
}

static void close_liberr(issun_client *c, int liberr) {
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, liberr, NULL, 0);
  conn_close_ccerr(c, &ccerr);
}

/* The peer closed the connection: record what it said and map it. */
static int on_peer_close(issun_client *c) {
  ngtcp2_connection_close_error ccerr;
  ngtcp2_conn_get_connection_close_error(c->conn, &ccerr);
  issun_close_info *ci = &c->close;
  ci->has_close = 1;
  ci->close_is_app = ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
  ci->close_code = ccerr.error_code;
  size_t rl = ccerr.reasonlen < sizeof(ci->close_reason) - 1 ? ccerr.reasonlen
                                                             : sizeof(ci->close_reason) - 1;
  if (rl)
    memcpy(ci->close_reason, ccerr.reason, rl);
  ci->close_reason[rl] = 0;
  int handshaken = c->handshake_done;
  ic_conn_teardown(c);

  char extra[300] = "";
  if (ci->has_server_error && ci->server_error_message[0])
    snprintf(extra, sizeof(extra), ": %s", ci->server_error_message);
  else if (rl)
    snprintf(extra, sizeof(extra), ": %s", ci->close_reason);

  if (ci->close_is_app) {
    unsigned code = ccerr.error_code > 0xffff ? 0xffff : (unsigned)ccerr.error_code;
    int err = issun_error_from_wire(code);
    if (err == 0)
      err = ISSUN_ERR_CLOSED;
    return ic_fail(c, err, "server closed the connection: %s (0x%02x)%s",
                   issun_wire_code_name(code), code, extra);
  }
  if (ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT_IDLE_CLOSE)
    return ic_fail(c, ISSUN_ERR_TIMEOUT, "connection idle timeout");
  if (ccerr.error_code >= 0x100 && ccerr.error_code < 0x200) {
    unsigned alert = (unsigned)(ccerr.error_code - 0x100);
    const char *an = gnutls_alert_get_strname((gnutls_alert_description_t)alert);
    if (alert == 120)
      return ic_fail(c, ISSUN_ERR_TLS,
                     "TLS handshake refused by the server: no common application protocol "
                     "(the server does not speak ALPN %s)",
                     IQ_ALPN);
    return ic_fail(c, ISSUN_ERR_TLS, "TLS handshake refused by the server: alert %s (%u)%s",
                   an ? an : "unknown", alert, extra);
  }
  if (!handshaken)
    return ic_fail(c, ISSUN_ERR_QUIC, "server refused the QUIC handshake: transport error 0x%llx%s",
                   (unsigned long long)ccerr.error_code, extra);
  if (ccerr.error_code == 0)
    return ic_fail(c, ISSUN_ERR_CLOSED, "server closed the connection%s", extra);
  return ic_fail(c, ISSUN_ERR_QUIC, "server closed the connection: QUIC transport error 0x%llx%s",
                 (unsigned long long)ccerr.error_code, extra);
}

static int on_read_error(issun_client *c, int rv) {
  switch (rv) {
  case NGTCP2_ERR_DRAINING:
  case NGTCP2_ERR_CLOSING:
    return on_peer_close(c);
  case NGTCP2_ERR_CRYPTO: {
    char why[256];
    why[0] = 0;
    uint8_t alert = ngtcp2_conn_get_tls_alert(c->conn);
    int tlserr = ngtcp2_conn_get_tls_error(c->conn);
    iq_tls_client_verify_error(c->tls_sess, why, sizeof(why));
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, NULL, 0);
    conn_close_ccerr(c, &ccerr);
    if (why[0])
      return ic_fail(c, ISSUN_ERR_CERT, "certificate verification failed: %s", why);
    const char *an = gnutls_alert_get_strname((gnutls_alert_description_t)alert);
    return ic_fail(c, ISSUN_ERR_TLS, "TLS handshake failed: %s (alert %s)",
                   tlserr ? gnutls_strerror(tlserr) : "error", an ? an : "none");
  }
  case NGTCP2_ERR_CALLBACK_FAILURE: {
    int err = c->pending_err ? c->pending_err : ISSUN_ERR_QUIC;
    if (err == ISSUN_ERR_CERT) {
      ngtcp2_connection_close_error ccerr;
      ngtcp2_connection_close_error_default(&ccerr);
      ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, TLS_ALERT_BAD_CERTIFICATE,
                                                                  NULL, 0);
      conn_close_ccerr(c, &ccerr);
    } else if (c->pending_close_app) {
      ic_conn_close(c, 1, c->pending_close_code, issun_wire_code_name(c->pending_close_code));
    } else {
      close_liberr(c, rv);
    }
    return err;
  }
  case NGTCP2_ERR_DROP_CONN:
    ic_conn_teardown(c);
    return ic_fail(c, ISSUN_ERR_QUIC, "QUIC connection dropped");
  case NGTCP2_ERR_RECV_VERSION_NEGOTIATION:
  case NGTCP2_ERR_VERSION_NEGOTIATION_FAILURE:
    ic_conn_teardown(c);
    return ic_fail(c, ISSUN_ERR_QUIC, "the server does not speak QUIC version 1");
  case NGTCP2_ERR_NOMEM:
    ic_conn_teardown(c);
    return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory in QUIC");
  default:
    close_liberr(c, rv);
    return ic_fail(c, ISSUN_ERR_QUIC, "QUIC error: %s", ngtcp2_strerror(rv));
  }
}

/* ---- read pass --------------------------------------------------------- */

int ic_conn_read(issun_client *c) {
  struct mmsghdr msgs[IC_RX_BATCH];
  struct iovec iov[IC_RX_BATCH];
  struct sockaddr_storage from[IC_RX_BATCH];

  for (int round = 0; round < 16; round++) {
    if (!c->conn || c->fd < 0)
      return 0;
    for (int i = 0; i < IC_RX_BATCH; i++) {
      iov[i].iov_base = c->rxbuf + (size_t)i * IC_RX_PKT_CAP;
      iov[i].iov_len = IC_RX_PKT_CAP;
      memset(&msgs[i], 0, sizeof(msgs[i]));
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(c->fd, msgs, IC_RX_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK)
        return 0;
      if (e == EINTR)
        continue;
      char as[80];
      addr_str(&c->remote, as, sizeof(as));
      ic_conn_teardown(c);
      if (e == ECONNREFUSED)
        return ic_fail(c, ISSUN_ERR_REFUSED,
                       "connection refused by %s (no server listening on that UDP port?)", as);
      return ic_fail(c, ISSUN_ERR_SOCKET, "receiving from %s: %s", as, strerror(e));
    }
    uint64_t ts = ic_now_ns();
    c->st.packets_received += (uint64_t)n;
    for (int i = 0; i < n; i++) {
      if (!c->conn)
        return 0;
      if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
        continue;
      ngtcp2_path path = {
          .local = {(struct sockaddr *)&c->local, c->local_len},
          .remote = {(struct sockaddr *)&from[i], msgs[i].msg_hdr.msg_namelen},
          .user_data = NULL,
      };
      ngtcp2_pkt_info pi = {0};
      c->in_ngtcp2 = 1;
      int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, iov[i].iov_base, msgs[i].msg_len, ts);
      c->in_ngtcp2 = 0;
      if (rv != 0)
        return on_read_error(c, rv);
      c->rx_since_write++;
    }
    if (n < IC_RX_BATCH)
      return 0;
  }
  return 0;
}

/* ---- timers ------------------------------------------------------------ */

uint64_t ic_conn_expiry_ms(issun_client *c) {
  if (!c->conn)
    return UINT64_MAX;
  ngtcp2_tstamp e = ngtcp2_conn_get_expiry(c->conn);
  if (c->ack_hold) {
    /* A write is being held: wake when the hold ends, or for the loss
     * timer if it comes first.  Not for ngtcp2's ACK timer, which is what
     * the hold postpones (it is part of ngtcp2's expiry until handled).
     * Not later either: once ngtcp2 has handled that timer, its expiry may
     * be its idle timeout, and the held ACK would then wait for the next
     * packet in, or for the peer's PTO. */
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    e = c->ack_hold_until < st.loss_detection_timer ? c->ack_hold_until : st.loss_detection_timer;
  }
  if (e == UINT64_MAX)
    return UINT64_MAX;
  return (e + 999999u) / 1000000u;
}

int ic_conn_timer(issun_client *c, uint64_t now_ns) {
  if (!c->conn)
    return 0;
  if (ngtcp2_conn_get_expiry(c->conn) > now_ns)
    return 0;
  {
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    if (st.loss_detection_timer <= now_ns)
      c->write_now = 1;
  }
  c->in_ngtcp2 = 1;
  int rv = ngtcp2_conn_handle_expiry(c->conn, now_ns);
  c->in_ngtcp2 = 0;
  if (rv == 0)
    return 0;
  int handshaken = c->handshake_done;
  char as[80];
  addr_str(&c->remote, as, sizeof(as));
  if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
    ic_conn_teardown(c);
    if (!handshaken)
      return ic_fail(c, ISSUN_ERR_TIMEOUT, "no answer from %s (server down or UDP blocked?)", as);
    return ic_fail(c, ISSUN_ERR_TIMEOUT, "connection to %s timed out (QUIC idle timeout)", as);
  }
  close_liberr(c, rv);
  return ic_fail(c, ISSUN_ERR_QUIC, "QUIC timer error: %s", ngtcp2_strerror(rv));
}

/* ---- write pass -------------------------------------------------------- */

static int tx_flush(issun_client *c) {
  struct mmsghdr msgs[IC_TX_BATCH];
  struct iovec iov[IC_TX_BATCH];
  int off = 0;
  for (int i = 0; i < c->ntx; i++) {
    iov[i].iov_base = c->txbuf + (size_t)i * IC_PKT_CAP;
    iov[i].iov_len = c->txlen[i];
    memset(&msgs[i], 0, sizeof(msgs[i]));
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  while (off < c->ntx) {
    int n = sendmmsg(c->fd, msgs + off, (unsigned)(c->ntx - off), 0);
    if (n < 0) {
      int e = errno;
      if (e == EINTR)
        continue;
      if (e == EMSGSIZE) {
        off++; /* that packet is lost; QUIC recovers */
        continue;
      }
      c->ntx = 0;
      if (e == ECONNREFUSED) {
        char as[80];
        addr_str(&c->remote, as, sizeof(as));
        ic_conn_teardown(c);
        return ic_fail(c, ISSUN_ERR_REFUSED,
                       "connection refused by %s (no server listening on that UDP port?)", as);
      }
      /* EAGAIN, ENOBUFS, a transient ENETUNREACH...: drop, QUIC retransmits */
      return 0;
    }
    off += n;
    c->st.packets_sent += (uint64_t)n;
  }
  c->ntx = 0;
  return 0;
}

static size_t sb_vecs(issun_client *c, ngtcp2_vec *v, size_t max, size_t *total) {
  size_t n = 0;
  *total = 0;
  for (ic_chunk *k = c->sb.head; k && n < max; k = k->next) {
    uint64_t kend = k->off + k->len;
    if (kend <= c->sb.sent)
      continue;
    uint64_t start = c->sb.sent > k->off ? c->sb.sent : k->off;
    v[n].base = k->data + (start - k->off);
    v[n].len = (size_t)(kend - start);
    *total += v[n].len;
    n++;
  }
  return n;
}

static void dgq_pop(issun_client *c) {
  uint16_t len = (uint16_t)(c->dgq.p[c->dgq_head] | (c->dgq.p[c->dgq_head + 1] << 8));
  c->dgq_head += 2u + len;
  c->dgq_count--;
}

static void dgq_compact(issun_client *c) {
  if (c->dgq_count == 0) {
    c->dgq.len = 0;
    c->dgq_head = 0;
  } else if (c->dgq_head > 0) {
    memmove(c->dgq.p, c->dgq.p + c->dgq_head, c->dgq.len - c->dgq_head);
    c->dgq.len -= c->dgq_head;
    c->dgq_head = 0;
  }
}

/* Nothing of ours to send: the session is up, no stream or datagram bytes
 * wait, and fewer than IC_ACK_EVERY packets came in since the last write. */
static int app_idle(const issun_client *c) {
  if (!c->handshake_done || !c->acked || c->ntx > 0 || c->dgq_count > 0)
    return 0;
  if (c->rx_since_write >= IC_ACK_EVERY)
    return 0;
  if (c->sb.sent < c->sb.end || (c->fin_requested && !c->fin_sent))
    return 0;
  for (int i = 0; i < c->nextra; i++)
    if (!c->extra[i].done)
      return 0;
  return 1;
}

int ic_conn_write(issun_client *c) {
  c->dirty = 0;
  if (!c->conn || c->fd < 0)
    return 0;
  if (ngtcp2_conn_is_in_closing_period(c->conn) || ngtcp2_conn_is_in_draining_period(c->conn))
    return 0;
  uint64_t ts = ic_now_ns();
  /* ACK hold.  ngtcp2 0.12 acknowledges after min(max_ack_delay, srtt/8):
   * on a fast link that is a bare ACK packet for nearly every packet the
   * relay sends us, a third of all the packets it handles in a room game.
   * When we have nothing of our own to send, the write (and with it the
   * ACK) waits up to ack_hold_ns, so the ACK usually rides on our next
   * event.  Never held: after IC_ACK_EVERY packets (bulk transfers keep
   * their pace), when a loss timer fired (write_now, set in ic_conn_timer)
   * or a loss was just detected (congestion_recovery_start_ts moved: the
   * retransmission goes now).  ic_conn_expiry_ms wakes us at the end of
   * the hold, before the peer's PTO (max_ack_delay 25 ms > hold). */
  if (c->ack_hold_ns && !c->write_now && app_idle(c)) {
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(c->conn, &st);
    if (st.congestion_recovery_start_ts == c->seen_recovery_ts) {
      if (!c->ack_hold) {
        c->ack_hold = 1;
        c->ack_hold_until = ts + c->ack_hold_ns;
      }
      if (ts < c->ack_hold_until)
        return 0;
    }
    c->seen_recovery_ts = st.congestion_recovery_start_ts;
  }
  c->ack_hold = 0;
  c->write_now = 0;
  c->rx_since_write = 0;
  size_t destlen = ngtcp2_conn_get_max_tx_udp_payload_size(c->conn);
  if (destlen > IC_PKT_CAP)
    destlen = IC_PKT_CAP;
  int sb_blocked = 0;
  int extra_blocked[IC_MAX_EXTRA_STREAMS] = {0};
  int dgram_misses = 0;
  int rv = 0;

  for (int iter = 0; iter < 100000; iter++) {
    uint8_t *dest = c->txbuf + (size_t)c->ntx * IC_PKT_CAP;
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n;

    if (c->dgq_count > 0 && c->handshake_done) {
      uint8_t *p = c->dgq.p + c->dgq_head;
      ngtcp2_vec v = {p + 2, (size_t)(p[0] | (p[1] << 8))};
      int accepted = 0;
      c->in_ngtcp2 = 1;
      n = ngtcp2_conn_writev_datagram(c->conn, NULL, &pi, dest, destlen, &accepted,
                                      NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &v, 1, ts);
      c->in_ngtcp2 = 0;
      if (n == NGTCP2_ERR_WRITE_MORE) {
        dgq_pop(c);
        c->st.datagrams_sent++;
        dgram_misses = 0;
        continue;
      }
      if (n == NGTCP2_ERR_INVALID_ARGUMENT || n == NGTCP2_ERR_INVALID_STATE) {
        dgq_pop(c);
        c->st.send_refused++;
        continue;
      }
      if (n < 0) {
        close_liberr(c, (int)n);
        rv = ic_fail(c, ISSUN_ERR_QUIC, "QUIC write error: %s", ngtcp2_strerror((int)n));
        break;
      }
      if (accepted) {
        dgq_pop(c);
        c->st.datagrams_sent++;
        dgram_misses = 0;
      } else if (n > 0 && ++dgram_misses > 2) {
        dgq_pop(c); /* never fits: drop rather than spin */
        c->st.send_refused++;
        dgram_misses = 0;
      }
      if (n == 0)
        break;
      c->txlen[c->ntx++] = (size_t)n;
      if (c->ntx == IC_TX_BATCH && (rv = tx_flush(c)) != 0)
        break;
      continue;
    }

    /* stream data: the session stream first, then test streams */
    ngtcp2_vec vecs[16];
    size_t nvec = 0, total = 0;
    int64_t sid = -1;
    int extra = -1;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (c->sid >= 0 && !sb_blocked &&
        (c->sb.sent < c->sb.end || (c->fin_requested && !c->fin_sent))) {
      sid = c->sid;
      nvec = sb_vecs(c, vecs, 16, &total);
      if (c->fin_requested && !c->fin_sent && c->sb.sent + total == c->sb.end)
        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    } else {
      for (int i = 0; i < c->nextra; i++) {
        ic_extra_stream *x = &c->extra[i];
        if (x->done || extra_blocked[i])
          continue;
        sid = x->id;
        extra = i;
        vecs[0].base = x->data + x->sent;
        vecs[0].len = x->len - x->sent;
        total = vecs[0].len;
        nvec = total ? 1 : 0;
        if (x->fin)
          flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
        break;
      }
    }
    ngtcp2_ssize wlen = -1;
    c->in_ngtcp2 = 1;
    n = ngtcp2_conn_writev_stream(c->conn, NULL, &pi, dest, destlen, &wlen, flags, sid, vecs, nvec,
                                  ts);
    c->in_ngtcp2 = 0;
    if (wlen >= 0 && sid >= 0) {
      if (extra < 0) {
        c->sb.sent += (uint64_t)wlen;
        if (wlen > 0)
          c->last_tx_ms = ic_now_ms();
        if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && (size_t)wlen == total)
          c->fin_sent = 1;
      } else {
        ic_extra_stream *x = &c->extra[extra];
        x->sent += (size_t)wlen;
        if (x->sent == x->len && (!x->fin || (flags & NGTCP2_WRITE_STREAM_FLAG_FIN)))
          x->done = 1;
      }
    }
    if (n == NGTCP2_ERR_WRITE_MORE)
      continue;
    if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
        n == NGTCP2_ERR_STREAM_NOT_FOUND) {
      if (extra < 0)
        sb_blocked = 1;
      else
        extra_blocked[extra] = 1;
      continue;
    }
    if (n < 0) {
      close_liberr(c, (int)n);
      rv = ic_fail(c, ISSUN_ERR_QUIC, "QUIC write error: %s", ngtcp2_strerror((int)n));
      break;
    }
    if (n == 0)
      break;
    c->txlen[c->ntx++] = (size_t)n;
    if (c->ntx == IC_TX_BATCH && (rv = tx_flush(c)) != 0)
      break;
  }
  if (rv == 0 && c->ntx > 0)
    rv = tx_flush(c);
  if (c->conn)
    dgq_compact(c);
  return rv;
}

/* ---- datagram size, rebinding -------------------------------------------- */

size_t ic_conn_max_dgram(issun_client *c) {
  if (!c->conn || !c->handshake_done)
    return 0;
  const ngtcp2_transport_params *rp = ngtcp2_conn_get_remote_transport_params(c->conn);
  if (!rp || rp->max_datagram_frame_size == 0)
    return 0;
  /* DATAGRAM frame: type (1) + length varint (<= 2 bytes under 16384). */
  uint64_t by_frame = rp->max_datagram_frame_size > 3 ? rp->max_datagram_frame_size - 3 : 0;
  /* Short header packet: flags (1) + DCID + packet number (<= 4) + AEAD tag (16). */
  size_t pmax = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
  size_t dcid = ngtcp2_conn_get_dcid(c->conn)->datalen;
  size_t overhead = 1 + dcid + 4 + 16 + 3;
  size_t by_pkt = pmax > overhead ? pmax - overhead : 0;
  if (by_pkt > IC_DGRAM_MAX)
    by_pkt = IC_DGRAM_MAX;
  return by_frame < by_pkt ? (size_t)by_frame : by_pkt;
}

int ic_conn_rebind(issun_client *c) {
  if (!c->conn || c->fd < 0)
    return ic_fail(c, ISSUN_ERR_NOT_CONNECTED, "no connection");
  int fd = -1;
  int rv = open_socket(c, (const struct sockaddr *)&c->remote, c->remote_len, &fd);
  if (rv != 0)
    return rv;
  close(c->fd);
  c->fd = fd;
  /* ngtcp2 keeps the old local address: to it, as to a client behind a NAT
   * that rebinds, nothing changed; the server sees a new source port. */
  return 0;
}
