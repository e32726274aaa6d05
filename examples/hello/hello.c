/*
 * hello: the smallest libissun program.  Connects to a relay, says hello to
 * everyone in no room, prints what comes back for a few seconds, and exits.
 *
 *   hello [--host H] [--port P] [--name N] [--ca FILE | --pin SHA256 | --insecure]
 *   hello --help
 *
 * Uses only the public header, so it doubles as the packaging test's proof
 * that an installed libissun compiles, links and loads.
 */
#include <issun/issun.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_event(issun_client *c, const issun_event *ev, void *ud) {
  (void)c;
  (void)ud;
  printf("event %s from %llu (seq %llu): %.*s\n", ev->type_name,
         (unsigned long long)ev->meta.sender, (unsigned long long)ev->meta.sequence,
         (int)ev->payload_len, (const char *)ev->payload);
}

static void on_state(issun_client *c, issun_state st, int err, void *ud) {
  (void)ud;
  if (err)
    printf("state %d: %s (%s)\n", (int)st, issun_strerror(err), issun_client_last_error(c));
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: hello [--host H] [--port P] [--name N] [--ca FILE | --pin SHA256 | "
          "--insecure] [--seconds S]\n"
          "libissun %s\n",
          issun_version());
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  unsigned port = 5000;
  int seconds = 3;
  issun_client_settings s;
  issun_client_settings_default(&s);
  s.name = "hello";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--insecure")) {
      s.insecure = 1;
    } else if (v && !strcmp(a, "--host")) {
      host = v, i++;
    } else if (v && !strcmp(a, "--port")) {
      port = (unsigned)strtoul(v, NULL, 10), i++;
    } else if (v && !strcmp(a, "--name")) {
      s.name = v, i++;
    } else if (v && !strcmp(a, "--ca")) {
      s.ca_file = v, i++;
    } else if (v && !strcmp(a, "--pin")) {
      s.pin_sha256 = v, i++;
    } else if (v && !strcmp(a, "--seconds")) {
      seconds = atoi(v), i++;
    } else {
      usage(stderr);
      return 2;
    }
  }

  issun_client_callbacks cb = {0};
  cb.on_event = on_event;
  cb.on_state = on_state;
  issun_client *c = NULL;
  char err[256];
  int rv = issun_client_new_ex(&c, &s, &cb, NULL, err, sizeof(err));
  if (rv != 0) {
    fprintf(stderr, "hello: %s: %s\n", issun_strerror(rv), err);
    return 1;
  }
  rv = issun_client_connect(c, host, (uint16_t)port);
  if (rv != 0) {
    fprintf(stderr, "hello: connect failed: %s: %s\n", issun_strerror(rv),
            issun_client_last_error(c));
    issun_client_free(c);
    return 1;
  }
  printf("connected as node %llu\n", (unsigned long long)issun_client_node_id(c));
  const char msg[] = "hello, world";
  rv = issun_client_send(c, "hello::Greeting", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, msg,
                         sizeof(msg) - 1, NULL);
  if (rv != 0)
    fprintf(stderr, "hello: send: %s\n", issun_client_last_error(c));
  issun_client_run_for(c, seconds * 1000); /* events arrive in on_event meanwhile */
  issun_client_close(c);
  issun_client_free(c);
  return 0;
}
