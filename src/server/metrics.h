/*
 * The operator's HTTP endpoint: GET /metrics (Prometheus text format 0.0.4)
 * and GET /health, served inside the relay's one epoll loop.
 *
 * It is a deliberately small HTTP/1.1 responder, not a web server: one
 * request per connection (Connection: close), GET and HEAD only, a bounded
 * request (METRICS_REQ_MAX bytes up to the blank line), at most
 * METRICS_MAX_CONNS connections at once (more are accepted and closed at
 * once), and a deadline per connection (METRICS_IO_TIMEOUT_MS to send the
 * request, as long again to take the response) enforced by its own timerfd.
 * Sockets are non-blocking; a response is rendered into memory in one go
 * (a few tens of microseconds) and written as the peer takes it, so a slow
 * scraper costs the relay nothing but a buffer, and is dropped at its
 * deadline.
 *
 * Lifetime: metrics_new() after the server's epoll set exists; the loop hands
 * every epoll event whose id is in [METRICS_EPOLL_ID, METRICS_EPOLL_ID +
 * METRICS_EPOLL_SPAN) to metrics_on_epoll(); metrics_free() closes
 * everything.  While the server is stopping, /health answers 503 and the
 * loop waits (up to its stop deadline) while metrics_busy() says a request is
 * being answered.
 */
#ifndef ISSUN_SERVER_METRICS_H
#define ISSUN_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_EPOLL_ID 0x6d000000u /* listener; +1 timerfd; +2.. connections */
#define METRICS_MAX_CONNS 16
#define METRICS_EPOLL_SPAN (2u + METRICS_MAX_CONNS)
#define METRICS_REQ_MAX 4096
#define METRICS_IO_TIMEOUT_MS 5000

typedef struct srv srv;
typedef struct metrics metrics;

/* Opens the listening socket (cfg.metrics_addr or the bind host, port
 * cfg.metrics_port) and registers it in epfd.  Returns 0, or -1 with a
 * reason naming the setting in err. */
int metrics_new(metrics **out, srv *s, int epfd, char *err, size_t errlen);

/* Handles one epoll event (id and event mask as epoll returned them). */
void metrics_on_epoll(metrics *m, uint32_t id, uint32_t events);

/* 1 while a request is being read or answered. */
int metrics_busy(const metrics *m);

/* The TCP port actually bound. */
uint16_t metrics_port(const metrics *m);

void metrics_free(metrics *m);

/* ---- exposed for the unit tests ----------------------------------------- */

/* Renders the whole /metrics body into a malloc'ed buffer (*out, length
 * returned); 0 and *out = NULL when out of memory. */
size_t metrics_render(const srv *s, char **out);

enum metrics_req {
  MREQ_INCOMPLETE = 0, /* no blank line yet */
  MREQ_METRICS,
  MREQ_HEALTH,
  MREQ_NOT_FOUND,   /* 404 */
  MREQ_BAD_METHOD,  /* 405 */
  MREQ_BAD_REQUEST, /* 400 */
  MREQ_TOO_LARGE,   /* 431: no blank line within METRICS_REQ_MAX */
};

/* Classifies the request in buf[0, len).  *head is set to 1 for HEAD. */
int metrics_parse_request(const char *buf, size_t len, int *head);

#endif
