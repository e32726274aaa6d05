/*
 * The relay's guard: admission control for new connections (per-address
 * limits, stateless Retry), token authentication of HELLO, and the counters
 * of every abuse limit (stats.limits, stats.auth_failures).
 *
 * server.c calls guard_on_initial() for the first Initial of an unknown
 * connection, before anything is allocated or any TLS work is done, and
 * guard_conn_gone() when a connection it admitted is freed.  relay.c calls
 * the guard_* hooks below at the points where a limit applies.
 */
#ifndef ISSUN_SERVER_GUARD_H
#define ISSUN_SERVER_GUARD_H

#include <ngtcp2/ngtcp2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/proto.h"

typedef struct srv srv;
typedef struct conn conn;

/* What guard_on_initial decided for a connection it admits. */
typedef struct guard_admit {
  int validated;       /* the Initial carried a valid Retry token of ours */
  ngtcp2_cid odcid;    /* then: the DCID of the client's first Initial */
} guard_admit;

/* Sets up the guard from s->cfg (per-address table, Retry secret).
 * Returns 0, or -1 with a reason in err. */
int guard_init(srv *s, char *err, size_t errlen);
void guard_free(srv *s);

/* The first Initial of a connection we do not know (hd from ngtcp2_accept).
 * Returns 0 when the connection may be created: the address is counted
 * (call guard_conn_gone when the connection is freed, also when creating it
 * fails) and *ga says how to set it up (guard_apply).  Returns -1 when the
 * packet was answered instead (Retry, or a refusal) or dropped. */
int guard_on_initial(srv *s, int fd, const ngtcp2_pkt_hd *hd, const struct sockaddr *local,
                     socklen_t local_len, const struct sockaddr *remote, socklen_t remote_len,
                     guard_admit *ga);

/* Transport parameters and settings of an admitted connection: the
 * original DCID and, after a Retry, retry_scid and the token. */
void guard_apply(const guard_admit *ga, const ngtcp2_pkt_hd *hd, ngtcp2_settings *settings,
                 ngtcp2_transport_params *params);

/* A connection admitted by guard_on_initial is gone. */
void guard_conn_gone(srv *s, const struct sockaddr *remote);

/* HELLO with authentication on: checks the token and the node_id.  On
 * success h->node_id becomes the token's sub and 0 is returned; otherwise
 * the connection is closed with UNAUTHORIZED and -1 is returned.  Does
 * nothing (0) when authentication is off. */
int guard_hello(conn *c, pr_hello *h);

/* ROOM_CREATE name and metadata limits: 0, or -1 after closing the
 * connection with PROTOCOL_ERROR. */
int guard_room_create(conn *c, const pr_room_create *cr);

/* Counting hooks. */
void guard_count_fatal(conn *c, uint16_t code);             /* relay_fatal */
void guard_count_reply(srv *s, uint16_t status);            /* every REPLY status */
void guard_count_bad_event(srv *s, const uint8_t *p, size_t n); /* an EVENT payload refused */

/* One log line with every non-zero limit counter (at shutdown). */
void guard_log_summary(srv *s);

#endif
