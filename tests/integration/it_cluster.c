/*
 * Clustering over NATS (docs/clustering.md) with real processes: a real
 * nats-server with JetStream (temporary store, free loopback ports) and two
 * or three issun-servers joined through it, real libissun clients on each.
 *
 *   - a room made on one relay is listed, joined and played on another:
 *     presence both ways, events in order per sender, host migration across
 *     relays, start by a host on the other relay;
 *   - lobby broadcast and targeted events cross relays; a NodeId held on one
 *     relay is refused on another;
 *   - two relays racing for a room's last seat admit exactly one;
 *   - a killed relay's members leave their rooms on the others within the
 *     expiry (with the host change when it held the host);
 *   - against a three-node NATS cluster, stopping one NATS node mid-test
 *     loses no session and the relays keep relaying and answering rooms.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "it.h"

#define EXPIRY_MS 1500
#define EXPIRY_ENV "ISSUN_CLUSTER_EXPIRY=1500ms"

/* ---- nats-server processes ------------------------------------------------ */

typedef struct nats_proc {
  pid_t pid;
  uint16_t port, cport;
  char dir[128];
  char url[64];
} nats_proc;



/* Starts nats-server with JetStream on a free port; routes (may be NULL)
 * makes it one node of a cluster whose route port is n->cport. */
static void nats_start(nats_proc *n, const char *name, const char *routes) {
  if (!n->port)
    n->port = it_free_tcp_port();
  if (!n->dir[0]) {
    snprintf(n->dir, sizeof n->dir, "/tmp/issun-nats-XXXXXX");
    if (!mkdtemp(n->dir))
      fail_msg("mkdtemp: %s", strerror(errno));
  }
  snprintf(n->url, sizeof n->url, "nats://127.0.0.1:%u", n->port);
  pid_t pid = fork();
  if (pid < 0)
    fail_msg("fork: %s", strerror(errno));
  if (pid == 0) {
    char port[16], store[160], logp[160], cl[64];
    snprintf(port, sizeof port, "%u", n->port);
    snprintf(store, sizeof store, "%s/js", n->dir);
    snprintf(logp, sizeof logp, "%s/nats.log", n->dir);
    int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    if (routes) {
      snprintf(cl, sizeof cl, "nats://127.0.0.1:%u", n->cport);
      execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", store, "-n",
             name, "--cluster_name", "issun-it", "--cluster", cl, "--routes", routes, (char *)NULL);
    } else {
      execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", store, "-n",
             name, (char *)NULL);
    }
    _exit(127);
  }
  n->pid = pid;
  uint64_t end = it_now_ms() + 10000;
  while (!it_tcp_accepts(n->port)) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid)
      fail_msg("nats-server exited at start (is it installed?)");
    if (it_now_ms() > end)
      fail_msg("nats-server did not listen within 10 s");
    it_poll(20, NULL, 0);
  }
}

static void nats_stop(nats_proc *n, int sig) {
  if (!n->pid)
    return;
  kill(n->pid, sig);
  uint64_t end = it_now_ms() + 5000;
  while (waitpid(n->pid, NULL, WNOHANG) != n->pid) {
    if (it_now_ms() > end) {
      kill(n->pid, SIGKILL);
      waitpid(n->pid, NULL, 0);
      break;
    }
    it_poll(20, NULL, 0);
  }
  n->pid = 0;
}

static void nats_cleanup(nats_proc *n) {
  nats_stop(n, SIGTERM);
  if (n->dir[0]) {
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", n->dir);
    it_run(cmd, NULL, 0);
    n->dir[0] = 0;
  }
}

/* ---- relays and room helpers ------------------------------------------------ */

static nats_proc nats1;
static it_server ra, rb;
static char url_env[128];
static uint16_t metrics_a, metrics_b;
static char menv_a[64], menv_b[64];

static int relay_start(it_server *s, const char *url_var, const char *extra) {
  const char *env[] = {url_var, EXPIRY_ENV, "ISSUN_MAX_EVENTS_PER_SEC=100000",
                       extra ? extra : "ISSUN_LOG=info", NULL};
  return it_server_start(s, env);
}

static int group_setup(void **state) {
  nats_start(&nats1, "n1", NULL);
  snprintf(url_env, sizeof url_env, "ISSUN_NATS_URL=%s", nats1.url);
  metrics_a = it_free_tcp_port();
  metrics_b = it_free_tcp_port();
  snprintf(menv_a, sizeof menv_a, "ISSUN_METRICS_PORT=%u", metrics_a);
  snprintf(menv_b, sizeof menv_b, "ISSUN_METRICS_PORT=%u", metrics_b);
  if (relay_start(&ra, url_env, menv_a) != 0)
    return -1;
  if (relay_start(&rb, url_env, menv_b) != 0)
    return -1;
  return 0;
}

static int group_teardown(void **state) {
  int rv = 0;
  if (it_server_stop(&ra) != 0)
    rv = -1;
  if (it_server_stop(&rb) != 0)
    rv = -1;
  nats_cleanup(&nats1);
  return rv;
}

static int create(itc *t, const char *name, uint32_t maxc, it_room *out) {
  issun_kv kv[] = {{"mode", "duel"}};
  return itc_room_create(t, name, maxc, kv, 1, out);
}

static int list_has(itc *t, uint64_t room) {
  it_room l;
  if (itc_room_list(t, &l) != 0)
    return 0;
  for (size_t i = 0; i < l.count && i < 32; i++)
    if (l.ids[i] == room)
      return 1;
  return 0;
}

static size_t count_pres(const itc *t, int change, uint64_t node) {
  size_t n = 0;
  for (size_t i = 0; i < t->npres; i++)
    if ((int)t->pres[i].change == change && t->pres[i].node_id == node)
      n++;
  return n;
}

/* Index of the first presence record matching, or -1. */
static long find_pres(const itc *t, int change, uint64_t node) {
  for (size_t i = 0; i < t->npres; i++)
    if ((int)t->pres[i].change == change && t->pres[i].node_id == node)
      return (long)i;
  return -1;
}

static void send_n(itc *t, const char *type, int n, uint64_t target, issun_scope scope) {
  for (int i = 0; i < n; i++) {
    char p[16];
    int len = snprintf(p, sizeof p, "%d", i);
    int rv = issun_client_send(t->c, type, scope, target, ISSUN_RELIABLE, p, (size_t)len, NULL);
    if (rv != 0)
      fail_msg("send %s #%d: %s", type, i, issun_strerror(rv));
  }
}

/* 1 when t got exactly n events of type from sender, payloads 0..n-1 in order. */
static int in_order(const itc *t, const char *type, uint64_t sender, int n) {
  int next = 0;
  for (size_t i = 0; i < t->nev; i++) {
    const itc_event *e = &t->ev[i];
    if (strcmp(e->type, type) != 0)
      continue;
    if (e->sender != sender)
      return 0;
    char p[16] = {0};
    memcpy(p, e->payload, e->payload_len < 15 ? e->payload_len : 15);
    if (atoi(p) != next)
      return 0;
    next++;
  }
  return next == n;
}

/* ---- tests ---------------------------------------------------------------------- */

static int http_get(uint16_t port, const char *path, char *out, size_t cap);

/* A counter's value from a relay's /metrics, or -1. */
static long metric(uint16_t port, const char *name) {
  static char buf[262144];
  if (http_get(port, "/metrics", buf, sizeof buf) <= 0)
    return -1;
  char needle[128];
  snprintf(needle, sizeof needle, "\n%s ", name);
  const char *p = strstr(buf, needle);
  return p ? atol(p + strlen(needle)) : -1;
}

static void test_room_across_relays(void **state) {
  itc *a = itc_new(&ra, "a", NULL), *b = itc_new(&rb, "b", NULL), *c = itc_new(&ra, "c", NULL);
  uint64_t ida = issun_client_node_id(a->c), idb = issun_client_node_id(b->c),
           idc = issun_client_node_id(c->c);
  it_room r, j;
  assert_int_equal(create(a, "cross", 4, &r), 0);
  assert_int_equal(r.host, ida);
  assert_int_equal(r.max_clients, 4);

  /* The room made on relay A is in relay B's directory mirror. */
  uint64_t end = it_now_ms() + 5000;
  while (!list_has(b, r.id) && it_now_ms() < end)
    it_poll(20, (itc *const[]){a, b, c}, 3);
  assert_true(list_has(b, r.id));

  assert_int_equal(itc_room_join(b, r.id, &j), 0);
  assert_int_equal(j.members, 2);
  assert_int_equal(j.member[0], ida);
  assert_int_equal(j.member[1], idb);
  assert_int_equal(j.host, ida);
  assert_true(IT_WAIT(5000, count_pres(a, ISSUN_PRESENCE_JOIN, idb) == 1, a, b, c));
  assert_int_equal(b->npres, 0);

  assert_int_equal(itc_room_join(c, r.id, &j), 0);
  assert_int_equal(j.members, 3);
  assert_true(IT_WAIT(5000, count_pres(b, ISSUN_PRESENCE_JOIN, idc) == 1, a, b, c));
  assert_true(IT_WAIT(5000, count_pres(a, ISSUN_PRESENCE_JOIN, idc) == 1, a, b, c));

  /* Events both ways, all delivered, in order per sender; local members are
   * served too. */
  send_n(a, "x::FromA", 300, 0, ISSUN_SCOPE_BROADCAST);
  send_n(b, "x::FromB", 300, 0, ISSUN_SCOPE_BROADCAST);
  assert_true(
      IT_WAIT(15000,
              itc_count_type(b, "x::FromA") == 300 && itc_count_type(a, "x::FromB") == 300 &&
                  itc_count_type(c, "x::FromA") == 300 && itc_count_type(c, "x::FromB") == 300,
              a, b, c));
  assert_true(in_order(b, "x::FromA", ida, 300));
  assert_true(in_order(c, "x::FromA", ida, 300));
  assert_true(in_order(a, "x::FromB", idb, 300));
  assert_true(in_order(c, "x::FromB", idb, 300));
  assert_int_equal(itc_count_type(a, "x::FromA"), 0); /* never back to the sender */
  assert_int_equal(itc_count_type(b, "x::FromB"), 0);

  /* Host migration across relays: a (host, relay A) leaves; b, the longest
   * present (relay B), becomes host; both remaining members are told. */
  assert_int_equal(itc_room_leave(a), 0);
  assert_true(IT_WAIT(5000,
                      count_pres(b, ISSUN_PRESENCE_HOST, idb) == 1 &&
                          count_pres(c, ISSUN_PRESENCE_HOST, idb) == 1,
                      a, b, c));
  long lv = find_pres(b, ISSUN_PRESENCE_LEAVE, ida), hc = find_pres(b, ISSUN_PRESENCE_HOST, idb);
  assert_true(lv >= 0 && hc > lv); /* the leave first, then the host change */
  assert_int_equal(b->pres[lv].host, idb);
  lv = find_pres(c, ISSUN_PRESENCE_LEAVE, ida);
  assert_true(lv >= 0 && find_pres(c, ISSUN_PRESENCE_HOST, idb) > lv);

  /* The new host starts the room from relay B; a join from relay A is then
   * refused with ROOM_NOT_WAITING (the directory is the truth). */
  it_room s;
  assert_int_equal(itc_room_start(c, NULL), ISSUN_WIRE_NOT_HOST);
  assert_int_equal(itc_room_start(b, &s), 0);
  assert_int_equal(s.state, ISSUN_ROOM_IN_PROGRESS);
  assert_int_equal(s.host, idb);
  assert_int_equal(itc_room_join(a, r.id, NULL), ISSUN_WIRE_ROOM_NOT_WAITING);
  itc_free(a);
  itc_free(b);
  itc_free(c);
}

static void test_lobby_targeted_and_node_ids(void **state) {
  itc *a = itc_new(&ra, "a", NULL), *b = itc_new(&rb, "b", NULL);
  uint64_t ida = issun_client_node_id(a->c), idb = issun_client_node_id(b->c);
  /* Lobby (no room) broadcast reaches lobby sessions on the other relay. */
  send_n(a, "l::Hello", 20, 0, ISSUN_SCOPE_BROADCAST);
  assert_true(IT_WAIT(5000, itc_count_type(b, "l::Hello") == 20, a, b));
  assert_true(in_order(b, "l::Hello", ida, 20));

  /* Targeted from A to a session on B (the owner map may take a moment to
   * learn b: retry until one arrives, then check the rest in order). */
  uint64_t end = it_now_ms() + 5000;
  while (itc_count_type(b, "t::Probe") == 0 && it_now_ms() < end) {
    assert_int_equal(issun_client_send(a->c, "t::Probe", ISSUN_SCOPE_TARGETED, idb, ISSUN_RELIABLE,
                                       "p", 1, NULL),
                     0);
    IT_WAIT(200, itc_count_type(b, "t::Probe") > 0, a, b);
  }
  assert_true(itc_count_type(b, "t::Probe") > 0);
  send_n(a, "t::Direct", 50, idb, ISSUN_SCOPE_TARGETED);
  send_n(b, "t::Back", 50, ida, ISSUN_SCOPE_TARGETED);
  assert_true(IT_WAIT(
      5000, itc_count_type(b, "t::Direct") == 50 && itc_count_type(a, "t::Back") == 50, a, b));
  assert_true(in_order(b, "t::Direct", ida, 50));
  assert_true(in_order(a, "t::Back", idb, 50));

  /* A NodeId held on relay A cannot be taken on relay B. */
  itc_opts o = {.node_id = ida, .no_connect = 1};
  itc *dup = itc_new(&rb, "dup", &o);
  assert_int_equal(itc_connect(dup), ISSUN_ERR_DUPLICATE_NODE);
  itc_free(dup);
  /* Once a leaves, its NodeId is free on B. */
  itc_free(a);
  end = it_now_ms() + 5000;
  itc *again = NULL;
  for (;;) {
    again = itc_new(&rb, "again", &o);
    if (itc_connect(again) == 0)
      break;
    itc_free(again);
    again = NULL;
    if (it_now_ms() > end)
      break;
    it_poll(50, NULL, 0);
  }
  assert_non_null(again);
  assert_int_equal(issun_client_node_id(again->c), ida);
  itc_free(again);
  itc_free(b);
}

/* Room requests sent back to back, without waiting: the directory writes
 * happen off the relay's loop, yet the REPLYs come in request order with
 * the statuses of that order. */
static void test_pipelined_requests_reply_in_order(void **state) {
  itc *h = itc_new(&ra, "h", NULL), *p = itc_new(&rb, "p", NULL);
  it_room r;
  assert_int_equal(create(h, "pipeline", 4, &r), 0);
  uint32_t ids[7];
  size_t n0 = p->nreplies;
  assert_int_equal(issun_client_room_join(p->c, r.id, &ids[0]), 0);
  assert_int_equal(issun_client_room_list(p->c, &ids[1]), 0);
  assert_int_equal(issun_client_room_start(p->c, &ids[2]), 0);      /* NOT_HOST */
  assert_int_equal(issun_client_room_join(p->c, r.id, &ids[3]), 0); /* ALREADY_IN_ROOM */
  assert_int_equal(issun_client_room_leave(p->c, &ids[4]), 0);
  assert_int_equal(issun_client_room_leave(p->c, &ids[5]), 0); /* NOT_IN_ROOM */
  assert_int_equal(issun_client_room_join(p->c, r.id, &ids[6]), 0);
  assert_true(IT_WAIT(10000, p->nreplies >= n0 + 7, h, p));
  const int want[7] = {
      0, 0, ISSUN_WIRE_NOT_HOST, ISSUN_WIRE_ALREADY_IN_ROOM, 0, ISSUN_WIRE_NOT_IN_ROOM, 0};
  for (int i = 0; i < 7; i++) {
    assert_int_equal(p->replies[n0 + (size_t)i], ids[i]);
    if (p->reply_status[n0 + (size_t)i] != want[i]) {
      it_server_dump_log(&ra);
      it_server_dump_log(&rb);
      fail_msg("request %d: status %d, expected %d", i, p->reply_status[n0 + (size_t)i], want[i]);
    }
  }
  assert_int_equal(issun_client_room_id(p->c), r.id);
  /* h saw p join, leave and join again, in that order */
  uint64_t idp = issun_client_node_id(p->c);
  assert_true(IT_WAIT(5000, count_pres(h, ISSUN_PRESENCE_JOIN, idp) == 2, h, p));
  assert_int_equal(count_pres(h, ISSUN_PRESENCE_LEAVE, idp), 1);
  long j1 = find_pres(h, ISSUN_PRESENCE_JOIN, idp), l1 = find_pres(h, ISSUN_PRESENCE_LEAVE, idp);
  assert_true(j1 < l1);
  itc_free(p);
  itc_free(h);
}

/* The queue of room requests waiting behind a pending one is bounded: a
 * client that pipelines more than 64 is cut off with PROTOCOL_ERROR, and
 * the relay carries on. */
static void test_pipelined_flood_is_bounded(void **state) {
  itc *h = itc_new(&ra, "h", NULL), *p = itc_new(&rb, "p", NULL);
  it_room r;
  assert_int_equal(create(h, "flood", 4, &r), 0);
  uint32_t id;
  assert_int_equal(issun_client_room_join(p->c, r.id, &id), 0);
  for (int i = 0; i < 100; i++)
    assert_int_equal(issun_client_room_list(p->c, &id), 0);
  assert_true(IT_WAIT(10000, itc_close_code(p) >= 0, h, p));
  assert_int_equal(itc_close_code(p), ISSUN_WIRE_PROTOCOL_ERROR);
  /* the seat it may have won is given back: the room empties to one */
  itc *q = itc_new(&rb, "q", NULL);
  it_room j;
  uint64_t end = it_now_ms() + 5000;
  for (;;) {
    assert_int_equal(itc_room_join(q, r.id, &j), 0);
    if (j.members == 2 || it_now_ms() > end)
      break;
    assert_int_equal(itc_room_leave(q), 0);
    it_poll(50, (itc *const[]){h, q}, 2);
  }
  assert_int_equal(j.members, 2);
  itc_free(q);
  itc_free(p);
  itc_free(h);
}

static void test_last_seat_race(void **state) {
  long c0 = metric(metrics_a, "issun_cluster_kv_conflicts_total") +
            metric(metrics_b, "issun_cluster_kv_conflicts_total");
  for (int round = 0; round < 20; round++) {
    itc *h = itc_new(&ra, "h", NULL), *x = itc_new(&ra, "x", NULL), *y = itc_new(&rb, "y", NULL);
    it_room r;
    assert_int_equal(create(h, "two-seats", 2, &r), 0);
    /* Both relays know the room before the race starts. */
    uint64_t end = it_now_ms() + 5000;
    while (!list_has(y, r.id) && it_now_ms() < end)
      it_poll(10, (itc *const[]){h, x, y}, 3);
    /* Queue both joins, then let both clients send at once. */
    uint32_t rx, ry;
    size_t nx = x->nreplies, ny = y->nreplies;
    assert_int_equal(issun_client_room_join(x->c, r.id, &rx), 0);
    assert_int_equal(issun_client_room_join(y->c, r.id, &ry), 0);
    assert_true(IT_WAIT(5000, x->nreplies > nx && y->nreplies > ny, x, y));
    assert_int_equal(x->replies[nx], rx);
    assert_int_equal(y->replies[ny], ry);
    int sx = x->reply_status[nx], sy = y->reply_status[ny];
    if (!((sx == 0 && sy == ISSUN_WIRE_ROOM_FULL) || (sy == 0 && sx == ISSUN_WIRE_ROOM_FULL)))
      fail_msg("round %d: the two joins got %d and %d", round, sx, sy);
    /* The directory agrees: exactly two members, seen from both relays. */
    itc *probe = itc_new(&rb, "probe", NULL);
    assert_int_equal(itc_room_join(probe, r.id, NULL), ISSUN_WIRE_ROOM_FULL);
    assert_true(IT_WAIT(5000, h->npres == 1, h, x, y));
    itc_free(probe);
    itc_free(h);
    itc_free(x);
    itc_free(y);
  }
  long c1 = metric(metrics_a, "issun_cluster_kv_conflicts_total") +
            metric(metrics_b, "issun_cluster_kv_conflicts_total");
  assert_true(c0 >= 0 && c1 >= c0);
  print_message("compare-and-set retries during the 20 races: %ld\n", c1 - c0);
}

static void test_killed_relay_expires(void **state) {
  it_server rc;
  assert_int_equal(relay_start(&rc, url_env, NULL), 0);
  itc *h = itc_new(&rc, "h", NULL), *a = itc_new(&ra, "a", NULL), *b = itc_new(&rb, "b", NULL);
  uint64_t idh = issun_client_node_id(h->c), ida = issun_client_node_id(a->c);
  it_room r;
  assert_int_equal(create(h, "doomed-host", 4, &r), 0);
  uint64_t end = it_now_ms() + 5000;
  while (!list_has(a, r.id) && it_now_ms() < end)
    it_poll(10, (itc *const[]){h, a, b}, 3);
  assert_int_equal(itc_room_join(a, r.id, NULL), 0);
  assert_int_equal(itc_room_join(b, r.id, NULL), 0);
  assert_true(IT_WAIT(5000, h->npres == 2, h, a, b));

  /* kill -9: no goodbye; the liveness key stops being refreshed. */
  uint64_t t0 = it_now_ms();
  assert_int_equal(it_server_signal(&rc, SIGKILL, 5000), 0);
  assert_true(IT_WAIT(EXPIRY_MS + 2000,
                      count_pres(a, ISSUN_PRESENCE_LEAVE, idh) == 1 &&
                          count_pres(b, ISSUN_PRESENCE_LEAVE, idh) == 1 &&
                          count_pres(a, ISSUN_PRESENCE_HOST, ida) == 1 &&
                          count_pres(b, ISSUN_PRESENCE_HOST, ida) == 1,
                      a, b));
  uint64_t took = it_now_ms() - t0;
  print_message("leaves of the killed relay arrived after %llu ms (expiry %d ms)\n",
                (unsigned long long)took, EXPIRY_MS);
  assert_true(took >= EXPIRY_MS / 2); /* it was the expiry, not something else */
  long lv = find_pres(a, ISSUN_PRESENCE_LEAVE, idh);
  assert_int_equal(a->pres[lv].host, ida);
  /* The room lives on with a as host: the directory says so to a new joiner. */
  itc *late = itc_new(&rb, "late", NULL);
  it_room j;
  assert_int_equal(itc_room_join(late, r.id, &j), 0);
  assert_int_equal(j.host, ida);
  assert_int_equal(j.members, 3);
  itc_free(late);
  itc_free(h);
  itc_free(a);
  itc_free(b);
  it_server_stop(&rc);
}

static void test_graceful_stop_leaves_at_once(void **state) {
  it_server rc;
  assert_int_equal(relay_start(&rc, url_env, NULL), 0);
  itc *h = itc_new(&ra, "h", NULL), *g = itc_new(&rc, "g", NULL);
  uint64_t idg = issun_client_node_id(g->c);
  it_room r;
  assert_int_equal(create(h, "short-stay", 4, &r), 0);
  uint64_t end = it_now_ms() + 5000;
  while (!list_has(g, r.id) && it_now_ms() < end)
    it_poll(10, (itc *const[]){h, g}, 2);
  assert_int_equal(itc_room_join(g, r.id, NULL), 0);
  assert_true(IT_WAIT(5000, count_pres(h, ISSUN_PRESENCE_JOIN, idg) == 1, h, g));
  uint64_t t0 = it_now_ms();
  assert_int_equal(it_server_signal(&rc, SIGTERM, 2000), 0); /* protocol section 11: within 2 s */
  assert_int_equal(rc.exit_status, 0);
  assert_true(IT_WAIT(5000, count_pres(h, ISSUN_PRESENCE_LEAVE, idg) == 1, h));
  assert_true(it_now_ms() - t0 < EXPIRY_MS); /* told, not expired */
  itc_free(g);
  itc_free(h);
  it_server_stop(&rc);
}

/* Three NATS nodes, both relays given all three; the node relay x is on is
 * killed mid-test. */
/* Processes of the tests that bring their own NATS: stopped by stop_all
 * even when a test fails half-way. */
static nats_proc gn[3];
static it_server gx, gy;

static int stop_all(void **state) {
  if (gx.pid || gx.dir[0])
    it_server_stop(&gx);
  if (gy.pid || gy.dir[0])
    it_server_stop(&gy);
  for (int i = 0; i < 3; i++)
    nats_cleanup(&gn[i]);
  memset(&gx, 0, sizeof gx);
  memset(&gy, 0, sizeof gy);
  memset(gn, 0, sizeof gn);
  return 0;
}

static void test_nats_cluster_node_loss(void **state) {
  nats_proc *n = gn;
  it_server *xp = &gx, *yp = &gy;
  for (int i = 0; i < 3; i++) {
    n[i].port = it_free_tcp_port();
    n[i].cport = it_free_tcp_port();
  }
  char routes[3][200];
  for (int i = 0; i < 3; i++) {
    int o1 = (i + 1) % 3, o2 = (i + 2) % 3;
    snprintf(routes[i], sizeof routes[i], "nats://127.0.0.1:%u,nats://127.0.0.1:%u", n[o1].cport,
             n[o2].cport);
  }
  nats_start(&n[0], "c1", routes[0]);
  nats_start(&n[1], "c2", routes[1]);
  nats_start(&n[2], "c3", routes[2]);
  char env1[800];
  snprintf(env1, sizeof env1, "ISSUN_NATS_URL=%s,%s,%s", n[0].url, n[1].url, n[2].url);
  /* the buckets need the JetStream cluster to elect a leader: the relay waits */
  assert_int_equal(relay_start(xp, env1, "ISSUN_NATS_REPLICAS=3"), 0);
  assert_int_equal(relay_start(yp, env1, "ISSUN_NATS_REPLICAS=3"), 0);
  itc *a = itc_new(xp, "a", NULL), *b = itc_new(yp, "b", NULL);
  uint64_t ida = issun_client_node_id(a->c), idb = issun_client_node_id(b->c);
  it_room r;
  assert_int_equal(create(a, "replicated", 4, &r), 0);
  uint64_t end = it_now_ms() + 10000;
  while (!list_has(b, r.id) && it_now_ms() < end)
    it_poll(20, (itc *const[]){a, b}, 2);
  assert_int_equal(itc_room_join(b, r.id, NULL), 0);
  send_n(a, "c::Before", 50, 0, ISSUN_SCOPE_BROADCAST);
  assert_true(IT_WAIT(5000, itc_count_type(b, "c::Before") == 50, a, b));

  /* Kill the NATS node relay x is connected to (from its log), so a
   * failover really happens. */
  int victim = -1;
  for (int i = 0; i < 3 && victim < 0; i++) {
    char needle[96];
    snprintf(needle, sizeof needle, "nats_server=%s", n[i].url);
    if (it_server_log_has(xp, needle))
      victim = i;
  }
  assert_true(victim >= 0);
  nats_stop(&n[victim], SIGKILL); /* one NATS node dies */

  /* No session is lost, and events keep flowing both ways once the relays
   * that used node 1 have reconnected to another node. */
  end = it_now_ms() + 15000;
  int got = 0;
  for (int k = 0; it_now_ms() < end && !got; k++) {
    char t[32];
    snprintf(t, sizeof t, "c::After%d", k);
    assert_int_equal(
        issun_client_send(a->c, t, ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "1", 1, NULL), 0);
    got = IT_WAIT(500, itc_count_type(b, t) == 1, a, b);
  }
  assert_true(got);
  send_n(b, "c::Back", 50, 0, ISSUN_SCOPE_BROADCAST);
  assert_true(IT_WAIT(10000, itc_count_type(a, "c::Back") == 50, a, b));
  assert_true(in_order(a, "c::Back", idb, 50));
  assert_false(itc_has_state(a, ISSUN_STATE_FAILED) || itc_has_state(a, ISSUN_STATE_RECONNECTING));
  assert_false(itc_has_state(b, ISSUN_STATE_FAILED) || itc_has_state(b, ISSUN_STATE_RECONNECTING));
  assert_true(IT_WAIT(10000, it_server_log_has(xp, "connected to NATS again"), a, b));
  /* b's join, and no leave.  The join's record may still be on its way if
   * x's directory consumer was on the lost node (it is remade, see below). */
  assert_true(IT_WAIT(15000, count_pres(a, ISSUN_PRESENCE_JOIN, idb) == 1, a, b));
  assert_int_equal(a->npres, 1);
  assert_int_equal(count_pres(a, ISSUN_PRESENCE_LEAVE, idb), 0);

  /* The directory still takes writes (R3 buckets, two of three nodes up). */
  itc *c = itc_new(yp, "c", NULL);
  int st = -1;
  end = it_now_ms() + 15000;
  while (it_now_ms() < end && (st = itc_room_join(c, r.id, NULL)) != 0)
    it_poll(250, (itc *const[]){a, b, c}, 3);
  assert_int_equal(st, 0);
  /* (the relays' directory consumers may have been on the lost node: they
   * are remade after a missed heartbeat) */
  assert_true(
      IT_WAIT(15000, count_pres(a, ISSUN_PRESENCE_JOIN, issun_client_node_id(c->c)) == 1, a, b, c));
  (void)ida;
  /* Neither relay took the other for dead at any point, and b never left. */
  assert_false(it_server_log_has(xp, "reason=expired"));
  assert_false(it_server_log_has(yp, "reason=expired"));
  assert_int_equal(count_pres(a, ISSUN_PRESENCE_LEAVE, idb), 0);
  itc_free(c);
  itc_free(a);
  itc_free(b);
}

/* Minimal HTTP GET on loopback; the response (headers and body) goes to
 * out.  Returns the byte count, or -1. */
static int http_get(uint16_t port, const char *path, char *out, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  char req[128];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
  if (write(fd, req, (size_t)n) != n) {
    close(fd);
    return -1;
  }
  size_t got = 0;
  ssize_t r;
  while (got + 1 < cap && (r = read(fd, out + got, cap - 1 - got)) > 0)
    got += (size_t)r;
  out[got] = 0;
  close(fd);
  return (int)got;
}

static int http_has(uint16_t port, const char *path, const char *needle) {
  static char buf[262144];
  return http_get(port, path, buf, sizeof buf) > 0 && strstr(buf, needle) != NULL;
}

/* NATS goes away: local sessions keep being served, /health and the metrics
 * say so, and once NATS is back the relays reconnect and relay across again. */
static void test_nats_outage(void **state) {
  nats_proc *np = &gn[0];
  it_server *xp = &gx, *yp = &gy;
  nats_start(np, "solo", NULL);
  char env_url[128], env_m1[64], env_m2[64];
  snprintf(env_url, sizeof env_url, "ISSUN_NATS_URL=%s", np->url);
  uint16_t m1 = it_free_tcp_port(), m2 = it_free_tcp_port();
  snprintf(env_m1, sizeof env_m1, "ISSUN_METRICS_PORT=%u", m1);
  snprintf(env_m2, sizeof env_m2, "ISSUN_METRICS_PORT=%u", m2);
  assert_int_equal(relay_start(xp, env_url, env_m1), 0);
  assert_int_equal(relay_start(yp, env_url, env_m2), 0);
  itc *a = itc_new(xp, "a", NULL), *b = itc_new(xp, "b", NULL), *c = itc_new(yp, "c", NULL);
  uint64_t ida = issun_client_node_id(a->c);
  it_room r;
  assert_int_equal(create(a, "outage", 8, &r), 0);
  assert_int_equal(itc_room_join(b, r.id, NULL), 0);
  uint64_t end = it_now_ms() + 5000;
  while (!list_has(c, r.id) && it_now_ms() < end)
    it_poll(10, (itc *const[]){a, b, c}, 3);
  assert_int_equal(itc_room_join(c, r.id, NULL), 0);
  assert_true(http_has(m1, "/health", "200 OK") && http_has(m1, "/metrics", "issun_cluster_up 1"));

  nats_stop(np, SIGKILL);
  /* The outage is reported... */
  assert_true(IT_WAIT(10000, http_has(m1, "/metrics", "issun_cluster_up 0"), a, b, c));
  assert_true(http_has(m1, "/health", "DEGRADED"));
  /* ...and the local members still play. */
  send_n(a, "o::Local", 30, 0, ISSUN_SCOPE_BROADCAST);
  assert_true(IT_WAIT(5000, itc_count_type(b, "o::Local") == 30, a, b, c));
  assert_true(in_order(b, "o::Local", ida, 30));

  /* NATS comes back (same port, same store): both relays reconnect. */
  nats_start(np, "solo", NULL);
  assert_true(IT_WAIT(15000,
                      http_has(m1, "/metrics", "issun_cluster_up 1") &&
                          http_has(m2, "/metrics", "issun_cluster_up 1"),
                      a, b, c));
  assert_true(IT_WAIT(10000, http_has(m1, "/health", "\r\n\r\nOK\n"), a, b, c));
  end = it_now_ms() + 10000;
  int got = 0;
  for (int k = 0; it_now_ms() < end && !got; k++) {
    char t[32];
    snprintf(t, sizeof t, "o::Again%d", k);
    assert_int_equal(
        issun_client_send(a->c, t, ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "1", 1, NULL), 0);
    got = IT_WAIT(300, itc_count_type(c, t) == 1, a, b, c);
  }
  assert_true(got);
  /* Room requests work again across relays. */
  itc *d = itc_new(yp, "d", NULL);
  assert_int_equal(itc_room_join(d, r.id, NULL), 0);
  assert_true(IT_WAIT(5000, count_pres(a, ISSUN_PRESENCE_JOIN, issun_client_node_id(d->c)) == 1, a,
                      b, c, d));
  assert_int_equal(count_pres(a, ISSUN_PRESENCE_LEAVE, issun_client_node_id(c->c)), 0);
  itc_free(d);
  itc_free(a);
  itc_free(b);
  itc_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_room_across_relays),
      cmocka_unit_test(test_lobby_targeted_and_node_ids),
      cmocka_unit_test(test_pipelined_requests_reply_in_order),
      cmocka_unit_test(test_pipelined_flood_is_bounded),
      cmocka_unit_test(test_last_seat_race),
      cmocka_unit_test(test_killed_relay_expires),
      cmocka_unit_test(test_graceful_stop_leaves_at_once),
  };
  const struct CMUnitTest nats_cluster[] = {
      cmocka_unit_test_teardown(test_nats_outage, stop_all),
      cmocka_unit_test_teardown(test_nats_cluster_node_loss, stop_all),
  };
  int rv = cmocka_run_group_tests_name("cluster", tests, group_setup, group_teardown);
  rv += cmocka_run_group_tests_name("nats_cluster", nats_cluster, NULL, NULL);
  return rv;
}
