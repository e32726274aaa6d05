/* The `issun-server token` subcommand (token_cmd.h). */
#include "server/token_cmd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/auth.h"
#include "server/config.h"

#define TTL_MAX 315360000u /* ten years */

static void usage(FILE *f) {
  fprintf(f, "Usage: issun-server token --sub NODE_ID [--ttl SECONDS] [SERVER FLAGS]\n\n"
             "Prints an HS256 JWT for NODE_ID (1 to 18446744073709551615) that expires in\n"
             "SECONDS (default 3600), signed with the server's secret: ISSUN_AUTH_SECRET or\n"
             "ISSUN_AUTH_SECRET_FILE, or --auth-secret / --auth-secret-file.\n");
}

/* "--name value" or "--name=value" at argv[*i]; advances *i past it. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != '\0') return NULL;
  if (*i + 1 >= argc) return "";
  return argv[++*i];
}

int token_cmd_main(int argc, char **argv, FILE *out, FILE *errf) {
  const char *sub_s = NULL, *ttl_s = NULL;
  char **rest = calloc((size_t)argc + 1, sizeof *rest);
  int nrest = 0, rv = 2;
  if (!rest) return 2;
  rest[nrest++] = "issun-server";
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(out);
      free(rest);
      return 1;
    }
    if ((v = opt_value(argc, argv, &i, "--sub")) != NULL)
      sub_s = v;
    else if ((v = opt_value(argc, argv, &i, "--ttl")) != NULL)
      ttl_s = v;
    else
      rest[nrest++] = argv[i];
  }
  uint64_t sub = 0, ttl = 3600;
  if (!sub_s) {
    fprintf(errf, "issun-server token: --sub NODE_ID is required\n");
    goto out;
  }
  if (auth_parse_node_id(sub_s, strlen(sub_s), &sub) != 0) {
    fprintf(errf, "issun-server token: --sub: '%s' is not a NodeId (1 to 18446744073709551615, "
                  "no leading zeros)\n", sub_s);
    goto out;
  }
  if (ttl_s) {
    char *end;
    unsigned long long t = strtoull(ttl_s, &end, 10);
    if (!*ttl_s || *end || ttl_s[0] == '-' || t == 0 || t > TTL_MAX) {
      fprintf(errf, "issun-server token: --ttl: '%s' is not a number of seconds (1 to %u)\n", ttl_s,
              TTL_MAX);
      goto out;
    }
    ttl = t;
  }
  srv_config cfg;
  char err[512];
  cfg_defaults(&cfg);
  int r = cfg_load(&cfg, nrest, rest, err, sizeof err, out);
  if (r == 1) {
    rv = 1;
    goto out;
  }
  if (r != 0) {
    fprintf(errf, "issun-server token: %s\n", err);
    goto out;
  }
  if (!cfg.auth_enabled) {
    fprintf(errf, "issun-server token: no secret configured (set ISSUN_AUTH_SECRET or "
                  "ISSUN_AUTH_SECRET_FILE, or pass --auth-secret-file)\n");
    goto out;
  }
  char tok[512];
  uint64_t exp = (uint64_t)time(NULL) + ttl;
  if (auth_sign(cfg.auth_secret, cfg.auth_secret_len, sub, exp, tok, sizeof tok) == 0) {
    fprintf(errf, "issun-server token: signing failed\n");
    goto out;
  }
  fprintf(out, "%s\n", tok);
  rv = 0;
out:
  free(rest);
  return rv;
}
