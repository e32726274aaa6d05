/*
 * The relay's counters.  Plain integers bumped on the hot path (one thread,
 * no atomics); the metrics endpoint reads them.
 */
#ifndef ISSUN_SERVER_STATS_H
#define ISSUN_SERVER_STATS_H

#include <stdint.h>

enum stat_scope { ST_SCOPE_BROADCAST = 0, ST_SCOPE_TO_SERVER, ST_SCOPE_TARGETED, ST_SCOPE_N };

enum stat_drop {
  ST_DROP_RATE_LIMITED = 0,
  ST_DROP_NO_TARGET,
  ST_DROP_TO_SERVER,
  ST_DROP_DATAGRAM_UNSUPPORTED,
  ST_DROP_TOO_BIG,
  ST_DROP_SLOW_CONSUMER,
  ST_DROP_DATAGRAM_QUEUE,
  ST_DROP_SEND_ERROR,
  ST_DROP_N
};

enum stat_handshake {
  ST_HS_OK = 0,     /* ACK sent */
  ST_HS_TLS_FAILED, /* QUIC/TLS handshake failed or timed out */
  ST_HS_REFUSED,    /* ERROR answer to HELLO (full, duplicate, bad HELLO) */
  ST_HS_TIMEOUT,    /* no HELLO in time */
  ST_HS_N
};

/* Disconnect reasons: the wire codes (0x00..0x0B) plus the ones below. */
#define ST_DISC_IDLE 0x0C     /* QUIC idle timeout */
#define ST_DISC_PEER 0x0D     /* the peer closed the connection */
#define ST_DISC_N 0x0E

typedef struct srv_stats {
  uint64_t events_relayed[ST_SCOPE_N]; /* events accepted and routed, by scope */
  uint64_t deliveries;                 /* event copies queued to recipients */
  uint64_t dropped[ST_DROP_N];
  uint64_t handshakes[ST_HS_N];
  uint64_t disconnects[ST_DISC_N];
  uint64_t bytes_sent, bytes_received; /* UDP payload bytes */
  uint64_t packets_sent, packets_received;
  uint64_t send_syscalls;
} srv_stats;

const char *stat_drop_name(int reason);
const char *stat_disc_name(int reason);

#endif
