/*
 * Integration test support: real issun-server processes on loopback, real
 * libissun clients, and waiting on conditions (never on sleeps).
 *
 *   it_server s;
 *   const char *env[] = {"ISSUN_HEARTBEAT_INTERVAL=200ms", NULL};
 *   it_server_start(&s, env);          // port 0: the server picks, we parse its log
 *   itc *a = itc_new(&s, "alice", NULL);
 *   IT_WAIT(5000, itc_nev(b) == 1, a, b);
 *   it_server_stop(&s);
 */
#ifndef ISSUN_IT_H
#define ISSUN_IT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "issun/issun.h"
#include "client/client_internal.h"

typedef struct it_server {
  pid_t pid;
  uint16_t port;
  char dir[256];      /* temporary working directory */
  char log_path[300]; /* its stderr */
  char fpr[128];      /* SHA-256 of its certificate, from the log */
  char host[64];      /* "127.0.0.1" or "::1" */
  int exit_status;    /* after it_server_stop/wait: exit code, or 128+signal */
} it_server;

/* Starts $ISSUN_SERVER_BIN in a fresh temporary directory with
 * ISSUN_BIND_ADDR=127.0.0.1:0 (unless env sets it) plus `env` ("K=V"
 * strings, NULL-terminated, may be NULL), waits up to 10 s for its
 * "listening" line, and reads the port and certificate fingerprint from it.
 * Returns 0, or -1 (the log is printed). */
int it_server_start(it_server *s, const char *const *env);

/* Sends sig and waits up to timeout_ms for the process to exit.  Returns 0
 * when it exited (exit_status set), -1 when it did not (then it is killed). */
int it_server_signal(it_server *s, int sig, int timeout_ms);

/* SIGTERM, wait, remove the directory.  Returns the exit status. */
int it_server_stop(it_server *s);

/* 1 when the server's log contains needle. */
int it_server_log_has(const it_server *s, const char *needle);
/* Prints the server's log to stderr (for a failing test's report). */
void it_server_dump_log(const it_server *s);

/* Runs a command line and returns its exit status (helper for shell-ish
 * checks); output goes to out (NUL-terminated, truncated) when not NULL. */
int it_run(const char *cmd, char *out, size_t outlen);

/* ---- clients ---------------------------------------------------------- */

typedef struct itc_event {
  uint64_t sender, timestamp, sequence, target;
  int scope, reliable;
  char type[260];
  uint8_t payload[512];
  size_t payload_len; /* the real length (payload keeps the first 512 bytes) */
} itc_event;

typedef struct itc_raw {
  int from_datagram;
  uint8_t type;
  uint8_t payload[256];
  size_t len;
} itc_raw;

typedef struct itc {
  issun_client *c;
  const it_server *srv;
  char name[64];
  itc_event *ev;
  size_t nev, evcap;
  issun_presence pres[256];
  size_t npres;
  uint16_t errors[64]; /* ERROR frame codes received */
  size_t nerrors;
  itc_raw raw[256]; /* raw frames, when raw capture is on */
  size_t nraw;
  issun_state states[64];
  size_t nstates;
  uint32_t replies[64]; /* request ids of REPLYs, in arrival order */
  uint16_t reply_status[64];
  size_t nreplies;
} itc;

/* Options for itc_new (NULL = defaults: pinned to the server's fingerprint,
 * reconnect off, name as given). */
typedef struct itc_opts {
  uint64_t node_id;
  int reconnect;
  int skip_hello;   /* connect only: the test sends its own first frame */
  int raw_capture;  /* record every received frame in raw[] */
  int no_connect;   /* create but do not connect */
  int no_datagrams; /* do not advertise DATAGRAM support */
  const char *host; /* override (e.g. "::1") */
  const char *ca_file, *pin; /* override verification */
  int insecure;
  size_t offline_queue_events; /* 0: the library's default */
  int32_t ack_delay_ms;        /* settings.ack_delay_ms; 0: the library's default */
  const char *token; /* settings.token (authentication) */
  const char *(*get_token)(issun_client *c, void *itc); /* callbacks.get_token; gets the itc */
} itc_opts;

/* Creates a client and connects it (blocking) unless opts->no_connect.
 * Fails the test (cmocka) when the connect fails. */
itc *itc_new(const it_server *s, const char *name, const itc_opts *opts);
/* Connects, returning the issun_error of issun_client_connect. */
int itc_connect(itc *t);
void itc_free(itc *t);

/* Polls every client given once (non-blocking) and then waits on their
 * sockets for up to ms. */
void it_poll(int ms, itc *const *cs, size_t n);

/* Polls the clients until cond() is true or timeout_ms passes; returns 1
 * when the condition held.  Use the IT_WAIT macro. */
int it_wait_fn(int timeout_ms, int (*cond)(void *), void *arg, itc *const *cs, size_t n);

#define IT_WAIT(timeout_ms, expr, ...)                                                             \
  ({                                                                                               \
    itc *const _cs[] = {__VA_ARGS__};                                                              \
    int _ok = 0;                                                                                   \
    uint64_t _end = it_now_ms() + (uint64_t)(timeout_ms);                                         \
    for (;;) {                                                                                     \
      if (expr) {                                                                                  \
        _ok = 1;                                                                                   \
        break;                                                                                     \
      }                                                                                            \
      if (it_now_ms() >= _end) break;                                                              \
      it_poll(5, _cs, sizeof _cs / sizeof _cs[0]);                                                 \
    }                                                                                              \
    _ok;                                                                                           \
  })

uint64_t it_now_ms(void);

/* A TCP port on 127.0.0.1 that was free a moment ago (for helper servers
 * such as nats-server that cannot report the port they picked). */
uint16_t it_free_tcp_port(void);
/* 1 when something accepts TCP connections on 127.0.0.1:port. */
int it_tcp_accepts(uint16_t port);

/* ---- room requests ---------------------------------------------------- */

/* The REPLY of a room request, copied: its room ids, and the first room's
 * fields. */
typedef struct it_room {
  uint64_t id, host;
  uint32_t max_clients;
  int state;
  size_t members;
  uint64_t member[16];
  char name[64];
  size_t nmeta;
  size_t count; /* rooms in the reply */
  uint64_t ids[32];
} it_room;

/* Each sends one request, waits up to 5 s for its REPLY (failing the test
 * when the request cannot be sent or no REPLY comes) and returns the REPLY's
 * status; out (may be NULL) gets the copy. */
int itc_room_create(itc *t, const char *name, uint32_t max_clients, const issun_kv *kv,
                    size_t nkv, it_room *out);
int itc_room_join(itc *t, uint64_t room_id, it_room *out);
int itc_room_leave(itc *t);
int itc_room_start(itc *t, it_room *out);
int itc_room_list(itc *t, it_room *out);

/* Counting helpers. */
size_t itc_count_type(const itc *t, const char *type);
size_t itc_count_raw(const itc *t, uint8_t type);
int itc_has_error(const itc *t, uint16_t code);
int itc_has_state(const itc *t, issun_state st);
/* The CONNECTION_CLOSE application code received, or -1. */
long itc_close_code(const itc *t);

/* Encodes a frame (header + payload) into buf; returns its length. */
size_t it_frame(uint8_t *buf, size_t cap, uint8_t type, const void *payload, size_t len);
/* Encodes an EVENT frame. */
size_t it_event_frame(uint8_t *buf, size_t cap, uint64_t sender, uint64_t seq, uint32_t scope,
                      uint64_t target, const char *type, const void *payload, size_t plen);

#endif
