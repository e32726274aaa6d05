/*
 * Clustering: many relays as one, over NATS (docs/clustering.md).
 *
 * Off unless ISSUN_NATS_URL is set: then srv.cluster is NULL and the relay's
 * only cost is one pointer test at each hook below.
 *
 * Threads.  The relay stays one thread around epoll.  The NATS client runs
 * its own I/O threads and calls back on them; those callbacks only append the
 * message to a bounded, locked queue and wake the loop through an eventfd in
 * the epoll set.  Every change to relay state (rooms, sessions, presence)
 * happens on the loop thread, in cluster_on_epoll().  One more thread of ours
 * refreshes this relay's liveness key; it touches nothing but NATS.
 *
 * Directory.  Three JetStream key-value buckets:
 *   issun_rooms   <room id hex>  -> room record (name, state, host, max
 *                                   clients, members with their relay in
 *                                   join order, metadata, a version)
 *   issun_nodes   <node id hex>  -> owning relay id (hex)
 *   issun_relays  <relay id hex> -> liveness key, TTL = the expiry
 * Every change to a room or a NodeId is a compare-and-set on the key's
 * revision, so two relays never both admit the last seat of a room or the
 * same NodeId.  Each relay also follows the rooms and nodes streams (ordered
 * JetStream consumers: only accepted writes) and the liveness subject, so it
 * keeps a mirror of the room directory (ROOM_LIST and presence come from
 * it) and of the NodeId owners (targeted routing).
 *
 * Room writes (create, join, leave, start, cleanup) run on a worker thread
 * of ours, in order; the loop applies each result and sends the REPLY when
 * it comes back (a session's later room requests queue behind its pending
 * one, so REPLYs stay in request order).  The NodeId claim at HELLO and the
 * release at session end stay synchronous on the loop (one or two KV round
 * trips, bounded by the JetStream timeout of 1.5 s, skipped at once while
 * NATS is disconnected).
 */
#ifndef ISSUN_SERVER_CLUSTER_H
#define ISSUN_SERVER_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

#define CLUSTER_EPOLL_ID 0x6e000000u /* eventfd; +1 the tick timerfd */
#define CLUSTER_EPOLL_SPAN 2u
#define CLUSTER_QUEUE_MAX 65536 /* NATS messages waiting for the loop */

typedef struct srv srv;
typedef struct conn conn;
typedef struct room room;
typedef struct evbuf evbuf;
typedef struct cluster cluster;

/* Connects to NATS (retrying up to 30 s), makes sure the buckets exist,
 * loads the directory, subscribes and registers its fds in epfd.  Returns 0,
 * or -1 with a reason naming the setting in err. */
int cluster_new(cluster **out, srv *s, int epfd, char *err, size_t errlen);

/* Removes this relay's liveness key (the others then announce its sessions'
 * leaves at once), closes the connection and frees everything. */
void cluster_free(cluster *cl);

/* One epoll event whose id is in [CLUSTER_EPOLL_ID, +CLUSTER_EPOLL_SPAN). */
void cluster_on_epoll(cluster *cl, uint32_t id);

/* ---- hooks from relay.c (loop thread) ----------------------------------- */

/* HELLO: claims *id for this relay (assign: the relay picked it, and may
 * pick another on a conflict).  0, or -1 when another live relay holds it. */
int cluster_claim_node(cluster *cl, uint64_t *id, int assign);
/* The session holding id ended. */
void cluster_release_node(cluster *cl, uint64_t id);

/* ROOM_CREATE / JOIN / LEAVE / START (decoded; rooms enabled).  Sends the
 * REPLY and the PRESENCE frames. */
void cluster_room_request(cluster *cl, conn *c, uint8_t type, uint32_t request_id,
                          const pr_room_create *cr, uint64_t join_room_id);
/* 1 while a room request of c's session waits for the directory: its next
 * room requests, ROOM_LIST included, must queue behind it. */
int cluster_busy(const cluster *cl, const conn *c);
/* c leaves its room (disconnect, or ROOM_LEAVE). */
void cluster_leave_room(cluster *cl, conn *c);

/* Events: b is the encoded frame with the sender set.  Published once per
 * room, once to the lobby
 * subject, or to the relay holding the target.  (A room's events are
 * published even when all its known members are local, so a member just
 * admitted by another relay misses none.)  route_targeted returns 0
 * when the target is known elsewhere in the cluster, -1 otherwise. */
void cluster_room_event(cluster *cl, const room *r, const evbuf *b, int reliable);
void cluster_lobby_event(cluster *cl, const evbuf *b, int reliable);
int cluster_route_targeted(cluster *cl, uint64_t sender, uint64_t target, const uint8_t *frame,
                           size_t flen, int reliable);

/* ---- observability ------------------------------------------------------- */

/* 1 when the NATS connection is up. */
int cluster_connected(const cluster *cl);
/* Appends Prometheus lines for the cluster gauges and counters to buf;
 * returns the length written (truncated at cap). */
size_t cluster_metrics_text(const cluster *cl, char *buf, size_t cap);

/* ---- exposed for the unit tests ------------------------------------------ */

/* Decodes a directory room record as a relay would (every length checked).
 * 0 with its id and member count, or -1 for a malformed record. */
int cluster_record_check(const uint8_t *p, size_t n, uint64_t *room_id, uint32_t *members);
/* Encodes a well-formed record (name "room", 8 seats, host nodes[0]);
 * returns its length, 0 when it does not fit in cap. */
size_t cluster_record_example(uint8_t *out, size_t cap, uint64_t room_id, const uint64_t *nodes,
                              const uint64_t *relays, uint32_t n);

#endif
