/*
 * The metrics endpoint of a real issun-server (issue 5): counters move by
 * exactly the right amount after a scripted exchange between libissun
 * clients; promtool accepts the exposition; 404/405/400/431; HEAD; the
 * connection limit and the slow-client deadline; /health answers 503 while
 * the server shuts down.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "it.h"

#define MAX_CONNS 16       /* METRICS_MAX_CONNS */
#define IO_TIMEOUT_MS 5000 /* METRICS_IO_TIMEOUT_MS */

static it_server srv;
static uint16_t mport;
static char mport_env[64];

/* A TCP port nobody listens on right now (the kernel's pick, released). */
static uint16_t free_tcp_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* Starts a server with its metrics endpoint on a free port (a second try
 * if another process took the port in between). */
static int start_with_metrics(it_server *s, uint16_t *port, char *envbuf, size_t envlen,
                              const char *extra, const char *extra2) {
  for (int attempt = 0; attempt < 3; attempt++) {
    *port = free_tcp_port();
    snprintf(envbuf, envlen, "ISSUN_METRICS_PORT=%u", *port);
    const char *env[] = {envbuf, extra ? extra : extra2, extra ? extra2 : NULL, NULL};
    if (it_server_start(s, env) == 0) {
      char needle[64];
      snprintf(needle, sizeof needle, "Metrics endpoint listening on addr=127.0.0.1:%u", *port);
      if (it_server_log_has(s, needle))
        return 0;
      it_server_stop(s);
      return -1;
    }
  }
  return -1;
}

static int setup(void **state) {
  return start_with_metrics(&srv, &mport, mport_env, sizeof mport_env,
                            "ISSUN_MAX_EVENTS_PER_SEC=1000", NULL);
}

static int teardown(void **state) {
  return it_server_stop(&srv) == 0 ? 0 : -1;
}

/* ---- a tiny HTTP client ------------------------------------------------- */

static int tcp_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0)
    return -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads until the peer closes (or timeout_ms); returns the bytes read
 * (malloc'ed, NUL-terminated) or NULL on timeout. */
static char *read_to_eof(int fd, int timeout_ms, size_t *len) {
  size_t cap = 65536, n = 0;
  char *b = malloc(cap);
  uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    uint64_t now = it_now_ms();
    if (now >= end) {
      free(b);
      return NULL;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(end - now)) <= 0)
      continue;
    if (n + 1 == cap)
      b = realloc(b, cap *= 2);
    ssize_t r = recv(fd, b + n, cap - 1 - n, 0);
    if (r > 0) {
      n += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    break; /* EOF or reset */
  }
  b[n] = 0;
  if (len)
    *len = n;
  return b;
}

typedef struct http_resp {
  int status;
  char *all;        /* head + body */
  const char *body; /* into all */
} http_resp;

static http_resp http_raw(uint16_t port, const char *req, size_t reqlen) {
  http_resp r = {0};
  int fd = tcp_connect(port);
  assert_true(fd >= 0);
  assert_int_equal(send_all(fd, req, reqlen), 0);
  r.all = read_to_eof(fd, 5000, NULL);
  close(fd);
  assert_non_null(r.all);
  if (sscanf(r.all, "HTTP/1.1 %d ", &r.status) != 1)
    r.status = -1;
  const char *e = strstr(r.all, "\r\n\r\n");
  r.body = e ? e + 4 : "";
  return r;
}

static http_resp http(uint16_t port, const char *method, const char *path) {
  char req[512];
  int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: it\r\n\r\n",
                   method, path);
  return http_raw(port, req, (size_t)n);
}

static char *scrape_port(uint16_t port) {
  http_resp r = http(port, "GET", "/metrics");
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.all, "Content-Type: text/plain; version=0.0.4"));
  char *body = strdup(r.body);
  free(r.all);
  return body;
}

/* The value of the sample `series` (name plus labels, exactly as exposed),
 * or -1 when absent. */
static double value_of(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; (p = strstr(p, series)) != NULL; p += n)
    if ((p == text || p[-1] == '\n') && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  return -1;
}

static char *scrape(void) {
  return scrape_port(mport);
}

static double metric_on(uint16_t port, const char *series) {
  char *t = scrape_port(port);
  double v = value_of(t, series);
  free(t);
  if (v < 0)
    fail_msg("series %s not exposed", series);
  return v;
}

static double metric(const char *series) {
  return metric_on(mport, series);
}

/* Drives the given clients for ms of wall time (it_poll returns as soon
 * as one of them has work). */
static void drive_for(int ms, itc *const *cs, size_t n) {
  for (uint64_t end = it_now_ms() + (uint64_t)ms; it_now_ms() < end;)
    it_poll(ms, cs, n);
}

/* Polls /metrics on `port` every every_ms until `series` equals want
 * (counters the clients cannot see move: drops, disconnects), driving the
 * given clients meanwhile. */
static int wait_metric_fn(uint16_t port, const char *series, double want, int timeout_ms,
                          int every_ms, itc *const *cs, size_t n) {
  uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    if (metric_on(port, series) == want)
      return 1;
    if (it_now_ms() >= end)
      return 0;
    drive_for(every_ms, cs, n);
  }
}

#define WAIT_METRIC(series, want, timeout_ms, ...)                                                 \
  ({                                                                                               \
    itc *const cs_[] = {__VA_ARGS__};                                                              \
    wait_metric_fn(mport, series, want, timeout_ms, 20, cs_, sizeof cs_ / sizeof cs_[0]);          \
  })

/* ---- counters ----------------------------------------------------------- */

static const char *const tracked[] = {
    "issun_connected_clients",
    "issun_active_rooms",
    "issun_events_relayed_total{scope=\"broadcast\"}",
    "issun_events_relayed_total{scope=\"targeted\"}",
    "issun_events_relayed_total{scope=\"to_server\"}",
    "issun_event_deliveries_total",
    "issun_events_dropped_total{reason=\"no_target\"}",
    "issun_events_dropped_total{reason=\"to_server\"}",
    "issun_events_dropped_total{reason=\"rate_limited\"}",
    "issun_events_dropped_total{reason=\"slow_consumer\"}",
    "issun_events_dropped_total{reason=\"too_big\"}",
    "issun_handshakes_total{result=\"ok\"}",
    "issun_handshakes_total{result=\"refused\"}",
    "issun_handshakes_total{result=\"tls_failed\"}",
    "issun_handshakes_total{result=\"timeout\"}",
    "issun_disconnects_total{reason=\"no_error\"}",
    "issun_disconnects_total{reason=\"closed_by_peer\"}",
    "issun_disconnects_total{reason=\"protocol_error\"}",
    "issun_connection_duration_seconds_count{status=\"closed\"}",
    "issun_connection_duration_seconds_count{status=\"error\"}",
    "issun_relay_latency_microseconds_count{scope=\"broadcast\"}",
    "issun_relay_latency_microseconds_count{scope=\"targeted\"}",
    "issun_bytes_received_total",
    "issun_bytes_sent_total",
    "issun_packets_received_total",
};
#define NTRACKED (sizeof tracked / sizeof tracked[0])

static void snapshot(double *v) {
  char *t = scrape();
  for (size_t i = 0; i < NTRACKED; i++) {
    v[i] = value_of(t, tracked[i]);
    if (v[i] < 0)
      fail_msg("series %s not exposed", tracked[i]);
  }
  free(t);
}

static double delta(const double *before, const double *after, const char *series) {
  for (size_t i = 0; i < NTRACKED; i++)
    if (strcmp(tracked[i], series) == 0)
      return after[i] - before[i];
  fail_msg("untracked %s", series);
  return 0;
}

#define ASSERT_DELTA(series, want)                                                                 \
  do {                                                                                             \
    double d_ = delta(before, after, series);                                                      \
    if (d_ != (want))                                                                              \
      fail_msg("%s moved by %g, expected %g", series, d_, (double)(want));                         \
  } while (0)

static void send_ev(itc *t, const char *type, issun_scope scope, uint64_t target) {
  int rv = issun_client_send(t->c, type, scope, target, ISSUN_RELIABLE, "x", 1, NULL);
  if (rv != 0)
    fail_msg("send %s: %s", type, issun_strerror(rv));
}

static void test_counters_move_exactly(void **state) {
  double before[NTRACKED], after[NTRACKED];
  snapshot(before);
  assert_true(before[0] == 0); /* nobody connected yet */

  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL), *c = itc_new(&srv, "c", NULL);
  assert_int_equal(metric("issun_connected_clients"), 3);
  uint64_t idb = issun_client_node_id(b->c);

  /* 2 broadcasts from a reach b and c: 2 relayed, 4 copies. */
  send_ev(a, "m::Hi", ISSUN_SCOPE_BROADCAST, 0);
  send_ev(a, "m::Hi", ISSUN_SCOPE_BROADCAST, 0);
  assert_true(IT_WAIT(5000, b->nev == 2 && c->nev == 2, a, b, c));
  /* 1 targeted event a -> b. */
  send_ev(a, "m::Direct", ISSUN_SCOPE_TARGETED, idb);
  assert_true(IT_WAIT(5000, b->nev == 3, a, b, c));
  /* Dropped: a target that does not exist, and a to-server event. */
  send_ev(a, "m::Lost", ISSUN_SCOPE_TARGETED, 0x7777777777ull);
  assert_true(WAIT_METRIC("issun_events_dropped_total{reason=\"no_target\"}", before[6] + 1, 5000,
                          a, b, c));
  send_ev(a, "m::Server", ISSUN_SCOPE_TO_SERVER, 0);
  assert_true(WAIT_METRIC("issun_events_dropped_total{reason=\"to_server\"}", before[7] + 1, 5000,
                          a, b, c));
  /* A room. */
  assert_int_equal(itc_room_create(a, "r", 0, NULL, 0, NULL), 0);
  /* c leaves cleanly. */
  itc_free(c);
  assert_true(WAIT_METRIC("issun_connected_clients", 2, 5000, a, b));

  snapshot(after);
  ASSERT_DELTA("issun_connected_clients", 2);
  ASSERT_DELTA("issun_active_rooms", 1);
  ASSERT_DELTA("issun_handshakes_total{result=\"ok\"}", 3);
  ASSERT_DELTA("issun_handshakes_total{result=\"refused\"}", 0);
  ASSERT_DELTA("issun_handshakes_total{result=\"tls_failed\"}", 0);
  ASSERT_DELTA("issun_handshakes_total{result=\"timeout\"}", 0);
  ASSERT_DELTA("issun_events_relayed_total{scope=\"broadcast\"}", 2);
  ASSERT_DELTA("issun_events_relayed_total{scope=\"targeted\"}", 1);
  ASSERT_DELTA("issun_events_relayed_total{scope=\"to_server\"}", 0);
  ASSERT_DELTA("issun_event_deliveries_total", 5);
  ASSERT_DELTA("issun_events_dropped_total{reason=\"no_target\"}", 1);
  ASSERT_DELTA("issun_events_dropped_total{reason=\"to_server\"}", 1);
  ASSERT_DELTA("issun_events_dropped_total{reason=\"rate_limited\"}", 0);
  ASSERT_DELTA("issun_events_dropped_total{reason=\"slow_consumer\"}", 0);
  ASSERT_DELTA("issun_events_dropped_total{reason=\"too_big\"}", 0);
  ASSERT_DELTA("issun_relay_latency_microseconds_count{scope=\"broadcast\"}", 2);
  ASSERT_DELTA("issun_relay_latency_microseconds_count{scope=\"targeted\"}", 1);
  /* The clean leave: one disconnect, one lifetime observed as "closed". */
  double clean = delta(before, after, "issun_disconnects_total{reason=\"no_error\"}") +
                 delta(before, after, "issun_disconnects_total{reason=\"closed_by_peer\"}");
  assert_true(clean == 1);
  ASSERT_DELTA("issun_disconnects_total{reason=\"protocol_error\"}", 0);
  ASSERT_DELTA("issun_connection_duration_seconds_count{status=\"closed\"}", 1);
  ASSERT_DELTA("issun_connection_duration_seconds_count{status=\"error\"}", 0);
  /* Traffic flowed both ways: at least the handshakes' bytes. */
  assert_true(delta(before, after, "issun_bytes_received_total") > 3 * 1200);
  assert_true(delta(before, after, "issun_bytes_sent_total") > 3 * 1000);
  assert_true(delta(before, after, "issun_packets_received_total") >= 3 * 3);

  itc_free(a);
  itc_free(b);
  assert_true(WAIT_METRIC("issun_connected_clients", 0, 5000, NULL));
  assert_true(WAIT_METRIC("issun_active_rooms", 0, 5000, NULL)); /* went with its last member */
}

/* ---- promtool ----------------------------------------------------------- */

static void test_promtool_accepts_exposition(void **state) {
  /* Some traffic first, so the histograms have observations. */
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL);
  send_ev(a, "m::Hi", ISSUN_SCOPE_BROADCAST, 0);
  assert_true(IT_WAIT(5000, b->nev == 1, a, b));
  char *t = scrape();
  char path[] = "/tmp/issun-it-metrics-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
  close(fd);
  free(t);
  itc_free(a);
  itc_free(b);

  char cmd[256], out[4096];
  snprintf(cmd, sizeof cmd,
           "command -v promtool >/dev/null || exit 127; promtool check metrics < %s 2>&1", path);
  int rc = it_run(cmd, out, sizeof out);
  unlink(path);
  if (rc == 127)
    fail_msg("promtool not found: install the 'prometheus' package (scripts/deps.sh test)");
  /* Exit 0, or exit 3 (lint findings) whose only finding is the one the
   * seed's metric name brings: "issun_relay_latency_microseconds use base
   * unit seconds" (docs/operations.md explains the choice).  Parse errors
   * exit 1 and fail here. */
  if (rc == 0)
    return;
  const char *allowed =
      "issun_relay_latency_microseconds use base unit \"seconds\" instead of \"microseconds\"";
  if (rc != 3)
    fail_msg("promtool exit %d: %s", rc, out);
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
    if (strcmp(line, allowed) != 0)
      fail_msg("promtool finding: %s", line);
}

/* ---- HTTP behaviour ----------------------------------------------------- */

static void test_paths_methods_and_bad_requests(void **state) {
  http_resp r = http(mport, "GET", "/health");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "OK\n");
  free(r.all);

  r = http(mport, "HEAD", "/health");
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.all, "Content-Length: 3\r\n"));
  assert_string_equal(r.body, ""); /* no body for HEAD */
  free(r.all);

  r = http(mport, "GET", "/metrics?x=1");
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "# TYPE issun_connected_clients gauge\n"));
  free(r.all);

  const char *nf[] = {"/", "/metric", "/metrics/extra", "/healthz", "/%2e%2e/etc/passwd"};
  for (size_t i = 0; i < sizeof nf / sizeof nf[0]; i++) {
    r = http(mport, "GET", nf[i]);
    assert_int_equal(r.status, 404);
    free(r.all);
  }
  const char *bm[] = {"POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"};
  for (size_t i = 0; i < sizeof bm / sizeof bm[0]; i++) {
    r = http(mport, bm[i], "/metrics");
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.all, "Allow: GET, HEAD\r\n"));
    free(r.all);
  }
  const char *bad[] = {"GET /metrics\r\n\r\n",
                       "\r\n\r\n",
                       "GET /metrics HTTP/9.9\r\n\r\n",
                       "get /health HTTP/1.1\r\n\r\n",
                       "GET http://x/metrics HTTP/1.1\r\n\r\n",
                       "\x16\x03\x01\x02\x01\x01\xfc\x03\x03\n\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    r = http_raw(mport, bad[i], strlen(bad[i]));
    assert_int_equal(r.status, 400);
    free(r.all);
  }

  /* A head without an end within 4 KiB: 431, counted. */
  double before = metric("issun_metrics_http_dropped_total{reason=\"too_large\"}");
  size_t n = 6000;
  char *big = malloc(n);
  memset(big, 'a', n);
  memcpy(big, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
  int fd = tcp_connect(mport);
  assert_true(fd >= 0);
  (void)send_all(fd, big, n); /* the server may stop reading after 4 KiB */
  char *resp = read_to_eof(fd, 5000, NULL);
  close(fd);
  free(big);
  assert_non_null(resp);
  assert_true(strncmp(resp, "HTTP/1.1 431 ", 13) == 0);
  free(resp);
  assert_int_equal(metric("issun_metrics_http_dropped_total{reason=\"too_large\"}"), before + 1);

  /* A request sent one byte at a time still gets its answer. */
  const char *slow = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  fd = tcp_connect(mport);
  assert_true(fd >= 0);
  for (const char *p = slow; *p; p++)
    assert_int_equal(send_all(fd, p, 1), 0);
  resp = read_to_eof(fd, 5000, NULL);
  close(fd);
  assert_non_null(resp);
  assert_true(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
  free(resp);
}

static void test_connection_limit(void **state) {
  double before = metric("issun_metrics_http_dropped_total{reason=\"too_many_connections\"}");
  int held[MAX_CONNS];
  for (int i = 0; i < MAX_CONNS; i++) {
    held[i] = tcp_connect(mport);
    assert_true(held[i] >= 0);
    /* A byte each, so they are certainly accepted and reading. */
    assert_int_equal(send_all(held[i], "G", 1), 0);
  }
  /* One more: accepted by the kernel, closed by the server without a word. */
  int extra = tcp_connect(mport);
  assert_true(extra >= 0);
  size_t len = 99;
  char *got = read_to_eof(extra, 5000, &len);
  close(extra);
  assert_non_null(got); /* closed, not left hanging */
  assert_int_equal(len, 0);
  free(got);
  /* The held ones still work: finish one request. */
  const char *rest = "ET /health HTTP/1.1\r\n\r\n";
  assert_int_equal(send_all(held[0], rest, strlen(rest)), 0);
  got = read_to_eof(held[0], 5000, NULL);
  assert_non_null(got);
  assert_true(strncmp(got, "HTTP/1.1 200 OK\r\n", 17) == 0);
  free(got);
  for (int i = 0; i < MAX_CONNS; i++)
    close(held[i]);
  /* Slots free again once the server sees the FINs: scrapes work. */
  uint64_t end = it_now_ms() + 5000;
  double now_dropped = -1;
  while (it_now_ms() < end) {
    int fd = tcp_connect(mport);
    assert_true(fd >= 0);
    const char *req = "GET /metrics HTTP/1.1\r\n\r\n";
    send_all(fd, req, strlen(req));
    char *t = read_to_eof(fd, 5000, NULL);
    close(fd);
    const char *body = t ? strstr(t, "\r\n\r\n") : NULL;
    if (body)
      now_dropped =
          value_of(body + 4, "issun_metrics_http_dropped_total{reason=\"too_many_connections\"}");
    free(t);
    if (now_dropped >= 0)
      break;
  }
  assert_true(now_dropped == before + 1);
}

static void test_slow_client_dropped_without_stalling(void **state) {
  double before = metric("issun_metrics_http_dropped_total{reason=\"timeout\"}");
  int idle = tcp_connect(mport);
  assert_true(idle >= 0);
  assert_int_equal(send_all(idle, "GET /metr", 9), 0); /* and then nothing */
  /* Meanwhile the endpoint and the relay answer at once. */
  uint64_t t0 = it_now_ms();
  http_resp r = http(mport, "GET", "/health");
  assert_int_equal(r.status, 200);
  free(r.all);
  itc *a = itc_new(&srv, "a", NULL), *b = itc_new(&srv, "b", NULL);
  send_ev(a, "m::Hi", ISSUN_SCOPE_BROADCAST, 0);
  assert_true(IT_WAIT(5000, b->nev == 1, a, b));
  itc_free(a);
  itc_free(b);
  assert_true(it_now_ms() - t0 < IO_TIMEOUT_MS);
  /* The idle one is cut off at its deadline (plus a generous margin). */
  size_t len = 99;
  char *got = read_to_eof(idle, IO_TIMEOUT_MS + 5000, &len);
  uint64_t waited = it_now_ms() - t0;
  close(idle);
  assert_non_null(got);
  assert_int_equal(len, 0);
  free(got);
  assert_true(waited >= IO_TIMEOUT_MS - 1000);
  assert_int_equal(metric("issun_metrics_http_dropped_total{reason=\"timeout\"}"), before + 1);
}

/* ---- flush window ------------------------------------------------------- */

/* A series of some server's /metrics that stops pace() once it is above
 * `above`; `last` is the value read last. */
typedef struct watch {
  uint16_t port;
  const char *series;
  double above;
  double last;
} watch;

/* Sends one broadcast from each of the first `senders` of the n clients
 * every period_ms for ms milliseconds (or until w, read every 100 ms,
 * says stop), polling all n in between; returns the events sent. */
static size_t pace(itc *const *cs, size_t n, size_t senders, int period_ms, int ms, watch *w) {
  size_t sent = 0;
  uint64_t start = it_now_ms(), next = start, next_scrape = start + 100;
  while (it_now_ms() - start < (uint64_t)ms) {
    uint64_t now = it_now_ms();
    if (now >= next) {
      for (size_t i = 0; i < senders; i++, sent++)
        send_ev(cs[i], "m::Tick", ISSUN_SCOPE_BROADCAST, 0);
      next += (uint64_t)period_ms;
    }
    if (w && now >= next_scrape) {
      next_scrape = now + 100;
      if ((w->last = metric_on(w->port, w->series)) > w->above)
        break;
    }
    it_poll(1, cs, n);
  }
  return sent;
}

static void test_flush_window_follows_traffic(void **state) {
  /* Default settings: a 1 ms window in auto mode. */
  assert_int_equal(metric("issun_flush_window_active"), 0);
  double secs0 = metric("issun_flush_window_seconds_total");
  itc *cs[8];
  char name[8];
  for (int i = 0; i < 8; i++) {
    snprintf(name, sizeof name, "f%d", i);
    cs[i] = itc_new(&srv, name, NULL);
  }

  /* Four players at 30 Hz: each gets an event every 11 ms, which a 1 ms
   * window could not pack.  A second of it never turns the window on. */
  size_t sent = pace(cs, 4, 4, 33, 1000, NULL);
  assert_true(sent >= 40);
  /* every event reaches the seven others */
  assert_true(IT_WAIT(5000, cs[7]->nev == sent, cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6],
                      cs[7]));
  assert_int_equal(metric("issun_flush_window_active"), 0);
  assert_true(metric("issun_flush_window_seconds_total") == secs0);

  /* Eight players every 2 ms: each gets seven events per 2 ms.  The
   * window comes on within a few decisions (one per 100 ms)... */
  pace(cs, 8, 8, 2, 10000, &(watch){mport, "issun_flush_window_active", 0.5, 0});
  assert_int_equal(metric("issun_flush_window_active"), 1);
  /* ...and goes off once the traffic stops. */
  assert_true(WAIT_METRIC("issun_flush_window_active", 0, 5000, cs[0], cs[1], cs[2], cs[3], cs[4],
                          cs[5], cs[6], cs[7]));
  assert_true(metric("issun_flush_window_seconds_total") > secs0);
  for (int i = 0; i < 8; i++)
    itc_free(cs[i]);
}

/* The loop's busy share widens the window.  With ISSUN_FLUSH_BUSY_PCT=1
 * any real traffic is "load": the window must grow past ISSUN_FLUSH_US
 * while events flow, deliver every one of them, and go back to none once
 * they stop. */
static void test_flush_window_widens_under_load(void **state) {
  it_server s3;
  uint16_t port3;
  char env3[64];
  assert_int_equal(start_with_metrics(&s3, &port3, env3, sizeof env3,
                                      "ISSUN_MAX_EVENTS_PER_SEC=1000", "ISSUN_FLUSH_BUSY_PCT=1"),
                   0);
  assert_int_equal(metric_on(port3, "issun_flush_window_length_seconds"), 0);
  itc *cs[8];
  char name[8];
  for (int i = 0; i < 8; i++) {
    snprintf(name, sizeof name, "w%d", i);
    cs[i] = itc_new(&s3, name, NULL);
  }
  double busy0 = metric_on(port3, "issun_loop_busy_seconds_total");
  uint64_t t0 = it_now_ms();

  /* Four players every 2 ms, watched until the window is past 1 ms. */
  watch w = {port3, "issun_flush_window_length_seconds", 0.001, 0};
  size_t sent = pace(cs, 8, 4, 2, 10000, &w);
  if (w.last <= 0.001) fail_msg("window stayed at %.6f s", w.last);
  assert_int_equal(metric_on(port3, "issun_flush_window_active"), 1);
  assert_true(it_server_log_has(&s3, "Relay loop short of CPU, widening the flush window"));
  /* Nothing is lost to the wider window. */
  assert_true(IT_WAIT(5000, cs[7]->nev == sent, cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6],
                      cs[7]));
  assert_int_equal(cs[4]->nev, sent);

  /* Idle again: back to no window (auto mode never saw hot clients).
   * Scrapes are work too, so they come only every quarter second here. */
  assert_true(wait_metric_fn(port3, "issun_flush_window_length_seconds", 0, 8000, 250, cs, 8));
  assert_true(it_server_log_has(&s3, "flush window back to normal"));
  /* The busy counter moved, and by less than the time that passed. */
  double busy = metric_on(port3, "issun_loop_busy_seconds_total") - busy0;
  assert_true(busy > 0);
  assert_true(busy < (double)(it_now_ms() - t0) / 1000.0 + 0.01);
  for (int i = 0; i < 8; i++)
    itc_free(cs[i]);
  assert_int_equal(it_server_stop(&s3), 0);
}

/* ---- shutdown ----------------------------------------------------------- */

static void test_health_503_while_shutting_down(void **state) {
  it_server s2;
  uint16_t port2;
  char env2[64];
  assert_int_equal(start_with_metrics(&s2, &port2, env2, sizeof env2, NULL, NULL), 0);
  http_resp r = http(port2, "GET", "/health");
  assert_int_equal(r.status, 200);
  free(r.all);
  itc *a = itc_new(&s2, "a", NULL);

  /* A health check in flight when SIGTERM arrives... */
  int fd = tcp_connect(port2);
  assert_true(fd >= 0);
  const char *part1 = "GET /health HTTP/1.1\r\nHost: x\r\n";
  assert_int_equal(send_all(fd, part1, strlen(part1)), 0);
  assert_int_equal(kill(s2.pid, SIGTERM), 0);
  uint64_t end = it_now_ms() + 5000;
  while (!it_server_log_has(&s2, "Shutting down") && it_now_ms() < end)
    it_poll(5, &a, 1);
  assert_true(it_server_log_has(&s2, "Shutting down"));
  /* ...is answered 503, and holds the exit until it is. */
  assert_int_equal(send_all(fd, "\r\n", 2), 0);
  char *resp = read_to_eof(fd, 5000, NULL);
  close(fd);
  assert_non_null(resp);
  if (strncmp(resp, "HTTP/1.1 503 Service Unavailable\r\n", 34) != 0)
    fail_msg("got: %s", resp);
  assert_non_null(strstr(resp, "\r\n\r\nshutting down\n"));
  free(resp);

  /* The client was told, and the server exits cleanly. */
  assert_true(IT_WAIT(5000, itc_has_error(a, ISSUN_WIRE_SHUTTING_DOWN), a));
  assert_int_equal(it_server_signal(&s2, SIGTERM, 5000), 0);
  assert_int_equal(s2.exit_status, 0);
  /* Nothing listens on the metrics port any more. */
  int after = tcp_connect(port2);
  if (after >= 0)
    close(after);
  assert_true(after < 0);
  itc_free(a);
  it_server_stop(&s2);
}

static void test_metrics_port_in_use_is_a_clear_error(void **state) {
  /* Another process owns the port: the relay refuses to start and says why. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 1), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
  char env[64];
  snprintf(env, sizeof env, "ISSUN_METRICS_PORT=%u", ntohs(a.sin_port));
  const char *e[] = {env, NULL};
  it_server s3;
  assert_int_equal(it_server_start(&s3, e), -1);
  assert_int_equal(s3.exit_status, 1);
  assert_true(it_server_log_has(&s3, "ISSUN_METRICS_PORT"));
  assert_true(it_server_log_has(&s3, "Address already in use"));
  it_server_stop(&s3);
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counters_move_exactly),
      cmocka_unit_test(test_promtool_accepts_exposition),
      cmocka_unit_test(test_paths_methods_and_bad_requests),
      cmocka_unit_test(test_connection_limit),
      cmocka_unit_test(test_slow_client_dropped_without_stalling),
      cmocka_unit_test(test_flush_window_follows_traffic),
      cmocka_unit_test(test_flush_window_widens_under_load),
      cmocka_unit_test(test_health_503_while_shutting_down),
      cmocka_unit_test(test_metrics_port_in_use_is_a_clear_error),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
