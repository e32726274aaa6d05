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

/* What each abuse limit refused or cut off (docs/security.md maps each one
 * to its setting).  Names for metric labels: stat_limit_name(). */
enum stat_limit {
  ST_LIM_IP_CONNS = 0,      /* new connection refused: source address at max_conns_per_ip */
  ST_LIM_IP_HANDSHAKES,     /* new connection refused: source over max_handshakes_per_ip */
  ST_LIM_IP_TABLE,          /* new connection refused: per-address table full */
  ST_LIM_RETRY_SENT,        /* stateless Retry sent instead of accepting (not a loss) */
  ST_LIM_RETRY_BAD_TOKEN,   /* Initial with an invalid or expired Retry token dropped */
  ST_LIM_BAD_PACKET,        /* datagram dropped: not QUIC, or not for a known connection */
  ST_LIM_HANDSHAKE_TIMEOUT, /* QUIC/TLS handshake not done in handshake_timeout */
  ST_LIM_HELLO_TIMEOUT,     /* no HELLO in hello_timeout */
  ST_LIM_UNAUTHORIZED,      /* HELLO refused: token (see auth_failures for why) */
  ST_LIM_SERVER_FULL,       /* HELLO refused: max_clients sessions */
  ST_LIM_FRAME_SIZE,        /* connection closed: frame over max_frame_payload */
  ST_LIM_TYPE_NAME,         /* connection closed: EVENT type_name empty or over 256 bytes */
  ST_LIM_ROOM_NAME,         /* connection closed: ROOM_CREATE name over max_room_name */
  ST_LIM_ROOM_METADATA,     /* connection closed: ROOM_CREATE metadata over max_room_metadata */
  ST_LIM_ROOMS,             /* ROOM_CREATE refused: max_rooms (TOO_MANY_ROOMS) */
  ST_LIM_ROOM_FULL,         /* ROOM_JOIN refused: room at its max_clients (ROOM_FULL) */
  ST_LIM_N
};
#define ST_AUTH_N 9 /* = AUTH_E_N (server/auth.h): auth_failures[] by auth_result */

/* A histogram in integer units (microseconds, milliseconds): per-bucket
 * counts, not cumulative; bucket[n] counts values above the largest bound.
 * The bounds are st_latency_us_bounds / st_duration_ms_bounds; metrics.c
 * renders the cumulative Prometheus form. */
#define ST_HIST_MAX 16
typedef struct st_hist {
  uint64_t bucket[ST_HIST_MAX + 1];
  uint64_t count, sum;
} st_hist;

#define ST_LAT_NB 16 /* relay latency bounds, microseconds */
#define ST_DUR_NB 13 /* session duration bounds, milliseconds */
extern const uint64_t st_latency_us_bounds[ST_LAT_NB];
extern const uint64_t st_duration_ms_bounds[ST_DUR_NB];

typedef struct srv_stats {
  uint64_t events_relayed[ST_SCOPE_N]; /* events accepted and routed, by scope */
  uint64_t deliveries;                 /* event copies queued to recipients */
  uint64_t dropped[ST_DROP_N];
  uint64_t handshakes[ST_HS_N];
  uint64_t disconnects[ST_DISC_N];
  uint64_t bytes_sent, bytes_received; /* UDP payload bytes */
  uint64_t packets_sent, packets_received;
  uint64_t send_syscalls;
  st_hist relay_latency_us[ST_SCOPE_N]; /* rx to queued for the last recipient */
  st_hist session_ms[ST_DISC_N];        /* session lifetimes, by disconnect reason */
  uint64_t limits[ST_LIM_N];           /* abuse limits: see enum stat_limit */
  uint64_t auth_failures[ST_AUTH_N];   /* UNAUTHORIZED by reason (auth_result_name) */
  uint64_t flush_active_ns;            /* time the flush window was in force */
} srv_stats;

/* Hot-path observations: a short linear scan, no allocation. */
void stat_observe_latency(srv_stats *st, int scope, uint64_t us);
void stat_observe_session(srv_stats *st, int reason, uint64_t ms);

const char *stat_drop_name(int reason);
const char *stat_disc_name(int reason);
/* "ip_conns", "ip_handshakes", ...: the label of a stat_limit. */
const char *stat_limit_name(int limit);

#endif
