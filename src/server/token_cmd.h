/*
 * `issun-server token --sub N [--ttl SECONDS]`: prints an HS256 token for
 * NodeId N, valid for SECONDS (default 3600), signed with the secret the
 * server would use (ISSUN_AUTH_SECRET / ISSUN_AUTH_SECRET_FILE or their
 * flags).  For development and tests; a game backend mints its own
 * (docs/security.md).
 */
#ifndef ISSUN_SERVER_TOKEN_CMD_H
#define ISSUN_SERVER_TOKEN_CMD_H

#include <stdio.h>

/* argv[0] is "token".  Returns the process exit status: 0 (token printed
 * to out), 1 (--help printed), 2 (usage error, message on errf). */
int token_cmd_main(int argc, char **argv, FILE *out, FILE *errf);

#endif
