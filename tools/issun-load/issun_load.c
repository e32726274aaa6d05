/*
 * issun-load: the load generator for the workloads of bench.md.
 *
 * Every simulated player is its own libissun client (its own UDP socket,
 * QUIC connection, TLS 1.3 handshake and HELLO/ACK).  All clients of the
 * process run on one thread and one epoll set: a readable socket polls its
 * client with issun_client_poll(c, 0); client timers (ACK delay, loss
 * detection, heartbeats) are served by a sweep over cached deadlines.
 * With --procs N, that process is forked N times and each worker drives a
 * share of the clients; the parent coordinates and merges (see "workers and
 * their coordinator" below).
 *
 * Pacing: every client sends at the same rate, each with a random phase in
 * [0, 1) of the send interval.  The clients are kept in a ring sorted by
 * phase, so the next due send is found in O(1).
 *
 * Payload: send time (CLOCK_MONOTONIC ns, u64 LE), the client's sequence
 * (u64 LE), then (when the payload has room) the sender's slot (u32 LE) and
 * its connection epoch (u32 LE, bumped on every churn reconnect), then filler.
 * Latency goes into a log-linear histogram (256 linear sub-buckets per power
 * of two: relative error <= 0.4%).
 *
 * The last line on stdout is the JSON object of bench.md; progress and
 * diagnostics go to stderr.
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "issun/issun.h"

#define NS 1000000000ull
#define MSNS 1000000ull
#define TYPE_NAME "bench"
#define MAX_GAP_GROUP 1000 /* per-pair gap tracking only for groups up to this size */

/* ---- time, randomness ------------------------------------------------ */

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}
static uint32_t get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}

/* ---- log-linear histogram (nanoseconds) ------------------------------ */

#define H_SUB_BITS 8
#define H_SUB (1u << H_SUB_BITS)       /* 256 */
#define H_HALF (H_SUB / 2)             /* 128 */
#define H_BUCKETS (H_SUB + 56 * H_HALF) /* covers all of uint64 */

typedef struct hist {
  uint64_t n, max, min;
  uint64_t b[H_BUCKETS];
} hist;

static void h_reset(hist *h) {
  memset(h, 0, sizeof *h);
  h->min = UINT64_MAX;
}

static unsigned h_index(uint64_t v) {
  if (v < H_SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - (H_SUB_BITS - 1);
  unsigned sub = (unsigned)(v >> shift); /* in [128, 256) */
  return H_SUB + (shift - 1) * H_HALF + (sub - H_HALF);
}

/* The midpoint of bucket i. */
static double h_value(unsigned i) {
  if (i < H_SUB) return (double)i;
  unsigned shift = (i - H_SUB) / H_HALF + 1;
  uint64_t sub = (i - H_SUB) % H_HALF + H_HALF;
  return (double)(sub << shift) + (double)(1ull << shift) / 2.0;
}

static void h_add(hist *h, uint64_t v) {
  h->b[h_index(v)]++;
  h->n++;
  if (v > h->max) h->max = v;
  if (v < h->min) h->min = v;
}

static double h_pct(const hist *h, double q) {
  if (h->n == 0) return 0;
  uint64_t want = (uint64_t)ceil(q * (double)h->n);
  if (want == 0) want = 1;
  uint64_t acc = 0;
  for (unsigned i = 0; i < H_BUCKETS; i++) {
    acc += h->b[i];
    if (acc >= want) {
      double v = h_value(i);
      return v > (double)h->max ? (double)h->max : v;
    }
  }
  return (double)h->max;
}

/* ---- configuration --------------------------------------------------- */

enum wl { W_ROOM, W_FANOUT, W_GLOBAL, W_UNRELIABLE, W_SATURATE, W_CONNECT, W_CHURN };
static const char *wl_names[] = {"room", "fanout", "global", "unreliable", "saturate", "connect", "churn"};

typedef struct cfg {
  int wl;
  const char *host;
  uint16_t port;
  long server_pid;
  int clients, room_size, payload;
  double rate, seconds, warmup, drain;
  int conc;
  const char *pin, *ca;
  int insecure;
  double churn_pct;
  double sat_factor, sat_p99_ms, sat_loss_pct;
  int sat_max_steps;
  double max_run_s;
  int ack_delay_ms; /* settings.ack_delay_ms of every client (0 = libissun's default) */
  int procs;        /* worker processes driving the clients (1: this process alone) */
  uint64_t seed;
} cfg;

static cfg C;

static void usage(FILE *f) {
  fprintf(f,
          "usage: issun-load --workload NAME [options]\n"
          "  workloads: room fanout global unreliable saturate connect churn (bench.md)\n"
          "  --server HOST:PORT      relay address (default 127.0.0.1:5000); repeat it for the\n"
          "                          relays of a cluster: client i uses server i mod n\n"
          "  --server-pid PID        read the server's CPU and memory from /proc/PID\n"
          "  --clients N --room-size N --rate HZ --payload BYTES --seconds S\n"
          "                          override the workload's defaults\n"
          "  --warmup S              warm-up after all clients are in place (default 2)\n"
          "  --drain S               wait at most S for window events after it (default 5)\n"
          "  --conc N                handshakes in flight at once (default 100)\n"
          "  --pin SHA256            pin the server certificate (hex, as the server logs it)\n"
          "  --ca FILE               verify against this CA bundle\n"
          "  --insecure              no certificate verification\n"
          "  --churn-pct P           churn: %% of clients reconnecting per second (default 5)\n"
          "  --step-factor F         saturate: rate multiplier per step (default 1.5)\n"
          "  --max-steps N           saturate: at most N steps (default 12)\n"
          "  --max-run S             abort the whole run after S seconds (default 600)\n"
          "  --ack-delay-ms N        clients' settings.ack_delay_ms: -1 off, 0 libissun's\n"
          "                          default (10), up to 20\n"
          "  --procs N               drive the clients from N worker processes (default 1),\n"
          "                          for hosts where one generator core cannot load the relay;\n"
          "                          each worker takes one CPU of the affinity set when it has\n"
          "                          N or more, and the results are merged into one line\n"
          "  --seed N                random seed (phases, churn picks)\n");
}

/* --server may be given several times (relays of one cluster, see
 * docs/clustering.md): client i connects to server i mod n. */
#define MAX_SERVERS 8
static char g_hosts[MAX_SERVERS][256];
static uint16_t g_ports[MAX_SERVERS];
static int g_nservers;

static int parse_server(const char *s) {
  const char *colon = strrchr(s, ':');
  if (!colon || g_nservers >= MAX_SERVERS) return -1;
  char *host = g_hosts[g_nservers];
  size_t hl = (size_t)(colon - s);
  if (hl == 0 || hl >= sizeof g_hosts[0]) return -1;
  memcpy(host, s, hl);
  host[hl] = 0;
  if (host[0] == '[' && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = 0;
  }
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p <= 0 || p > 65535) return -1;
  C.host = host;
  C.port = (uint16_t)p;
  g_ports[g_nservers++] = (uint16_t)p;
  return 0;
}

static int parse_args(int argc, char **argv) {
  memset(&C, 0, sizeof C);
  C.wl = -1;
  C.host = "127.0.0.1";
  C.port = 5000;
  C.clients = C.room_size = C.payload = -1;
  C.rate = C.seconds = -1;
  C.warmup = 2;
  C.drain = 5;
  C.conc = 100;
  C.churn_pct = 5;
  C.sat_factor = 1.5;
  C.sat_p99_ms = 50;
  C.sat_loss_pct = 0.1;
  C.sat_max_steps = 12;
  C.max_run_s = 600;
  C.procs = 1;
  C.seed = (uint64_t)mono_ns() ^ (uint64_t)getpid();
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                            \
  do {                                                     \
    if (!v) {                                              \
      fprintf(stderr, "issun-load: %s needs a value\n", a); \
      return -1;                                           \
    }                                                      \
    i++;                                                   \
  } while (0)
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    } else if (!strcmp(a, "--workload")) {
      NEEDV();
      for (int w = 0; w < 7; w++)
        if (!strcmp(v, wl_names[w])) C.wl = w;
      if (C.wl < 0) {
        fprintf(stderr, "issun-load: unknown workload '%s'\n", v);
        return -1;
      }
    } else if (!strcmp(a, "--server")) {
      NEEDV();
      if (parse_server(v) != 0) {
        fprintf(stderr, "issun-load: --server wants HOST:PORT, got '%s'\n", v);
        return -1;
      }
    } else if (!strcmp(a, "--server-pid")) {
      NEEDV();
      C.server_pid = atol(v);
    } else if (!strcmp(a, "--clients")) {
      NEEDV();
      C.clients = atoi(v);
    } else if (!strcmp(a, "--room-size")) {
      NEEDV();
      C.room_size = atoi(v);
    } else if (!strcmp(a, "--rate")) {
      NEEDV();
      C.rate = atof(v);
    } else if (!strcmp(a, "--payload")) {
      NEEDV();
      C.payload = atoi(v);
    } else if (!strcmp(a, "--seconds")) {
      NEEDV();
      C.seconds = atof(v);
    } else if (!strcmp(a, "--warmup")) {
      NEEDV();
      C.warmup = atof(v);
    } else if (!strcmp(a, "--drain")) {
      NEEDV();
      C.drain = atof(v);
    } else if (!strcmp(a, "--conc")) {
      NEEDV();
      C.conc = atoi(v);
    } else if (!strcmp(a, "--pin")) {
      NEEDV();
      C.pin = v;
    } else if (!strcmp(a, "--ca")) {
      NEEDV();
      C.ca = v;
    } else if (!strcmp(a, "--insecure")) {
      C.insecure = 1;
    } else if (!strcmp(a, "--churn-pct")) {
      NEEDV();
      C.churn_pct = atof(v);
    } else if (!strcmp(a, "--step-factor")) {
      NEEDV();
      C.sat_factor = atof(v);
    } else if (!strcmp(a, "--max-steps")) {
      NEEDV();
      C.sat_max_steps = atoi(v);
    } else if (!strcmp(a, "--max-run")) {
      NEEDV();
      C.max_run_s = atof(v);
    } else if (!strcmp(a, "--ack-delay-ms")) {
      NEEDV();
      C.ack_delay_ms = atoi(v);
      if (C.ack_delay_ms < -1 || C.ack_delay_ms > 20) {
        fprintf(stderr, "issun-load: --ack-delay-ms must be -1..20\n");
        exit(2);
      }
    } else if (!strcmp(a, "--procs")) {
      NEEDV();
      C.procs = atoi(v);
      if (C.procs < 1 || C.procs > 64) {
        fprintf(stderr, "issun-load: --procs must be 1..64\n");
        return -1;
      }
    } else if (!strcmp(a, "--seed")) {
      NEEDV();
      C.seed = strtoull(v, NULL, 10);
    } else {
      fprintf(stderr, "issun-load: unknown option '%s' (see --help)\n", a);
      return -1;
    }
#undef NEEDV
  }
  if (C.wl < 0) {
    fprintf(stderr, "issun-load: --workload is required\n");
    usage(stderr);
    return -1;
  }
  /* bench.md defaults */
  static const struct {
    int clients, room_size, payload;
    double rate, seconds;
  } d[] = {
      [W_ROOM] = {1000, 4, 64, 30, 10},     [W_FANOUT] = {100, 100, 64, 10, 10},
      [W_GLOBAL] = {200, 0, 64, 2, 10},     [W_UNRELIABLE] = {1000, 4, 64, 30, 10},
      [W_SATURATE] = {1000, 4, 64, 30, 5},  [W_CONNECT] = {5000, 0, 0, 0, 10},
      [W_CHURN] = {1000, 4, 64, 30, 10},
  };
  if (C.clients < 0) C.clients = d[C.wl].clients;
  if (C.room_size < 0) C.room_size = d[C.wl].room_size;
  if (C.payload < 0) C.payload = d[C.wl].payload;
  if (C.rate < 0) C.rate = d[C.wl].rate;
  if (C.seconds < 0) C.seconds = d[C.wl].seconds;
  if (C.wl == W_FANOUT && C.room_size > C.clients) C.room_size = C.clients;
  if (C.wl == W_GLOBAL || C.wl == W_CONNECT) C.room_size = 0;
  if (C.clients < 1 || C.clients > 1000000 || C.seconds <= 0 || C.warmup < 0 || C.drain < 0 ||
      C.conc < 1 || C.max_run_s <= 0) {
    fprintf(stderr, "issun-load: bad --clients/--seconds/--warmup/--drain/--conc/--max-run\n");
    return -1;
  }
  if (C.wl != W_CONNECT) {
    if (C.clients < 2 || C.rate <= 0 || C.rate > 100000 || C.payload < 16 || C.payload > 60000) {
      fprintf(stderr, "issun-load: needs --clients >= 2, --rate > 0, 16 <= --payload <= 60000\n");
      return -1;
    }
    if (C.wl != W_GLOBAL && (C.room_size < 2 || C.room_size > C.clients)) {
      fprintf(stderr, "issun-load: --room-size must be 2..clients\n");
      return -1;
    }
  }
  if (C.procs > C.clients / 2 && C.procs > 1) {
    fprintf(stderr, "issun-load: --procs needs at least 2 clients per worker\n");
    return -1;
  }
  if (C.wl == W_CHURN && C.procs > 1 && C.clients / C.room_size < C.procs) {
    fprintf(stderr, "issun-load: churn with --procs needs at least one room per worker\n");
    return -1;
  }
  if (C.wl == W_SATURATE && (C.sat_factor <= 1.0 || C.sat_max_steps < 1)) {
    fprintf(stderr, "issun-load: --step-factor must be > 1 and --max-steps >= 1\n");
    return -1;
  }
  return 0;
}

/* ---- server and self figures ----------------------------------------- */

/* CPU seconds (user + system) a process has used, from /proc/PID/stat. */
static double proc_cpu_s(long pid) {
  if (pid <= 0) return 0;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  /* after ") ": field 3 (state) ... field 14 utime, 15 stime */
  unsigned long long ut = 0, st = 0;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return 0;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double server_cpu_s(void) { return proc_cpu_s(C.server_pid); }

static long server_status_kb(const char *key) {
  if (C.server_pid <= 0) return 0;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", C.server_pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  long v = 0;
  size_t kl = strlen(key);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, key, kl) && line[kl] == ':') {
      v = atol(line + kl + 1);
      break;
    }
  fclose(f);
  return v;
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* The server on one CPU and the generator on others: one CPU for a single
 * process; with --procs, the set its workers share out. */
static int pinned_apart(void) {
  cpu_set_t a, b;
  if (C.server_pid <= 0) return 0;
  if (sched_getaffinity(0, sizeof a, &a) != 0) return 0;
  if (sched_getaffinity((pid_t)C.server_pid, sizeof b, &b) != 0) return 0;
  if ((C.procs == 1 && CPU_COUNT(&a) != 1) || CPU_COUNT(&b) != 1) return 0;
  cpu_set_t x;
  CPU_AND(&x, &a, &b);
  return CPU_COUNT(&x) == 0;
}

/* What else ran on the CPUs during the window: busy time of the server's
 * and our CPU (all CPUs when not pinned) from /proc/stat, minus what the
 * server and this process used.  Shared hosts make latency figures
 * meaningless when this is high, so it is printed next to them. */
typedef struct cpusnap {
  double busy_s; /* summed over the CPUs watched */
  double srv_s, self_s;
} cpusnap;

static double workers_cpu_s(void);

static int cpu_of(pid_t pid) {
  cpu_set_t set;
  if (sched_getaffinity(pid, sizeof set, &set) != 0 || CPU_COUNT(&set) != 1) return -1;
  for (int i = 0; i < CPU_SETSIZE; i++)
    if (CPU_ISSET(i, &set)) return i;
  return -1;
}

static void cpu_snap(cpusnap *sn) {
  int a = pinned_apart() ? cpu_of(0) : -1, b = a >= 0 ? cpu_of((pid_t)C.server_pid) : -1;
  FILE *f = fopen("/proc/stat", "r");
  char line[512];
  double tck = (double)sysconf(_SC_CLK_TCK);
  sn->busy_s = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "cpu", 3) != 0) break;
    int cpu = -1;
    const char *p = line + 3;
    if (*p != ' ') cpu = atoi(p);
    if (a >= 0 ? (cpu != a && cpu != b) : cpu != -1) continue;
    unsigned long long v[8] = {0};
    while (*p && *p != ' ') p++;
    sscanf(p, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
           &v[6], &v[7]);
    sn->busy_s += (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tck;
  }
  if (f) fclose(f);
  sn->srv_s = server_cpu_s();
  sn->self_s = self_cpu_s() + workers_cpu_s();
}

/* Other load in % of one CPU between two snapshots taken `secs` apart. */
static double other_pct(const cpusnap *x, const cpusnap *y, double secs) {
  double o = (y->busy_s - x->busy_s) - (y->srv_s - x->srv_s) - (y->self_s - x->self_s);
  if (o < 0) o = 0;
  return o * 100.0 / secs;
}

/* ---- clients --------------------------------------------------------- */

enum { LS_IDLE = 0, LS_CONNECTING, LS_CONNECTED, LS_JOINING, LS_READY, LS_FAILED };

typedef struct lc {
  issun_client *c;
  int idx;
  int fd; /* registered in epoll, -1 none */
  int st;
  int attempts;
  uint64_t t_start;   /* connect started */
  uint64_t deadline;  /* next timer, ns; UINT64_MAX none */
  uint64_t seq;
  uint32_t epoch;
  uint32_t req;
  int group;          /* room group, or 0 for global */
  double phase;       /* [0,1) of the send interval */
  /* per-sender tracking at this receiver (gsize entries), NULL when off */
  uint64_t *last_seq;
  uint32_t *last_epoch;
  /* last window event this client sent (churn tails) */
  uint64_t last_win_seq;
  uint32_t last_win_epoch;
  int sent_in_window;
} lc;

typedef struct group {
  int base, size;
  uint64_t room_id;
  int creating;
} group;

static lc *CL;
static group *GR;
static int NGROUPS;
static int EPFD;
static uint8_t *PAYLOAD;

/* counters */
static uint64_t g_connected, g_failed, g_drops, g_in_flight;
static uint64_t g_sent_win, g_expected_win, g_delivered_win, g_refused, g_rx_total, g_rx_bad;
static uint64_t g_gaps, g_tail, g_rx_sec, g_sent_sec, g_rate_limited;
static hist *H_WIN, *H_SEC, *H_CONN;
static uint64_t W_START, W_END; /* measured window, ns (0 until known) */
static int g_sending;
static volatile sig_atomic_t g_stop;

/* --procs: the coordinating process forks C.procs workers, and each drives
 * the clients [LO, HI).  A single process drives [0, clients). */
static int LO, HI;
static int WID = -1; /* worker index; -1 in a single process and in the coordinator */
static int CMD_FD = -1, RES_FD = -1; /* worker: commands in, results out */
static uint32_t *WSENT;               /* window sends per client: this process's own are
                                         counted here; workers get the others' (M_SENTALL) */
#define CMD_TAG 0xffffffffu           /* epoll tag of CMD_FD */
static void cmd_read(void);

static int group_of(int idx) { return C.room_size > 0 ? idx / C.room_size : 0; }
static int recipients_of(int idx) {
  if (C.wl == W_CONNECT) return 0;
  return GR[group_of(idx)].size - 1;
}

static void on_state(issun_client *c, issun_state state, int err, void *ud);
static void on_event(issun_client *c, const issun_event *ev, void *ud);
static void on_reply(issun_client *c, const issun_room_reply *r, void *ud);
static void on_error(issun_client *c, uint16_t code, const char *msg, void *ud);

static const issun_client_callbacks CBS = {
    .on_state = on_state, .on_event = on_event, .on_room_reply = on_reply,
    .on_server_error = on_error};

static void ep_sync(lc *l) {
  int fd = l->c ? issun_client_fd(l->c) : -1;
  if (fd == l->fd) return;
  if (l->fd >= 0) epoll_ctl(EPFD, EPOLL_CTL_DEL, l->fd, NULL); /* may already be closed */
  l->fd = -1;
  if (fd >= 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)l->idx};
    if (epoll_ctl(EPFD, EPOLL_CTL_ADD, fd, &ev) == 0) l->fd = fd;
  }
}

static void after_poll(lc *l, uint64_t now) {
  if (!l->c) {
    l->deadline = UINT64_MAX;
    return;
  }
  ep_sync(l);
  int t = issun_client_timeout_ms(l->c);
  l->deadline = t < 0 ? UINT64_MAX : now + (uint64_t)t * MSNS;
}

static void poll_client(lc *l, uint64_t now) {
  if (!l->c) return;
  issun_client_poll(l->c, 0);
  after_poll(l, now);
}

static int start_client(lc *l, uint64_t now) {
  issun_client_settings s;
  issun_client_settings_default(&s);
  s.name = "issun-load";
  s.pin_sha256 = C.pin;
  s.ca_file = C.ca;
  s.insecure = C.insecure;
  s.reconnect = 0;
  s.enable_datagrams = 1;
  s.connect_timeout_ms = 15000;
  s.ack_delay_ms = C.ack_delay_ms;
  char err[256] = "";
  int rv = issun_client_new_ex(&l->c, &s, &CBS, l, err, sizeof err);
  if (rv != 0) {
    fprintf(stderr, "issun-load: client %d: %s (%s)\n", l->idx, issun_strerror(rv), err);
    return rv;
  }
  l->st = LS_CONNECTING;
  l->t_start = now;
  l->attempts++;
  g_in_flight++;
  int k = g_nservers > 1 ? l->idx % g_nservers : -1; /* several relays: round robin */
  rv = issun_client_connect_async(l->c, k >= 0 ? g_hosts[k] : C.host, k >= 0 ? g_ports[k] : C.port);
  if (rv != 0) {
    fprintf(stderr, "issun-load: client %d: connect: %s\n", l->idx, issun_client_last_error(l->c));
    g_in_flight--;
    issun_client_free(l->c);
    l->c = NULL;
    l->st = LS_FAILED;
    return rv;
  }
  after_poll(l, now);
  return 0;
}

static void drop_client(lc *l) {
  if (l->c) issun_client_free(l->c);
  l->c = NULL;
  l->fd = -1; /* the library closed the socket, which leaves the epoll set */
  l->deadline = UINT64_MAX;
}

static void on_state(issun_client *c, issun_state state, int err, void *ud) {
  lc *l = ud;
  uint64_t now = mono_ns();
  if (state == ISSUN_STATE_CONNECTED && l->st == LS_CONNECTING) {
    g_in_flight--;
    g_connected++;
    h_add(H_CONN, now - l->t_start);
    l->st = LS_CONNECTED;
    if (l->last_seq) {
      int gs = GR[l->group].size;
      memset(l->last_seq, 0, sizeof *l->last_seq * (size_t)gs);
      memset(l->last_epoch, 0xff, sizeof *l->last_epoch * (size_t)gs);
    }
    if (C.room_size == 0) l->st = LS_READY;
    return;
  }
  if (state == ISSUN_STATE_FAILED || state == ISSUN_STATE_IDLE || state == ISSUN_STATE_RECONNECTING) {
    if (l->st == LS_CONNECTING) {
      g_in_flight--;
      g_failed++;
      fprintf(stderr, "issun-load: client %d connect failed: %s\n", l->idx, issun_client_last_error(c));
    } else if (l->st >= LS_CONNECTED && l->st <= LS_READY) {
      g_drops++;
      fprintf(stderr, "issun-load: client %d dropped: %s (%s)\n", l->idx, issun_strerror(err),
              issun_client_last_error(c));
    }
    l->st = LS_FAILED;
  }
}

static void on_error(issun_client *c, uint16_t code, const char *msg, void *ud) {
  if (code == ISSUN_WIRE_RATE_LIMITED)
    g_rate_limited++;
  else
    fprintf(stderr, "issun-load: client %d: server ERROR %s: %s\n", ((lc *)ud)->idx,
            issun_wire_code_name(code), msg);
}

static void on_reply(issun_client *c, const issun_room_reply *r, void *ud) {
  lc *l = ud;
  group *g = &GR[l->group];
  if (r->request_id != l->req) return;
  if (r->status != 0) {
    fprintf(stderr, "issun-load: client %d: room request refused: %s\n", l->idx,
            issun_wire_code_name(r->status));
    l->st = LS_FAILED;
    g_drops++;
    return;
  }
  if (r->op == ISSUN_ROOM_OP_CREATE && r->room_count == 1) {
    g->room_id = r->rooms[0].room_id;
    g->creating = 0;
  }
  l->st = LS_READY;
}

static void on_event(issun_client *c, const issun_event *ev, void *ud) {
  lc *l = ud;
  uint64_t now = mono_ns();
  g_rx_total++;
  if (ev->payload_len < 16) {
    g_rx_bad++;
    return;
  }
  const uint8_t *p = ev->payload;
  uint64_t t = get64(p), seq = get64(p + 8);
  if (t > now + 1000 * MSNS) {
    g_rx_bad++;
    return;
  }
  uint64_t lat = now > t ? now - t : 0;
  g_rx_sec++;
  h_add(H_SEC, lat);
  int in_win = W_START && t >= W_START && t < W_END;
  if (in_win) {
    g_delivered_win++;
    h_add(H_WIN, lat);
  }
  if (l->last_seq && ev->payload_len >= 24) {
    uint32_t from = get32(p + 16), ep = get32(p + 20);
    group *g = &GR[l->group];
    if (from >= (uint32_t)g->base && from < (uint32_t)(g->base + g->size)) {
      uint32_t k = from - (uint32_t)g->base;
      if (l->last_epoch[k] == ep && in_win && seq > l->last_seq[k] + 1)
        g_gaps += seq - l->last_seq[k] - 1;
      l->last_epoch[k] = ep;
      if (seq > l->last_seq[k] || l->last_epoch[k] != ep) l->last_seq[k] = seq;
    }
  }
}

/* ---- sending --------------------------------------------------------- */

static int *RING; /* client indices sorted by phase */
static int ring_pos;
static uint64_t ring_round, ring_base, ring_interval;

static int cmp_phase(const void *a, const void *b) {
  double x = CL[*(const int *)a].phase, y = CL[*(const int *)b].phase;
  return x < y ? -1 : x > y;
}

static void pacing_start(double rate, uint64_t now) {
  ring_interval = (uint64_t)(1e9 / rate);
  if (ring_interval == 0) ring_interval = 1;
  ring_base = now;
  ring_round = 0;
  ring_pos = 0;
}

static uint64_t next_due(void) {
  return ring_base + ring_round * ring_interval +
         (uint64_t)(CL[RING[ring_pos]].phase * (double)ring_interval);
}

static void send_one(lc *l, uint64_t now) {
  if (l->st != LS_READY || !l->c) return;
  uint64_t seq = ++l->seq;
  put64(PAYLOAD, now);
  put64(PAYLOAD + 8, seq);
  if (C.payload >= 24) {
    put32(PAYLOAD + 16, (uint32_t)l->idx);
    put32(PAYLOAD + 20, l->epoch);
  }
  int rv = issun_client_send(l->c, TYPE_NAME, ISSUN_SCOPE_BROADCAST, 0,
                             C.wl == W_UNRELIABLE ? ISSUN_UNRELIABLE : ISSUN_RELIABLE, PAYLOAD,
                             (size_t)C.payload, NULL);
  if (rv != 0) {
    g_refused++;
    return;
  }
  g_sent_sec++;
  if (W_START && now >= W_START && now < W_END) {
    g_sent_win++;
    WSENT[l->idx]++;
    g_expected_win += (uint64_t)recipients_of(l->idx);
    l->last_win_seq = seq;
    l->last_win_epoch = l->epoch;
    l->sent_in_window = 1;
  }
  poll_client(l, now); /* write it now */
}

static void send_due(uint64_t now) {
  int guard = (HI - LO) * 4; /* never spin forever in one turn */
  while (g_sending && guard-- > 0) {
    uint64_t due = next_due();
    if (due > now) return;
    send_one(&CL[RING[ring_pos]], now);
    if (++ring_pos == HI - LO) {
      ring_pos = 0;
      ring_round++;
    }
  }
}

/* ---- the loop -------------------------------------------------------- */

static uint64_t T0;
static uint64_t g_next_progress;
static const char *g_phase = "connect";
static uint64_t g_last_sweep;

/* A second of progress.  With workers, each publishes its own in PROG
 * (shared memory mapped before the fork) and the coordinator prints one
 * merged line a second. */
typedef struct wprog {
  uint64_t seq; /* bumped after each update; 0 until the first */
  double p99_ms;
  uint64_t live, n, in_flight, failed, drops, sent, rx;
  char phase[12];
} wprog;
static wprog *PROG;

static void progress_print(const wprog *p, double el, const char *note) {
  fprintf(stderr,
          "[%6.1fs] %-8s connected %llu/%llu in-flight %llu failed %llu dropped %llu | "
          "sent/s %llu events/s %llu p99 %.2f ms%s\n",
          el, p->phase, (unsigned long long)p->live, (unsigned long long)p->n,
          (unsigned long long)p->in_flight, (unsigned long long)p->failed,
          (unsigned long long)p->drops, (unsigned long long)p->sent, (unsigned long long)p->rx,
          p->p99_ms, note);
}

static void progress(uint64_t now) {
  if (now < g_next_progress) return;
  wprog w = {.p99_ms = h_pct(H_SEC, 0.99) / 1e6,
             .n = (uint64_t)(HI - LO),
             .in_flight = g_in_flight,
             .failed = g_failed,
             .drops = g_drops,
             .sent = g_sent_sec,
             .rx = g_rx_sec};
  for (int i = LO; i < HI; i++)
    if (CL[i].st >= LS_CONNECTED && CL[i].st <= LS_READY) w.live++;
  snprintf(w.phase, sizeof w.phase, "%s", g_phase);
  if (WID >= 0 && PROG) {
    w.seq = PROG[WID].seq;
    PROG[WID] = w;
    __atomic_store_n(&PROG[WID].seq, w.seq + 1, __ATOMIC_RELEASE);
  } else {
    char note[24] = ""; /* workers without the shared page print their own */
    if (WID >= 0) snprintf(note, sizeof note, " (worker %d)", WID);
    progress_print(&w, (double)(now - T0) / 1e9, note);
  }
  g_sent_sec = g_rx_sec = 0;
  h_reset(H_SEC);
  g_next_progress = now + NS;
}

/* One turn: wait for sockets (at most until wake_ns), poll readable clients,
 * serve client timers, send what is due. */
static void turn(uint64_t wake_ns) {
  static struct epoll_event evs[256];
  uint64_t now = mono_ns();
  uint64_t until = wake_ns;
  if (g_sending) {
    uint64_t d = next_due();
    if (d < until) until = d;
  }
  if (g_next_progress < until) until = g_next_progress;
  uint64_t sweep_at = g_last_sweep + 2 * MSNS;
  if (sweep_at < until) until = sweep_at;
  int timeout = until <= now ? 0 : (int)((until - now + MSNS - 1) / MSNS);
  if (timeout > 100) timeout = 100;
  int n = epoll_wait(EPFD, evs, 256, timeout);
  now = mono_ns();
  for (int i = 0; i < n; i++) {
    uint32_t idx = evs[i].data.u32;
    if (idx < (uint32_t)C.clients)
      poll_client(&CL[idx], now);
    else if (idx == CMD_TAG)
      cmd_read();
  }
  if (now >= g_last_sweep + 2 * MSNS || n == 0) {
    g_last_sweep = now;
    for (int i = LO; i < HI; i++)
      if (CL[i].deadline <= now) poll_client(&CL[i], now);
  }
  send_due(now);
  progress(now);
}

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static int over_time(void) {
  return g_stop || (double)(mono_ns() - T0) / 1e9 > C.max_run_s;
}

/* Connect every client of this process ([LO, HI)) with at most C.conc
 * handshakes in flight; a failed client is retried twice.  Returns 0 when
 * all are connected. */
static int connect_all(void) {
  int next = LO;
  while (!over_time()) {
    uint64_t now = mono_ns();
    while (next < HI && g_in_flight < (uint64_t)C.conc) {
      if (start_client(&CL[next], now) != 0 && CL[next].attempts >= 3) return -1;
      next++;
    }
    /* retry failures */
    for (int i = LO; i < next; i++) {
      lc *l = &CL[i];
      if (l->st == LS_FAILED && g_in_flight < (uint64_t)C.conc) {
        if (l->attempts >= 3) {
          fprintf(stderr, "issun-load: client %d failed 3 times; giving up\n", i);
          return -1;
        }
        drop_client(l);
        start_client(l, now);
      }
    }
    if (next == HI && g_in_flight == 0) {
      int ok = 1;
      for (int i = LO; i < HI; i++)
        if (CL[i].st < LS_CONNECTED || CL[i].st == LS_FAILED) ok = 0;
      if (ok) return 0;
    }
    turn(now + 5 * MSNS);
  }
  return -1;
}

/* Rooms: the first member of every group creates its room (max_clients =
 * group size), the others join once the room id is known.  A process
 * creates the rooms whose first member it drives (rooms_create); with
 * workers, the coordinator then hands every worker all the room ids, and
 * each joins its other clients (rooms_join). */
static int owns(int idx) { return idx >= LO && idx < HI; }

static int rooms_create(void) {
  for (int g = 0; g < NGROUPS; g++) {
    if (!owns(GR[g].base)) continue;
    lc *h = &CL[GR[g].base];
    if (issun_client_room_create(h->c, "bench", (uint32_t)GR[g].size, NULL, 0, &h->req) != 0) {
      fprintf(stderr, "issun-load: room create: %s\n", issun_client_last_error(h->c));
      return -1;
    }
    h->st = LS_JOINING;
    GR[g].creating = 1;
    poll_client(h, mono_ns());
  }
  while (!over_time()) {
    int pending = 0;
    for (int g = 0; g < NGROUPS; g++) {
      if (!owns(GR[g].base)) continue;
      if (CL[GR[g].base].st == LS_FAILED) return -1;
      if (!GR[g].room_id) pending++;
    }
    if (!pending) return 0;
    turn(mono_ns() + 5 * MSNS);
  }
  return -1;
}

static int rooms_join(void) {
  while (!over_time()) {
    int ready = 0;
    uint64_t now = mono_ns();
    for (int i = LO; i < HI; i++) {
      lc *l = &CL[i];
      if (l->st == LS_FAILED) return -1;
      if (l->st == LS_READY) ready++;
      if (l->st == LS_CONNECTED && GR[l->group].room_id) {
        if (issun_client_room_join(l->c, GR[l->group].room_id, &l->req) != 0) {
          fprintf(stderr, "issun-load: room join: %s\n", issun_client_last_error(l->c));
          return -1;
        }
        l->st = LS_JOINING;
        poll_client(l, now);
      }
    }
    if (ready == HI - LO) return 0;
    turn(now + 5 * MSNS);
  }
  return -1;
}

/* Runs the loop until `end` (ns). */
static void run_until(uint64_t end) {
  while (!over_time()) {
    uint64_t now = mono_ns();
    if (now >= end) return;
    turn(end);
  }
}

/* Churn: every second, churn_pct of the clients (at most one per room)
 * disconnect and come back as new sessions that rejoin their room. */
static uint64_t g_churned;
static void churn_tick(uint64_t now) {
  int n = HI - LO;
  int want = (int)((double)n * C.churn_pct / 100.0 + 0.5);
  char *used = calloc((size_t)NGROUPS, 1);
  if (!used) return;
  for (int tries = 0; want > 0 && tries < n * 4; tries++) {
    int i = LO + (int)(rng_next() % (uint64_t)n);
    lc *l = &CL[i];
    if (l->st != LS_READY || used[l->group]) continue;
    used[l->group] = 1;
    want--;
    drop_client(l);
    l->epoch++;
    l->st = LS_IDLE;
    l->attempts = 0;
    start_client(l, now);
    g_churned++;
  }
  free(used);
}

static void churn_rejoin(uint64_t now) {
  for (int i = LO; i < HI; i++) {
    lc *l = &CL[i];
    if (l->st == LS_CONNECTED && GR[l->group].room_id) {
      if (issun_client_room_join(l->c, GR[l->group].room_id, &l->req) == 0) {
        l->st = LS_JOINING;
        poll_client(l, now);
      }
    } else if (l->st == LS_FAILED && !l->c) {
      l->attempts = 0;
      start_client(l, now);
    } else if (l->st == LS_FAILED && l->c) {
      drop_client(l);
      l->epoch++;
      if (start_client(l, now) != 0) l->st = LS_FAILED;
    }
  }
}

static void run_churn_until(uint64_t end) {
  uint64_t next_tick = mono_ns() + NS;
  while (!over_time()) {
    uint64_t now = mono_ns();
    if (now >= end) return;
    if (now >= next_tick) {
      churn_tick(now);
      next_tick += NS;
    }
    churn_rejoin(now);
    turn(end < next_tick ? end : next_tick);
  }
}

/* Waits after the window until `want` window events have arrived here, or
 * for --drain at most. */
static void drain(uint64_t want) {
  uint64_t end = mono_ns() + (uint64_t)(C.drain * 1e9);
  while (!over_time()) {
    uint64_t now = mono_ns();
    if (now >= end) return;
    if (g_delivered_win >= want) return;
    turn(end);
  }
}

/* ---- results --------------------------------------------------------- */

static void churn_tails(void) {
  for (int r = LO; r < HI; r++) {
    lc *l = &CL[r];
    if (!l->last_seq || l->st != LS_READY) continue;
    group *g = &GR[l->group];
    for (int k = 0; k < g->size; k++) {
      lc *s = &CL[g->base + k];
      if (s == l || !s->sent_in_window) continue;
      if (l->last_epoch[k] != s->last_win_epoch || l->last_epoch[k] != s->epoch) continue;
      if (l->last_seq[k] < s->last_win_seq) g_tail += s->last_win_seq - l->last_seq[k];
    }
  }
}

/* The JSON line of bench.md, plus workload-specific extras. */
static void emit(const char *wl, double rate, double connect_s, double secs, uint64_t sent,
                 uint64_t dlv, uint64_t exp, double loss, const hist *h, double srv_cpu,
                 double rss_mb, int pinned, const char *extra) {
  char per[32];
  if (dlv > 0)
    snprintf(per, sizeof per, "%.3f", srv_cpu * 1e6 / (double)dlv);
  else
    snprintf(per, sizeof per, "null");
  printf("{\"workload\":\"%s\",\"clients\":%d,\"room_size\":%d,\"rate_hz\":%g,\"payload\":%d,"
         "\"reliable\":%s,\"seconds\":%g,\"pinned\":%s,"
         "\"connect_s\":%.3f,\"sent_per_s\":%.0f,\"delivered_per_s\":%.0f,\"expected_per_s\":%.0f,"
         "\"loss_pct\":%.4f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
         "\"server_cpu_s\":%.3f,\"server_cpu_us_per_delivery\":%s,\"server_rss_mb\":%.1f,"
         "\"client_ack_delay_ms\":%d%s}\n",
         wl, C.clients, C.room_size, rate, C.wl == W_CONNECT ? 0 : C.payload,
         C.wl == W_UNRELIABLE ? "false" : "true", secs, pinned ? "true" : "false", connect_s,
         (double)sent / secs, (double)dlv / secs, (double)exp / secs, loss, h_pct(h, 0.5) / 1e3,
         h_pct(h, 0.99) / 1e3, h_pct(h, 0.999) / 1e3, h->n ? (double)h->max / 1e3 : 0.0, srv_cpu,
         per, rss_mb, C.ack_delay_ms == 0 ? 10 : C.ack_delay_ms, extra);
  fflush(stdout);
}

/* ---- workloads ------------------------------------------------------- */

/* The connect workload's report: stderr summary and the JSON line. */
static int report_connect(double connect_s, long rss0, double cpu0, double cpu1, double cpu2,
                          double other) {
  long rss1 = server_status_kb("VmRSS"), hwm = server_status_kb("VmHWM");
  fprintf(stderr,
          "issun-load: server VmRSS %ld kB before, %ld kB after %.0f s idle; server cpu %.2f s "
          "during connect, %.2f s during idle; drops %llu\n",
          rss0, rss1, C.seconds, cpu1 - cpu0, cpu2 - cpu1, (unsigned long long)g_drops);
  char extra[320];
  int n = snprintf(extra, sizeof extra,
                   ",\"handshakes_per_s\":%.0f,\"server_cpu_us_per_connect\":%.1f,"
                   "\"idle_rss_per_client_kb\":%.2f,\"dropped\":%llu,\"other_load_pct\":%.0f",
                   C.clients / connect_s, (cpu1 - cpu0) * 1e6 / C.clients,
                   C.server_pid > 0 ? (double)(rss1 - rss0) / C.clients : 0.0,
                   (unsigned long long)g_drops, other);
  if (C.procs > 1 && n > 0 && (size_t)n < sizeof extra)
    snprintf(extra + n, sizeof extra - (size_t)n, ",\"generator_procs\":%d", C.procs);
  emit("connect", 0, connect_s, C.seconds, 0, 0, 0, 0.0, H_CONN, cpu1 - cpu0, hwm / 1024.0,
       pinned_apart(), extra);
  return g_drops ? 3 : 0;
}

static int run_connect(void) {
  long rss0 = server_status_kb("VmRSS");
  double cpu0 = server_cpu_s();
  cpusnap sa, sb;
  cpu_snap(&sa);
  uint64_t t0 = mono_ns();
  if (connect_all() != 0) return 2;
  double connect_s = (double)(mono_ns() - t0) / 1e9;
  double cpu1 = server_cpu_s();
  cpu_snap(&sb);
  double other = other_pct(&sa, &sb, connect_s);
  g_phase = "idle";
  fprintf(stderr, "issun-load: %d clients connected in %.2f s (%.0f handshakes/s); idle %.0f s\n",
          C.clients, connect_s, C.clients / connect_s, C.seconds);
  run_until(mono_ns() + (uint64_t)(C.seconds * 1e9));
  if (over_time()) return 2;
  return report_connect(connect_s, rss0, cpu0, cpu1, server_cpu_s(), other);
}

static cpusnap g_snap0, g_snap1;
static double g_other_pct;

static void window_reset(void) {
  g_sent_win = g_expected_win = g_delivered_win = g_gaps = g_tail = 0;
  h_reset(H_WIN);
  for (int i = LO; i < HI; i++) CL[i].sent_in_window = 0, WSENT[i] = 0;
}

/* One measured run at `rate`: pacing restarts at `start` (0: now), then
 * warm-up, window.  The results stay in the g_*_win counters and H_WIN. */
static double run_window(double rate, double warmup, uint64_t start, double *srv_cpu,
                         double *gen_cpu) {
  uint64_t now = start ? start : mono_ns();
  pacing_start(rate, now);
  g_sending = 1;
  W_START = now + (uint64_t)(warmup * 1e9);
  W_END = W_START + (uint64_t)(C.seconds * 1e9);
  window_reset();
  g_phase = "warmup";
  if (C.wl == W_CHURN)
    run_churn_until(W_START);
  else
    run_until(W_START);
  double c0 = server_cpu_s(), s0 = self_cpu_s();
  cpu_snap(&g_snap0);
  g_phase = "window";
  if (C.wl == W_CHURN)
    run_churn_until(W_END);
  else
    run_until(W_END);
  double c1 = server_cpu_s(), s1 = self_cpu_s();
  cpu_snap(&g_snap1);
  g_other_pct = other_pct(&g_snap0, &g_snap1, C.seconds);
  if (g_other_pct > 10 && WID < 0) /* a worker's figure counts the other workers */
    fprintf(stderr, "issun-load: WARNING: other processes used %.0f%% of a CPU on the CPUs of this "
            "run during the window: latency figures are not trustworthy\n", g_other_pct);
  *srv_cpu = c1 - c0;
  *gen_cpu = s1 - s0;
  g_phase = "drain";
  return rate;
}

/* After a window, churn keeps sending nothing new and lets in-flight events
 * land, then counts the tails each receiver missed. */
static void churn_finish(void) {
  g_sending = 0;
  run_until(mono_ns() + (uint64_t)(C.drain * 1e9 < 2e9 ? C.drain * 1e9 : 2e9));
  churn_tails();
}

/* Saturate: keep sending at the step's rate while its window's events land
 * (1 s). */
static void settle(void) {
  g_phase = "settle";
  uint64_t settle_end = mono_ns() + NS;
  while (!over_time() && mono_ns() < settle_end) turn(settle_end);
}

/* Loss in % of what was expected (`none` when nothing was). */
static double loss_pct(uint64_t exp, uint64_t dlv, double none) {
  if (!exp) return none;
  return dlv >= exp ? 0.0 : ((double)exp - (double)dlv) * 100.0 / (double)exp;
}

/* The report of one window (every workload but saturate and connect) from
 * the g_* counters and H_WIN: the stderr summary, warnings and the JSON
 * line.  gen_cpu is the generator's CPU in the window (summed over the
 * workers), gen_max that of its busiest process. */
static int report_window(double connect_s, int pinned, double srv_cpu, double gen_cpu,
                         double gen_max) {
  uint64_t exp = g_expected_win;
  if (C.wl == W_CHURN) exp = g_delivered_win + g_gaps + g_tail;
  double loss = loss_pct(exp, g_delivered_win, 0.0);
  long hwm = server_status_kb("VmHWM");
  fprintf(stderr,
          "issun-load: window %.1f s: sent %llu, expected %llu, delivered %llu, gaps %llu, "
          "tail %llu, refused sends %llu, rate-limited notices %llu, bad %llu, drops %llu, "
          "churned %llu; generator cpu %.0f%% of a core; server cpu %.0f%% of a core\n",
          C.seconds, (unsigned long long)g_sent_win, (unsigned long long)exp,
          (unsigned long long)g_delivered_win, (unsigned long long)g_gaps,
          (unsigned long long)g_tail, (unsigned long long)g_refused,
          (unsigned long long)g_rate_limited, (unsigned long long)g_rx_bad,
          (unsigned long long)g_drops, (unsigned long long)g_churned, gen_cpu * 100 / C.seconds,
          srv_cpu * 100 / C.seconds);
  double target = C.rate * C.clients;
  if ((double)g_sent_win / C.seconds < 0.95 * target)
    fprintf(stderr, "issun-load: WARNING: the generator fell behind: sent %.0f/s of %.0f/s\n",
            (double)g_sent_win / C.seconds, target);
  else if (gen_max * 100 / C.seconds >= 95)
    fprintf(stderr,
            "issun-load: WARNING: the generator used %.0f%% of its core: it sent on time, but "
            "the latency figures include its own queueing (fewer --clients%s measure the "
            "relay)\n",
            gen_max * 100 / C.seconds, C.procs > 1 ? " or more --procs" : "");
  char extra[384];
  int n = snprintf(extra, sizeof extra,
                   ",\"target_sent_per_s\":%.0f,\"generator_cpu_pct\":%.0f,\"other_load_pct\":%.0f,"
                   "\"send_refused\":%llu",
                   target, gen_cpu * 100 / C.seconds, g_other_pct, (unsigned long long)g_refused);
  if (C.wl == W_CHURN && n > 0 && (size_t)n < sizeof extra)
    n += snprintf(extra + n, sizeof extra - (size_t)n, ",\"churned\":%llu",
                  (unsigned long long)g_churned);
  if (C.procs > 1 && n > 0 && (size_t)n < sizeof extra)
    snprintf(extra + n, sizeof extra - (size_t)n,
             ",\"generator_procs\":%d,\"generator_cpu_max_pct\":%.0f", C.procs,
             gen_max * 100 / C.seconds);
  emit(wl_names[C.wl], C.rate, connect_s, C.seconds, g_sent_win, g_delivered_win, exp, loss,
       H_WIN, srv_cpu, hwm / 1024.0, pinned, extra);
  return (C.wl != W_CHURN && g_drops) ? 3 : 0;
}

/* saturate: the rate rises by sat_factor per step while p99 <= 50 ms and
 * loss <= 0.1%; the best passing step is reported. */
typedef struct sat {
  int ok;
  double rate, srv_cpu, gen_cpu, loss;
  uint64_t sent, dlv, exp;
  hist h;
  char steps[2048];
  size_t sl;
} sat;

/* Judges the step just measured (g_* counters, H_WIN); returns 1 if it passed. */
static int sat_step(sat *st, int step, double rate, double srv_cpu, double gen_cpu) {
  double loss = loss_pct(g_expected_win, g_delivered_win, 100.0);
  double p99_ms = h_pct(H_WIN, 0.99) / 1e6;
  double target_sent = rate * C.clients * C.seconds;
  int gen_limited = (double)g_sent_win < 0.9 * target_sent;
  int ok = p99_ms <= C.sat_p99_ms && loss <= C.sat_loss_pct && !gen_limited && g_drops == 0;
  fprintf(stderr,
          "issun-load: saturate step %d: rate %.1f Hz, sent/s %.0f, delivered/s %.0f, loss %.4f%%, "
          "p99 %.2f ms, server cpu %.0f%%, generator cpu %.0f%%%s, other load %.0f%% -> %s\n",
          step, rate, g_sent_win / C.seconds, g_delivered_win / C.seconds, loss, p99_ms,
          srv_cpu * 100 / C.seconds, gen_cpu * 100 / C.seconds,
          C.procs > 1 ? " (all workers)" : "", g_other_pct,
          ok ? "pass" : gen_limited ? "generator-limited" : "fail");
  if (st->sl < sizeof st->steps - 200)
    st->sl += (size_t)snprintf(st->steps + st->sl, sizeof st->steps - st->sl,
                               "%s{\"rate_hz\":%.1f,\"delivered_per_s\":%.0f,\"loss_pct\":%.4f,"
                               "\"p99_us\":%.1f,\"server_cpu_us_per_delivery\":%.3f,\"ok\":%s}",
                               step ? "," : "", rate, g_delivered_win / C.seconds, loss,
                               p99_ms * 1e3,
                               g_delivered_win ? srv_cpu * 1e6 / (double)g_delivered_win : 0.0,
                               ok ? "true" : "false");
  if (!ok) {
    if (gen_limited) fprintf(stderr, "issun-load: the generator could not keep the rate: stop\n");
    return 0;
  }
  st->ok = 1;
  st->rate = rate;
  st->srv_cpu = srv_cpu;
  st->gen_cpu = gen_cpu;
  st->loss = loss;
  st->sent = g_sent_win;
  st->dlv = g_delivered_win;
  st->exp = g_expected_win;
  st->h = *H_WIN;
  return 1;
}

static int sat_report(const sat *st, double connect_s, int pinned) {
  long hwm = server_status_kb("VmHWM");
  char *extra = malloc(sizeof st->steps + 192);
  if (!extra) return 2;
  int n = snprintf(extra, sizeof st->steps + 192,
                   ",\"max_ok_delivered_per_s\":%.0f,\"other_load_pct\":%.0f,\"steps\":[%s]",
                   st->ok ? st->dlv / C.seconds : 0.0, g_other_pct, st->steps);
  if (C.procs > 1 && n > 0 && (size_t)n < sizeof st->steps + 192)
    snprintf(extra + n, sizeof st->steps + 192 - (size_t)n, ",\"generator_procs\":%d", C.procs);
  emit("saturate", st->ok ? st->rate : 0, connect_s, C.seconds, st->sent, st->dlv, st->exp,
       st->loss, &st->h, st->srv_cpu, hwm / 1024.0, pinned, extra);
  free(extra);
  return st->ok ? 0 : 4;
}

static int run_events(void) {
  uint64_t t0 = mono_ns();
  if (connect_all() != 0) return 2;
  if (C.room_size > 0) {
    g_phase = "rooms";
    if (rooms_create() != 0 || rooms_join() != 0) return 2;
  }
  double connect_s = (double)(mono_ns() - t0) / 1e9;
  fprintf(stderr, "issun-load: %d clients connected%s in %.2f s\n", C.clients,
          C.room_size > 0 ? " and in their rooms" : "", connect_s);
  int pinned = pinned_apart();
  double srv_cpu = 0, gen_cpu = 0;

  if (C.wl != W_SATURATE) {
    run_window(C.rate, C.warmup, 0, &srv_cpu, &gen_cpu);
    if (C.wl == W_CHURN) {
      churn_finish();
    } else {
      g_sending = 0;
      drain(g_expected_win);
    }
    if (over_time()) return 2;
    return report_window(connect_s, pinned, srv_cpu, gen_cpu, gen_cpu);
  }

  sat *st = calloc(1, sizeof *st);
  if (!st) return 2;
  double rate = C.rate;
  for (int step = 0; step < C.sat_max_steps && !over_time(); step++) {
    run_window(rate, step == 0 ? C.warmup : 1.0, 0, &srv_cpu, &gen_cpu);
    settle();
    if (!sat_step(st, step, rate, srv_cpu, gen_cpu)) break;
    rate *= C.sat_factor;
  }
  g_sending = 0;
  int rc = sat_report(st, connect_s, pinned);
  free(st);
  return rc;
}

/* ---- workers and their coordinator (--procs) ------------------------- */

/* The coordinator forks C.procs workers before any client exists.  Worker
 * w drives a contiguous share of the clients (whole rooms when there are
 * at least as many rooms as workers; otherwise a room spans workers, as
 * fanout's one room does).  They talk over two pipes per worker, in
 * lockstep: every message is a (type, length) header and a body, and each
 * side waits for the answer it expects.  The coordinator sets the common
 * start of every window, measures the server and the host over it itself,
 * and merges the workers' counters and histograms into the one JSON line.
 * A worker serves its clients while it waits (its command pipe is in its
 * epoll set), so nothing stalls. */
enum { M_READY = 1, M_ROOMS, M_GO, M_SENT, M_SENTALL, M_RESULT, M_END };

typedef struct go_msg {
  double rate, warmup;
  uint64_t start; /* CLOCK_MONOTONIC ns: pacing starts, the warm-up begins */
} go_msg;

typedef struct result_msg {
  double gen_cpu;
  uint64_t sent, expected, delivered, gaps, tail, refused, rate_limited, rx_bad, drops, churned;
  hist h; /* H_WIN, or H_CONN for connect */
} result_msg;

static int write_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, void *p, size_t n) {
  uint8_t *b = p;
  while (n) {
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

static int msg_send(int fd, uint32_t type, const void *p, uint32_t len) {
  uint32_t h[2] = {type, len};
  if (write_all(fd, h, sizeof h) != 0) return -1;
  return len ? write_all(fd, p, len) : 0;
}

/* -- worker side -- */

static uint32_t g_cmd; /* the command read and not yet taken (0: none) */
static go_msg g_go;

/* CMD_FD is readable: read one whole command (the coordinator writes each
 * in one go).  A lost coordinator stops the run. */
static void cmd_read(void) {
  uint32_t h[2];
  int bad = read_all(CMD_FD, h, sizeof h) != 0;
  if (!bad) {
    switch (h[0]) {
    case M_GO:
      bad = h[1] != sizeof g_go || read_all(CMD_FD, &g_go, sizeof g_go) != 0;
      break;
    case M_ROOMS: {
      uint64_t *ids = calloc((size_t)NGROUPS, sizeof *ids);
      bad = !ids || h[1] != (uint32_t)NGROUPS * sizeof *ids ||
            read_all(CMD_FD, ids, (size_t)h[1]) != 0;
      for (int g = 0; !bad && g < NGROUPS; g++)
        if (!GR[g].room_id) GR[g].room_id = ids[g];
      free(ids);
      break;
    }
    case M_SENTALL:
      bad = h[1] != (uint32_t)C.clients * sizeof *WSENT || read_all(CMD_FD, WSENT, (size_t)h[1]) != 0;
      break;
    case M_END:
      bad = h[1] != 0;
      break;
    default:
      bad = 1;
    }
  }
  if (bad) {
    fprintf(stderr, "issun-load: worker %d: lost its coordinator\n", WID);
    epoll_ctl(EPFD, EPOLL_CTL_DEL, CMD_FD, NULL);
    g_stop = 1;
    return;
  }
  g_cmd = h[0];
}

/* Serves the clients (and keeps sending, if g_sending) until the next
 * command; returns it, or 0 when the run is over. */
static uint32_t wait_cmd(void) {
  while (!over_time()) {
    if (g_cmd) {
      uint32_t c = g_cmd;
      g_cmd = 0;
      return c;
    }
    turn(mono_ns() + 100 * MSNS);
  }
  return 0;
}

static void result_send(double gen_cpu, const hist *h) {
  static result_msg r;
  r.gen_cpu = gen_cpu;
  r.sent = g_sent_win;
  r.expected = g_expected_win;
  r.delivered = g_delivered_win;
  r.gaps = g_gaps;
  r.tail = g_tail;
  r.refused = g_refused;
  r.rate_limited = g_rate_limited;
  r.rx_bad = g_rx_bad;
  r.drops = g_drops;
  r.churned = g_churned;
  r.h = *h;
  msg_send(RES_FD, M_RESULT, &r, sizeof r);
}

/* Window events this process's clients should receive: for each, what the
 * other members of its group sent (WSENT holds every client's count). */
static uint64_t expect_rx(void) {
  uint64_t n = 0;
  for (int g = 0; g < NGROUPS; g++) {
    int b = GR[g].base, e = b + GR[g].size;
    if (e <= LO || b >= HI) continue;
    uint64_t tot = 0;
    for (int i = b; i < e; i++) tot += WSENT[i];
    for (int i = b > LO ? b : LO; i < (e < HI ? e : HI); i++) n += tot - WSENT[i];
  }
  return n;
}

static int worker_connect(void) {
  if (wait_cmd() != M_GO) return 2;
  int ok = connect_all() == 0; /* M_READY's body: the coordinator times it */
  g_phase = "idle";
  msg_send(RES_FD, M_READY, &ok, sizeof ok);
  if (wait_cmd() != M_END) return 2;
  result_send(0, H_CONN);
  return ok ? (g_drops ? 3 : 0) : 2;
}

static int worker_events(void) {
  int ok = connect_all() == 0;
  if (C.room_size > 0) {
    g_phase = "rooms";
    if (ok) ok = rooms_create() == 0;
    uint64_t *ids = calloc((size_t)NGROUPS, sizeof *ids);
    if (!ids) return 2;
    for (int g = 0; g < NGROUPS; g++)
      if (owns(GR[g].base)) ids[g] = GR[g].room_id;
    msg_send(RES_FD, M_ROOMS, ids, (uint32_t)NGROUPS * sizeof *ids);
    free(ids);
    if (wait_cmd() != M_ROOMS) return 2;
    if (ok) ok = rooms_join() == 0;
  }
  msg_send(RES_FD, M_READY, &ok, sizeof ok);
  for (;;) {
    uint32_t c = wait_cmd();
    if (c == M_END) return ok ? ((C.wl != W_CHURN && g_drops) ? 3 : 0) : 2;
    if (c != M_GO) return 2;
    double srv_cpu, gen_cpu;
    run_window(g_go.rate, g_go.warmup, g_go.start, &srv_cpu, &gen_cpu);
    if (C.wl == W_SATURATE) {
      settle();
    } else if (C.wl == W_CHURN) {
      churn_finish();
    } else {
      /* What this worker's clients should receive depends on what the
       * others sent: swap the window's send counts, then drain. */
      g_sending = 0;
      msg_send(RES_FD, M_SENT, WSENT + LO, (uint32_t)(HI - LO) * sizeof *WSENT);
      if (wait_cmd() != M_SENTALL) return 2;
      drain(expect_rx());
    }
    result_send(gen_cpu, H_WIN);
  }
}

/* -- coordinator side -- */

static pid_t *WPID;
static int *WCMD, *WRES; /* per worker: command pipe (write end), result pipe (read end) */
static int *WLO, *WHI;

static void coord_progress(void);

/* Reads worker w's next message, which must be `type` with a `len` body.
 * Waits at most until --max-run; a signal or a lost worker fails it. */
static int coord_read(int w, uint32_t type, void *p, uint32_t len) {
  for (;;) {
    double left = C.max_run_s - (double)(mono_ns() - T0) / 1e9;
    if (g_stop || left <= 0) return -1;
    coord_progress();
    struct pollfd pf = {.fd = WRES[w], .events = POLLIN, .revents = 0};
    int rv = poll(&pf, 1, left > 1 ? 1000 : (int)(left * 1000) + 1);
    if (rv < 0 && errno != EINTR) return -1;
    if (rv > 0) break;
  }
  uint32_t h[2];
  if (read_all(WRES[w], h, sizeof h) != 0 || h[0] != type || h[1] != len ||
      (len && read_all(WRES[w], p, len) != 0)) {
    fprintf(stderr, "issun-load: worker %d failed or fell out of step\n", w);
    return -1;
  }
  return 0;
}

static void coord_send_all(uint32_t type, const void *p, uint32_t len) {
  for (int w = 0; w < C.procs; w++) msg_send(WCMD[w], type, p, len);
}

/* The merged progress line, at most once a second: rates summed over the
 * workers' last second, p99 the worst worker's. */
static uint64_t g_prog_at;
static void coord_progress(void) {
  uint64_t now = mono_ns();
  if (!PROG || now < g_prog_at) return;
  g_prog_at = now + NS;
  wprog sum = {0};
  for (int w = 0; w < C.procs; w++) {
    if (!__atomic_load_n(&PROG[w].seq, __ATOMIC_ACQUIRE)) return; /* not all started */
    wprog p = PROG[w]; /* a torn copy only blurs one line */
    sum.live += p.live;
    sum.n += p.n;
    sum.in_flight += p.in_flight;
    sum.failed += p.failed;
    sum.drops += p.drops;
    sum.sent += p.sent;
    sum.rx += p.rx;
    if (p.p99_ms > sum.p99_ms) sum.p99_ms = p.p99_ms;
    if (w == 0) memcpy(sum.phase, p.phase, sizeof sum.phase - 1);
  }
  char note[32];
  snprintf(note, sizeof note, " (worst of %d workers)", C.procs);
  progress_print(&sum, (double)(now - T0) / 1e9, note);
}

/* Sleeps until `t` (CLOCK_MONOTONIC ns) unless a signal stops the run,
 * printing progress on the way. */
static void sleep_until(uint64_t t) {
  for (;;) {
    coord_progress();
    uint64_t now = mono_ns();
    if (g_stop || now >= t) return;
    uint64_t until = t < g_prog_at ? t : g_prog_at;
    struct timespec ts = {.tv_sec = (time_t)(until / NS), .tv_nsec = (long)(until % NS)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
  }
}

static double workers_cpu_s(void) {
  if (WID >= 0 || !WPID) return 0; /* a single process, or a worker */
  double s = 0;
  for (int w = 0; w < C.procs; w++) s += proc_cpu_s(WPID[w]);
  return s;
}

static void merge_reset(void) {
  g_sent_win = g_expected_win = g_delivered_win = g_gaps = g_tail = 0;
  g_refused = g_rate_limited = g_rx_bad = g_drops = g_churned = 0;
  h_reset(H_WIN);
}

static void merge(const result_msg *r, hist *into) {
  g_sent_win += r->sent;
  g_expected_win += r->expected;
  g_delivered_win += r->delivered;
  g_gaps += r->gaps;
  g_tail += r->tail;
  g_refused += r->refused;
  g_rate_limited += r->rate_limited;
  g_rx_bad += r->rx_bad;
  g_drops += r->drops;
  g_churned += r->churned;
  into->n += r->h.n;
  if (r->h.max > into->max) into->max = r->h.max;
  if (r->h.min < into->min) into->min = r->h.min;
  for (unsigned i = 0; i < H_BUCKETS; i++) into->b[i] += r->h.b[i];
}

/* Every worker's M_READY: 1 when all are ready, 0 when one failed to
 * connect or set up its rooms, -1 when one was lost. */
static int coord_ready(void) {
  int all = 1;
  for (int w = 0; w < C.procs; w++) {
    int ok;
    if (coord_read(w, M_READY, &ok, sizeof ok) != 0) return -1;
    all &= ok != 0;
  }
  return all;
}

static int coord_connect(void) {
  static result_msg r;
  long rss0 = server_status_kb("VmRSS");
  double cpu0 = server_cpu_s();
  cpusnap sa, sb;
  cpu_snap(&sa);
  uint64_t t0 = mono_ns();
  go_msg go = {.start = t0};
  coord_send_all(M_GO, &go, sizeof go);
  int ok = coord_ready();
  if (ok < 0) return 2;
  double connect_s = (double)(mono_ns() - t0) / 1e9;
  double cpu1 = server_cpu_s();
  cpu_snap(&sb);
  double other = other_pct(&sa, &sb, connect_s);
  if (!ok) return 2;
  fprintf(stderr,
          "issun-load: %d clients connected by %d workers in %.2f s (%.0f handshakes/s); idle %.0f s\n",
          C.clients, C.procs, connect_s, C.clients / connect_s, C.seconds);
  sleep_until(mono_ns() + (uint64_t)(C.seconds * 1e9));
  if (g_stop) return 2;
  double cpu2 = server_cpu_s();
  coord_send_all(M_END, NULL, 0);
  merge_reset();
  h_reset(H_CONN);
  for (int w = 0; w < C.procs; w++) {
    if (coord_read(w, M_RESULT, &r, sizeof r) != 0) return 2;
    merge(&r, H_CONN);
  }
  return report_connect(connect_s, rss0, cpu0, cpu1, cpu2, other);
}

static int coord_events(void) {
  static result_msg r;
  uint64_t t0 = mono_ns();
  if (C.room_size > 0) {
    uint64_t *all = calloc((size_t)NGROUPS, sizeof *all), *one = calloc((size_t)NGROUPS, sizeof *one);
    if (!all || !one) return 2;
    uint32_t len = (uint32_t)NGROUPS * sizeof *all;
    for (int w = 0; w < C.procs; w++) {
      if (coord_read(w, M_ROOMS, one, len) != 0) return 2;
      for (int g = 0; g < NGROUPS; g++)
        if (one[g]) all[g] = one[g];
    }
    coord_send_all(M_ROOMS, all, len);
    free(all);
    free(one);
  }
  int ok = coord_ready();
  if (ok < 0) return 2;
  if (!ok) return 2;
  double connect_s = (double)(mono_ns() - t0) / 1e9;
  fprintf(stderr, "issun-load: %d clients connected%s by %d workers in %.2f s\n", C.clients,
          C.room_size > 0 ? " and in their rooms" : "", C.procs, connect_s);
  int pinned = pinned_apart();
  sat *st = calloc(1, sizeof *st);
  if (!st) return 2;
  double rate = C.rate, warmup = C.warmup;
  int rc = 2;
  for (int step = 0; step < C.sat_max_steps && !over_time(); step++) {
    go_msg go = {.rate = rate, .warmup = warmup, .start = mono_ns() + 20 * MSNS};
    coord_send_all(M_GO, &go, sizeof go);
    W_START = go.start + (uint64_t)(warmup * 1e9);
    W_END = W_START + (uint64_t)(C.seconds * 1e9);
    sleep_until(W_START);
    double c0 = server_cpu_s();
    cpu_snap(&g_snap0);
    sleep_until(W_END);
    double c1 = server_cpu_s();
    cpu_snap(&g_snap1);
    if (g_stop) break;
    g_other_pct = other_pct(&g_snap0, &g_snap1, C.seconds);
    if (g_other_pct > 10)
      fprintf(stderr, "issun-load: WARNING: other processes used %.0f%% of a CPU on the CPUs of "
              "this run during the window: latency figures are not trustworthy\n", g_other_pct);
    if (C.wl != W_SATURATE && C.wl != W_CHURN) {
      int bad = 0;
      for (int w = 0; w < C.procs && !bad; w++)
        bad = coord_read(w, M_SENT, WSENT + WLO[w], (uint32_t)(WHI[w] - WLO[w]) * sizeof *WSENT);
      if (bad) break;
      coord_send_all(M_SENTALL, WSENT, (uint32_t)C.clients * sizeof *WSENT);
    }
    merge_reset();
    double gen = 0, gen_max = 0;
    int bad = 0;
    for (int w = 0; w < C.procs && !bad; w++) {
      bad = coord_read(w, M_RESULT, &r, sizeof r);
      merge(&r, H_WIN);
      gen += r.gen_cpu;
      if (r.gen_cpu > gen_max) gen_max = r.gen_cpu;
    }
    if (bad) break;
    /* Workers sharing fewer CPUs than there are of them: the busiest core
     * carries at least their average. */
    cpu_set_t set;
    int k = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : C.procs;
    if (k > 0 && k < C.procs && gen / k > gen_max) gen_max = gen / k;
    if (C.wl != W_SATURATE) {
      rc = report_window(connect_s, pinned, c1 - c0, gen, gen_max);
      break;
    }
    if (!sat_step(st, step, rate, c1 - c0, gen) || step + 1 >= C.sat_max_steps) {
      rc = sat_report(st, connect_s, pinned);
      break;
    }
    rate *= C.sat_factor;
    warmup = 1.0;
  }
  if (rc != 2) coord_send_all(M_END, NULL, 0);
  free(st);
  return rc;
}

/* Forks the workers.  Returns 1 in the coordinator, 0 in a worker (with
 * WID, LO, HI and its pipes set), -1 on failure. */
static int spawn_workers(void) {
  WPID = calloc((size_t)C.procs, sizeof *WPID);
  WCMD = calloc((size_t)C.procs, sizeof *WCMD);
  WRES = calloc((size_t)C.procs, sizeof *WRES);
  WLO = calloc((size_t)C.procs, sizeof *WLO);
  WHI = calloc((size_t)C.procs, sizeof *WHI);
  if (!WPID || !WCMD || !WRES || !WLO || !WHI) return -1;
  /* Shares: whole rooms when there are enough of them, else even slices. */
  for (int w = 0; w < C.procs; w++) {
    if (C.room_size > 0 && NGROUPS >= C.procs) {
      int g0 = (int)((long)NGROUPS * w / C.procs), g1 = (int)((long)NGROUPS * (w + 1) / C.procs);
      WLO[w] = GR[g0].base;
      WHI[w] = g1 < NGROUPS ? GR[g1].base : C.clients;
    } else {
      WLO[w] = (int)((long)C.clients * w / C.procs);
      WHI[w] = (int)((long)C.clients * (w + 1) / C.procs);
    }
  }
  PROG = mmap(NULL, sizeof *PROG * (size_t)C.procs, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (PROG == MAP_FAILED) PROG = NULL; /* then every worker prints its own lines */
  cpu_set_t set;
  int ncpu = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
  for (int w = 0; w < C.procs; w++) {
    int cmd[2], res[2];
    if (pipe2(cmd, O_CLOEXEC) != 0) return -1;
    if (pipe2(res, O_CLOEXEC) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      for (int k = 0; k < w; k++) close(WCMD[k]), close(WRES[k]);
      close(cmd[1]);
      close(res[0]);
      WID = w;
      LO = WLO[w];
      HI = WHI[w];
      CMD_FD = cmd[0];
      RES_FD = res[1];
      rng_state = C.seed + 0x9e3779b97f4a7c15ull * (uint64_t)(w + 1);
      C.conc = (C.conc + C.procs - 1) / C.procs; /* --conc stays the total in flight */
      if (ncpu >= C.procs) { /* one CPU each, the w-th of the set */
        cpu_set_t one;
        CPU_ZERO(&one);
        for (int c = 0, k = 0; c < CPU_SETSIZE; c++)
          if (CPU_ISSET(c, &set) && k++ == w) {
            CPU_SET(c, &one);
            break;
          }
        sched_setaffinity(0, sizeof one, &one);
      }
      return 0;
    }
    close(cmd[0]);
    close(res[1]);
    WPID[w] = pid;
    WCMD[w] = cmd[1];
    WRES[w] = res[0];
  }
  return 1;
}

int main(int argc, char **argv) {
  if (parse_args(argc, argv) != 0) return 1;
  rng_state = C.seed;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)C.clients + 64) {
    fprintf(stderr, "issun-load: %d clients need %d file descriptors, the limit is %llu (ulimit -n)\n",
            C.clients, C.clients + 64, (unsigned long long)rl.rlim_cur);
    return 1;
  }

  CL = calloc((size_t)C.clients, sizeof *CL);
  RING = calloc((size_t)C.clients, sizeof *RING);
  NGROUPS = C.room_size > 0 ? (C.clients + C.room_size - 1) / C.room_size : 1;
  GR = calloc((size_t)NGROUPS, sizeof *GR);
  PAYLOAD = calloc(1, (size_t)(C.payload > 24 ? C.payload : 24));
  H_WIN = malloc(sizeof *H_WIN);
  H_SEC = malloc(sizeof *H_SEC);
  H_CONN = malloc(sizeof *H_CONN);
  WSENT = calloc((size_t)C.clients, sizeof *WSENT);
  if (!CL || !RING || !GR || !PAYLOAD || !H_WIN || !H_SEC || !H_CONN || !WSENT) {
    fprintf(stderr, "issun-load: out of memory\n");
    return 1;
  }
  memset(PAYLOAD, 0xab, (size_t)(C.payload > 24 ? C.payload : 24));
  h_reset(H_WIN);
  h_reset(H_SEC);
  h_reset(H_CONN);
  for (int g = 0; g < NGROUPS; g++) {
    GR[g].base = C.room_size > 0 ? g * C.room_size : 0;
    GR[g].size = C.room_size > 0 ? C.room_size : C.clients;
    if (GR[g].base + GR[g].size > C.clients) GR[g].size = C.clients - GR[g].base;
  }
  for (int i = 0; i < C.clients; i++) {
    lc *l = &CL[i];
    l->idx = i;
    l->fd = -1;
    l->deadline = UINT64_MAX;
    l->group = group_of(i);
    l->phase = rng_unit();
    int gs = GR[l->group].size;
    if (C.wl != W_CONNECT && gs <= MAX_GAP_GROUP) {
      l->last_seq = calloc((size_t)gs, sizeof *l->last_seq);
      l->last_epoch = calloc((size_t)gs, sizeof *l->last_epoch);
      if (!l->last_seq || !l->last_epoch) {
        fprintf(stderr, "issun-load: out of memory\n");
        return 1;
      }
    }
  }
  if (C.room_size > 0 && GR[NGROUPS - 1].size < 2) {
    fprintf(stderr, "issun-load: the last room would have 1 member; pick clients divisible by room size\n");
    return 1;
  }
  fprintf(stderr,
          "issun-load: workload %s, %d clients, room size %d, %g Hz, %d B, %s, %g s window, "
          "server %s:%u pid %ld, pinned apart: %s%s\n",
          wl_names[C.wl], C.clients, C.room_size, C.rate, C.payload,
          C.wl == W_UNRELIABLE ? "datagram" : "reliable", C.seconds, C.host, C.port, C.server_pid,
          pinned_apart() ? "yes" : "no", C.procs > 1 ? ", worker processes" : "");
  T0 = mono_ns();
  g_next_progress = T0 + NS;
  LO = 0;
  HI = C.clients;
  int rc;
  if (C.procs > 1) {
    int who = spawn_workers();
    if (who < 0) {
      fprintf(stderr, "issun-load: cannot start the workers: %s\n", strerror(errno));
      return 1;
    }
    if (who == 1) { /* the coordinator */
      rc = C.wl == W_CONNECT ? coord_connect() : coord_events();
      if (rc == 2)
        fprintf(stderr, "issun-load: run aborted (%s)\n", g_stop ? "signal" : "error or --max-run");
      fflush(stdout);
      if (rc == 2) /* workers stop on a closed command pipe, wherever they are */
        for (int w = 0; w < C.procs; w++) kill(WPID[w], SIGTERM);
      for (int w = 0; w < C.procs; w++) close(WCMD[w]), close(WRES[w]);
      for (int w = 0; w < C.procs; w++) {
        int st;
        while (waitpid(WPID[w], &st, 0) < 0 && errno == EINTR) {
        }
        if (rc != 2 && !(WIFEXITED(st) && WEXITSTATUS(st) != 2)) {
          fprintf(stderr, "issun-load: worker %d ended badly\n", w);
          rc = 2;
        }
      }
      fflush(stderr);
      _exit(rc); /* as a single process does: nothing left to free by hand */
    }
  }
  EPFD = epoll_create1(EPOLL_CLOEXEC);
  if (EPFD < 0) {
    fprintf(stderr, "issun-load: epoll: %s\n", strerror(errno));
    _exit(1);
  }
  if (CMD_FD >= 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = CMD_TAG};
    epoll_ctl(EPFD, EPOLL_CTL_ADD, CMD_FD, &ev);
  }
  for (int i = LO; i < HI; i++) RING[i - LO] = i;
  qsort(RING, (size_t)(HI - LO), sizeof *RING, cmp_phase);
  if (WID >= 0)
    rc = C.wl == W_CONNECT ? worker_connect() : worker_events();
  else
    rc = C.wl == W_CONNECT ? run_connect() : run_events();
  if (rc == 2 && WID < 0)
    fprintf(stderr, "issun-load: run aborted (%s)\n", g_stop ? "signal" : "error or --max-run");
  /* Close every session (CONNECTION_CLOSE) so the server frees them now. */
  fflush(stdout);
  fflush(stderr);
  for (int i = LO; i < HI; i++) drop_client(&CL[i]);
  _exit(rc);
}
