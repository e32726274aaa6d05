#include "it.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

uint64_t it_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void msleep(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  if (!b) {
    fclose(f);
    return NULL;
  }
  size_t r = fread(b, 1, (size_t)n, f);
  b[r] = 0;
  fclose(f);
  return b;
}

int it_server_log_has(const it_server *s, const char *needle) {
  char *b = slurp(s->log_path);
  int r = b && strstr(b, needle) != NULL;
  free(b);
  return r;
}

void it_server_dump_log(const it_server *s) {
  char *b = slurp(s->log_path);
  fprintf(stderr, "---- server log (%s) ----\n%s\n---- end ----\n", s->log_path, b ? b : "(none)");
  free(b);
}

int it_server_start(it_server *s, const char *const *env) {
  memset(s, 0, sizeof *s);
  const char *bin = getenv("ISSUN_SERVER_BIN");
  if (!bin) {
    fprintf(stderr, "ISSUN_SERVER_BIN is not set\n");
    return -1;
  }
  snprintf(s->dir, sizeof s->dir, "/tmp/issun-it-XXXXXX");
  if (!mkdtemp(s->dir)) return -1;
  snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->dir);
  int bind_given = 0;
  for (const char *const *e = env; e && *e; e++)
    if (strncmp(*e, "ISSUN_BIND_ADDR=", 16) == 0) bind_given = 1;
  snprintf(s->host, sizeof s->host, "127.0.0.1");

  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* a killed test leaves no server behind */
    if (chdir(s->dir) != 0) _exit(127);
    int fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(127);
    dup2(fd, 2);
    dup2(fd, 1);
    close(fd);
    unsetenv("ISSUN_LOG");
    unsetenv("RUST_LOG");
    setenv("ISSUN_METRICS_PORT", "0", 1);
    if (!bind_given) setenv("ISSUN_BIND_ADDR", "127.0.0.1:0", 1);
    for (const char *const *e = env; e && *e; e++) putenv((char *)*e);
    execl(bin, bin, (char *)NULL);
    _exit(127);
  }
  s->pid = pid;
  uint64_t end = it_now_ms() + 10000;
  while (it_now_ms() < end) {
    char *b = slurp(s->log_path);
    char *p = b ? strstr(b, "Relay server listening on") : NULL;
    if (p) {
      char *a = strstr(p, "addr=");
      char *colon = a ? strchr(a, ' ') : NULL;
      if (!a && (a = strstr(p, "\"addr\":\"")) != NULL) { /* ISSUN_LOG_FORMAT=json */
        a += 3;                                             /* value at a + 5, as above */
        colon = strchr(a + 5, '"');
      }
      if (a && colon) {
        /* addr=127.0.0.1:PORT or addr=[::1]:PORT */
        char addr[128] = {0};
        size_t n = (size_t)(colon - (a + 5));
        memcpy(addr, a + 5, n < sizeof addr - 1 ? n : sizeof addr - 1);
        char *pc = strrchr(addr, ':');
        if (pc) s->port = (uint16_t)atoi(pc + 1);
        if (addr[0] == '[') snprintf(s->host, sizeof s->host, "::1");
      }
      char *f = strstr(b, "sha256=");
      if (f) {
        sscanf(f + 7, "%127[0-9A-Fa-f:]", s->fpr);
      } else if ((f = strstr(b, "\"sha256\":\"")) != NULL) {
        sscanf(f + 10, "%127[0-9A-Fa-f:]", s->fpr);
      }
      free(b);
      if (s->port) return 0;
      break;
    }
    free(b);
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      s->pid = 0;
      s->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      it_server_dump_log(s);
      return -1;
    }
    msleep(10); /* polling the log file for the start-up line */
  }
  it_server_dump_log(s);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  s->pid = 0;
  return -1;
}

int it_server_signal(it_server *s, int sig, int timeout_ms) {
  if (!s->pid) return 0;
  kill(s->pid, sig);
  uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid) {
      s->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      s->pid = 0;
      return 0;
    }
    if (it_now_ms() >= end) break;
    msleep(5); /* polling for the child's exit */
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = 0;
  s->exit_status = 128 + SIGKILL;
  it_server_dump_log(s);
  return -1;
}

int it_server_stop(it_server *s) {
  if (s->pid) it_server_signal(s, SIGTERM, 5000);
  if (getenv("IT_KEEP_LOGS") == NULL && s->dir[0]) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0) {
    }
  } else if (s->dir[0]) {
    it_server_dump_log(s);
  }
  return s->exit_status;
}

int it_run(const char *cmd, char *out, size_t outlen) {
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t n = 0;
  char buf[4096];
  size_t r;
  while ((r = fread(buf, 1, sizeof buf, p)) > 0) {
    if (out && n + 1 < outlen) {
      size_t k = r < outlen - 1 - n ? r : outlen - 1 - n;
      memcpy(out + n, buf, k);
      n += k;
    }
  }
  if (out && outlen) out[n] = 0;
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- clients ---------------------------------------------------------- */

static void on_state(issun_client *c, issun_state st, int err, void *ud) {
  itc *t = ud;
  if (t->nstates < 64) t->states[t->nstates++] = st;
}

static void on_event(issun_client *c, const issun_event *ev, void *ud) {
  itc *t = ud;
  if (t->nev == t->evcap) {
    size_t ncap = t->evcap ? t->evcap * 2 : 256;
    itc_event *n = realloc(t->ev, ncap * sizeof *n);
    if (!n) return;
    t->ev = n;
    t->evcap = ncap;
  }
  itc_event *e = &t->ev[t->nev++];
  e->sender = ev->meta.sender;
  e->timestamp = ev->meta.timestamp_ms;
  e->sequence = ev->meta.sequence;
  e->target = ev->meta.target;
  e->scope = (int)ev->meta.scope;
  e->reliable = ev->meta.reliable;
  snprintf(e->type, sizeof e->type, "%s", ev->type_name);
  e->payload_len = ev->payload_len;
  memcpy(e->payload, ev->payload, ev->payload_len < 512 ? ev->payload_len : 512);
}

static void on_reply(issun_client *c, const issun_room_reply *r, void *ud) {
  itc *t = ud;
  if (t->nreplies < 64) {
    t->replies[t->nreplies] = r->request_id;
    t->reply_status[t->nreplies++] = r->status;
  }
}

static void on_presence(issun_client *c, const issun_presence *p, void *ud) {
  itc *t = ud;
  if (t->npres < 256) t->pres[t->npres++] = *p;
}

static void on_server_error(issun_client *c, uint16_t code, const char *msg, void *ud) {
  itc *t = ud;
  if (t->nerrors < 64) t->errors[t->nerrors++] = code;
}

static void on_raw(issun_client *c, int from_dgram, uint8_t type, const uint8_t *p, size_t len,
                   void *ud) {
  itc *t = ud;
  if (t->nraw < 256) {
    itc_raw *r = &t->raw[t->nraw++];
    r->from_datagram = from_dgram;
    r->type = type;
    r->len = len;
    memcpy(r->payload, p, len < 256 ? len : 256);
  }
}

itc *itc_new(const it_server *s, const char *name, const itc_opts *o) {
  itc_opts def = {0};
  if (!o) o = &def;
  itc *t = calloc(1, sizeof *t);
  assert_non_null(t);
  t->srv = s;
  snprintf(t->name, sizeof t->name, "%s", name);
  issun_client_settings st;
  issun_client_settings_default(&st);
  st.name = t->name;
  st.node_id = o->node_id;
  st.reconnect = o->reconnect;
  st.connect_timeout_ms = 5000;
  st.enable_datagrams = !o->no_datagrams;
  st.token = o->token;
  if (o->offline_queue_events) st.offline_queue_events = o->offline_queue_events;
  if (o->ack_delay_ms) st.ack_delay_ms = o->ack_delay_ms;
  if (o->insecure) {
    st.insecure = 1;
  } else if (o->ca_file || o->pin) {
    st.ca_file = o->ca_file;
    st.pin_sha256 = o->pin;
  } else {
    st.pin_sha256 = s->fpr;
  }
  issun_client_callbacks cb = {.on_state = on_state,
                               .on_event = on_event,
                               .on_room_reply = on_reply,
                               .on_presence = on_presence,
                               .on_server_error = on_server_error};
  cb.get_token = o->get_token;
  char err[256] = "";
  int rv = issun_client_new_ex(&t->c, &st, &cb, t, err, sizeof err);
  if (rv != 0) fail_msg("issun_client_new(%s): %s", name, err);
  if (o->skip_hello) issun__set_skip_hello(t->c, 1);
  if (o->raw_capture || o->skip_hello) issun__set_raw_frame_cb(t->c, on_raw, t);
  if (!o->no_connect) {
    rv = issun_client_connect(t->c, o->host ? o->host : s->host, s->port);
    if (rv != 0)
      fail_msg("connect(%s) to %s:%u: %s (%s)", name, o->host ? o->host : s->host, s->port,
               issun_strerror(rv), issun_client_last_error(t->c));
  }
  return t;
}

int itc_connect(itc *t) {
  return issun_client_connect(t->c, t->srv->host, t->srv->port);
}

void itc_free(itc *t) {
  if (!t) return;
  issun_client_free(t->c);
  free(t->ev);
  free(t);
}

void it_poll(int ms, itc *const *cs, size_t n) {
  struct pollfd pf[64];
  size_t np = 0;
  int tmo = ms;
  for (size_t i = 0; i < n; i++) {
    if (!cs[i]) continue;
    issun_client_poll(cs[i]->c, 0);
    int fd = issun_client_fd(cs[i]->c);
    int t = issun_client_timeout_ms(cs[i]->c);
    if (t >= 0 && t < tmo) tmo = t;
    if (fd >= 0 && np < 64) {
      pf[np].fd = fd;
      pf[np].events = POLLIN;
      np++;
    }
  }
  if (np)
    poll(pf, (nfds_t)np, tmo);
  else if (tmo > 0)
    msleep(tmo);
  for (size_t i = 0; i < n; i++)
    if (cs[i]) issun_client_poll(cs[i]->c, 0);
}

int it_wait_fn(int timeout_ms, int (*cond)(void *), void *arg, itc *const *cs, size_t n) {
  uint64_t end = it_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    if (cond(arg)) return 1;
    if (it_now_ms() >= end) return 0;
    it_poll(5, cs, n);
  }
}

size_t itc_count_type(const itc *t, const char *type) {
  size_t n = 0;
  for (size_t i = 0; i < t->nev; i++)
    if (strcmp(t->ev[i].type, type) == 0) n++;
  return n;
}

size_t itc_count_raw(const itc *t, uint8_t type) {
  size_t n = 0;
  for (size_t i = 0; i < t->nraw; i++)
    if (t->raw[i].type == type) n++;
  return n;
}

int itc_has_error(const itc *t, uint16_t code) {
  for (size_t i = 0; i < t->nerrors; i++)
    if (t->errors[i] == code) return 1;
  return 0;
}

int itc_has_state(const itc *t, issun_state st) {
  for (size_t i = 0; i < t->nstates; i++)
    if (t->states[i] == st) return 1;
  return 0;
}

long itc_close_code(const itc *t) {
  uint64_t code;
  int app;
  if (issun__close_error(t->c, &code, &app) != 0 || !app) return -1;
  return (long)code;
}

static void le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

size_t it_frame(uint8_t *buf, size_t cap, uint8_t type, const void *payload, size_t len) {
  if (cap < 8 + len) return 0;
  buf[0] = 0x49;
  buf[1] = 0x53;
  buf[2] = 0x01;
  buf[3] = type;
  le(buf + 4, len, 4);
  if (len) memcpy(buf + 8, payload, len);
  return 8 + len;
}

size_t it_event_frame(uint8_t *buf, size_t cap, uint64_t sender, uint64_t seq, uint32_t scope,
                      uint64_t target, const char *type, const void *payload, size_t plen) {
  size_t tl = strlen(type);
  size_t n = 8 + 8 + 8 + 8 + 4 + (scope == 2 ? 8 : 0) + 8 + tl + 8 + plen;
  if (cap < n) return 0;
  uint8_t *p = buf + 8;
  le(p, sender, 8), p += 8;
  le(p, 1700000000000ull, 8), p += 8;
  le(p, seq, 8), p += 8;
  le(p, scope, 4), p += 4;
  if (scope == 2) le(p, target, 8), p += 8;
  le(p, tl, 8), p += 8;
  memcpy(p, type, tl), p += tl;
  le(p, plen, 8), p += 8;
  if (plen) memcpy(p, payload, plen), p += plen;
  buf[0] = 0x49;
  buf[1] = 0x53;
  buf[2] = 0x01;
  buf[3] = 0x01;
  le(buf + 4, n - 8, 4);
  return n;
}

uint16_t it_free_tcp_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &l) != 0)
    fail_msg("it_free_tcp_port: %s", strerror(errno));
  close(fd);
  return ntohs(a.sin_port);
}

int it_tcp_accepts(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

/* ---- room requests ---------------------------------------------------- */

static int room_finish(itc *t, int rv, uint32_t rid, it_room *out) {
  if (rv != 0) fail_msg("%s: room request: %s", t->name, issun_strerror(rv));
  const issun_room_reply *r = NULL;
  rv = issun_client_room_wait(t->c, rid, 5000, &r);
  if (rv != 0 || !r)
    fail_msg("%s: room_wait: %s (%s)", t->name, issun_strerror(rv),
             issun_client_last_error(t->c));
  assert_int_equal(r->request_id, rid);
  if (out) {
    memset(out, 0, sizeof *out);
    out->count = r->room_count;
    for (size_t i = 0; i < r->room_count && i < 32; i++) out->ids[i] = r->rooms[i].room_id;
    if (r->room_count) {
      const issun_room_info *ri = &r->rooms[0];
      out->id = ri->room_id;
      out->host = ri->host;
      out->max_clients = ri->max_clients;
      out->state = ri->state;
      out->members = ri->member_count;
      for (size_t i = 0; i < ri->member_count && i < 16; i++) out->member[i] = ri->members[i];
      snprintf(out->name, sizeof out->name, "%s", ri->name);
      out->nmeta = ri->metadata_count;
    }
  }
  return r->status;
}

int itc_room_create(itc *t, const char *name, uint32_t max_clients, const issun_kv *kv,
                    size_t nkv, it_room *out) {
  uint32_t rid = 0;
  int rv = issun_client_room_create(t->c, name, max_clients, kv, nkv, &rid);
  return room_finish(t, rv, rid, out);
}

int itc_room_join(itc *t, uint64_t room_id, it_room *out) {
  uint32_t rid = 0;
  int rv = issun_client_room_join(t->c, room_id, &rid);
  return room_finish(t, rv, rid, out);
}

int itc_room_leave(itc *t) {
  uint32_t rid = 0;
  int rv = issun_client_room_leave(t->c, &rid);
  return room_finish(t, rv, rid, NULL);
}

int itc_room_start(itc *t, it_room *out) {
  uint32_t rid = 0;
  int rv = issun_client_room_start(t->c, &rid);
  return room_finish(t, rv, rid, out);
}

int itc_room_list(itc *t, it_room *out) {
  uint32_t rid = 0;
  int rv = issun_client_room_list(t->c, &rid);
  return room_finish(t, rv, rid, out);
}
