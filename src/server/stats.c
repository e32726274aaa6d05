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
