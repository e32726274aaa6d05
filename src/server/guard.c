/*
 * Admission control, token authentication and limit counters (guard.h).
 *
 * The order for the first Initial of an unknown connection:
 *   1. per-address check (connections held, handshake bucket): refuse
 *      before any state exists or any TLS work is done;
 *   2. a Retry token in the Initial is verified (ngtcp2_crypto); an invalid
 *      one is answered with CONNECTION_CLOSE(INVALID_TOKEN) and dropped;
 *   3. without a valid token, a stateless Retry is sent instead of
 *      accepting when the mode is "always", or "auto" with the rate of new
 *      connection attempts above the threshold;
 *   4. the address is charged (a handshake token, a connection) and the
 *      caller creates the connection.
 * Refusals are answered with an Initial CONNECTION_CLOSE(CONNECTION_REFUSED)
 * so that a real client fails fast, but at most REFUSE_REPLIES_PER_S per
 * second: beyond that a flood is dropped silently.  Every answer is smaller
 * than the 1200-byte Initial that caused it (no amplification).
 */
#include "server/guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <stdlib.h>
#include <string.h>

#include "server/auth.h"
#include "server/iplimit.h"
#include "server/server_int.h"

#define RETRY_TOKEN_TIMEOUT (10 * NGTCP2_SECONDS)
#define REFUSE_REPLIES_PER_S 200
#define AUTH_LOGS_PER_S 10
#define IPL_MAX_ENTRIES 65536
#define NS_S 1000000000ull

struct guard {
  iplimit *ipl; /* NULL when both per-address limits are off */
  uint8_t retry_secret[32];
  /* new connection attempts per second: this window and the previous one */
  uint64_t win_start;
  uint32_t win_cur, win_prev;
  /* rate limits of our own answers and logs */
  uint64_t replies_win;
  uint32_t replies;
  uint64_t logs_win;
  uint32_t logs, logs_suppressed;
  /* close messages: relay_fatal keeps the pointer as the CONNECTION_CLOSE
   * reason until the packet is written, so they must outlive the call */
  char room_name_msg[64], room_meta_msg[64];
};

int guard_init(srv *s, char *err, size_t errlen) {
  struct guard *g = calloc(1, sizeof *g);
  if (!g) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  srv_random(s, g->retry_secret, sizeof g->retry_secret);
  if (s->cfg.max_conns_per_ip || s->cfg.max_handshakes_per_ip) {
    uint64_t seed;
    srv_random(s, &seed, sizeof seed);
    g->ipl = iplimit_new(s->cfg.max_conns_per_ip, s->cfg.max_handshakes_per_ip, IPL_MAX_ENTRIES,
                         seed);
    if (!g->ipl) {
      free(g);
      snprintf(err, errlen, "out of memory");
      return -1;
    }
  }
  g->win_start = s->now;
  snprintf(g->room_name_msg, sizeof g->room_name_msg, "room name longer than %u bytes",
           s->cfg.max_room_name);
  snprintf(g->room_meta_msg, sizeof g->room_meta_msg, "room metadata larger than %u bytes",
           s->cfg.max_room_metadata);
  s->guard = g;
  static const char *const modes[] = {"auto", "always", "never"};
  LOG_INFO(&s->log, "Security settings",
           "auth=%s auth_leeway_s=%u max_conns_per_ip=%u max_handshakes_per_ip=%u retry=%s "
           "retry_threshold=%u handshake_timeout_ms=%u",
           s->cfg.auth_enabled ? "on" : "off", s->cfg.auth_leeway_s, s->cfg.max_conns_per_ip,
           s->cfg.max_handshakes_per_ip, modes[s->cfg.retry_mode % 3], s->cfg.retry_threshold,
           s->cfg.handshake_timeout_ms);
  return 0;
}

void guard_free(srv *s) {
  if (!s->guard) return;
  iplimit_free(s->guard->ipl);
  memset(s->guard->retry_secret, 0, sizeof s->guard->retry_secret);
  free(s->guard);
  s->guard = NULL;
}

/* Allows n things per second: 1 when this one fits. */
static int window_take(uint64_t now, uint64_t *win, uint32_t *count, uint32_t max) {
  if (now - *win >= NS_S) {
    *win = now;
    *count = 0;
  }
  if (*count >= max) return 0;
  (*count)++;
  return 1;
}

/* New connection attempts per second, smoothed over two 1 s windows. */
static uint64_t attempt_rate(struct guard *g, uint64_t now) {
  uint64_t dt = now - g->win_start;
  if (dt >= 2 * NS_S) {
    g->win_prev = 0;
    g->win_cur = 0;
    g->win_start = now;
    dt = 0;
  } else if (dt >= NS_S) {
    g->win_prev = g->win_cur;
    g->win_cur = 0;
    g->win_start += NS_S;
    dt -= NS_S;
  }
  /* the previous window, weighted by how much of it is still in the last second */
  return g->win_cur + (uint64_t)g->win_prev * (NS_S - dt) / NS_S;
}

static void send_close(srv *s, int fd, const ngtcp2_pkt_hd *hd, const struct sockaddr *remote,
                       socklen_t remote_len, uint64_t code, const char *why) {
  struct guard *g = s->guard;
  if (!window_take(s->now, &g->replies_win, &g->replies, REFUSE_REPLIES_PER_S)) return;
  uint8_t buf[SRV_MAX_PKT];
  ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(
      buf, sizeof buf, hd->version, &hd->scid, &hd->dcid, code, (const uint8_t *)why, strlen(why));
  if (n > 0) {
    (void)sendto(fd, buf, (size_t)n, 0, remote, remote_len);
    s->stats.send_syscalls++;
    s->stats.bytes_sent += (uint64_t)n;
    s->stats.packets_sent++;
  }
}

static void send_retry(srv *s, int fd, const ngtcp2_pkt_hd *hd, const struct sockaddr *remote,
                       socklen_t remote_len) {
  struct guard *g = s->guard;
  ngtcp2_cid scid;
  scid.datalen = SRV_SCID_LEN;
  srv_random(s, scid.data, scid.datalen);
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
  ngtcp2_ssize tl = ngtcp2_crypto_generate_retry_token(
      token, g->retry_secret, sizeof g->retry_secret, hd->version, remote, remote_len, &scid,
      &hd->dcid, s->now);
  if (tl < 0) return;
  uint8_t buf[SRV_MAX_PKT];
  ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, sizeof buf, hd->version, &hd->scid, &scid,
                                             &hd->dcid, token, (size_t)tl);
  if (n <= 0) return;
  (void)sendto(fd, buf, (size_t)n, 0, remote, remote_len);
  s->stats.send_syscalls++;
  s->stats.bytes_sent += (uint64_t)n;
  s->stats.packets_sent++;
  s->stats.limits[ST_LIM_RETRY_SENT]++;
  if (s->log.level >= LOG_LVL_DEBUG) {
    char a[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (remote->sa_family == AF_INET) {
      const struct sockaddr_in *in = (const void *)remote;
      inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
      port = ntohs(in->sin_port);
    } else if (remote->sa_family == AF_INET6) {
      const struct sockaddr_in6 *in6 = (const void *)remote;
      inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
      port = ntohs(in6->sin6_port);
    }
    LOG_DEBUG(&s->log, "Stateless Retry sent", "addr=%s port=%u", a, port);
  }
}

static void refused(srv *s, int fd, const ngtcp2_pkt_hd *hd, const struct sockaddr *remote,
                    socklen_t remote_len, int why) {
  static const char *const text[] = {"", "too many connections from this address",
                                     "too many new connections from this address",
                                     "server busy"};
  int lim = why == IPL_CONNS ? ST_LIM_IP_CONNS
            : why == IPL_RATE ? ST_LIM_IP_HANDSHAKES
                              : ST_LIM_IP_TABLE;
  s->stats.limits[lim]++;
  send_close(s, fd, hd, remote, remote_len, NGTCP2_CONNECTION_REFUSED, text[why]);
}

int guard_on_initial(srv *s, int fd, const ngtcp2_pkt_hd *hd, const struct sockaddr *local,
                     socklen_t local_len, const struct sockaddr *remote, socklen_t remote_len,
                     guard_admit *ga) {
  struct guard *g = s->guard;
  (void)local;
  (void)local_len;
  memset(ga, 0, sizeof *ga);

  /* 1. the address's standing, before anything else */
  int v = iplimit_check(g->ipl, remote, s->now);
  if (v != IPL_OK) {
    refused(s, fd, hd, remote, remote_len, v);
    return -1;
  }

  /* 2. a Retry token proves the address */
  if (hd->token.len > 0 && hd->token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
    if (ngtcp2_crypto_verify_retry_token(&ga->odcid, hd->token.base, hd->token.len,
                                         g->retry_secret, sizeof g->retry_secret, hd->version,
                                         remote, remote_len, &hd->dcid, RETRY_TOKEN_TIMEOUT,
                                         s->now) != 0) {
      s->stats.limits[ST_LIM_RETRY_BAD_TOKEN]++;
      send_close(s, fd, hd, remote, remote_len, NGTCP2_INVALID_TOKEN, "invalid token");
      return -1;
    }
    ga->validated = 1;
  }
  /* (a NEW_TOKEN token is never issued by this server: treated as none) */

  /* 3. Retry instead of accepting? */
  uint64_t rate = attempt_rate(g, s->now);
  g->win_cur++;
  if (!ga->validated &&
      (s->cfg.retry_mode == CFG_RETRY_ALWAYS ||
       (s->cfg.retry_mode == CFG_RETRY_AUTO && rate >= s->cfg.retry_threshold))) {
    send_retry(s, fd, hd, remote, remote_len);
    return -1;
  }

  /* 4. charge the address */
  v = iplimit_admit(g->ipl, remote, s->now);
  if (v != IPL_OK) {
    refused(s, fd, hd, remote, remote_len, v);
    return -1;
  }
  return 0;
}

void guard_apply(const guard_admit *ga, const ngtcp2_pkt_hd *hd, ngtcp2_settings *settings,
                 ngtcp2_transport_params *params) {
  if (!ga->validated) {
    params->original_dcid = hd->dcid;
    return;
  }
  params->original_dcid = ga->odcid;
  params->retry_scid = hd->dcid;
  params->retry_scid_present = 1;
  settings->token = hd->token;
}

void guard_conn_gone(srv *s, const struct sockaddr *remote) {
  if (s->guard) iplimit_release(s->guard->ipl, remote, s->now);
}

/* ---- authentication -------------------------------------------------- */

int guard_hello(conn *c, pr_hello *h) {
  srv *s = c->s;
  struct guard *g = s->guard;
  if (!s->cfg.auth_enabled) return 0;
  uint64_t sub = 0;
  int r = AUTH_E_MISSING;
  if (h->has_token)
    r = auth_verify(s->cfg.auth_secret, s->cfg.auth_secret_len, (const char *)h->token.ptr,
                    h->token.len, srv_unix_ms() / 1000, s->cfg.auth_leeway_s, &sub);
  if (r == AUTH_OK && h->node_id != 0 && h->node_id != sub) r = AUTH_E_NODE_ID;
  if (r == AUTH_OK) {
    h->node_id = sub;
    return 0;
  }
  if (r > 0 && r < ST_AUTH_N) s->stats.auth_failures[r]++;
  /* Failures are an attacker's to repeat: log a bounded number per second. */
  if (window_take(s->now, &g->logs_win, &g->logs, AUTH_LOGS_PER_S)) {
    LOG_INFO(&s->log, "Authentication failed", "addr=%s reason=%s suppressed=%u", c->addr_str,
             auth_result_name(r), g->logs_suppressed);
    g->logs_suppressed = 0;
  } else {
    g->logs_suppressed++;
  }
  relay_fatal(c, PR_E_UNAUTHORIZED, auth_result_text(r));
  return -1;
}

/* ---- limits ---------------------------------------------------------- */

int guard_room_create(conn *c, const pr_room_create *cr) {
  srv *s = c->s;
  if (cr->name.len > s->cfg.max_room_name) {
    s->stats.limits[ST_LIM_ROOM_NAME]++;
    relay_fatal(c, PR_E_PROTOCOL, s->guard->room_name_msg);
    return -1;
  }
  if (cr->metadata.raw.len > s->cfg.max_room_metadata) {
    s->stats.limits[ST_LIM_ROOM_METADATA]++;
    relay_fatal(c, PR_E_PROTOCOL, s->guard->room_meta_msg);
    return -1;
  }
  return 0;
}

void guard_count_fatal(conn *c, uint16_t code) {
  srv *s = c->s;
  switch (code) {
  case PR_E_FRAME_TOO_LARGE:
    s->stats.limits[ST_LIM_FRAME_SIZE]++;
    break;
  case PR_E_UNAUTHORIZED:
    s->stats.limits[ST_LIM_UNAUTHORIZED]++;
    break;
  case PR_E_SERVER_FULL:
    s->stats.limits[ST_LIM_SERVER_FULL]++;
    break;
  case PR_E_TIMEOUT:
    if (c->state == CS_WAIT_HELLO) s->stats.limits[ST_LIM_HELLO_TIMEOUT]++;
    break;
  default:
    break;
  }
}

void guard_count_reply(srv *s, uint16_t status) {
  if (status == PR_E_TOO_MANY_ROOMS) s->stats.limits[ST_LIM_ROOMS]++;
  if (status == PR_E_ROOM_FULL) s->stats.limits[ST_LIM_ROOM_FULL]++;
}

static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

void guard_count_bad_event(srv *s, const uint8_t *p, size_t n) {
  /* sender, timestamp, sequence (24 bytes), scope u32, [target u64], type_name str */
  if (n < 28) return;
  uint32_t scope = (uint32_t)p[24] | (uint32_t)p[25] << 8 | (uint32_t)p[26] << 16 |
                   (uint32_t)p[27] << 24;
  size_t off = 28 + (scope == PR_SCOPE_TARGETED ? 8 : 0);
  if (scope > PR_SCOPE_TARGETED || n < off + 8) return;
  uint64_t tl = rd64(p + off);
  if (tl == 0 || tl > PR_MAX_TYPE_NAME_LEN) s->stats.limits[ST_LIM_TYPE_NAME]++;
}

void guard_log_summary(srv *s) {
  char line[1024];
  size_t o = 0;
  for (int i = 0; i < ST_LIM_N && o < sizeof line; i++) {
    if (!s->stats.limits[i]) continue;
    int k = snprintf(line + o, sizeof line - o, "%s%s=%llu", o ? " " : "", stat_limit_name(i),
                     (unsigned long long)s->stats.limits[i]);
    if (k > 0) o += (size_t)k;
  }
  static const int drops[] = {ST_DROP_RATE_LIMITED, ST_DROP_SLOW_CONSUMER};
  for (size_t i = 0; i < sizeof drops / sizeof drops[0] && o < sizeof line; i++) {
    if (!s->stats.dropped[drops[i]]) continue;
    int k = snprintf(line + o, sizeof line - o, "%sdropped_%s=%llu", o ? " " : "",
                     stat_drop_name(drops[i]), (unsigned long long)s->stats.dropped[drops[i]]);
    if (k > 0) o += (size_t)k;
  }
  for (int i = 1; i < ST_AUTH_N && o < sizeof line; i++) {
    if (!s->stats.auth_failures[i]) continue;
    int k = snprintf(line + o, sizeof line - o, "%sauth_%s=%llu", o ? " " : "",
                     auth_result_name(i), (unsigned long long)s->stats.auth_failures[i]);
    if (k > 0) o += (size_t)k;
  }
  if (o >= sizeof line) o = sizeof line - 1;
  line[o] = 0;
  LOG_INFO(&s->log, "Limit counters", "%s", o ? line : "none=0");
}

_Static_assert(ST_AUTH_N == AUTH_E_N, "stats.auth_failures must have a slot per auth_result");
