/*
 * Server configuration: one table of options drives the environment, the
 * flags and --help, so the three cannot drift apart.
 */
#include "server/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define VERSION_TEXT "issun-server 0.1.0"
#define DEFAULT_BIND "0.0.0.0:5000"
#define MAX_DURATION_MS 86400000u /* 24 h: keeps 3 x heartbeat well inside 32 bits */

enum opt_kind { K_ADDR, K_PATH, K_U16, K_U32, K_U64, K_DUR, K_BOOL, K_LOG, K_LOGFMT, K_HOST,
                K_SECRET, K_SECRET_FILE, K_RETRY, K_FLUSH, K_CC };

struct opt {
  const char *flag; /* without the leading "--" */
  const char *metavar;
  const char *env;
  enum opt_kind kind;
  size_t off;
  uint64_t min, max;
  const char *def;
  const char *help;
};

#define OFF(field) offsetof(srv_config, field)

static const struct opt opts[] = {
    {"bind", "ADDR", "ISSUN_BIND_ADDR", K_ADDR, OFF(bind_addr), 0, 0, DEFAULT_BIND,
     "UDP address to listen on: IPv4:port, [IPv6]:port, *:port, :port or host:port"},
    {"cert", "PATH", "ISSUN_CERT_PATH", K_PATH, OFF(cert_path), 0, 0, "certs/cert.pem",
     "PEM certificate chain, leaf first (without it and with no file at the default path, "
     "a self-signed certificate is generated in memory)"},
    {"key", "PATH", "ISSUN_KEY_PATH", K_PATH, OFF(key_path), 0, 0, "certs/key.pem",
     "PEM private key of the certificate (ECDSA, Ed25519 or RSA)"},
    {"max-clients", "N", "ISSUN_MAX_CLIENTS", K_U32, OFF(max_clients), 1, 1000000, "1000",
     "maximum number of connected clients (1 to 1000000)"},
    {"heartbeat", "DURATION", "ISSUN_HEARTBEAT_INTERVAL", K_DUR, OFF(heartbeat_ms), 0, 0, "5s",
     "heartbeat interval; the idle timeout is 3 times this"},
    {"hello-timeout", "DURATION", "ISSUN_HELLO_TIMEOUT", K_DUR, OFF(hello_timeout_ms), 0, 0, "10s",
     "time a new connection has to send HELLO"},
    {"enable-rooms", "BOOL", "ISSUN_ENABLE_ROOMS", K_BOOL, OFF(enable_rooms), 0, 0, "true",
     "enable the room system"},
    {"allow-legacy", "BOOL", "ISSUN_ALLOW_LEGACY", K_BOOL, OFF(allow_legacy), 0, 0, "true",
     "serve legacy clients, which connect without ALPN the way issun's Rust QuicClientBackend "
     "does (protocol section 9); ignored, and such clients refused, while authentication is on"},
    {"max-rooms", "N", "ISSUN_MAX_ROOMS", K_U32, OFF(max_rooms), 1, 1000000, "1000",
     "maximum number of rooms (1 to 1000000)"},
    {"default-room-size", "N", "ISSUN_DEFAULT_ROOM_SIZE", K_U32, OFF(default_room_size), 1, 1000000,
     "8", "room size when a request names none (at most the maximum room size)"},
    {"max-room-size", "N", "ISSUN_MAX_ROOM_SIZE", K_U32, OFF(max_room_size), 1, 1000000, "1000",
     "largest room size; larger requests are clamped"},
    {"max-events-per-sec", "N", "ISSUN_MAX_EVENTS_PER_SEC", K_U32, OFF(max_events_per_sec), 1,
     UINT32_MAX, "100", "events a client may send per second (at least 1)"},
    {"max-frame-payload", "BYTES", "ISSUN_MAX_FRAME_PAYLOAD", K_U32, OFF(max_frame_payload), 1024,
     16777216, "65536", "largest frame payload accepted (1024 to 16777216)"},
    {"slow-consumer-bytes", "BYTES", "ISSUN_SLOW_CONSUMER_BYTES", K_U64, OFF(slow_consumer_bytes),
     1, (uint64_t)1 << 40, "1048576",
     "output queued for one client beyond which it is cut off as a slow consumer"},
    {"flush-us", "MICROSECONDS", "ISSUN_FLUSH_US", K_U32, OFF(flush_us), 0, 1000000, "1000",
     "flush window: how long queued output may wait so that events for one client share "
     "packets, 0 to 1000000 (0: write at the end of every loop turn)"},
    {"flush-mode", "MODE", "ISSUN_FLUSH_MODE", K_FLUSH, OFF(flush_mode), 0, 0, "auto",
     "when the flush window applies: auto (while most events go to clients receiving them "
     "less than two windows apart) or always"},
    {"flush-max-us", "MICROSECONDS", "ISSUN_FLUSH_MAX_US", K_U32, OFF(flush_max_us), 0, 1000000,
     "8000",
     "longest the flush window may grow while the relay's loop is short of CPU, 0 to 1000000 "
     "(at or below --flush-us: never widened)"},
    {"flush-busy-pct", "PERCENT", "ISSUN_FLUSH_BUSY_PCT", K_U32, OFF(flush_busy_pct), 1, 99, "80",
     "share of time the loop may be busy before the flush window widens, 1 to 99 (it narrows "
     "again below five eighths of it)"},
    {"cc", "ALGO", "ISSUN_CC", K_CC, OFF(cc_algo), 0, 0, "cubic",
     "congestion control towards the players: cubic, reno, bbr or bbr2 (bbr gave a lower "
     "p99 on a lossy link; see docs/operations.md)"},
    {"metrics-port", "PORT", "ISSUN_METRICS_PORT", K_U16, OFF(metrics_port), 0, 65535, "9090",
     "TCP port of the Prometheus /metrics and /health endpoint (0 disables it)"},
    {"metrics-addr", "IP", "ISSUN_METRICS_ADDR", K_HOST, OFF(metrics_addr), 0, 0, "the bind host",
     "IP address the metrics endpoint listens on, e.g. 127.0.0.1 to keep it private "
     "(IPv4, IPv6 with or without brackets)"},
    {"log", "FILTER", "ISSUN_LOG", K_LOG, OFF(log_level), 0, 0, "info",
     "error, warn, info, debug or trace, or a RUST_LOG filter such as "
     "\"warn,issun_server=debug\" (read from RUST_LOG when ISSUN_LOG is unset)"},
    {"log-format", "FORMAT", "ISSUN_LOG_FORMAT", K_LOGFMT, OFF(log_format), 0, 0, "text",
     "log line format: text or json"},
    /* security: docs/security.md */
    {"auth-secret", "SECRET", "ISSUN_AUTH_SECRET", K_SECRET, OFF(auth_secret), 0, 0, "none",
     "shared HS256 secret (at least 32 bytes) that turns on token authentication: HELLO must "
     "carry a JWT signed with it, and connections without ALPN are refused; prefer the "
     "variable or a file to the flag, which other local users can see"},
    {"auth-secret-file", "PATH", "ISSUN_AUTH_SECRET_FILE", K_SECRET_FILE, OFF(auth_secret_file), 0,
     0, "none", "file holding the secret (one trailing newline is ignored)"},
    {"auth-leeway", "SECONDS", "ISSUN_AUTH_LEEWAY", K_U32, OFF(auth_leeway_s), 0, 3600, "30",
     "clock skew allowed past a token's exp (and before its nbf), 0 to 3600"},
    {"max-conns-per-ip", "N", "ISSUN_MAX_CONNS_PER_IP", K_U32, OFF(max_conns_per_ip), 0, 1000000,
     "256", "connections one source address (IPv4, or IPv6 /64) may hold; 0 turns it off"},
    {"max-handshakes-per-ip", "N", "ISSUN_MAX_HANDSHAKES_PER_IP", K_U32,
     OFF(max_handshakes_per_ip), 0, 1000000, "100",
     "new connections one source address may start per second (bursts up to N); 0 turns it off"},
    {"retry", "MODE", "ISSUN_RETRY", K_RETRY, OFF(retry_mode), 0, 0, "auto",
     "QUIC address validation with stateless Retry: auto (when new connections pass the "
     "threshold), always or never"},
    {"retry-threshold", "N", "ISSUN_RETRY_THRESHOLD", K_U32, OFF(retry_threshold), 1, 1000000, "500",
     "new connection attempts per second above which --retry auto validates addresses"},
    {"handshake-timeout", "DURATION", "ISSUN_HANDSHAKE_TIMEOUT", K_DUR, OFF(handshake_timeout_ms), 0,
     0, "10s", "time a new connection has to finish the QUIC/TLS handshake"},
    {"max-room-name", "BYTES", "ISSUN_MAX_ROOM_NAME", K_U32, OFF(max_room_name), 1, 65536, "128",
     "longest room name accepted in ROOM_CREATE (a longer one is a PROTOCOL_ERROR)"},
    {"max-room-metadata", "BYTES", "ISSUN_MAX_ROOM_METADATA", K_U32, OFF(max_room_metadata), 8,
     16777216, "4096",
     "largest encoded room metadata list accepted in ROOM_CREATE (a larger one is a "
     "PROTOCOL_ERROR)"},
    /* clustering: docs/clustering.md */
    {"nats-url", "URLS", "ISSUN_NATS_URL", K_PATH, OFF(nats_url), 0, 0, "none",
     "NATS server URL(s), comma-separated (nats://host:4222, tls://..., user:password@ "
     "allowed); setting it turns clustering on"},
    {"nats-creds", "PATH", "ISSUN_NATS_CREDS", K_PATH, OFF(nats_creds), 0, 0, "none",
     "NATS user credentials file (.creds) for clustering"},
    {"nats-ca", "PATH", "ISSUN_NATS_CA", K_PATH, OFF(nats_ca), 0, 0, "none",
     "CA certificates (PEM) to verify the NATS servers with; turns TLS to NATS on"},
    {"qlog-dir", "DIR", "ISSUN_QLOG_DIR", K_PATH, OFF(qlog_dir), 0, 0, "none",
     "debugging: write a qlog trace (JSON-SEQ) of every QUIC connection into DIR, one file "
     "each; they grow with the traffic, so only while looking for a problem"},
    {"nats-replicas", "N", "ISSUN_NATS_REPLICAS", K_U32, OFF(nats_replicas), 1, 5, "1",
     "replicas of the cluster's JetStream key-value buckets (1 to 5; 3 on a 3-node NATS "
     "cluster survives the loss of one node)"},
    {"cluster-expiry", "DURATION", "ISSUN_CLUSTER_EXPIRY", K_DUR, OFF(cluster_expiry_ms), 0, 0, "5s",
     "time after which a silent relay counts as gone and its sessions leave their rooms"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ISSUN_CC's words, in the order of enum cfg_cc (cfg_cc_name logs them). */
static const char *const cc_words[] = {"cubic", "reno", "bbr", "bbr2"};

/* A setting that takes one word of a list (any case): *out = its index,
 * which is its enum value.  Otherwise an error that names the list. */
static int pick_word(const char *name, const char *val, const char *what,
                     const char *const *words, int n, int *out, char *err, size_t errlen) {
  for (int i = 0; i < n; i++) {
    if (strcasecmp(val, words[i]) == 0) {
      *out = i;
      return 0;
    }
  }
  char list[128] = "";
  size_t used = 0;
  for (int i = 0; i < n && used < sizeof list; i++)
    used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
                             i == 0 ? "" : i == n - 1 ? " or " : ", ", words[i]);
  set_err(err, errlen, "%s: '%s' is not a %s (expected %s)", name, val, what, list);
  return -1;
}

/* ---- value parsers ------------------------------------------------------ */

/* Whole decimal number: digits only, no sign, no spaces.  0 or -1. */
static int parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (!*s)
    return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

enum { DUR_OK = 0, DUR_SYNTAX = -1, DUR_ZERO = -2, DUR_TOO_LONG = -3, DUR_FRACTION = -4 };

/* "5" and "5s" are seconds, "250ms" milliseconds, "1.5s" a decimal number of
 * seconds.  The result must be a whole number of milliseconds, > 0 and at
 * most MAX_DURATION_MS. */
static int parse_duration_ms(const char *s, uint32_t *out) {
  uint64_t whole = 0, frac_ms = 0;
  int scale_ms, idigits = 0, fdigits = 0, frac_rest = 0;
  const char *p = s;

  for (; *p >= '0' && *p <= '9'; p++, idigits++) {
    if (whole > MAX_DURATION_MS)
      continue; /* already too long; keep scanning the syntax */
    whole = whole * 10 + (uint64_t)(*p - '0');
  }
  if (*p == '.') {
    p++;
    for (; *p >= '0' && *p <= '9'; p++, fdigits++) {
      if (fdigits < 3)
        frac_ms = frac_ms * 10 + (uint64_t)(*p - '0');
      else if (*p != '0')
        frac_rest = 1;
    }
    if (fdigits == 0)
      return DUR_SYNTAX;
    for (int i = fdigits; i < 3; i++)
      frac_ms *= 10;
  }
  if (idigits == 0 && fdigits == 0)
    return DUR_SYNTAX;
  if (*p == '\0' || strcmp(p, "s") == 0)
    scale_ms = 1000;
  else if (strcmp(p, "ms") == 0)
    scale_ms = 1;
  else
    return DUR_SYNTAX;

  uint64_t ms;
  if (scale_ms == 1) {
    if (frac_ms || frac_rest)
      return DUR_FRACTION;
    ms = whole;
  } else {
    if (frac_rest)
      return DUR_FRACTION;
    ms = whole > MAX_DURATION_MS ? (uint64_t)MAX_DURATION_MS + 1 : whole * 1000 + frac_ms;
  }
  if (ms == 0)
    return DUR_ZERO;
  if (ms > MAX_DURATION_MS)
    return DUR_TOO_LONG;
  *out = (uint32_t)ms;
  return DUR_OK;
}

static int parse_bool(const char *s) {
  static const char *const yes[] = {"true", "1", "yes", "on"};
  static const char *const no[] = {"false", "0", "no", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0)
      return 1;
    if (strcasecmp(s, no[i]) == 0)
      return 0;
  }
  return -1;
}

static int level_from_name(const char *s, size_t n) {
  static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
  for (int i = 0; i < 5; i++)
    if (strlen(names[i]) == n && strncasecmp(s, names[i], n) == 0)
      return i;
  if (n == 7 && strncasecmp(s, "warning", 7) == 0)
    return LOG_LVL_WARN;
  return -1;
}

/* Our targets in RUST_LOG: "issun_server" beats "issun". */
static int target_rank(const char *s, size_t n) {
  if (n == 12 && strncmp(s, "issun_server", 12) == 0)
    return 2;
  if (n == 5 && strncmp(s, "issun", 5) == 0)
    return 1;
  return 0;
}

int cfg_parse_log_level(const char *s) {
  int bare = -1, ours = -1, ours_rank = 0;
  int any = 0;

  if (!s)
    return -1;
  while (*s) {
    const char *end = strchr(s, ',');
    if (!end)
      end = s + strlen(s);
    const char *b = s, *e = end;
    while (b < e && (*b == ' ' || *b == '\t'))
      b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    if (b < e) {
      const char *eq = memchr(b, '=', (size_t)(e - b));
      any = 1;
      if (eq) {
        size_t tlen = (size_t)(eq - b);
        int rank = target_rank(b, tlen);
        if (tlen == 0)
          return -1;
        if (rank > 0) {
          int lvl = level_from_name(eq + 1, (size_t)(e - eq - 1));
          if (lvl < 0)
            return -1;
          if (rank >= ours_rank) {
            ours = lvl;
            ours_rank = rank;
          }
        }
        /* other targets' directives belong to other programs */
      } else {
        int lvl = level_from_name(b, (size_t)(e - b));
        int rank = target_rank(b, (size_t)(e - b));
        if (lvl >= 0) {
          bare = lvl;
        } else if (rank > 0) { /* "issun_server" alone: everything from it */
          if (rank >= ours_rank) {
            ours = LOG_LVL_TRACE;
            ours_rank = rank;
          }
        } else {
          return -1;
        }
      }
    }
    s = *end ? end + 1 : end;
  }
  if (!any)
    return -1;
  if (ours >= 0)
    return ours;
  if (bare >= 0)
    return bare;
  return LOG_LVL_INFO;
}

enum { ADDR_OK = 0, ADDR_SYNTAX = -1, ADDR_PORT = -2, ADDR_RESOLVE = -3 };

static int parse_port(const char *s, uint16_t *port) {
  uint64_t v;
  if (strlen(s) > 5 || parse_u64(s, &v) != 0 || v > 65535)
    return -1;
  *port = (uint16_t)v;
  return 0;
}

static int addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len) {
  char host[256];
  const char *colon, *hstart;
  size_t hlen;
  uint16_t port;

  if (!s || !*s)
    return ADDR_SYNTAX;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':')
      return ADDR_SYNTAX;
    hstart = s + 1;
    hlen = (size_t)(close - hstart);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon)
      return ADDR_SYNTAX;
    hstart = s;
    hlen = (size_t)(colon - s);
    if (memchr(s, ':', hlen))
      return ADDR_SYNTAX; /* bare IPv6 needs brackets */
  }
  if (hlen >= sizeof(host))
    return ADDR_SYNTAX;
  if (parse_port(colon + 1, &port) != 0)
    return ADDR_PORT;
  memcpy(host, hstart, hlen);
  host[hlen] = '\0';

  memset(ss, 0, sizeof(*ss));
  if (s[0] != '[' && (hlen == 0 || strcmp(host, "*") == 0)) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_ANY);
    in->sin_port = htons(port);
    *len = sizeof(*in);
    return ADDR_OK;
  }
  if (s[0] != '[') {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
      in->sin_family = AF_INET;
      in->sin_port = htons(port);
      *len = sizeof(*in);
      return ADDR_OK;
    }
  }

  /* A bracketed IPv6 literal (perhaps with a %scope) or a host name. */
  struct addrinfo hints, *res = NULL, *pick = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = s[0] == '[' ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = s[0] == '[' ? AI_NUMERICHOST : 0;
  if (hlen == 0 || getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
    return s[0] == '[' ? ADDR_SYNTAX : ADDR_RESOLVE;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) { /* prefer IPv4, which clients default to */
      pick = ai;
      break;
    }
    if (!pick && ai->ai_family == AF_INET6)
      pick = ai;
  }
  if (!pick || pick->ai_addrlen > sizeof(*ss)) {
    freeaddrinfo(res);
    return ADDR_RESOLVE;
  }
  memcpy(ss, pick->ai_addr, pick->ai_addrlen);
  *len = (socklen_t)pick->ai_addrlen;
  if (ss->ss_family == AF_INET)
    ((struct sockaddr_in *)ss)->sin_port = htons(port);
  else
    ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
  freeaddrinfo(res);
  return ADDR_OK;
}

int cfg_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len) {
  return addr_parse(s, ss, len) == ADDR_OK ? 0 : -1;
}

/* ---- applying one value ------------------------------------------------ */

static const char *kind_expect(const struct opt *o, char *buf, size_t buflen) {
  switch (o->kind) {
  case K_U16:
  case K_U32:
  case K_U64:
    if (o->max == UINT32_MAX)
      snprintf(buf, buflen, "at least %llu", (unsigned long long)o->min);
    else
      snprintf(buf, buflen, "%llu to %llu", (unsigned long long)o->min, (unsigned long long)o->max);
    return buf;
  default:
    return "";
  }
}

/* `name` is what the user wrote the value under (a variable or a flag). */
static int apply(srv_config *c, const struct opt *o, const char *name, const char *val, char *err,
                 size_t errlen) {
  char *field = (char *)c + o->off;
  char expect[64];
  uint64_t v;

  switch (o->kind) {
  case K_ADDR: {
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int rv;
    if (strlen(val) >= sizeof(c->bind_addr)) {
      set_err(err, errlen, "%s: '%.40s...' is too long for an address", name, val);
      return -1;
    }
    rv = addr_parse(val, &ss, &len);
    if (rv == ADDR_PORT) {
      set_err(err, errlen, "%s: '%s' has no valid port (expected a number 0 to 65535 after ':')",
              name, val);
      return -1;
    }
    if (rv == ADDR_RESOLVE) {
      set_err(err, errlen, "%s: '%s': the host name does not resolve to an address", name, val);
      return -1;
    }
    if (rv != ADDR_OK) {
      set_err(err, errlen,
              "%s: '%s' is not an address (expected IPv4:port, [IPv6]:port, *:port, :port "
              "or host:port)",
              name, val);
      return -1;
    }
    snprintf(c->bind_addr, sizeof(c->bind_addr), "%s", val);
    c->bind = ss;
    c->bind_len = len;
    return 0;
  }
  case K_PATH:
    if (!*val) {
      set_err(err, errlen, "%s: the path is empty", name);
      return -1;
    }
    if (strlen(val) >= CFG_PATH_MAX) {
      set_err(err, errlen, "%s: the path is longer than %d bytes", name, CFG_PATH_MAX - 1);
      return -1;
    }
    snprintf(field, CFG_PATH_MAX, "%s", val);
    if (o->off == OFF(cert_path))
      c->cert_path_set = 1;
    return 0;
  case K_U16:
  case K_U32:
  case K_U64:
    if (parse_u64(val, &v) != 0) {
      /* a number too large for 64 bits is still a number: report the range */
      const char *p = val;
      while (*p >= '0' && *p <= '9')
        p++;
      if (*val && !*p) {
        set_err(err, errlen, "%s: '%s' is out of range (expected %s)", name, val,
                kind_expect(o, expect, sizeof(expect)));
        return -1;
      }
      set_err(err, errlen, "%s: '%s' is not a whole number (expected %s)", name, val,
              kind_expect(o, expect, sizeof(expect)));
      return -1;
    }
    if (v < o->min || v > o->max) {
      set_err(err, errlen, "%s: '%s' is out of range (expected %s)", name, val,
              kind_expect(o, expect, sizeof(expect)));
      return -1;
    }
    if (o->kind == K_U16)
      *(uint16_t *)(void *)field = (uint16_t)v;
    else if (o->kind == K_U32)
      *(uint32_t *)(void *)field = (uint32_t)v;
    else
      *(uint64_t *)(void *)field = v;
    return 0;
  case K_DUR: {
    uint32_t ms = 0;
    switch (parse_duration_ms(val, &ms)) {
    case DUR_OK:
      *(uint32_t *)(void *)field = ms;
      return 0;
    case DUR_ZERO:
      set_err(err, errlen, "%s: '%s' must be greater than zero", name, val);
      return -1;
    case DUR_TOO_LONG:
      set_err(err, errlen, "%s: '%s' is too long (at most 86400s)", name, val);
      return -1;
    case DUR_FRACTION:
      set_err(err, errlen, "%s: '%s' is not a whole number of milliseconds", name, val);
      return -1;
    default:
      set_err(err, errlen,
              "%s: '%s' is not a duration (expected seconds or milliseconds, e.g. 5, 5s, 1.5s "
              "or 250ms)",
              name, val);
      return -1;
    }
  }
  case K_BOOL: {
    int b = parse_bool(val);
    if (b < 0) {
      set_err(err, errlen, "%s: '%s' is not a boolean (expected true/false, 1/0, yes/no or on/off)",
              name, val);
      return -1;
    }
    *(int *)(void *)field = b;
    return 0;
  }
  case K_LOG: {
    int lvl = cfg_parse_log_level(val);
    if (lvl < 0) {
      set_err(err, errlen,
              "%s: '%s' is not a log filter (expected error, warn, info, debug or trace, or "
              "a RUST_LOG filter such as 'warn,issun_server=debug')",
              name, val);
      return -1;
    }
    *(int *)(void *)field = lvl;
    return 0;
  }
  case K_HOST: {
    char host[64];
    const char *orig = val;
    size_t n = strlen(val);
    struct in6_addr a6;
    if (n >= 2 && val[0] == '[' && val[n - 1] == ']') {
      val++;
      n -= 2;
    }
    if (n >= sizeof(host)) {
      set_err(err, errlen, "%s: '%.40s...' is too long for an IP address", name, orig);
      return -1;
    }
    memcpy(host, val, n);
    host[n] = '\0';
    if (inet_pton(AF_INET, host, &a6) != 1 && inet_pton(AF_INET6, host, &a6) != 1) {
      set_err(err, errlen,
              "%s: '%s' is not an IP address (expected e.g. 127.0.0.1, 0.0.0.0, ::1 or [::])",
              name, orig);
      return -1;
    }
    snprintf(field, sizeof(c->metrics_addr), "%s", host);
    return 0;
  }
  case K_SECRET: {
    size_t n = strlen(val);
    if (n < CFG_SECRET_MIN || n > CFG_SECRET_MAX) {
      set_err(err, errlen, "%s: the secret is %zu bytes; HS256 needs %d to %d bytes", name, n,
              CFG_SECRET_MIN, CFG_SECRET_MAX);
      return -1;
    }
    memcpy(c->auth_secret, val, n);
    c->auth_secret_len = n;
    c->auth_enabled = 1;
    return 0;
  }
  case K_SECRET_FILE: {
    if (!*val || strlen(val) >= CFG_PATH_MAX) {
      set_err(err, errlen, "%s: the path is empty or too long", name);
      return -1;
    }
    FILE *f = fopen(val, "rb");
    if (!f) {
      set_err(err, errlen, "%s: cannot open '%s': %s", name, val, strerror(errno));
      return -1;
    }
    uint8_t buf[CFG_SECRET_MAX + 3];
    size_t n = fread(buf, 1, sizeof(buf), f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
      set_err(err, errlen, "%s: cannot read '%s'", name, val);
      return -1;
    }
    if (n > 0 && buf[n - 1] == '\n') {
      n--;
      if (n > 0 && buf[n - 1] == '\r')
        n--;
    }
    if (n < CFG_SECRET_MIN || n > CFG_SECRET_MAX) {
      set_err(err, errlen, "%s: '%s' holds %s%zu bytes; an HS256 secret needs %d to %d bytes",
              name, val, n > CFG_SECRET_MAX ? "more than " : "", n > CFG_SECRET_MAX ? (size_t)CFG_SECRET_MAX : n,
              CFG_SECRET_MIN, CFG_SECRET_MAX);
      return -1;
    }
    memcpy(c->auth_secret, buf, n);
    c->auth_secret_len = n;
    c->auth_enabled = 1;
    snprintf(c->auth_secret_file, sizeof(c->auth_secret_file), "%s", val);
    memset(buf, 0, sizeof(buf));
    return 0;
  }
  case K_RETRY: {
    static const char *const words[] = {"auto", "always", "never"}; /* enum cfg_retry */
    return pick_word(name, val, "Retry mode", words, 3, &c->retry_mode, err, errlen);
  }
  case K_FLUSH: {
    static const char *const words[] = {"auto", "always"}; /* enum cfg_flush */
    return pick_word(name, val, "flush mode", words, 2, &c->flush_mode, err, errlen);
  }
  case K_CC:
    return pick_word(name, val, "congestion control", cc_words, 4, &c->cc_algo, err, errlen);
  case K_LOGFMT: {
    static const char *const words[] = {"text", "json"}; /* enum cfg_log_format */
    return pick_word(name, val, "log format", words, 2, &c->log_format, err, errlen);
  }
  }
  return -1;
}

/* ---- public -------------------------------------------------------------- */

const char *cfg_cc_name(int cc) {
  return cc >= 0 && cc < (int)(sizeof cc_words / sizeof cc_words[0]) ? cc_words[cc] : "?";
}

void cfg_defaults(srv_config *c) {
  memset(c, 0, sizeof(*c));
  snprintf(c->bind_addr, sizeof(c->bind_addr), "%s", DEFAULT_BIND);
  struct sockaddr_in *in = (struct sockaddr_in *)&c->bind;
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(INADDR_ANY);
  in->sin_port = htons(5000);
  c->bind_len = sizeof(*in);
  snprintf(c->cert_path, sizeof(c->cert_path), "certs/cert.pem");
  snprintf(c->key_path, sizeof(c->key_path), "certs/key.pem");
  c->cert_path_set = 0;
  c->max_clients = 1000;
  c->heartbeat_ms = 5000;
  c->hello_timeout_ms = 10000;
  c->enable_rooms = 1;
  c->allow_legacy = 1;
  c->max_rooms = 1000;
  c->default_room_size = 8;
  c->max_room_size = 1000;
  c->max_events_per_sec = 100;
  c->max_frame_payload = 65536;
  c->slow_consumer_bytes = 1048576;
  c->flush_us = 1000;
  c->flush_mode = CFG_FLUSH_AUTO;
  c->flush_max_us = 8000;
  c->flush_busy_pct = 80;
  c->metrics_port = 9090;
  c->log_level = LOG_LVL_INFO;
  c->log_format = LOG_FMT_TEXT;
  c->auth_enabled = 0;
  c->auth_secret_len = 0;
  c->auth_leeway_s = 30;
  c->max_conns_per_ip = 256;
  c->max_handshakes_per_ip = 100;
  c->retry_mode = CFG_RETRY_AUTO;
  c->retry_threshold = 500;
  c->handshake_timeout_ms = 10000;
  c->max_room_name = 128;
  c->max_room_metadata = 4096;
  c->nats_replicas = 1;
  c->cluster_expiry_ms = 5000;
}

/* Prints text indented by `indent` columns, broken at spaces before `width`. */
static void print_wrapped(FILE *f, const char *text, int indent, int width) {
  const int room = width - indent;
  while (*text) {
    int n = (int)strlen(text);
    if (n > room) {
      n = room;
      while (n > 0 && text[n] != ' ')
        n--;
      if (n == 0)
        n = room; /* one word longer than a line */
    }
    fprintf(f, "%*s%.*s\n", indent, "", n, text);
    text += n;
    while (*text == ' ')
      text++;
  }
}

void cfg_usage(void *out) {
  FILE *f = out ? (FILE *)out : stdout;
  fprintf(f, "Usage: issun-server [FLAGS]\n\n"
             "QUIC relay server for issun multiplayer games (ALPN issun/1).\n"
             "Every setting can come from the environment variable shown or from its flag;\n"
             "a flag wins over the variable.  Flags take a value as '--flag VALUE' or\n"
             "'--flag=VALUE'.  An empty variable counts as unset.  Durations are seconds\n"
             "(\"5\", \"5s\", \"1.5s\") or milliseconds (\"250ms\").\n\n"
             "Flags:\n");
  for (size_t i = 0; i < NOPTS; i++) {
    const struct opt *o = &opts[i];
    char lhs[64];
    snprintf(lhs, sizeof(lhs), "--%s %s", o->flag, o->metavar);
    fprintf(f, "  %-30s %s (default: %s)\n", lhs, o->env, o->def);
    print_wrapped(f, o->help, 33, 100);
  }
  fprintf(f, "  %-30s %s\n", "-h, --help", "print this text and exit");
  fprintf(f, "  %-30s %s\n", "-V, --version", "print the version and exit");
}

static const struct opt *find_flag(const char *name, size_t n) {
  for (size_t i = 0; i < NOPTS; i++)
    if (strlen(opts[i].flag) == n && strncmp(opts[i].flag, name, n) == 0)
      return &opts[i];
  return NULL;
}

static const struct opt *find_off(size_t off) {
  for (size_t i = 0; i < NOPTS; i++)
    if (opts[i].off == off)
      return &opts[i];
  return NULL;
}

static int is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static int is_version(const char *a) {
  return strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0;
}

int cfg_load(srv_config *c, int argc, char **argv, char *err, size_t errlen, void *out) {
  FILE *f = out ? (FILE *)out : stdout;
  const char *src[NOPTS]; /* where each value came from, for cross-checks */
  char flagname[64];

  if (err && errlen)
    err[0] = '\0';
  for (int i = 1; i < argc; i++) {
    if (is_help(argv[i])) {
      cfg_usage(f);
      return 1;
    }
    if (is_version(argv[i])) {
      fprintf(f, "%s\n", VERSION_TEXT);
      return 1;
    }
  }

  for (size_t i = 0; i < NOPTS; i++) {
    const char *name = opts[i].env, *val = getenv(name);
    src[i] = NULL;
    if ((!val || !*val) && opts[i].kind == K_LOG) {
      name = "RUST_LOG";
      val = getenv(name);
    }
    if (!val || !*val)
      continue;
    if (apply(c, &opts[i], name, val, err, errlen) != 0)
      return -1;
    src[i] = opts[i].env == name ? opts[i].env : "RUST_LOG";
  }

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *val;
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      if (a[0] == '-')
        set_err(err, errlen, "unknown flag '%s' (see --help)", a);
      else
        set_err(err, errlen, "unexpected argument '%s' (flags start with --; see --help)", a);
      return -1;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    const struct opt *o = find_flag(name, n);
    if (!o) {
      set_err(err, errlen, "unknown flag '--%.*s' (see --help)", (int)n, name);
      return -1;
    }
    snprintf(flagname, sizeof(flagname), "--%s", o->flag);
    if (eq) {
      val = eq + 1;
    } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
      val = argv[++i];
    } else if (o->kind == K_BOOL) {
      val = "true"; /* a bare boolean flag turns the setting on */
    } else {
      set_err(err, errlen, "%s: missing value (expected %s)", flagname, o->metavar);
      return -1;
    }
    if (apply(c, o, flagname, val, err, errlen) != 0)
      return -1;
    src[o - opts] = o->flag;
  }

  {
    const struct opt *sec = find_off(OFF(auth_secret)), *sf = find_off(OFF(auth_secret_file));
    if (src[sec - opts] && src[sf - opts]) {
      set_err(err, errlen, "%s%s and %s%s are both set: give the secret one way only",
              src[sec - opts] == sec->flag ? "--" : "", src[sec - opts],
              src[sf - opts] == sf->flag ? "--" : "", src[sf - opts]);
      return -1;
    }
  }
  if (c->default_room_size > c->max_room_size) {
    const struct opt *d = find_off(OFF(default_room_size)), *m = find_off(OFF(max_room_size));
    const char *dn = src[d - opts], *mn = src[m - opts];
    char dbuf[64], mbuf[64];
    if (dn && dn == d->flag)
      dn = (snprintf(dbuf, sizeof(dbuf), "--%s", d->flag), dbuf);
    if (mn && mn == m->flag)
      mn = (snprintf(mbuf, sizeof(mbuf), "--%s", m->flag), mbuf);
    set_err(err, errlen, "%s: '%u' is larger than the maximum room size %u (%s)", dn ? dn : d->env,
            c->default_room_size, c->max_room_size, mn ? mn : "the default of ISSUN_MAX_ROOM_SIZE");
    return -1;
  }
  return 0;
}
