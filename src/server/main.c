/* issun-server: the relay daemon. */
#include <stdio.h>
#include <string.h>

#include <nats/nats.h>

#include "server/config.h"
#include "server/log.h"
#include "server/server.h"
#include "server/token_cmd.h"

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "token") == 0) {
    int trv = token_cmd_main(argc - 1, argv + 1, stdout, stderr);
    return trv == 1 ? 0 : trv;
  }
  srv_config cfg;
  char err[512];
  cfg_defaults(&cfg);
  int rv = cfg_load(&cfg, argc, argv, err, sizeof err, stdout);
  if (rv == 1) return 0;
  if (rv != 0) {
    fprintf(stderr, "issun-server: %s\n", err);
    fprintf(stderr, "Try 'issun-server --help'.\n");
    return 2;
  }
  srv_log lg = {.level = cfg.log_level, .format = cfg.log_format, .out = stderr};
  LOG_INFO(&lg, "Starting ISSUN relay server...", "version=0.1.0");
  LOG_INFO(&lg, "Configuration loaded",
           "bind_addr=%s cert_path=%s key_path=%s max_clients=%u heartbeat_ms=%u rooms=%s "
           "max_rooms=%u default_room_size=%u max_events_per_sec=%u max_frame_payload=%u",
           cfg.bind_addr, cfg.cert_path, cfg.key_path, cfg.max_clients, cfg.heartbeat_ms,
           cfg.enable_rooms ? "on" : "off", cfg.max_rooms, cfg.default_room_size,
           cfg.max_events_per_sec, cfg.max_frame_payload);
  srv *s;
  if (srv_new(&s, &cfg, err, sizeof err) != 0) {
    LOG_ERROR(&lg, "Cannot start", "error=\"%s\"", err);
    return 1;
  }
  rv = srv_run(s);
  srv_free(s);
  /* libnats starts library-wide threads of its own: end them before exit
   * (otherwise memcheck reports their stacks as leaked). */
  if (cfg.nats_url[0]) nats_CloseAndWait(2000);
  return rv == 0 ? 0 : 1;
}
