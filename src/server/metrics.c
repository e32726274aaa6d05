/*
 * GET /metrics and GET /health inside the relay's epoll loop (metrics.h says
 * what it is and is not).  Everything here runs on the loop's thread: the
 * counters are read without locks, the response is rendered in memory and
 * written without blocking.
 */
#include "server/metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "server/auth.h"
#include "server/cluster.h"
#include "server/server_int.h"

#define MS_NS 1000000ull
#define DRAIN_MS 1000       /* after the response: wait this long for the peer's FIN */
#define ACCEPT_PAUSE_MS 100 /* accept() failing for lack of fds: retry after this */
#define ISSUN_VERSION "0.1.0"

enum hstate { H_FREE = 0, H_READ, H_WRITE, H_DRAIN };

enum hdrop { HD_TOO_MANY = 0, HD_TIMEOUT, HD_TOO_LARGE, HD_N };
static const char *const hdrop_names[HD_N] = {"too_many_connections", "timeout", "too_large"};

typedef struct hconn {
  int fd;
  int state;
  uint64_t deadline; /* CLOCK_MONOTONIC ns */
  size_t req_len;
  char req[METRICS_REQ_MAX];
  char *resp;
  size_t resp_len, resp_off;
} hconn;

struct metrics {
  srv *s;
  int epfd, lfd, tfd;
  uint16_t port;
  uint64_t armed;        /* deadline the timerfd is set to, 0 = none */
  uint64_t paused_until; /* listener off until then (accept ran out of fds) */
  uint64_t dropped[HD_N];
  hconn conns[METRICS_MAX_CONNS];
};

/* ---- a growing text buffer --------------------------------------------- */

typedef struct mbuf {
  char *p;
  size_t len, cap;
  int oom;
} mbuf;

static void mb_printf(mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void mb_printf(mbuf *b, const char *fmt, ...) {
  while (!b->oom) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t ncap = b->cap * 2;
    while (ncap - b->len <= (size_t)n)
      ncap *= 2;
    char *np = realloc(b->p, ncap);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = ncap;
  }
}

/* ---- process metrics (Linux /proc) -------------------------------------- */

/* Reads a small /proc file into buf (NUL-terminated); returns its length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "re");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = 0;
  return (ssize_t)n;
}

/* Seconds since the epoch at which this process started: its start time in
 * clock ticks after boot (/proc/self/stat field 22) plus the boot time
 * (/proc/stat btime).  Computed once; the first call's clock as a fallback. */
static double process_start_time(void) {
  static double cached;
  if (cached > 0)
    return cached;
  char buf[1024];
  unsigned long long ticks = 0, btime = 0;
  int ok = 0;
  if (read_small("/proc/self/stat", buf, sizeof buf) > 0) {
    /* The command name (field 2) may hold spaces and parentheses: start
     * after the last ')'; field 3 comes next, field 22 is 19 further. */
    char *p = strrchr(buf, ')');
    if (p) {
      p++;
      int field = 2;
      char *save = NULL;
      for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        if (++field == 22) {
          ticks = strtoull(tok, NULL, 10);
          ok = 1;
          break;
        }
      }
    }
  }
  FILE *f = ok ? fopen("/proc/stat", "re") : NULL;
  ok = 0;
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "btime %llu", &btime) == 1) {
        ok = 1;
        break;
      }
    fclose(f);
  }
  long hz = sysconf(_SC_CLK_TCK);
  if (ok && hz > 0) {
    cached = (double)btime + (double)ticks / (double)hz;
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cached = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  }
  return cached;
}

static long count_open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  long n = 0;
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (atoi(e->d_name) == self)
      continue; /* the directory being read */
    n++;
  }
  closedir(d);
  return n;
}

static void render_process(mbuf *b) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    mb_printf(b,
              "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
              "# TYPE process_cpu_seconds_total counter\n"
              "process_cpu_seconds_total %.6f\n",
              cpu);
  }
  char buf[256];
  unsigned long long vsz_pages, rss_pages;
  long page = sysconf(_SC_PAGESIZE);
  if (read_small("/proc/self/statm", buf, sizeof buf) > 0 &&
      sscanf(buf, "%llu %llu", &vsz_pages, &rss_pages) == 2 && page > 0) {
    mb_printf(b,
              "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
              "# TYPE process_resident_memory_bytes gauge\n"
              "process_resident_memory_bytes %llu\n"
              "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
              "# TYPE process_virtual_memory_bytes gauge\n"
              "process_virtual_memory_bytes %llu\n",
              rss_pages * (unsigned long long)page, vsz_pages * (unsigned long long)page);
  }
  long fds = count_open_fds();
  if (fds >= 0)
    mb_printf(b,
              "# HELP process_open_fds Number of open file descriptors.\n"
              "# TYPE process_open_fds gauge\n"
              "process_open_fds %ld\n",
              fds);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    mb_printf(b,
              "# HELP process_max_fds Maximum number of open file descriptors.\n"
              "# TYPE process_max_fds gauge\n"
              "process_max_fds %llu\n",
              (unsigned long long)rl.rlim_cur);
  mb_printf(b,
            "# HELP process_start_time_seconds Start time of the process since unix epoch in "
            "seconds.\n"
            "# TYPE process_start_time_seconds gauge\n"
            "process_start_time_seconds %.2f\n",
            process_start_time());
}

/* ---- the relay's metrics ------------------------------------------------- */

static void family(mbuf *b, const char *name, const char *type, const char *help) {
  mb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Milliseconds as a decimal number of seconds without trailing zeros. */
static const char *ms_as_seconds(uint64_t ms, char *out, size_t n) {
  uint64_t s = ms / 1000, frac = ms % 1000;
  if (frac == 0) {
    snprintf(out, n, "%llu", (unsigned long long)s);
  } else {
    char f[4];
    snprintf(f, sizeof f, "%03llu", (unsigned long long)frac);
    for (int i = 2; i > 0 && f[i] == '0'; i--)
      f[i] = 0;
    snprintf(out, n, "%llu.%s", (unsigned long long)s, f);
  }
  return out;
}

/* One histogram series: cumulative buckets, +Inf, sum, count.  ms != 0:
 * the values are milliseconds rendered as seconds. */
static void hist_series(mbuf *b, const char *name, const char *label, const st_hist *h,
                        const uint64_t *bounds, int nb, int ms) {
  uint64_t cum = 0;
  char le[32];
  for (int i = 0; i < nb; i++) {
    cum += h->bucket[i];
    if (ms)
      ms_as_seconds(bounds[i], le, sizeof le);
    else
      snprintf(le, sizeof le, "%llu", (unsigned long long)bounds[i]);
    mb_printf(b, "%s_bucket{%s,le=\"%s\"} %llu\n", name, label, le, (unsigned long long)cum);
  }
  mb_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, label, (unsigned long long)h->count);
  if (ms)
    mb_printf(b, "%s_sum{%s} %s\n", name, label, ms_as_seconds(h->sum, le, sizeof le));
  else
    mb_printf(b, "%s_sum{%s} %llu\n", name, label, (unsigned long long)h->sum);
  mb_printf(b, "%s_count{%s} %llu\n", name, label, (unsigned long long)h->count);
}

static const char *const scope_names[ST_SCOPE_N] = {"broadcast", "to_server", "targeted"};
static const char *const hs_names[ST_HS_N] = {"ok", "tls_failed", "refused", "timeout"};

/* Session end classes for issun_connection_duration_seconds{status}. */
enum { DS_CLOSED = 0, DS_TIMEOUT, DS_SHUTDOWN, DS_ERROR, DS_N };
static const char *const ds_names[DS_N] = {"closed", "timeout", "shutdown", "error"};

static int disc_status(int reason) {
  switch (reason) {
  case PR_E_NO_ERROR:
  case ST_DISC_PEER:
    return DS_CLOSED;
  case PR_E_TIMEOUT:
  case ST_DISC_IDLE:
    return DS_TIMEOUT;
  case PR_E_SHUTTING_DOWN:
    return DS_SHUTDOWN;
  default:
    return DS_ERROR;
  }
}

size_t metrics_render(const srv *s, char **out) {
  mbuf b = {.p = malloc(16384), .cap = 16384};
  *out = NULL;
  if (!b.p)
    return 0;
  const srv_stats *st = &s->stats;

  family(&b, "issun_build_info", "gauge", "Version of the running relay (always 1).");
  mb_printf(&b, "issun_build_info{version=\"%s\"} 1\n", ISSUN_VERSION);

  family(&b, "issun_connected_clients", "gauge",
         "Sessions established (HELLO answered with ACK) and not yet ended.");
  mb_printf(&b, "issun_connected_clients %u\n", s->nsessions);
  family(&b, "issun_max_clients", "gauge", "Configured session limit (ISSUN_MAX_CLIENTS).");
  mb_printf(&b, "issun_max_clients %u\n", s->cfg.max_clients);
  family(&b, "issun_quic_connections", "gauge",
         "QUIC connections in any state (handshaking, in session, closing).");
  mb_printf(&b, "issun_quic_connections %u\n", s->nconns);
  family(&b, "issun_active_rooms", "gauge", "Rooms that exist (waiting or started).");
  mb_printf(&b, "issun_active_rooms %zu\n", s->rooms ? rooms_count(s->rooms) : (size_t)0);

  family(&b, "issun_flush_window_active", "gauge",
         "1 while the flush window is in force (ISSUN_FLUSH_MODE: always, or auto and most "
         "events go to clients that receive them less than two windows apart; or the loop is "
         "short of CPU).");
  mb_printf(&b, "issun_flush_window_active %d\n", srv_flush_window_us(s) ? 1 : 0);
  family(&b, "issun_flush_window_length_seconds", "gauge",
         "Length of the flush window in force (0: none); above ISSUN_FLUSH_US while the loop "
         "is short of CPU (ISSUN_FLUSH_BUSY_PCT, ISSUN_FLUSH_MAX_US).");
  mb_printf(&b, "issun_flush_window_length_seconds %.6f\n", (double)srv_flush_window_us(s) / 1e6);
  family(&b, "issun_flush_window_seconds_total", "counter",
         "Time the flush window was in force.");
  mb_printf(&b, "issun_flush_window_seconds_total %.3f\n", (double)st->flush_active_ns / 1e9);
  family(&b, "issun_loop_busy_seconds_total", "counter",
         "Time the relay's event loop spent working rather than waiting; its rate is the share "
         "of a core the relay uses.");
  {
    uint64_t up = s->now > s->loop_started_ns ? s->now - s->loop_started_ns : 0;
    mb_printf(&b, "issun_loop_busy_seconds_total %.3f\n",
              up > s->idle_ns ? (double)(up - s->idle_ns) / 1e9 : 0.0);
  }

  family(&b, "issun_events_relayed_total", "counter",
         "Events accepted and routed to their recipients, by scope.");
  for (int i = 0; i < ST_SCOPE_N; i++)
    mb_printf(&b, "issun_events_relayed_total{scope=\"%s\"} %llu\n", scope_names[i],
              (unsigned long long)st->events_relayed[i]);
  family(&b, "issun_event_deliveries_total", "counter",
         "Event copies queued to recipients (one relayed event fans out to many).");
  mb_printf(&b, "issun_event_deliveries_total %llu\n", (unsigned long long)st->deliveries);
  family(&b, "issun_events_dropped_total", "counter",
         "Events (or event copies) not delivered, by reason.");
  for (int i = 0; i < ST_DROP_N; i++)
    mb_printf(&b, "issun_events_dropped_total{reason=\"%s\"} %llu\n", stat_drop_name(i),
              (unsigned long long)st->dropped[i]);

  family(&b, "issun_handshakes_total", "counter",
         "Connection starts by result: ok (ACK sent), tls_failed, refused (ERROR answer "
         "to HELLO), timeout (no HELLO in time).");
  for (int i = 0; i < ST_HS_N; i++)
    mb_printf(&b, "issun_handshakes_total{result=\"%s\"} %llu\n", hs_names[i],
              (unsigned long long)st->handshakes[i]);
  family(&b, "issun_disconnects_total", "counter", "Ended sessions by reason.");
  for (int i = 0; i < ST_DISC_N; i++) {
    char lower[40];
    const char *n = stat_disc_name(i);
    size_t k = 0;
    for (; n[k] && k < sizeof lower - 1; k++)
      lower[k] = (n[k] >= 'A' && n[k] <= 'Z') ? (char)(n[k] - 'A' + 'a') : n[k];
    lower[k] = 0;
    mb_printf(&b, "issun_disconnects_total{reason=\"%s\"} %llu\n", lower,
              (unsigned long long)st->disconnects[i]);
  }

  family(&b, "issun_connection_duration_seconds", "histogram",
         "Session lifetimes from ACK to end, by how they ended (closed, timeout, shutdown, "
         "error).");
  for (int d = 0; d < DS_N; d++) {
    st_hist h;
    memset(&h, 0, sizeof h);
    for (int r = 0; r < ST_DISC_N; r++) {
      if (disc_status(r) != d)
        continue;
      for (int i = 0; i <= ST_DUR_NB; i++)
        h.bucket[i] += st->session_ms[r].bucket[i];
      h.count += st->session_ms[r].count;
      h.sum += st->session_ms[r].sum;
    }
    char label[40];
    snprintf(label, sizeof label, "status=\"%s\"", ds_names[d]);
    hist_series(&b, "issun_connection_duration_seconds", label, &h, st_duration_ms_bounds,
                ST_DUR_NB, 1);
  }
  family(&b, "issun_relay_latency_microseconds", "histogram",
         "Time from reading an event to queuing it for its last recipient, by scope.");
  for (int i = 0; i < ST_SCOPE_N; i++) {
    char label[40];
    snprintf(label, sizeof label, "scope=\"%s\"", scope_names[i]);
    hist_series(&b, "issun_relay_latency_microseconds", label, &st->relay_latency_us[i],
                st_latency_us_bounds, ST_LAT_NB, 0);
  }

  family(&b, "issun_bytes_sent_total", "counter", "UDP payload bytes sent (all clients).");
  mb_printf(&b, "issun_bytes_sent_total %llu\n", (unsigned long long)st->bytes_sent);
  family(&b, "issun_bytes_received_total", "counter", "UDP payload bytes received (all clients).");
  mb_printf(&b, "issun_bytes_received_total %llu\n", (unsigned long long)st->bytes_received);
  family(&b, "issun_packets_sent_total", "counter", "QUIC packets sent.");
  mb_printf(&b, "issun_packets_sent_total %llu\n", (unsigned long long)st->packets_sent);
  family(&b, "issun_packets_received_total", "counter", "UDP datagrams received.");
  mb_printf(&b, "issun_packets_received_total %llu\n", (unsigned long long)st->packets_received);
  family(&b, "issun_send_syscalls_total", "counter",
         "sendmmsg/sendmsg/sendto calls (packets per call shows the batching).");
  mb_printf(&b, "issun_send_syscalls_total %llu\n", (unsigned long long)st->send_syscalls);

  family(&b, "issun_limit_hits_total", "counter",
         "Abuse limits that refused or cut off something, by limit (docs/security.md).");
  for (int i = 0; i < ST_LIM_N; i++)
    mb_printf(&b, "issun_limit_hits_total{limit=\"%s\"} %llu\n", stat_limit_name(i),
              (unsigned long long)st->limits[i]);
  family(&b, "issun_auth_failures_total", "counter",
         "HELLOs refused UNAUTHORIZED (token authentication on), by reason.");
  for (int i = 1; i < ST_AUTH_N; i++) /* 0 is "ok" */
    mb_printf(&b, "issun_auth_failures_total{reason=\"%s\"} %llu\n", auth_result_name(i),
              (unsigned long long)st->auth_failures[i]);

  const metrics *m = s->metrics;
  family(&b, "issun_metrics_http_dropped_total", "counter",
         "Connections to this endpoint refused or cut short, by reason.");
  for (int i = 0; i < HD_N; i++)
    mb_printf(&b, "issun_metrics_http_dropped_total{reason=\"%s\"} %llu\n", hdrop_names[i],
              (unsigned long long)(m ? m->dropped[i] : 0));

  render_process(&b);
  if (s->cluster) { /* clustering gauges and counters (cluster.c) */
    char ctext[4096];
    size_t cn = cluster_metrics_text(s->cluster, ctext, sizeof ctext);
    mb_printf(&b, "%.*s", (int)cn, ctext);
  }
  if (b.oom) {
    free(b.p);
    return 0;
  }
  *out = b.p;
  return b.len;
}

/* ---- request parsing ---------------------------------------------------- */

/* Index just past the blank line ending the head ("\n\n" or "\n\r\n"),
 * searching from `from`; 0 when there is none yet. */
static size_t head_end(const char *buf, size_t len, size_t from) {
  for (size_t i = from; i < len; i++) {
    if (buf[i] != '\n')
      continue;
    if (i + 1 < len && buf[i + 1] == '\n')
      return i + 2;
    if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
      return i + 3;
  }
  return 0;
}

int metrics_parse_request(const char *buf, size_t len, int *head) {
  *head = 0;
  if (head_end(buf, len, 0) == 0)
    return len >= METRICS_REQ_MAX ? MREQ_TOO_LARGE : MREQ_INCOMPLETE;
  const char *eol = memchr(buf, '\n', len);
  size_t ll = (size_t)(eol - buf);
  if (ll > 0 && buf[ll - 1] == '\r')
    ll--;
  /* request-line = method SP request-target SP HTTP-version */
  const char *sp1 = memchr(buf, ' ', ll);
  if (!sp1 || sp1 == buf)
    return MREQ_BAD_REQUEST;
  const char *target = sp1 + 1, *end = buf + ll;
  const char *sp2 = memchr(target, ' ', (size_t)(end - target));
  if (!sp2 || sp2 == target)
    return MREQ_BAD_REQUEST;
  const char *ver = sp2 + 1;
  if (end - ver != 8 || (memcmp(ver, "HTTP/1.1", 8) != 0 && memcmp(ver, "HTTP/1.0", 8) != 0))
    return MREQ_BAD_REQUEST;
  for (const unsigned char *p = (const unsigned char *)buf; p < (const unsigned char *)sp1; p++)
    if (*p < 'A' || *p > 'Z')
      return MREQ_BAD_REQUEST; /* methods are upper-case tokens */
  if (*target != '/')
    return MREQ_BAD_REQUEST; /* origin-form only */
  for (const unsigned char *p = (const unsigned char *)target; p < (const unsigned char *)sp2; p++)
    if (*p <= 0x20 || *p >= 0x7f)
      return MREQ_BAD_REQUEST; /* visible ASCII only */
  size_t mlen = (size_t)(sp1 - buf);
  if (mlen == 4 && memcmp(buf, "HEAD", 4) == 0)
    *head = 1;
  else if (!(mlen == 3 && memcmp(buf, "GET", 3) == 0))
    return MREQ_BAD_METHOD;
  size_t plen = 0;
  while (target + plen < sp2 && target[plen] != '?' && target[plen] != '#')
    plen++;
  if (plen == 8 && memcmp(target, "/metrics", 8) == 0)
    return MREQ_METRICS;
  if (plen == 7 && memcmp(target, "/health", 7) == 0)
    return MREQ_HEALTH;
  return MREQ_NOT_FOUND;
}

/* ---- connections -------------------------------------------------------- */

static uint64_t now_ns(const metrics *m) {
  return m->s->now ? m->s->now : srv_clock_ns();
}

static void rearm(metrics *m) {
  uint64_t t = m->paused_until;
  for (int i = 0; i < METRICS_MAX_CONNS; i++) {
    const hconn *h = &m->conns[i];
    if (h->state != H_FREE && (t == 0 || h->deadline < t))
      t = h->deadline;
  }
  if (t == m->armed)
    return;
  m->armed = t;
  struct itimerspec its = {0};
  if (t) {
    its.it_value.tv_sec = (time_t)(t / 1000000000ull);
    its.it_value.tv_nsec = (long)(t % 1000000000ull);
  }
  timerfd_settime(m->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void hc_close(metrics *m, hconn *h) {
  if (h->state == H_FREE)
    return;
  epoll_ctl(m->epfd, EPOLL_CTL_DEL, h->fd, NULL);
  close(h->fd);
  free(h->resp);
  h->resp = NULL;
  h->fd = -1;
  h->state = H_FREE;
}

static void hc_watch(metrics *m, hconn *h, uint32_t events) {
  struct epoll_event ev = {.events = events,
                           .data.u32 = METRICS_EPOLL_ID + 2u + (uint32_t)(h - m->conns)};
  epoll_ctl(m->epfd, EPOLL_CTL_MOD, h->fd, &ev);
}

/* Writes what the peer takes; then half-closes and waits for its FIN. */
static void hc_write(metrics *m, hconn *h) {
  while (h->resp_off < h->resp_len) {
    ssize_t w = send(h->fd, h->resp + h->resp_off, h->resp_len - h->resp_off, MSG_NOSIGNAL);
    if (w > 0) {
      h->resp_off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      hc_watch(m, h, EPOLLOUT);
      return;
    }
    hc_close(m, h);
    return;
  }
  free(h->resp);
  h->resp = NULL;
  shutdown(h->fd, SHUT_WR);
  h->state = H_DRAIN;
  h->deadline = now_ns(m) + DRAIN_MS * MS_NS;
  hc_watch(m, h, EPOLLIN | EPOLLRDHUP);
}

static void respond(metrics *m, hconn *h, int kind, int head) {
  int code = 200;
  const char *reason = "OK", *ctype = "text/plain; charset=utf-8", *extra = "";
  const char *text = NULL;
  char *body = NULL;
  size_t blen = 0;
  switch (kind) {
  case MREQ_METRICS:
    blen = metrics_render(m->s, &body);
    if (!body) {
      code = 500, reason = "Internal Server Error", text = "out of memory\n";
    } else {
      ctype = "text/plain; version=0.0.4; charset=utf-8";
    }
    break;
  case MREQ_HEALTH:
    if (m->s->stopping)
      code = 503, reason = "Service Unavailable", text = "shutting down\n";
    else if (m->s->cluster && !cluster_connected(m->s->cluster))
      /* still 200: a liveness probe must not restart a relay (and end its
       * sessions) because NATS is away; issun_cluster_up says it too */
      text = "DEGRADED: NATS unreachable; serving local sessions only, reconnecting\n";
    else
      text = "OK\n";
    break;
  case MREQ_NOT_FOUND:
    code = 404, reason = "Not Found", text = "not found: try /metrics or /health\n";
    break;
  case MREQ_BAD_METHOD:
    code = 405, reason = "Method Not Allowed", text = "method not allowed\n";
    extra = "Allow: GET, HEAD\r\n";
    break;
  case MREQ_TOO_LARGE:
    m->dropped[HD_TOO_LARGE]++;
    code = 431, reason = "Request Header Fields Too Large", text = "request too large\n";
    break;
  default:
    code = 400, reason = "Bad Request", text = "bad request\n";
    break;
  }
  if (text)
    blen = strlen(text);
  char hdr[256];
  int hl = snprintf(hdr, sizeof hdr,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                    "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                    code, reason, ctype, blen, extra);
  size_t send_body = head ? 0 : blen;
  h->resp = malloc((size_t)hl + send_body);
  if (!h->resp) {
    free(body);
    hc_close(m, h);
    return;
  }
  memcpy(h->resp, hdr, (size_t)hl);
  if (send_body)
    memcpy(h->resp + hl, body ? body : text, send_body);
  free(body);
  h->resp_len = (size_t)hl + send_body;
  h->resp_off = 0;
  h->state = H_WRITE;
  h->deadline = now_ns(m) + METRICS_IO_TIMEOUT_MS * MS_NS;
  LOG_DEBUG(&m->s->log, "metrics request", "status=%d bytes=%zu", code, h->resp_len);
  hc_write(m, h);
}

static void hc_read(metrics *m, hconn *h) {
  if (h->state == H_DRAIN) {
    char tmp[512];
    for (;;) {
      ssize_t r = recv(h->fd, tmp, sizeof tmp, 0);
      if (r > 0)
        continue;
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      hc_close(m, h); /* FIN or error: done */
      return;
    }
  }
  if (h->state != H_READ)
    return;
  size_t before = h->req_len;
  int eof = 0;
  while (h->req_len < METRICS_REQ_MAX) {
    ssize_t r = recv(h->fd, h->req + h->req_len, METRICS_REQ_MAX - h->req_len, 0);
    if (r > 0) {
      h->req_len += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (r == 0) {
      eof = 1;
      break;
    }
    hc_close(m, h);
    return;
  }
  /* Look for the blank line only in what is new (and the 2 bytes before). */
  size_t from = before > 2 ? before - 2 : 0;
  if (head_end(h->req, h->req_len, from) == 0 && h->req_len < METRICS_REQ_MAX) {
    if (eof)
      hc_close(m, h); /* gave up half-way */
    return;
  }
  int head = 0;
  int kind = metrics_parse_request(h->req, h->req_len, &head);
  respond(m, h, kind, head);
}

static void on_accept(metrics *m) {
  for (int n = 0; n < 64; n++) {
    int fd = accept4(m->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      /* EMFILE/ENFILE/ENOBUFS: the connection stays queued and the listener
       * stays readable; stop watching it for a moment instead of spinning. */
      LOG_WARN(&m->s->log, "metrics endpoint cannot accept", "error=\"%s\"", strerror(errno));
      struct epoll_event ev = {.events = 0, .data.u32 = METRICS_EPOLL_ID};
      epoll_ctl(m->epfd, EPOLL_CTL_MOD, m->lfd, &ev);
      m->paused_until = now_ns(m) + ACCEPT_PAUSE_MS * MS_NS;
      return;
    }
    hconn *h = NULL;
    for (int i = 0; i < METRICS_MAX_CONNS && !h; i++)
      if (m->conns[i].state == H_FREE)
        h = &m->conns[i];
    for (int i = 0; i < METRICS_MAX_CONNS && !h; i++)
      if (m->conns[i].state == H_DRAIN) { /* answered already: it yields its slot */
        h = &m->conns[i];
        hc_close(m, h);
      }
    if (!h) {
      m->dropped[HD_TOO_MANY]++;
      close(fd);
      continue;
    }
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u32 = METRICS_EPOLL_ID + 2u + (uint32_t)(h - m->conns)};
    if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      continue;
    }
    h->fd = fd;
    h->state = H_READ;
    h->req_len = 0;
    h->resp = NULL;
    h->deadline = now_ns(m) + METRICS_IO_TIMEOUT_MS * MS_NS;
  }
}

static void on_timer(metrics *m) {
  uint64_t x;
  while (read(m->tfd, &x, sizeof x) > 0) {
  }
  m->armed = 0;
  uint64_t now = srv_clock_ns();
  for (int i = 0; i < METRICS_MAX_CONNS; i++) {
    hconn *h = &m->conns[i];
    if (h->state == H_FREE || h->deadline > now)
      continue;
    if (h->state != H_DRAIN) {
      m->dropped[HD_TIMEOUT]++;
      LOG_DEBUG(&m->s->log, "metrics client too slow, dropped", "state=%s",
                h->state == H_READ ? "reading" : "writing");
    }
    hc_close(m, h);
  }
  if (m->paused_until && m->paused_until <= now) {
    m->paused_until = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = METRICS_EPOLL_ID};
    epoll_ctl(m->epfd, EPOLL_CTL_MOD, m->lfd, &ev);
  }
}

void metrics_on_epoll(metrics *m, uint32_t id, uint32_t events) {
  if (!m || id < METRICS_EPOLL_ID || id >= METRICS_EPOLL_ID + METRICS_EPOLL_SPAN)
    return;
  uint32_t k = id - METRICS_EPOLL_ID;
  if (k == 0) {
    on_accept(m);
  } else if (k == 1) {
    on_timer(m);
  } else {
    hconn *h = &m->conns[k - 2];
    if (h->state == H_FREE)
      return;
    if (events & EPOLLERR) {
      hc_close(m, h);
    } else if (h->state == H_WRITE) {
      hc_write(m, h);
    } else {
      hc_read(m, h);
    }
  }
  rearm(m);
}

int metrics_busy(const metrics *m) {
  if (!m)
    return 0;
  for (int i = 0; i < METRICS_MAX_CONNS; i++)
    if (m->conns[i].state == H_READ || m->conns[i].state == H_WRITE)
      return 1;
  return 0;
}

uint16_t metrics_port(const metrics *m) {
  return m ? m->port : 0;
}

/* ---- lifetime ----------------------------------------------------------- */

static void fmt_addr(const struct sockaddr_storage *a, char *out, size_t n) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)a;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    snprintf(out, n, "%s:%u", host, ntohs(in->sin_port));
  } else {
    const struct sockaddr_in6 *in6 = (const void *)a;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    snprintf(out, n, "[%s]:%u", host, ntohs(in6->sin6_port));
  }
}

int metrics_new(metrics **out, srv *s, int epfd, char *err, size_t errlen) {
  *out = NULL;
  struct sockaddr_storage addr;
  socklen_t alen;
  memset(&addr, 0, sizeof addr);
  const char *which = s->cfg.metrics_addr[0] ? "ISSUN_METRICS_ADDR" : "ISSUN_BIND_ADDR";
  if (s->cfg.metrics_addr[0]) {
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, s->cfg.metrics_addr, &a4->sin_addr) == 1) {
      a4->sin_family = AF_INET;
      alen = sizeof *a4;
    } else if (inet_pton(AF_INET6, s->cfg.metrics_addr, &a6->sin6_addr) == 1) {
      a6->sin6_family = AF_INET6;
      alen = sizeof *a6;
    } else {
      snprintf(err, errlen, "ISSUN_METRICS_ADDR: '%s' is not an IP address", s->cfg.metrics_addr);
      return -1;
    }
  } else {
    memcpy(&addr, &s->cfg.bind, s->cfg.bind_len);
    alen = s->cfg.bind_len;
  }
  if (addr.ss_family == AF_INET)
    ((struct sockaddr_in *)&addr)->sin_port = htons(s->cfg.metrics_port);
  else
    ((struct sockaddr_in6 *)&addr)->sin6_port = htons(s->cfg.metrics_port);
  char astr[80];
  fmt_addr(&addr, astr, sizeof astr);

  metrics *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  m->s = s;
  m->epfd = epfd;
  m->lfd = m->tfd = -1;
  for (int i = 0; i < METRICS_MAX_CONNS; i++)
    m->conns[i].fd = -1;

  m->lfd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (m->lfd < 0) {
    snprintf(err, errlen, "metrics endpoint: socket: %s", strerror(errno));
    goto fail;
  }
  int one = 1, zero = 0;
  setsockopt(m->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr.ss_family == AF_INET6)
    setsockopt(m->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (bind(m->lfd, (struct sockaddr *)&addr, alen) != 0 || listen(m->lfd, 64) != 0) {
    snprintf(err, errlen,
             "metrics endpoint: cannot listen on TCP %s (ISSUN_METRICS_PORT, host from %s): %s; "
             "set ISSUN_METRICS_PORT=0 to disable it",
             astr, which, strerror(errno));
    goto fail;
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  if (getsockname(m->lfd, (struct sockaddr *)&bound, &blen) == 0) {
    m->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                               : ((struct sockaddr_in6 *)&bound)->sin6_port);
    fmt_addr(&bound, astr, sizeof astr);
  }
  m->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = METRICS_EPOLL_ID};
  if (m->tfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, m->lfd, &ev) != 0) {
    snprintf(err, errlen, "metrics endpoint: timerfd/epoll: %s", strerror(errno));
    goto fail;
  }
  ev.data.u32 = METRICS_EPOLL_ID + 1;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, m->tfd, &ev) != 0) {
    snprintf(err, errlen, "metrics endpoint: epoll: %s", strerror(errno));
    epoll_ctl(epfd, EPOLL_CTL_DEL, m->lfd, NULL);
    goto fail;
  }
  (void)process_start_time(); /* read /proc once, now */
  LOG_INFO(&s->log, "Metrics endpoint listening on", "addr=%s paths=/metrics,/health", astr);
  *out = m;
  return 0;
fail:
  if (m->lfd >= 0)
    close(m->lfd);
  if (m->tfd >= 0)
    close(m->tfd);
  free(m);
  return -1;
}

void metrics_free(metrics *m) {
  if (!m)
    return;
  for (int i = 0; i < METRICS_MAX_CONNS; i++)
    hc_close(m, &m->conns[i]);
  epoll_ctl(m->epfd, EPOLL_CTL_DEL, m->lfd, NULL);
  epoll_ctl(m->epfd, EPOLL_CTL_DEL, m->tfd, NULL);
  close(m->lfd);
  close(m->tfd);
  free(m);
}
