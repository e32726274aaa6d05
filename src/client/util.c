/*
 * libissun: error names, wire code mapping, clocks, byte buffers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client_priv.h"

ISSUN_API const char *issun_version(void) {
  return ISSUN_VERSION_STRING;
}

ISSUN_API const char *issun_strerror(int err) {
  switch (err) {
  case ISSUN_OK:
    return "success";
  case ISSUN_ERR_INVALID_ARG:
    return "invalid argument";
  case ISSUN_ERR_NOMEM:
    return "out of memory";
  case ISSUN_ERR_STATE:
    return "not allowed in the current state";
  case ISSUN_ERR_NOT_CONNECTED:
    return "not connected";
  case ISSUN_ERR_QUEUE_FULL:
    return "queue full";
  case ISSUN_ERR_TOO_LARGE:
    return "too large";
  case ISSUN_ERR_NO_DATAGRAM:
    return "server does not accept datagrams";
  case ISSUN_ERR_IN_CALLBACK:
    return "not allowed inside a callback";
  case ISSUN_ERR_RESOLVE:
    return "host name resolution failed";
  case ISSUN_ERR_SOCKET:
    return "network error";
  case ISSUN_ERR_REFUSED:
    return "connection refused";
  case ISSUN_ERR_TIMEOUT:
    return "timed out";
  case ISSUN_ERR_TLS:
    return "TLS handshake failed";
  case ISSUN_ERR_CERT:
    return "certificate verification failed";
  case ISSUN_ERR_QUIC:
    return "QUIC transport error";
  case ISSUN_ERR_CLOSED:
    return "connection closed";
  case ISSUN_ERR_NOT_FOUND:
    return "not found";
  case ISSUN_ERR_EXISTS:
    return "already exists";
  case ISSUN_ERR_PROTOCOL:
    return "protocol error";
  case ISSUN_ERR_FRAME_TOO_LARGE:
    return "frame too large";
  case ISSUN_ERR_UNAUTHORIZED:
    return "unauthorized";
  case ISSUN_ERR_SERVER_FULL:
    return "server full";
  case ISSUN_ERR_RATE_LIMITED:
    return "rate limited";
  case ISSUN_ERR_SERVER_TIMEOUT:
    return "server timed the session out";
  case ISSUN_ERR_DUPLICATE_NODE:
    return "node id already in use";
  case ISSUN_ERR_SESSION_TAKEN_OVER:
    return "session taken over by another connection";
  case ISSUN_ERR_SHUTTING_DOWN:
    return "server shutting down";
  case ISSUN_ERR_UNSUPPORTED_VERSION:
    return "unsupported protocol version";
  case ISSUN_ERR_SLOW_CONSUMER:
    return "slow consumer";
  case ISSUN_ERR_ROOMS_DISABLED:
    return "rooms disabled";
  case ISSUN_ERR_ROOM_NOT_FOUND:
    return "room not found";
  case ISSUN_ERR_ROOM_FULL:
    return "room full";
  case ISSUN_ERR_ALREADY_IN_ROOM:
    return "already in a room";
  case ISSUN_ERR_NOT_IN_ROOM:
    return "not in a room";
  case ISSUN_ERR_NOT_HOST:
    return "not the room host";
  case ISSUN_ERR_ROOM_NOT_WAITING:
    return "room not waiting";
  case ISSUN_ERR_TOO_MANY_ROOMS:
    return "too many rooms";
  case ISSUN_ERR_SERVER:
    return "server error";
  default:
    return "unknown error";
  }
}

ISSUN_API const char *issun_wire_code_name(unsigned code) {
  switch (code) {
  case ISSUN_WIRE_NO_ERROR:
    return "NO_ERROR";
  case ISSUN_WIRE_PROTOCOL_ERROR:
    return "PROTOCOL_ERROR";
  case ISSUN_WIRE_FRAME_TOO_LARGE:
    return "FRAME_TOO_LARGE";
  case ISSUN_WIRE_UNAUTHORIZED:
    return "UNAUTHORIZED";
  case ISSUN_WIRE_SERVER_FULL:
    return "SERVER_FULL";
  case ISSUN_WIRE_RATE_LIMITED:
    return "RATE_LIMITED";
  case ISSUN_WIRE_TIMEOUT:
    return "TIMEOUT";
  case ISSUN_WIRE_DUPLICATE_NODE:
    return "DUPLICATE_NODE";
  case ISSUN_WIRE_SESSION_TAKEN_OVER:
    return "SESSION_TAKEN_OVER";
  case ISSUN_WIRE_SHUTTING_DOWN:
    return "SHUTTING_DOWN";
  case ISSUN_WIRE_UNSUPPORTED_VERSION:
    return "UNSUPPORTED_VERSION";
  case ISSUN_WIRE_SLOW_CONSUMER:
    return "SLOW_CONSUMER";
  case ISSUN_WIRE_ROOMS_DISABLED:
    return "ROOMS_DISABLED";
  case ISSUN_WIRE_ROOM_NOT_FOUND:
    return "ROOM_NOT_FOUND";
  case ISSUN_WIRE_ROOM_FULL:
    return "ROOM_FULL";
  case ISSUN_WIRE_ALREADY_IN_ROOM:
    return "ALREADY_IN_ROOM";
  case ISSUN_WIRE_NOT_IN_ROOM:
    return "NOT_IN_ROOM";
  case ISSUN_WIRE_NOT_HOST:
    return "NOT_HOST";
  case ISSUN_WIRE_ROOM_NOT_WAITING:
    return "ROOM_NOT_WAITING";
  case ISSUN_WIRE_TOO_MANY_ROOMS:
    return "TOO_MANY_ROOMS";
  default:
    return "UNKNOWN";
  }
}

ISSUN_API int issun_error_from_wire(unsigned code) {
  switch (code) {
  case ISSUN_WIRE_NO_ERROR:
    return ISSUN_OK;
  case ISSUN_WIRE_PROTOCOL_ERROR:
    return ISSUN_ERR_PROTOCOL;
  case ISSUN_WIRE_FRAME_TOO_LARGE:
    return ISSUN_ERR_FRAME_TOO_LARGE;
  case ISSUN_WIRE_UNAUTHORIZED:
    return ISSUN_ERR_UNAUTHORIZED;
  case ISSUN_WIRE_SERVER_FULL:
    return ISSUN_ERR_SERVER_FULL;
  case ISSUN_WIRE_RATE_LIMITED:
    return ISSUN_ERR_RATE_LIMITED;
  case ISSUN_WIRE_TIMEOUT:
    return ISSUN_ERR_SERVER_TIMEOUT;
  case ISSUN_WIRE_DUPLICATE_NODE:
    return ISSUN_ERR_DUPLICATE_NODE;
  case ISSUN_WIRE_SESSION_TAKEN_OVER:
    return ISSUN_ERR_SESSION_TAKEN_OVER;
  case ISSUN_WIRE_SHUTTING_DOWN:
    return ISSUN_ERR_SHUTTING_DOWN;
  case ISSUN_WIRE_UNSUPPORTED_VERSION:
    return ISSUN_ERR_UNSUPPORTED_VERSION;
  case ISSUN_WIRE_SLOW_CONSUMER:
    return ISSUN_ERR_SLOW_CONSUMER;
  case ISSUN_WIRE_ROOMS_DISABLED:
    return ISSUN_ERR_ROOMS_DISABLED;
  case ISSUN_WIRE_ROOM_NOT_FOUND:
    return ISSUN_ERR_ROOM_NOT_FOUND;
  case ISSUN_WIRE_ROOM_FULL:
    return ISSUN_ERR_ROOM_FULL;
  case ISSUN_WIRE_ALREADY_IN_ROOM:
    return ISSUN_ERR_ALREADY_IN_ROOM;
  case ISSUN_WIRE_NOT_IN_ROOM:
    return ISSUN_ERR_NOT_IN_ROOM;
  case ISSUN_WIRE_NOT_HOST:
    return ISSUN_ERR_NOT_HOST;
  case ISSUN_WIRE_ROOM_NOT_WAITING:
    return ISSUN_ERR_ROOM_NOT_WAITING;
  case ISSUN_WIRE_TOO_MANY_ROOMS:
    return ISSUN_ERR_TOO_MANY_ROOMS;
  default:
    return ISSUN_ERR_SERVER;
  }
}

/* Which errors end a session for good.  Everything else (network errors,
 * timeouts, QUIC transport errors, a server restart or shutdown, a server
 * that timed us out or cut us as a slow consumer) is retried by the
 * reconnect logic. */
int ic_err_is_fatal(int err) {
  switch (err) {
  case ISSUN_ERR_NOMEM:
  case ISSUN_ERR_TLS:
  case ISSUN_ERR_CERT:
  case ISSUN_ERR_PROTOCOL:
  case ISSUN_ERR_FRAME_TOO_LARGE:
  case ISSUN_ERR_UNAUTHORIZED:
  case ISSUN_ERR_SERVER_FULL:
  case ISSUN_ERR_DUPLICATE_NODE:
  case ISSUN_ERR_SESSION_TAKEN_OVER:
  case ISSUN_ERR_UNSUPPORTED_VERSION:
  case ISSUN_ERR_INVALID_ARG:
    return 1;
  default:
    return 0;
  }
}

uint64_t ic_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ic_now_ms(void) {
  return ic_now_ns() / 1000000u;
}

uint64_t issun__unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ic_seterr(issun_client *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof(c->err), fmt, ap);
  va_end(ap);
}

int ic_fail(issun_client *c, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof(c->err), fmt, ap);
  va_end(ap);
  return err;
}

int ic_bytes_reserve(ic_bytes *b, size_t extra) {
  if (b->cap - b->len >= extra)
    return 0;
  size_t need = b->len + extra;
  if (need < b->len)
    return ISSUN_ERR_NOMEM;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2) {
      ncap = need;
      break;
    }
    ncap *= 2;
  }
  uint8_t *p = realloc(b->p, ncap);
  if (!p)
    return ISSUN_ERR_NOMEM;
  b->p = p;
  b->cap = ncap;
  return 0;
}

void ic_bytes_free(ic_bytes *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}
