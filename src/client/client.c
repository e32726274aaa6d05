/*
 * libissun: the client handle — public API, connection state machine
 * (connect, reconnect with backoff and resume), the issun/1 session (HELLO,
 * ACK, heartbeats, liveness), events, rooms, and the test hooks.
 *
 * One loop turn (issun_client_poll):
 *   1. write what was queued since the last turn (so a send is not delayed
 *      by the wait);
 *   2. wait for the socket, at most the caller's timeout and the next timer;
 *   3. read every waiting datagram into ngtcp2 (frames are handled and user
 *      callbacks run from inside ngtcp2's stream/datagram callbacks);
 *   4. timers: QUIC expiry, connect deadlines, liveness, heartbeat, the
 *      reconnect backoff;
 *   5. write everything flow and congestion control allow;
 *   6. a close requested from a callback, then a free requested from a
 *      callback, happen last.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client_priv.h"

#define DEF_CONNECT_TIMEOUT_MS 10000u
#define DEF_IDLE_TIMEOUT_MS 30000u
#define DEF_HEARTBEAT_MS 5000u
#define DEF_SEND_BUFFER (4u * 1024u * 1024u)
#define DEF_DGRAM_QUEUE 256u
#define DEF_OFFLINE_EVENTS 1024u
#define DEF_OFFLINE_BYTES (1024u * 1024u)
#define DEF_RECONNECT_MIN_MS 200u
#define DEF_RECONNECT_MAX_MS 10000u
#define DEF_ACK_DELAY_MS 10
#define MAX_ACK_DELAY_MS 20 /* below the 25 ms max_ack_delay we advertise */
#define MIN_ADDR_TIMEOUT_MS 1000u

static void process(issun_client *c);

/* ---- small helpers ------------------------------------------------------- */

static char *dupstr(const char *s, int *oom) {
  if (!s)
    return NULL;
  size_t n = strlen(s);
  char *p = malloc(n + 1);
  if (!p) {
    *oom = 1;
    return NULL;
  }
  memcpy(p, s, n + 1);
  return p;
}

static int utf8_ok(const char *s, size_t n) {
  return pr_utf8_valid((const uint8_t *)s, n);
}

/* Copies the current error sentence into close_info.reason (truncated). */
static void keep_reason(issun_client *c) {
  size_t n = strnlen(c->err, sizeof(c->close.reason) - 1);
  memcpy(c->close.reason, c->err, n);
  c->close.reason[n] = 0;
}

static void set_state(issun_client *c, issun_state st, int err) {
  c->state = st;
  IC_CALLBACK(c, on_state, st, err);
}

static uint32_t rand_u32(void) {
  uint32_t v = 0;
  if (gnutls_rnd(GNUTLS_RND_NONCE, &v, sizeof(v)) != 0)
    v = (uint32_t)ic_now_ns();
  return v;
}

static uint32_t frame_limit(const issun_client *c) {
  return c->max_frame_payload ? c->max_frame_payload : PR_DEFAULT_MAX_FRAME_PAYLOAD;
}

static uint32_t recv_limit(const issun_client *c) {
  uint32_t l = frame_limit(c);
  return l < PR_DEFAULT_MAX_FRAME_PAYLOAD ? PR_DEFAULT_MAX_FRAME_PAYLOAD : l;
}

/* Releases everything a wait or a callback may hold from the last turn. */
static void release_held(issun_client *c) {
  c->held = -1;
}

static void fail_pending_requests(issun_client *c) {
  c->pend_head = 0;
  c->pend_count = 0;
  if (c->wait_active)
    c->wait_lost = 1;
}

/* ---- settings, new, free -------------------------------------------------- */

ISSUN_API int issun_client_settings_default(issun_client_settings *s) {
  if (!s)
    return ISSUN_ERR_INVALID_ARG;
  memset(s, 0, sizeof(*s));
  s->connect_timeout_ms = DEF_CONNECT_TIMEOUT_MS;
  s->idle_timeout_ms = DEF_IDLE_TIMEOUT_MS;
  s->heartbeat_ms = DEF_HEARTBEAT_MS;
  s->enable_datagrams = 1;
  s->send_buffer_bytes = DEF_SEND_BUFFER;
  s->max_datagram_queue = DEF_DGRAM_QUEUE;
  s->offline_queue_events = DEF_OFFLINE_EVENTS;
  s->offline_queue_bytes = DEF_OFFLINE_BYTES;
  s->reconnect = 1;
  s->reconnect_min_ms = DEF_RECONNECT_MIN_MS;
  s->reconnect_max_ms = DEF_RECONNECT_MAX_MS;
  s->reconnect_max_attempts = 0;
  s->ack_delay_ms = DEF_ACK_DELAY_MS;
  return 0;
}

static int errout(char *err, size_t errlen, int rv, const char *msg) {
  if (err && errlen)
    snprintf(err, errlen, "%s", msg);
  return rv;
}

static void free_strings(issun_client *c) {
  free(c->name);
  free(c->token);
  free(c->ca_file);
  free(c->pin);
  free(c->server_name);
  free(c->host);
}

ISSUN_API int issun_client_new_ex(issun_client **out, const issun_client_settings *settings,
                                  const issun_client_callbacks *callbacks, void *user_data,
                                  char *err, size_t errlen) {
  if (err && errlen)
    err[0] = 0;
  if (!out)
    return errout(err, errlen, ISSUN_ERR_INVALID_ARG, "out is NULL");
  *out = NULL;
  issun_client_settings s;
  if (settings)
    s = *settings;
  else
    issun_client_settings_default(&s);

  if (s.name && (strlen(s.name) > ISSUN_MAX_NAME_LEN || !utf8_ok(s.name, strlen(s.name))))
    return errout(err, errlen, ISSUN_ERR_INVALID_ARG,
                  "settings.name must be valid UTF-8 of at most 64 bytes");
  if (s.token && !utf8_ok(s.token, strlen(s.token)))
    return errout(err, errlen, ISSUN_ERR_INVALID_ARG, "settings.token must be valid UTF-8");
  if (s.enable_datagrams != 0 && s.enable_datagrams != 1)
    return errout(err, errlen, ISSUN_ERR_INVALID_ARG, "settings.enable_datagrams must be 0 or 1");
  if (s.reconnect != 0 && s.reconnect != 1)
    return errout(err, errlen, ISSUN_ERR_INVALID_ARG, "settings.reconnect must be 0 or 1");
  if (s.connect_timeout_ms == 0)
    s.connect_timeout_ms = DEF_CONNECT_TIMEOUT_MS;
  if (s.idle_timeout_ms == 0)
    s.idle_timeout_ms = DEF_IDLE_TIMEOUT_MS;
  if (s.heartbeat_ms == 0)
    s.heartbeat_ms = DEF_HEARTBEAT_MS;
  if (s.send_buffer_bytes == 0)
    s.send_buffer_bytes = DEF_SEND_BUFFER;
  if (s.max_datagram_queue == 0)
    s.max_datagram_queue = DEF_DGRAM_QUEUE;
  if (s.reconnect_min_ms == 0)
    s.reconnect_min_ms = DEF_RECONNECT_MIN_MS;
  if (s.reconnect_max_ms == 0)
    s.reconnect_max_ms = DEF_RECONNECT_MAX_MS;
  if (s.reconnect_min_ms > s.reconnect_max_ms)
    return errout(err, errlen, ISSUN_ERR_INVALID_ARG,
                  "settings.reconnect_min_ms is above reconnect_max_ms");
  if (s.ack_delay_ms == 0)
    s.ack_delay_ms = DEF_ACK_DELAY_MS;
  if (s.ack_delay_ms < -1 || s.ack_delay_ms > MAX_ACK_DELAY_MS)
    return errout(err, errlen, ISSUN_ERR_INVALID_ARG,
                  "settings.ack_delay_ms must be -1 (off), 0 (default) or 1..20");
  if (s.connect_timeout_ms > INT_MAX || s.idle_timeout_ms > INT_MAX ||
      s.heartbeat_ms > INT_MAX / 3 || s.reconnect_max_ms > INT_MAX)
    return errout(err, errlen, ISSUN_ERR_INVALID_ARG, "a timeout setting is too large");

  issun_client *c = calloc(1, sizeof(*c));
  if (!c)
    return errout(err, errlen, ISSUN_ERR_NOMEM, "out of memory");
  c->fd = -1;
  c->sid = -1;
  c->ack_hold_ns = s.ack_delay_ms > 0 ? (uint64_t)s.ack_delay_ms * 1000000u : 0;
  c->last = -1;
  c->held = -1;
  int oom = 0;
  c->name = dupstr(s.name, &oom);
  c->token = dupstr(s.token, &oom);
  c->ca_file = dupstr(s.ca_file, &oom);
  c->pin = dupstr(s.pin_sha256, &oom);
  c->server_name = dupstr(s.server_name, &oom);
  c->txbuf = malloc((size_t)IC_TX_BATCH * IC_PKT_CAP);
  c->rxbuf = malloc((size_t)IC_RX_BATCH * IC_RX_PKT_CAP);
  if (oom || !c->txbuf || !c->rxbuf) {
    free_strings(c);
    free(c->txbuf);
    free(c->rxbuf);
    free(c);
    return errout(err, errlen, ISSUN_ERR_NOMEM, "out of memory");
  }
  s.name = c->name;
  s.token = c->token;
  s.ca_file = c->ca_file;
  s.pin_sha256 = c->pin;
  s.server_name = c->server_name;
  c->s = s;
  if (callbacks)
    c->cb = *callbacks;
  c->ud = user_data;
  c->node_id = s.node_id;

  iq_tls_client_opts o = {.ca_file = c->ca_file, .pin_sha256 = c->pin, .insecure = s.insecure};
  char why[256];
  why[0] = 0;
  if (iq_tls_client_new(&c->tls, &o, why, sizeof(why)) != 0) {
    char msg[320];
    snprintf(msg, sizeof(msg), "TLS setup: %s", why[0] ? why : "failed");
    free_strings(c);
    free(c->txbuf);
    free(c->rxbuf);
    free(c);
    return errout(err, errlen, ISSUN_ERR_CERT, msg);
  }
  *out = c;
  return 0;
}

ISSUN_API int issun_client_new(issun_client **out, const issun_client_settings *settings,
                               const issun_client_callbacks *callbacks, void *user_data) {
  return issun_client_new_ex(out, settings, callbacks, user_data, NULL, 0);
}

static void really_free(issun_client *c) {
  if (c->conn)
    ic_conn_close(c, 1, PR_E_NO_ERROR, "client freed");
  ic_conn_teardown(c);
  if (c->bus)
    issun_bus__client_gone(c->bus);
  ic_sb_free(c);
  ic_bytes_free(&c->dgq);
  ic_bytes_free(&c->offline);
  ic_bytes_free(&c->rx);
  ic_bytes_free(&c->rarena[0]);
  ic_bytes_free(&c->rarena[1]);
  if (c->tls)
    iq_tls_client_free(c->tls);
  free_strings(c);
  free(c->txbuf);
  free(c->rxbuf);
  free(c);
}

ISSUN_API void issun_client_free(issun_client *c) {
  if (!c)
    return;
  if (c->cb_depth > 0) {
    c->free_pending = 1;
    return;
  }
  really_free(c);
}

/* At the end of a public call that may have run callbacks: a free asked for
 * inside a callback happens now.  Returns 1 when c is gone. */
static int settle(issun_client *c) {
  if (c->free_pending && c->cb_depth == 0) {
    really_free(c);
    return 1;
  }
  return 0;
}

/* ---- connection attempts ---------------------------------------------------- */

static int resolve(issun_client *c) {
  struct addrinfo hints, *res = NULL;
  char port[8];
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_protocol = IPPROTO_UDP;
  snprintf(port, sizeof(port), "%u", (unsigned)c->port);
  int rv = getaddrinfo(c->host, port, &hints, &res);
  if (rv != 0)
    return ic_fail(c, ISSUN_ERR_RESOLVE, "cannot resolve %s: %s", c->host, gai_strerror(rv));
  c->naddrs = 0;
  for (struct addrinfo *a = res; a && c->naddrs < IC_MAX_ADDRS; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
      continue;
    if (a->ai_addrlen > sizeof(struct sockaddr_storage))
      continue;
    memcpy(&c->addrs[c->naddrs], a->ai_addr, a->ai_addrlen);
    c->addrlens[c->naddrs] = (socklen_t)a->ai_addrlen;
    c->naddrs++;
  }
  freeaddrinfo(res);
  if (c->naddrs == 0)
    return ic_fail(c, ISSUN_ERR_RESOLVE, "%s has no IPv4 or IPv6 address", c->host);
  return 0;
}

/* Starts the handshake on addrs[addr_idx], moving on to the next address
 * while sockets cannot even be opened. */
static int attempt_addr(issun_client *c) {
  int rv = ISSUN_ERR_SOCKET;
  while (c->addr_idx < c->naddrs) {
    uint64_t now = ic_now_ms();
    int left = c->naddrs - c->addr_idx;
    uint64_t per = c->s.connect_timeout_ms;
    if (left > 1) {
      per = c->s.connect_timeout_ms / (uint64_t)c->naddrs;
      if (per < MIN_ADDR_TIMEOUT_MS)
        per = MIN_ADDR_TIMEOUT_MS;
    }
    c->addr_deadline = now + per;
    if (c->addr_deadline > c->attempt_deadline)
      c->addr_deadline = c->attempt_deadline;
    rv = ic_conn_open(c);
    if (rv == 0) {
      c->last_rx_ms = now;
      c->dirty = 1;
      return 0;
    }
    c->addr_idx++;
  }
  return rv;
}

/* Replaces the owned token; 0 or ISSUN_ERR_NOMEM. */
static int replace_token(issun_client *c, const char *token) {
  char *t = NULL;
  if (token) {
    size_t n = strlen(token);
    t = malloc(n + 1);
    if (!t)
      return ISSUN_ERR_NOMEM;
    memcpy(t, token, n + 1);
  }
  if (c->token) {
    volatile char *p = c->token; /* do not leave old credentials in freed memory */
    for (size_t i = 0; p[i]; i++)
      p[i] = 0;
  }
  free(c->token);
  c->token = t;
  c->s.token = t;
  return 0;
}

ISSUN_API int issun_client_set_token(issun_client *c, const char *token) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (token && !utf8_ok(token, strlen(token)))
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "set_token: the token must be valid UTF-8");
  if (replace_token(c, token) != 0)
    return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
  return 0;
}

/* Asks the get_token callback (when set) for this attempt's token. */
static int fetch_token(issun_client *c) {
  if (!c->cb.get_token)
    return 0;
  c->cb_depth++;
  const char *t = c->cb.get_token(c, c->ud);
  int rv = 0;
  if (!t || !utf8_ok(t, strlen(t))) {
    c->token_none = 1;
    rv = ic_fail(c, ISSUN_ERR_UNAUTHORIZED, "the get_token callback gave %s",
                 t ? "a token that is not UTF-8" : "no token");
  } else if (replace_token(c, t) != 0) {
    rv = ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
  }
  c->cb_depth--;
  return rv;
}

static int attempt_begin(issun_client *c) {
  /* close_info describes the latest connection: forget the previous one's */
  c->close.has_server_error = 0;
  c->close.server_error_code = 0;
  c->close.server_error_message[0] = 0;
  c->close.has_close = 0;
  c->close.close_is_app = 0;
  c->close.close_code = 0;
  c->close.close_reason[0] = 0;
  c->token_none = 0;
  int rv = fetch_token(c);
  if (rv != 0)
    return rv;
  rv = resolve(c);
  if (rv != 0)
    return rv;
  c->addr_idx = 0;
  c->attempt_deadline = ic_now_ms() + c->s.connect_timeout_ms;
  return attempt_addr(c);
}

static void schedule_reconnect(issun_client *c) {
  uint64_t d = c->s.reconnect_min_ms;
  for (uint32_t i = 0; i < c->attempt_no && d < c->s.reconnect_max_ms; i++)
    d *= 2;
  if (d > c->s.reconnect_max_ms)
    d = c->s.reconnect_max_ms;
  /* full jitter in [d/2, d] */
  uint64_t half = d / 2;
  d = half + (half ? rand_u32() % (half + 1) : 0);
  c->next_attempt_ms = ic_now_ms() + d;
  c->attempt_no++;
}

/* The current connection is gone (already torn down) with err; the reason
 * is in c->err.  Decides what comes next: another address, a reconnect, or
 * the end. */
static void on_conn_gone(issun_client *c, int err) {
  if (c->conn || c->fd >= 0)
    ic_conn_teardown(c);
  c->close.error = err;
  keep_reason(c);
  issun_state st = c->state;
  if (st == ISSUN_STATE_IDLE || st == ISSUN_STATE_FAILED)
    return;

  /* Before a handshake completed, an unreachable address is not the end:
   * try the next one. */
  if ((st == ISSUN_STATE_CONNECTING || st == ISSUN_STATE_RECONNECTING) && !c->attempt_handshaken &&
      (err == ISSUN_ERR_REFUSED || err == ISSUN_ERR_SOCKET || err == ISSUN_ERR_TIMEOUT) &&
      c->addr_idx + 1 < c->naddrs && ic_now_ms() < c->attempt_deadline) {
    c->addr_idx++;
    char prev[IC_ERR_LEN];
    memcpy(prev, c->err, sizeof(prev));
    if (attempt_addr(c) == 0)
      return;
    memcpy(c->err, prev, sizeof(prev));
  }

  if (st == ISSUN_STATE_CONNECTED) {
    ic_sb_salvage(c);
    ic_sb_clear(c);
    fail_pending_requests(c);
    c->acked = 0;
    /* A session we finished ourselves (FIN) is over: no reconnect. */
    if (c->s.reconnect && !ic_err_is_fatal(err) && !c->fin_requested) {
      c->attempt_no = 0;
      schedule_reconnect(c);
      set_state(c, ISSUN_STATE_RECONNECTING, err);
    } else {
      set_state(c, ISSUN_STATE_FAILED, err);
    }
    return;
  }
  ic_sb_clear(c);
  if (st == ISSUN_STATE_RECONNECTING) {
    /* With a token callback, a refused token may be replaced next time. */
    int token_retry = err == ISSUN_ERR_UNAUTHORIZED && c->cb.get_token && !c->token_none;
    if (ic_err_is_fatal(err) && !token_retry) {
      set_state(c, ISSUN_STATE_FAILED, err);
    } else if (c->s.reconnect_max_attempts && c->attempt_no >= c->s.reconnect_max_attempts) {
      char prev[IC_ERR_LEN];
      memcpy(prev, c->err, sizeof(prev));
      ic_seterr(c, "gave up reconnecting after %u attempts; last: %s", c->attempt_no, prev);
      keep_reason(c);
      set_state(c, ISSUN_STATE_FAILED, err);
    } else {
      schedule_reconnect(c);
      /* still RECONNECTING: no state change to report */
    }
    return;
  }
  /* CONNECTING: a first connect is not retried */
  fail_pending_requests(c);
  set_state(c, ISSUN_STATE_FAILED, err);
}

static void do_close(issun_client *c) {
  c->close_pending = 0;
  issun_state prev = c->state;
  if (c->conn) {
    ic_conn_write(c);
    if (c->conn)
      ic_conn_close(c, 1, PR_E_NO_ERROR, "closed by the application");
  }
  ic_conn_teardown(c);
  ic_sb_clear(c);
  c->offline.len = 0;
  c->offline_count = 0;
  c->st.offline_queued = 0;
  fail_pending_requests(c);
  c->acked = 0;
  c->room_id = 0;
  c->room_host = 0;
  if (prev != ISSUN_STATE_IDLE)
    set_state(c, ISSUN_STATE_IDLE, 0);
}

/* ---- connect, close, poll ------------------------------------------------- */

static int start_connect(issun_client *c, const char *host, uint16_t port) {
  if (!c || !host || !host[0] || port == 0) {
    if (c)
      ic_seterr(c, "connect: host must be a non-empty string and port non-zero");
    return ISSUN_ERR_INVALID_ARG;
  }
  if (c->cb_depth > 0)
    return ic_fail(c, ISSUN_ERR_IN_CALLBACK, "connect is not allowed inside a callback");
  if (c->state != ISSUN_STATE_IDLE && c->state != ISSUN_STATE_FAILED)
    return ic_fail(c, ISSUN_ERR_STATE, "connect: already connecting or connected");
  size_t hl = strlen(host);
  char *h = malloc(hl + 1);
  if (!h)
    return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
  memcpy(h, host, hl + 1);
  free(c->host);
  c->host = h;
  c->port = port;
  memset(&c->close, 0, sizeof(c->close));
  c->err[0] = 0;
  c->attempt_no = 0;
  c->state = ISSUN_STATE_CONNECTING;
  int rv = attempt_begin(c);
  if (rv != 0) {
    c->close.error = rv;
    keep_reason(c);
    c->state = ISSUN_STATE_FAILED;
    set_state(c, ISSUN_STATE_FAILED, rv);
    return rv;
  }
  set_state(c, ISSUN_STATE_CONNECTING, 0);
  return 0;
}

ISSUN_API int issun_client_connect_async(issun_client *c, const char *host, uint16_t port) {
  int rv = start_connect(c, host, port);
  if (rv == 0 && c->conn) {
    int w = ic_conn_write(c); /* the first Initial goes out now */
    if (w != 0)
      on_conn_gone(c, w);
  }
  if (c)
    settle(c);
  return rv;
}

static int next_timer_ms(const issun_client *c, uint64_t now) {
  uint64_t t = UINT64_MAX;
  if (c->conn) {
    uint64_t e = ic_conn_expiry_ms((issun_client *)c);
    if (e < t)
      t = e;
    if (!c->acked && (c->state == ISSUN_STATE_CONNECTING || c->state == ISSUN_STATE_RECONNECTING)) {
      if (!c->attempt_handshaken && c->addr_deadline < t)
        t = c->addr_deadline;
      if (!(c->skip_hello && c->attempt_handshaken) && c->attempt_deadline < t)
        t = c->attempt_deadline;
    }
    if (c->acked && c->state == ISSUN_STATE_CONNECTED && !c->stop_hb) {
      uint64_t hb = c->last_tx_ms + c->hb_ms;
      uint64_t live = c->last_rx_ms + 3u * (uint64_t)c->hb_ms;
      if (hb < t)
        t = hb;
      if (live < t)
        t = live;
    }
  } else if (c->state == ISSUN_STATE_RECONNECTING) {
    if (c->next_attempt_ms < t)
      t = c->next_attempt_ms;
  }
  if (c->close_pending || (c->dirty && c->conn))
    return 0;
  if (t == UINT64_MAX)
    return -1;
  if (t <= now)
    return 0;
  uint64_t d = t - now;
  return d > INT_MAX ? INT_MAX : (int)d;
}

static void queue_heartbeat(issun_client *c, uint64_t now) {
  uint8_t *p = ic_sb_reserve(c, PR_HDR_LEN + 8);
  if (!p)
    return;
  size_t n = pr_enc_heartbeat(p, PR_HDR_LEN + 8, issun__unix_ms());
  if (n)
    ic_sb_commit(c, n);
  c->last_tx_ms = now;
  c->dirty = 1;
}

static void timers(issun_client *c) {
  uint64_t now_ns = ic_now_ns();
  uint64_t now = now_ns / 1000000u;
  if (c->conn) {
    int rv = ic_conn_timer(c, now_ns);
    if (rv != 0) {
      on_conn_gone(c, rv);
      return;
    }
  }
  if (c->conn && !c->acked &&
      (c->state == ISSUN_STATE_CONNECTING || c->state == ISSUN_STATE_RECONNECTING)) {
    if (!c->attempt_handshaken && now >= c->addr_deadline) {
      ic_conn_teardown(c);
      ic_seterr(c, "no answer from %s:%u (server down or UDP blocked?)", c->host,
                (unsigned)c->port);
      on_conn_gone(c, ISSUN_ERR_TIMEOUT);
      return;
    }
    if (!(c->skip_hello && c->attempt_handshaken) && now >= c->attempt_deadline) {
      int handshaken = c->attempt_handshaken;
      ic_conn_close(c, 1, PR_E_NO_ERROR, "connect timeout");
      if (handshaken)
        ic_seterr(c, "the server did not answer HELLO within %u ms", c->s.connect_timeout_ms);
      else
        ic_seterr(c, "no answer from %s:%u within %u ms (server down or UDP blocked?)", c->host,
                  (unsigned)c->port, c->s.connect_timeout_ms);
      on_conn_gone(c, ISSUN_ERR_TIMEOUT);
      return;
    }
  }
  if (c->conn && c->acked && c->state == ISSUN_STATE_CONNECTED && !c->stop_hb) {
    if (now >= c->last_rx_ms + 3u * (uint64_t)c->hb_ms) {
      ic_conn_close(c, 1, PR_E_TIMEOUT, "peer silent");
      ic_seterr(c, "nothing received from the server for %u ms (3 heartbeats): connection dead",
                3u * c->hb_ms);
      on_conn_gone(c, ISSUN_ERR_TIMEOUT);
      return;
    }
    if (now >= c->last_tx_ms + c->hb_ms)
      queue_heartbeat(c, now);
  }
  if (!c->conn && c->state == ISSUN_STATE_RECONNECTING && now >= c->next_attempt_ms) {
    c->st.reconnect_attempts++;
    int rv = attempt_begin(c);
    if (rv != 0)
      on_conn_gone(c, rv);
  }
}

static void process(issun_client *c) {
  if (c->conn) {
    int rv = ic_conn_read(c);
    if (rv != 0)
      on_conn_gone(c, rv);
  }
  if (c->close_pending) {
    do_close(c);
    return;
  }
  timers(c);
  if (c->close_pending) {
    do_close(c);
    return;
  }
  if (c->conn) {
    int rv = ic_conn_write(c);
    if (rv != 0)
      on_conn_gone(c, rv);
  }
  if (c->close_pending)
    do_close(c);
}

/* One turn: write what is queued, wait (at most timeout_ms, -1 = until the
 * next timer), then read, run timers and write. */
static void poll_once(issun_client *c, int timeout_ms) {
  if (c->conn && c->dirty) {
    int rv = ic_conn_write(c);
    if (rv != 0)
      on_conn_gone(c, rv);
  }
  int wait = timeout_ms;
  if (wait != 0) { /* poll(c, 0), an engine's per-frame call, has no use for the timers */
    int t = next_timer_ms(c, ic_now_ms());
    if (t >= 0 && (wait < 0 || t < wait))
      wait = t;
  }
  if (wait != 0) {
    if (wait < 0)
      wait = 1000; /* only when a socket exists: see issun_client_poll */
    struct pollfd p = {.fd = c->fd, .events = POLLIN, .revents = 0};
    if (c->fd >= 0)
      (void)poll(&p, 1, wait);
    else
      (void)poll(NULL, 0, wait);
  }
  process(c);
}

ISSUN_API int issun_client_poll(issun_client *c, int timeout_ms) {
  if (!c || timeout_ms < -1) {
    if (c)
      ic_seterr(c, "poll: timeout_ms must be -1 or more");
    return ISSUN_ERR_INVALID_ARG;
  }
  if (c->cb_depth > 0)
    return ic_fail(c, ISSUN_ERR_IN_CALLBACK, "poll is not allowed inside a callback");
  release_held(c);
  if (timeout_ms == -1 && c->fd < 0 && next_timer_ms(c, ic_now_ms()) < 0)
    return ic_fail(c, ISSUN_ERR_STATE, "poll(-1) with nothing to wait for (not connected)");
  poll_once(c, timeout_ms);
  settle(c);
  return 0;
}

ISSUN_API int issun_client_run_for(issun_client *c, int duration_ms) {
  if (!c || duration_ms < 0)
    return ISSUN_ERR_INVALID_ARG;
  if (c->cb_depth > 0)
    return ic_fail(c, ISSUN_ERR_IN_CALLBACK, "run_for is not allowed inside a callback");
  release_held(c);
  uint64_t end = ic_now_ms() + (uint64_t)duration_ms;
  for (;;) {
    uint64_t now = ic_now_ms();
    int left = now >= end ? 0 : (int)(end - now);
    poll_once(c, left);
    if (settle(c))
      return ISSUN_ERR_CLOSED;
    if (left == 0)
      return 0;
  }
}

ISSUN_API int issun_client_connect(issun_client *c, const char *host, uint16_t port) {
  int rv = start_connect(c, host, port);
  if (rv != 0) {
    if (c && settle(c))
      return rv;
    return rv;
  }
  for (;;) {
    if (c->free_pending) {
      settle(c);
      return ISSUN_ERR_CLOSED;
    }
    if (c->state == ISSUN_STATE_CONNECTED)
      return 0;
    if (c->state == ISSUN_STATE_FAILED)
      return c->close.error ? c->close.error : ISSUN_ERR_CLOSED;
    if (c->state == ISSUN_STATE_IDLE)
      return ic_fail(c, ISSUN_ERR_CLOSED, "closed while connecting");
    if (c->skip_hello && c->attempt_handshaken)
      return 0;
    poll_once(c, 100);
  }
}

ISSUN_API int issun_client_close(issun_client *c) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (c->cb_depth > 0) {
    c->close_pending = 1;
    return 0;
  }
  do_close(c);
  settle(c);
  return 0;
}

ISSUN_API int issun_client_fd(const issun_client *c) {
  if (!c)
    return -1;
  return c->fd;
}

ISSUN_API int issun_client_timeout_ms(const issun_client *c) {
  if (!c)
    return -1;
  return next_timer_ms(c, ic_now_ms());
}

ISSUN_API int issun_client_flush(issun_client *c, int timeout_ms) {
  if (!c || timeout_ms < -1)
    return ISSUN_ERR_INVALID_ARG;
  if (c->cb_depth > 0)
    return ic_fail(c, ISSUN_ERR_IN_CALLBACK, "flush is not allowed inside a callback");
  release_held(c);
  uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : ic_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    if (c->state != ISSUN_STATE_CONNECTED)
      return ic_fail(c, ISSUN_ERR_NOT_CONNECTED, "flush: not connected");
    if (ic_sb_queued(c) == 0 && c->dgq_count == 0)
      return 0;
    uint64_t now = ic_now_ms();
    if (now >= deadline)
      return ic_fail(c, ISSUN_ERR_TIMEOUT, "flush: timed out");
    uint64_t left = deadline - now;
    poll_once(c, left > 100 ? 100 : (int)left);
    if (settle(c))
      return ISSUN_ERR_CLOSED;
  }
}

/* ---- getters ------------------------------------------------------------- */

ISSUN_API issun_state issun_client_state(const issun_client *c) {
  return c ? c->state : ISSUN_STATE_IDLE;
}

ISSUN_API uint64_t issun_client_node_id(const issun_client *c) {
  return c && c->had_session ? c->node_id : 0;
}

ISSUN_API uint64_t issun_client_room_id(const issun_client *c) {
  return c ? c->room_id : 0;
}

ISSUN_API uint64_t issun_client_room_host(const issun_client *c) {
  return c ? c->room_host : 0;
}

ISSUN_API const char *issun_client_last_error(const issun_client *c) {
  return c ? c->err : "invalid argument";
}

ISSUN_API int issun_client_session_info(const issun_client *c, issun_session_info *out) {
  if (!c || !out)
    return ISSUN_ERR_INVALID_ARG;
  *out = c->info;
  if (c->acked && c->conn) {
    size_t m = ic_conn_max_dgram((issun_client *)c);
    out->datagrams = m > 0;
    out->max_datagram_payload = m;
  }
  return 0;
}

ISSUN_API int issun_client_close_info(const issun_client *c, issun_close_info *out) {
  if (!c || !out)
    return ISSUN_ERR_INVALID_ARG;
  *out = c->close;
  return 0;
}

ISSUN_API int issun_client_stats_get(const issun_client *c, issun_client_stats *out) {
  if (!c || !out)
    return ISSUN_ERR_INVALID_ARG;
  *out = c->st;
  out->bytes_queued = ic_sb_queued(c);
  out->offline_queued = c->offline_count;
  return 0;
}

/* ---- sending -------------------------------------------------------------- */

static int valid_scope(int scope) {
  return scope == ISSUN_SCOPE_BROADCAST || scope == ISSUN_SCOPE_TO_SERVER ||
         scope == ISSUN_SCOPE_TARGETED;
}

int issun_client__send_meta(issun_client *c, const char *type_name, size_t tn_len,
                            issun_scope scope, uint64_t target, issun_delivery delivery,
                            const void *payload, size_t plen, issun_event_meta *meta) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (!type_name || tn_len == 0 || tn_len > ISSUN_MAX_TYPE_NAME_LEN)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: type name must be 1..256 bytes");
  if (!utf8_ok(type_name, tn_len))
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: type name is not valid UTF-8");
  if (!valid_scope((int)scope))
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: bad scope");
  if (scope == ISSUN_SCOPE_TARGETED && target == 0)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: a targeted event needs a non-zero target");
  if (delivery != ISSUN_RELIABLE && delivery != ISSUN_UNRELIABLE)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: bad delivery");
  if (!payload && plen > 0)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: payload is NULL");
  if (c->state == ISSUN_STATE_IDLE || c->state == ISSUN_STATE_FAILED)
    return ic_fail(c, ISSUN_ERR_NOT_CONNECTED, "send: not connected");

  size_t body = 8 + 8 + 8 + 4 + (scope == ISSUN_SCOPE_TARGETED ? 8 : 0) + 8 + tn_len + 8 + plen;
  if (body > frame_limit(c) || plen > SIZE_MAX / 2) {
    c->st.send_refused++;
    return ic_fail(c, ISSUN_ERR_TOO_LARGE, "send: event of %zu bytes is over the frame limit %u",
                   body, frame_limit(c));
  }
  size_t fsz = PR_HDR_LEN + body;
  pr_event e;
  memset(&e, 0, sizeof(e));
  e.sender = c->had_session ? c->node_id : 0;
  e.timestamp = issun__unix_ms();
  e.sequence = c->seq + 1;
  e.scope = (uint32_t)scope;
  e.target = scope == ISSUN_SCOPE_TARGETED ? target : 0;
  e.type_name.ptr = (const uint8_t *)type_name;
  e.type_name.len = tn_len;
  e.payload.ptr = payload;
  e.payload.len = plen;

  if (delivery == ISSUN_UNRELIABLE) {
    if (c->state != ISSUN_STATE_CONNECTED || !c->acked) {
      c->st.send_refused++;
      return ic_fail(c, ISSUN_ERR_NOT_CONNECTED,
                     "send: unreliable events need a live session (they are not queued)");
    }
    size_t maxd = ic_conn_max_dgram(c);
    if (maxd == 0) {
      c->st.send_refused++;
      return ic_fail(c, ISSUN_ERR_NO_DATAGRAM, "send: the server does not accept DATAGRAMs");
    }
    if (fsz > maxd) {
      c->st.send_refused++;
      return ic_fail(c, ISSUN_ERR_TOO_LARGE,
                     "send: unreliable event of %zu bytes does not fit one DATAGRAM (max %zu)", fsz,
                     maxd);
    }
    if (c->dgq_count >= c->s.max_datagram_queue) {
      c->st.send_refused++;
      return ic_fail(c, ISSUN_ERR_QUEUE_FULL, "send: datagram queue full");
    }
    if (ic_bytes_reserve(&c->dgq, 2 + fsz) != 0)
      return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
    uint8_t *p = c->dgq.p + c->dgq.len;
    size_t n = pr_enc_event(p + 2, fsz, &e);
    if (n != fsz)
      return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: cannot encode the event");
    p[0] = (uint8_t)(n & 0xff);
    p[1] = (uint8_t)(n >> 8);
    c->dgq.len += 2 + n;
    c->dgq_count++;
  } else if (c->state == ISSUN_STATE_CONNECTED && c->acked) {
    if (c->fin_requested)
      return ic_fail(c, ISSUN_ERR_STATE, "send: the session stream was finished");
    if (ic_sb_queued(c) + fsz > c->s.send_buffer_bytes) {
      c->st.send_refused++;
      return ic_fail(c, ISSUN_ERR_QUEUE_FULL,
                     "send: send buffer full (%zu bytes unacknowledged, bound %zu)",
                     ic_sb_queued(c), c->s.send_buffer_bytes);
    }
    uint8_t *p = ic_sb_reserve(c, fsz);
    if (!p)
      return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
    size_t n = pr_enc_event(p, fsz, &e);
    if (n != fsz)
      return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: cannot encode the event");
    ic_sb_commit(c, n);
  } else {
    if (c->offline_count >= c->s.offline_queue_events ||
        c->offline.len + fsz > c->s.offline_queue_bytes) {
      c->st.offline_dropped++;
      c->st.send_refused++;
      return ic_fail(c, ISSUN_ERR_QUEUE_FULL,
                     "send: offline queue full (%zu events, %zu bytes) while disconnected",
                     c->offline_count, c->offline.len);
    }
    if (ic_bytes_reserve(&c->offline, fsz) != 0)
      return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
    size_t n = pr_enc_event(c->offline.p + c->offline.len, fsz, &e);
    if (n != fsz)
      return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: cannot encode the event");
    c->offline.len += n;
    c->offline_count++;
    c->st.offline_queued = c->offline_count;
  }
  c->seq++;
  c->st.events_sent++;
  c->dirty = 1;
  if (meta) {
    meta->sender = e.sender;
    meta->timestamp_ms = e.timestamp;
    meta->sequence = e.sequence;
    meta->scope = scope;
    meta->target = e.target;
    meta->reliable = delivery == ISSUN_RELIABLE;
    meta->local = 1;
  }
  return 0;
}

ISSUN_API int issun_client_send(issun_client *c, const char *type_name, issun_scope scope,
                                uint64_t target, issun_delivery delivery, const void *payload,
                                size_t payload_len, uint64_t *sequence_out) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (!type_name)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "send: type name is NULL");
  issun_event_meta m;
  size_t tl = strnlen(type_name, ISSUN_MAX_TYPE_NAME_LEN + 1);
  int rv =
      issun_client__send_meta(c, type_name, tl, scope, target, delivery, payload, payload_len, &m);
  if (rv == 0 && sequence_out)
    *sequence_out = m.sequence;
  return rv;
}

/* ---- rooms ----------------------------------------------------------------- */

static int room_begin(issun_client *c, size_t fsz, uint8_t op, uint32_t *id) {
  if (c->state != ISSUN_STATE_CONNECTED || !c->acked)
    return ic_fail(c, ISSUN_ERR_NOT_CONNECTED, "room request: not connected");
  if (c->fin_requested)
    return ic_fail(c, ISSUN_ERR_STATE, "room request: stream finished");
  if (fsz - PR_HDR_LEN > frame_limit(c))
    return ic_fail(c, ISSUN_ERR_TOO_LARGE, "room request of %zu bytes is over the frame limit",
                   fsz);
  if (c->pend_count >= IC_MAX_PENDING_REQ)
    return ic_fail(c, ISSUN_ERR_QUEUE_FULL, "room request: too many requests without a reply");
  if (ic_sb_queued(c) + fsz > c->s.send_buffer_bytes)
    return ic_fail(c, ISSUN_ERR_QUEUE_FULL, "room request: send buffer full");
  uint32_t rid = ++c->next_req;
  if (rid == 0)
    rid = ++c->next_req;
  size_t slot = (c->pend_head + c->pend_count) % IC_MAX_PENDING_REQ;
  c->pend[slot].id = rid;
  c->pend[slot].op = op;
  *id = rid;
  return 0;
}

static void room_commit(issun_client *c, size_t n, uint32_t *request_id, uint32_t rid) {
  ic_sb_commit(c, n);
  c->pend_count++;
  c->dirty = 1;
  if (request_id)
    *request_id = rid;
}

ISSUN_API int issun_client_room_create(issun_client *c, const char *name, uint32_t max_clients,
                                       const issun_kv *metadata, size_t metadata_count,
                                       uint32_t *request_id) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (!name)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "room_create: name is NULL");
  if (!metadata && metadata_count > 0)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "room_create: metadata is NULL");
  size_t nl = strlen(name);
  if (!utf8_ok(name, nl))
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "room_create: name is not valid UTF-8");
  size_t fsz = PR_HDR_LEN + 4 + 8 + nl + 4 + 8;
  for (size_t i = 0; i < metadata_count; i++) {
    const issun_kv *kv = &metadata[i];
    if (!kv->key || !kv->value)
      return ic_fail(c, ISSUN_ERR_INVALID_ARG, "room_create: metadata[%zu] has a NULL string", i);
    size_t kl = strlen(kv->key), vl = strlen(kv->value);
    if (!utf8_ok(kv->key, kl) || !utf8_ok(kv->value, vl))
      return ic_fail(c, ISSUN_ERR_INVALID_ARG, "room_create: metadata[%zu] is not UTF-8", i);
    fsz += 16 + kl + vl;
    if (fsz > UINT32_MAX)
      return ic_fail(c, ISSUN_ERR_TOO_LARGE, "room_create: too large");
  }
  uint32_t rid = 0;
  int rv = room_begin(c, fsz, ISSUN_ROOM_OP_CREATE, &rid);
  if (rv != 0)
    return rv;
  uint8_t *p = ic_sb_reserve(c, fsz);
  if (!p)
    return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
  pr_buf b;
  pr_buf_init(&b, p, fsz);
  size_t st = pr_frame_begin(&b, PR_FT_ROOM_CREATE);
  pr_put_u32(&b, rid);
  pr_put_str(&b, name, nl);
  pr_put_u32(&b, max_clients);
  pr_put_u64(&b, (uint64_t)metadata_count);
  for (size_t i = 0; i < metadata_count; i++) {
    pr_put_str(&b, metadata[i].key, strlen(metadata[i].key));
    pr_put_str(&b, metadata[i].value, strlen(metadata[i].value));
  }
  pr_frame_end(&b, st);
  if (b.err || b.len != fsz)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "room_create: cannot encode the request");
  room_commit(c, b.len, request_id, rid);
  return 0;
}

ISSUN_API int issun_client_room_join(issun_client *c, uint64_t room_id, uint32_t *request_id) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (room_id == 0)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "room_join: room id 0");
  size_t fsz = PR_HDR_LEN + 4 + 8;
  uint32_t rid = 0;
  int rv = room_begin(c, fsz, ISSUN_ROOM_OP_JOIN, &rid);
  if (rv != 0)
    return rv;
  uint8_t *p = ic_sb_reserve(c, fsz);
  if (!p)
    return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
  pr_room_join j = {.request_id = rid, .room_id = room_id};
  size_t n = pr_enc_room_join(p, fsz, &j);
  if (n != fsz)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "room_join: cannot encode");
  room_commit(c, n, request_id, rid);
  return 0;
}

static int room_simple(issun_client *c, uint8_t type, uint8_t op, uint32_t *request_id) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  size_t fsz = PR_HDR_LEN + 4;
  uint32_t rid = 0;
  int rv = room_begin(c, fsz, op, &rid);
  if (rv != 0)
    return rv;
  uint8_t *p = ic_sb_reserve(c, fsz);
  if (!p)
    return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
  size_t n = pr_enc_room_simple(p, fsz, type, rid);
  if (n != fsz)
    return ic_fail(c, ISSUN_ERR_INVALID_ARG, "room request: cannot encode");
  room_commit(c, n, request_id, rid);
  return 0;
}

ISSUN_API int issun_client_room_leave(issun_client *c, uint32_t *request_id) {
  return room_simple(c, PR_FT_ROOM_LEAVE, ISSUN_ROOM_OP_LEAVE, request_id);
}

ISSUN_API int issun_client_room_list(issun_client *c, uint32_t *request_id) {
  return room_simple(c, PR_FT_ROOM_LIST, ISSUN_ROOM_OP_LIST, request_id);
}

ISSUN_API int issun_client_room_start(issun_client *c, uint32_t *request_id) {
  return room_simple(c, PR_FT_ROOM_START, ISSUN_ROOM_OP_START, request_id);
}

static int pending_has(const issun_client *c, uint32_t id) {
  for (size_t i = 0; i < c->pend_count; i++)
    if (c->pend[(c->pend_head + i) % IC_MAX_PENDING_REQ].id == id)
      return 1;
  return 0;
}

static int reply_result(const issun_room_reply *r) {
  (void)r; /* the wait succeeded; the request's outcome is in the reply */
  return 0;
}

ISSUN_API int issun_client_room_wait(issun_client *c, uint32_t request_id, int timeout_ms,
                                     const issun_room_reply **reply) {
  if (reply)
    *reply = NULL;
  if (!c || timeout_ms < -1)
    return ISSUN_ERR_INVALID_ARG;
  if (c->cb_depth > 0)
    return ic_fail(c, ISSUN_ERR_IN_CALLBACK, "room_wait is not allowed inside a callback");
  release_held(c);
  if (c->last >= 0 && c->rep[c->last].request_id == request_id) {
    c->held = c->last;
    if (reply)
      *reply = &c->rep[c->held];
    return reply_result(&c->rep[c->held]);
  }
  if (!pending_has(c, request_id)) {
    if (c->state != ISSUN_STATE_CONNECTED)
      return ic_fail(c, ISSUN_ERR_NOT_CONNECTED, "room_wait: not connected");
    return ic_fail(c, ISSUN_ERR_STATE,
                   "room_wait: request %u is not pending (unknown, or its reply was already "
                   "handed out)",
                   request_id);
  }
  uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : ic_now_ms() + (uint64_t)timeout_ms;
  c->wait_id = request_id;
  c->wait_active = 1;
  c->wait_done = 0;
  c->wait_lost = 0;
  int rv = ISSUN_ERR_CLOSED;
  for (;;) {
    if (c->wait_done) {
      if (reply)
        *reply = &c->rep[c->held];
      rv = reply_result(&c->rep[c->held]);
      break;
    }
    if (c->wait_lost || c->state != ISSUN_STATE_CONNECTED) {
      rv = ic_fail(c, ISSUN_ERR_CLOSED, "room_wait: the connection dropped before the reply");
      break;
    }
    uint64_t now = ic_now_ms();
    if (now >= deadline) {
      rv = ic_fail(c, ISSUN_ERR_TIMEOUT, "room_wait: no reply to request %u in time", request_id);
      break;
    }
    uint64_t left = deadline - now;
    poll_once(c, left > 100 ? 100 : (int)left);
    if (c->free_pending)
      break;
  }
  c->wait_active = 0;
  if (settle(c)) {
    if (reply)
      *reply = NULL;
    return ISSUN_ERR_CLOSED;
  }
  return rv;
}

/* ---- session: frames in ------------------------------------------------------ */

static int protocol_violation(issun_client *c, unsigned code, const char *what) {
  c->pending_close_app = 1;
  c->pending_close_code = (uint16_t)code;
  ic_seterr(c, "protocol violation by the server: %s", what);
  return issun_error_from_wire(code);
}

static void queue_hello(issun_client *c) {
  pr_hello h;
  memset(&h, 0, sizeof(h));
  h.node_id = c->node_id;
  if (c->has_resume) {
    h.has_resume = 1;
    memcpy(h.resume, c->resume, PR_RESUME_LEN);
  }
  size_t tl = 0, nl = c->name ? strlen(c->name) : 0;
  if (c->token) {
    tl = strlen(c->token);
    h.has_token = 1;
    h.token.ptr = (const uint8_t *)c->token;
    h.token.len = tl;
  }
  h.name.ptr = (const uint8_t *)(c->name ? c->name : "");
  h.name.len = nl;
  size_t fsz = PR_HDR_LEN + 8 + 1 + (h.has_resume ? PR_RESUME_LEN : 0) + 1 +
               (h.has_token ? 8 + tl : 0) + 8 + nl;
  uint8_t *p = ic_sb_reserve(c, fsz);
  if (!p)
    return;
  size_t n = pr_enc_hello(p, fsz, &h);
  if (n == 0)
    return;
  ic_sb_commit(c, n);
  c->hello_sent = 1;
  c->last_tx_ms = ic_now_ms();
  c->dirty = 1;
}

int ic_open_session_stream(issun_client *c) {
  if (c->sid >= 0)
    return 0;
  int64_t sid;
  int rv = ngtcp2_conn_open_bidi_stream(c->conn, &sid, NULL);
  if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED)
    return 0; /* wait for stream credit */
  if (rv != 0)
    return ic_fail(c, ISSUN_ERR_QUIC, "cannot open the session stream: %s", ngtcp2_strerror(rv));
  c->sid = sid;
  if (!c->skip_hello && !c->hello_sent)
    queue_hello(c);
  return 0;
}

int ic_on_handshake(issun_client *c) {
  c->attempt_handshaken = 1;
  c->last_rx_ms = ic_now_ms();
  return ic_open_session_stream(c);
}

static void flush_offline(issun_client *c) {
  size_t i = 0;
  uint32_t lim = frame_limit(c);
  while (i + PR_HDR_LEN <= c->offline.len) {
    pr_hdr h;
    if (pr_hdr_decode(c->offline.p + i, c->offline.len - i, UINT32_MAX, &h) != 0)
      break;
    size_t flen = PR_HDR_LEN + (size_t)h.len;
    if (h.len > lim) {
      c->st.offline_dropped++;
    } else {
      uint8_t *p = ic_sb_reserve(c, flen);
      if (!p) {
        c->st.offline_dropped++;
      } else {
        memcpy(p, c->offline.p + i, flen);
        pr_le64(p + PR_EVENT_SENDER_OFF, c->node_id);
        ic_sb_commit(c, flen);
      }
    }
    i += flen;
  }
  c->offline.len = 0;
  c->offline_count = 0;
  c->st.offline_queued = 0;
  c->dirty = 1;
}

static int on_ack(issun_client *c, const uint8_t *p, size_t n) {
  pr_ack a;
  if (pr_ack_decode(p, n, &a) != 0)
    return protocol_violation(c, PR_E_PROTOCOL, "bad ACK");
  if (c->acked)
    return protocol_violation(c, PR_E_PROTOCOL, "second ACK");
  if (a.node_id == 0)
    return protocol_violation(c, PR_E_PROTOCOL, "ACK with node id 0");
  int resumed = c->state == ISSUN_STATE_RECONNECTING;
  c->acked = 1;
  c->node_id = a.node_id;
  memcpy(c->resume, a.resume, PR_RESUME_LEN);
  c->has_resume = 1;
  c->max_frame_payload = a.max_frame_payload ? a.max_frame_payload : PR_DEFAULT_MAX_FRAME_PAYLOAD;
  c->hb_ms = a.heartbeat_ms ? a.heartbeat_ms : c->s.heartbeat_ms;
  memset(&c->info, 0, sizeof(c->info));
  c->info.node_id = a.node_id;
  c->info.heartbeat_ms = c->hb_ms;
  c->info.max_frame_payload = c->max_frame_payload;
  c->info.max_events_per_sec = a.max_events_per_sec;
  c->info.server_time_ms = a.server_time_ms;
  c->info.max_datagram_payload = ic_conn_max_dgram(c);
  c->info.datagrams = c->info.max_datagram_payload > 0;
  c->info.resumed = resumed;
  uint64_t now = ic_now_ms();
  c->last_tx_ms = now;
  c->last_rx_ms = now;
  c->had_session = 1;
  c->attempt_no = 0;
  memset(&c->close, 0, sizeof(c->close));
  if (resumed)
    c->st.reconnects++;
  flush_offline(c);
  c->state = ISSUN_STATE_CONNECTED;
  IC_CALLBACK(c, on_state, ISSUN_STATE_CONNECTED, 0);
  return 0;
}

static int on_error_frame(issun_client *c, const uint8_t *p, size_t n) {
  pr_error e;
  if (pr_error_decode(p, n, &e) != 0)
    return protocol_violation(c, PR_E_PROTOCOL, "bad ERROR");
  issun_close_info *ci = &c->close;
  size_t ml = e.message.len < sizeof(ci->server_error_message) - 1
                  ? e.message.len
                  : sizeof(ci->server_error_message) - 1;
  c->st.server_errors++;
  if (pr_code_is_fatal(e.code) || e.code == PR_E_NO_ERROR) {
    ci->has_server_error = 1;
    ci->server_error_code = e.code;
    if (ml)
      memcpy(ci->server_error_message, e.message.ptr, ml);
    ci->server_error_message[ml] = 0;
  }
  char msg[256];
  size_t cl = e.message.len < sizeof(msg) - 1 ? e.message.len : sizeof(msg) - 1;
  if (cl)
    memcpy(msg, e.message.ptr, cl);
  msg[cl] = 0;
  IC_CALLBACK(c, on_server_error, e.code, msg);
  return 0;
}

static void deliver_event(issun_client *c, const pr_event *e, int reliable) {
  memcpy(c->type_name, e->type_name.ptr, e->type_name.len);
  c->type_name[e->type_name.len] = 0;
  issun_event ev;
  ev.type_name = c->type_name;
  ev.type_name_len = e->type_name.len;
  ev.payload = e->payload.ptr ? (const void *)e->payload.ptr : (const void *)"";
  ev.payload_len = e->payload.len;
  ev.meta.sender = e->sender;
  ev.meta.timestamp_ms = e->timestamp;
  ev.meta.sequence = e->sequence;
  ev.meta.scope = (issun_scope)e->scope;
  ev.meta.target = e->scope == PR_SCOPE_TARGETED ? e->target : 0;
  ev.meta.reliable = reliable;
  ev.meta.local = 0;
  c->st.events_received++;
  IC_CALLBACK(c, on_event, &ev);
  if (c->bus)
    issun_bus__on_remote(c->bus, &ev);
}

/* Bump allocation inside a reply arena, 8-byte aligned. */
static void *bump(ic_bytes *a, size_t n) {
  size_t off = (a->len + 7u) & ~(size_t)7u;
  void *p = a->p + off;
  a->len = off + n;
  return p;
}

static char *bump_str(ic_bytes *a, const pr_bytes *s) {
  char *p = bump(a, s->len + 1);
  if (s->len)
    memcpy(p, s->ptr, s->len);
  p[s->len] = 0;
  return p;
}

static int decode_reply(issun_client *c, const pr_reply *r, uint8_t op, int slot) {
  /* pass 1: size */
  size_t need = 8;
  size_t off = 0;
  pr_room_info ri;
  uint64_t nrooms = 0;
  while (pr_room_next(r, &off, &ri)) {
    nrooms++;
    need += sizeof(issun_room_info) + 8;
    need += (size_t)ri.members.count * 8 + 8;
    need += (size_t)ri.metadata.count * sizeof(issun_kv) + 8;
    need += ri.name.len + 1 + 8;
    size_t ko = 0;
    pr_bytes k, v;
    while (pr_kv_next(&ri.metadata, &ko, &k, &v))
      need += k.len + v.len + 2 + 16;
  }
  if (nrooms != r->room_count)
    return protocol_violation(c, PR_E_PROTOCOL, "bad REPLY room list");
  ic_bytes *a = &c->rarena[slot];
  a->len = 0;
  if (ic_bytes_reserve(a, need + nrooms * (sizeof(issun_room_info) + 8)) != 0)
    return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory decoding a REPLY");
  /* pass 2: fill (the arena does not move: its size was reserved) */
  issun_room_info *rooms = nrooms ? bump(a, (size_t)nrooms * sizeof(issun_room_info)) : NULL;
  off = 0;
  size_t i = 0;
  while (pr_room_next(r, &off, &ri)) {
    issun_room_info *o = &rooms[i++];
    o->room_id = ri.room_id;
    o->name = bump_str(a, &ri.name);
    o->state = (issun_room_state)ri.state;
    o->host = ri.host;
    o->max_clients = ri.max_clients;
    uint64_t *mem = ri.members.count ? bump(a, (size_t)ri.members.count * 8) : NULL;
    size_t mo = 0, mi = 0;
    uint64_t v64;
    while (pr_u64_next(&ri.members, &mo, &v64))
      mem[mi++] = v64;
    o->members = mem;
    o->member_count = mi;
    issun_kv *kvs =
        ri.metadata.count ? bump(a, (size_t)ri.metadata.count * sizeof(issun_kv)) : NULL;
    size_t ko = 0, ki = 0;
    pr_bytes k, v;
    while (pr_kv_next(&ri.metadata, &ko, &k, &v)) {
      kvs[ki].key = bump_str(a, &k);
      kvs[ki].value = bump_str(a, &v);
      ki++;
    }
    o->metadata = kvs;
    o->metadata_count = ki;
  }
  issun_room_reply *rep = &c->rep[slot];
  rep->request_id = r->request_id;
  rep->op = (issun_room_op)op;
  rep->status = r->status;
  rep->error = issun_error_from_wire(r->status);
  rep->rooms = rooms;
  rep->room_count = (size_t)nrooms;
  return 0;
}

static int on_reply(issun_client *c, const uint8_t *p, size_t n) {
  pr_reply r;
  if (pr_reply_decode(p, n, &r) != 0)
    return protocol_violation(c, PR_E_PROTOCOL, "bad REPLY");
  /* Replies come in request order: the head of the pending list. */
  uint8_t op = 0;
  int found = 0;
  while (c->pend_count > 0) {
    ic_pending_req q = c->pend[c->pend_head];
    c->pend_head = (c->pend_head + 1) % IC_MAX_PENDING_REQ;
    c->pend_count--;
    if (q.id == r.request_id) {
      op = q.op;
      found = 1;
      break;
    }
  }
  if (!found)
    return protocol_violation(c, PR_E_PROTOCOL, "REPLY to no pending request");
  int slot = c->held >= 0 ? 1 - c->held : (c->last >= 0 ? 1 - c->last : 0);
  int rv = decode_reply(c, &r, op, slot);
  if (rv != 0)
    return rv;
  c->last = slot;
  issun_room_reply *rep = &c->rep[slot];
  if (rep->status == 0) {
    switch (op) {
    case ISSUN_ROOM_OP_CREATE:
    case ISSUN_ROOM_OP_JOIN:
    case ISSUN_ROOM_OP_START:
      if (rep->room_count > 0) {
        c->room_id = rep->rooms[0].room_id;
        c->room_host = rep->rooms[0].host;
      }
      break;
    case ISSUN_ROOM_OP_LEAVE:
      c->room_id = 0;
      c->room_host = 0;
      break;
    default:
      break;
    }
  } else if (rep->status == PR_E_NOT_IN_ROOM) {
    c->room_id = 0;
    c->room_host = 0;
  }
  if (c->wait_active && !c->wait_done && rep->request_id == c->wait_id) {
    c->wait_done = 1;
    c->held = slot;
  }
  IC_CALLBACK(c, on_room_reply, rep);
  return 0;
}

static int on_presence(issun_client *c, const uint8_t *p, size_t n) {
  pr_presence pr;
  if (pr_presence_decode(p, n, &pr) != 0)
    return protocol_violation(c, PR_E_PROTOCOL, "bad PRESENCE");
  if (pr.room_id == c->room_id) {
    c->room_host = pr.host;
    if (pr.change == PR_PRESENCE_LEAVE && pr.node_id == c->node_id) {
      c->room_id = 0;
      c->room_host = 0;
    }
  }
  issun_presence ip = {.room_id = pr.room_id,
                       .node_id = pr.node_id,
                       .change = (issun_presence_change)pr.change,
                       .host = pr.host};
  IC_CALLBACK(c, on_presence, &ip);
  return 0;
}

static int handle_frame(issun_client *c, uint8_t type, const uint8_t *p, size_t n) {
  c->last_rx_ms = ic_now_ms();
  if (c->raw_cb) {
    c->cb_depth++;
    c->raw_cb(c, 0, type, p, n, c->raw_ud);
    c->cb_depth--;
  }
  switch (type) {
  case PR_FT_ACK:
    return on_ack(c, p, n);
  case PR_FT_ERROR:
    return on_error_frame(c, p, n);
  case PR_FT_HEARTBEAT: {
    pr_heartbeat hb;
    if (pr_heartbeat_decode(p, n, &hb) != 0)
      return protocol_violation(c, PR_E_PROTOCOL, "bad HEARTBEAT");
    return 0;
  }
  case PR_FT_EVENT: {
    if (!c->acked)
      return protocol_violation(c, PR_E_PROTOCOL, "EVENT before ACK");
    pr_event e;
    if (pr_event_decode(p, n, &e) != 0)
      return protocol_violation(c, PR_E_PROTOCOL, "bad EVENT");
    deliver_event(c, &e, 1);
    return 0;
  }
  case PR_FT_REPLY:
    if (!c->acked)
      return protocol_violation(c, PR_E_PROTOCOL, "REPLY before ACK");
    return on_reply(c, p, n);
  case PR_FT_PRESENCE:
    if (!c->acked)
      return protocol_violation(c, PR_E_PROTOCOL, "PRESENCE before ACK");
    return on_presence(c, p, n);
  case PR_FT_HELLO:
  case PR_FT_ROOM_CREATE:
  case PR_FT_ROOM_JOIN:
  case PR_FT_ROOM_LEAVE:
  case PR_FT_ROOM_LIST:
  case PR_FT_ROOM_START:
    return protocol_violation(c, PR_E_PROTOCOL, "client-to-server frame sent by the server");
  default:
    return 0; /* unknown: skipped for forward compatibility */
  }
}

static int parse_frames(issun_client *c, const uint8_t *buf, size_t len, size_t *used) {
  size_t off = 0;
  uint32_t lim = recv_limit(c);
  while (off < len) {
    pr_hdr h;
    const uint8_t *payload;
    size_t consumed;
    int rv = pr_frame_next(buf + off, len - off, lim, &h, &payload, &consumed);
    if (rv != 0) {
      *used = off;
      return protocol_violation(c, (unsigned)rv,
                                rv == PR_E_FRAME_TOO_LARGE       ? "frame over max_frame_payload"
                                : rv == PR_E_UNSUPPORTED_VERSION ? "unsupported frame version"
                                                                 : "bad frame header");
    }
    if (consumed == 0)
      break;
    rv = handle_frame(c, h.type, payload, h.len);
    off += consumed;
    if (rv != 0) {
      *used = off;
      return rv;
    }
  }
  *used = off;
  return 0;
}

int ic_on_stream_data(issun_client *c, const uint8_t *data, size_t len) {
  size_t used = 0;
  int rv;
  if (c->rx.len == 0) {
    rv = parse_frames(c, data, len, &used);
    if (rv != 0)
      return rv;
    if (used < len) {
      if (ic_bytes_reserve(&c->rx, len - used) != 0)
        return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
      memcpy(c->rx.p, data + used, len - used);
      c->rx.len = len - used;
    }
    return 0;
  }
  if (ic_bytes_reserve(&c->rx, len) != 0)
    return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
  memcpy(c->rx.p + c->rx.len, data, len);
  c->rx.len += len;
  rv = parse_frames(c, c->rx.p, c->rx.len, &used);
  if (rv != 0)
    return rv;
  if (used > 0) {
    memmove(c->rx.p, c->rx.p + used, c->rx.len - used);
    c->rx.len -= used;
  }
  return 0;
}

int ic_on_datagram(issun_client *c, const uint8_t *data, size_t len) {
  c->last_rx_ms = ic_now_ms();
  const uint8_t *payload = NULL;
  size_t plen = 0;
  int rv = pr_datagram_check(data, len, recv_limit(c), &payload, &plen);
  if (c->raw_cb) {
    c->cb_depth++;
    if (rv == 0)
      c->raw_cb(c, 1, PR_FT_EVENT, payload, plen, c->raw_ud);
    else
      c->raw_cb(c, 1, 0, data, len, c->raw_ud);
    c->cb_depth--;
  }
  c->st.datagrams_received++;
  if (rv != 0)
    return protocol_violation(c, PR_E_PROTOCOL, "bad DATAGRAM");
  if (!c->acked)
    return 0; /* may overtake the ACK: dropped */
  pr_event e;
  if (pr_event_decode(payload, plen, &e) != 0)
    return protocol_violation(c, PR_E_PROTOCOL, "bad EVENT in a DATAGRAM");
  deliver_event(c, &e, 0);
  return 0;
}

/* ---- bus link ---------------------------------------------------------------- */

int issun_client__set_bus(issun_client *c, struct issun_bus *b) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (b && c->bus && c->bus != b)
    return ic_fail(c, ISSUN_ERR_STATE, "this client already has a bus attached");
  c->bus = b;
  return 0;
}

struct issun_bus *issun_client__bus(const issun_client *c) {
  return c ? c->bus : NULL;
}

/* ---- test hooks ---------------------------------------------------------------- */

int issun__set_skip_hello(issun_client *c, int skip) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  c->skip_hello = skip ? 1 : 0;
  return 0;
}

int issun__set_raw_frame_cb(issun_client *c, issun__raw_frame_cb cb, void *user_data) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  c->raw_cb = cb;
  c->raw_ud = user_data;
  return 0;
}

int issun__send_raw_stream(issun_client *c, const void *data, size_t len) {
  if (!c || (!data && len))
    return ISSUN_ERR_INVALID_ARG;
  if (!c->conn || c->sid < 0)
    return ic_fail(c, ISSUN_ERR_STATE, "raw stream send: no session stream yet");
  if (len == 0)
    return 0;
  uint8_t *p = ic_sb_reserve(c, len);
  if (!p)
    return ic_fail(c, ISSUN_ERR_NOMEM, "out of memory");
  memcpy(p, data, len);
  ic_sb_commit(c, len);
  c->dirty = 1;
  return 0;
}

int issun__send_raw_datagram(issun_client *c, const void *data, size_t len) {
  if (!c || (!data && len) || len > 0xffff)
    return ISSUN_ERR_INVALID_ARG;
  if (!c->conn || !c->handshake_done)
    return ic_fail(c, ISSUN_ERR_STATE, "raw datagram: no handshaken connection");
  size_t maxd = ic_conn_max_dgram(c);
  if (maxd == 0)
    return ic_fail(c, ISSUN_ERR_NO_DATAGRAM, "raw datagram: no DATAGRAM support");
  if (len > maxd)
    return ic_fail(c, ISSUN_ERR_TOO_LARGE, "raw datagram: over %zu bytes", maxd);
  if (ic_bytes_reserve(&c->dgq, 2 + len) != 0)
    return ISSUN_ERR_NOMEM;
  uint8_t *p = c->dgq.p + c->dgq.len;
  p[0] = (uint8_t)(len & 0xff);
  p[1] = (uint8_t)(len >> 8);
  if (len)
    memcpy(p + 2, data, len);
  c->dgq.len += 2 + len;
  c->dgq_count++;
  c->dirty = 1;
  return 0;
}

int issun__open_stream(issun_client *c, int bidi, const void *data, size_t len, int fin,
                       int64_t *stream_id) {
  if (!c || (!data && len))
    return ISSUN_ERR_INVALID_ARG;
  if (c->in_ngtcp2)
    return ISSUN_ERR_IN_CALLBACK;
  if (!c->conn || !c->handshake_done)
    return ic_fail(c, ISSUN_ERR_STATE, "open_stream: no handshaken connection");
  if (c->nextra >= IC_MAX_EXTRA_STREAMS)
    return ic_fail(c, ISSUN_ERR_QUEUE_FULL, "open_stream: too many test streams");
  int64_t id;
  int rv = bidi ? ngtcp2_conn_open_bidi_stream(c->conn, &id, NULL)
                : ngtcp2_conn_open_uni_stream(c->conn, &id, NULL);
  if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED)
    return ic_fail(c, ISSUN_ERR_QUEUE_FULL, "open_stream: no stream credit from the server");
  if (rv != 0)
    return ic_fail(c, ISSUN_ERR_QUIC, "open_stream: %s", ngtcp2_strerror(rv));
  ic_extra_stream *x = &c->extra[c->nextra];
  memset(x, 0, sizeof(*x));
  x->id = id;
  if (len) {
    x->data = malloc(len);
    if (!x->data)
      return ISSUN_ERR_NOMEM;
    memcpy(x->data, data, len);
  }
  x->len = len;
  x->fin = fin ? 1 : 0;
  x->done = (len == 0 && !fin);
  c->nextra++;
  c->dirty = 1;
  if (stream_id)
    *stream_id = id;
  return 0;
}

int issun__send_post_handshake_crypto(issun_client *c) {
  /* ngtcp2 keeps the pointer until the data is acknowledged: static. */
  static const uint8_t key_update[] = {0x18, 0x00, 0x00, 0x01, 0x00};
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (c->in_ngtcp2)
    return ISSUN_ERR_IN_CALLBACK;
  if (!c->conn || !c->handshake_done)
    return ic_fail(c, ISSUN_ERR_STATE, "post-handshake crypto: no handshaken connection");
  int rv = ngtcp2_conn_submit_crypto_data(c->conn, NGTCP2_CRYPTO_LEVEL_APPLICATION, key_update,
                                          sizeof key_update);
  if (rv != 0)
    return ic_fail(c, ISSUN_ERR_QUIC, "post-handshake crypto: %s", ngtcp2_strerror(rv));
  c->dirty = 1;
  return 0;
}

int issun__stop_reading(issun_client *c, int stop) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  c->stop_reading = stop ? 1 : 0;
  if (!stop && c->credit_pending && c->conn && c->sid >= 0) {
    if (c->in_ngtcp2)
      return ISSUN_ERR_IN_CALLBACK;
    ngtcp2_conn_extend_max_stream_offset(c->conn, c->sid, c->credit_pending);
    ngtcp2_conn_extend_max_offset(c->conn, c->credit_pending);
    c->credit_pending = 0;
    c->dirty = 1;
  }
  return 0;
}

int issun__stop_heartbeats(issun_client *c, int stop) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  c->stop_hb = stop ? 1 : 0;
  if (!stop) {
    uint64_t now = ic_now_ms();
    c->last_rx_ms = now;
    c->last_tx_ms = 0;
  }
  return 0;
}

int issun__close_error(const issun_client *c, uint64_t *code, int *is_app) {
  if (!c || !code || !is_app)
    return ISSUN_ERR_INVALID_ARG;
  if (!c->close.has_close)
    return ISSUN_ERR_STATE;
  *code = c->close.close_code;
  *is_app = c->close.close_is_app;
  return 0;
}

int issun__finish_stream(issun_client *c) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (!c->conn || c->sid < 0)
    return ic_fail(c, ISSUN_ERR_STATE, "finish: no session stream");
  c->fin_requested = 1;
  c->dirty = 1;
  return 0;
}

int issun__cut_socket(issun_client *c, int keep_connection) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  if (c->in_ngtcp2 || c->cb_depth > 0)
    return ISSUN_ERR_IN_CALLBACK;
  if (!c->conn)
    return ic_fail(c, ISSUN_ERR_NOT_CONNECTED, "cut_socket: no connection");
  if (keep_connection)
    return ic_conn_rebind(c);
  ic_conn_teardown(c);
  ic_seterr(c, "network cut (test hook)");
  on_conn_gone(c, ISSUN_ERR_SOCKET);
  settle(c);
  return 0;
}

int issun__resume_secret(const issun_client *c, uint8_t out[16]) {
  if (!c || !out)
    return ISSUN_ERR_INVALID_ARG;
  if (!c->has_resume)
    return ISSUN_ERR_STATE;
  memcpy(out, c->resume, PR_RESUME_LEN);
  return 0;
}

int issun__set_resume(issun_client *c, uint64_t node_id, const uint8_t secret[16]) {
  if (!c)
    return ISSUN_ERR_INVALID_ARG;
  c->node_id = node_id;
  if (secret) {
    memcpy(c->resume, secret, PR_RESUME_LEN);
    c->has_resume = 1;
  } else {
    c->has_resume = 0;
  }
  return 0;
}

uint16_t issun__local_port(const issun_client *c) {
  if (!c || c->fd < 0)
    return 0;
  struct sockaddr_storage ss;
  socklen_t l = sizeof(ss);
  if (getsockname(c->fd, (struct sockaddr *)&ss, &l) != 0)
    return 0;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return 0;
}
