#include "server/stats.h"

#include "proto/proto.h"

const char *stat_drop_name(int reason) {
  static const char *const names[ST_DROP_N] = {
      "rate_limited", "no_target",     "to_server",      "datagram_unsupported",
      "too_big",      "slow_consumer", "datagram_queue", "send_error",
  };
  return reason >= 0 && reason < ST_DROP_N ? names[reason] : "unknown";
}

const char *stat_disc_name(int reason) {
  switch (reason) {
  case ST_DISC_IDLE:
    return "IDLE_TIMEOUT";
  case ST_DISC_PEER:
    return "CLOSED_BY_PEER";
  default:
    return pr_code_name((unsigned)reason);
  }
}

/* 1-2-5 steps from 1 us to 100 ms: an event is routed in a few
 * microseconds unless the loop turn that read it was long. */
const uint64_t st_latency_us_bounds[ST_LAT_NB] = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
};

/* From a failed start (100 ms) to a day: game sessions last minutes to hours. */
const uint64_t st_duration_ms_bounds[ST_DUR_NB] = {
    100, 1000, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000, 7200000, 21600000,
    86400000,
};

static void hist_observe(st_hist *h, const uint64_t *bounds, int n, uint64_t v) {
  int i = 0;
  while (i < n && v > bounds[i]) i++;
  h->bucket[i]++;
  h->count++;
  h->sum += v;
}

void stat_observe_latency(srv_stats *st, int scope, uint64_t us) {
  if (scope >= 0 && scope < ST_SCOPE_N)
    hist_observe(&st->relay_latency_us[scope], st_latency_us_bounds, ST_LAT_NB, us);
}

void stat_observe_session(srv_stats *st, int reason, uint64_t ms) {
  if (reason >= 0 && reason < ST_DISC_N)
    hist_observe(&st->session_ms[reason], st_duration_ms_bounds, ST_DUR_NB, ms);
}

const char *stat_limit_name(int limit) {
  static const char *const names[ST_LIM_N] = {
      "ip_conns",      "ip_handshakes",  "ip_table",          "retry_sent",
      "retry_bad_token", "bad_packet",   "handshake_timeout", "hello_timeout",
      "unauthorized",  "server_full",    "frame_size",        "type_name",
      "room_name",     "room_metadata",  "rooms",             "room_full",
  };
  return limit >= 0 && limit < ST_LIM_N ? names[limit] : "unknown";
}
