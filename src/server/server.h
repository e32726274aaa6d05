/*
 * The relay server: create it from a configuration, run its event loop until
 * SIGTERM/SIGINT (exit 0 after telling every session SHUTTING_DOWN), free it.
 */
#ifndef ISSUN_SERVER_H
#define ISSUN_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "server/config.h"
#include "server/stats.h"

typedef struct srv srv;

/* Loads the certificate (or generates one), binds the socket.  Returns 0, or
 * -1 with a readable reason in err. */
int srv_new(srv **out, const srv_config *cfg, char *err, size_t errlen);

/* Runs until a shutdown signal; returns 0 after a clean shutdown. */
int srv_run(srv *s);

/* The UDP port actually bound (useful with port 0). */
uint16_t srv_port(const srv *s);
const srv_stats *srv_get_stats(const srv *s);

void srv_free(srv *s);

#endif
