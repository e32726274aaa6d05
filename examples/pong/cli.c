/* cli.c: the command line, the status line and the headless JSON report. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pong.h"
#include "screen.h"

void say(app *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->msg, sizeof a->msg, fmt, ap);
  va_end(ap);
  a->msg_until = a->frame + 3 * TICK_HZ;
  if (a->o.bot)
    fprintf(stderr, "pong[%s]: %s\n", a->o.name, a->msg);
}

const char *peer_label(const app *a) {
  return a->peer_name[0] ? a->peer_name : "the other player";
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: pong --server HOST:PORT [--name NAME] [--room NAME]\n"
          "            [--ca FILE | --pin SHA256 | --insecure] [--points P]\n"
          "            [--bot [--frames N] [--seed S]]\n"
          "  --server H:P  the relay (host name, IPv4, or [IPv6], and its UDP port)\n"
          "  --name NAME   your name, shown to the other player (default $USER)\n"
          "  --room NAME   rooms to match in (default \"pong\")\n"
          "  --ca FILE     trust this CA bundle instead of the system's\n"
          "  --pin SHA256  accept exactly the server certificate with this fingerprint\n"
          "  --insecure    no certificate check at all (development only)\n"
          "  --points P    the match ends when a player has P points (default 11; 0: never)\n"
          "  --frames N    the match ends after N ticks of play, 60 a second (0: never;\n"
          "                default 0, or 1800 with --bot)\n"
          "  --bot         headless: the computer plays, the final state is printed as JSON\n"
          "  --seed S      seed of the serves and of the bot (default: from the clock)\n"
          "W/S or the arrow keys move, Q quits.  libissun %s\n",
          issun_version());
}

static int parse_server(options *o, const char *v) {
  const char *colon = strrchr(v, ':');
  if (!colon || colon == v)
    return -1;
  const char *h = v;
  size_t n = (size_t)(colon - v);
  if (h[0] == '[' && n >= 2 && h[n - 1] == ']') /* [::1]:5000 */
    h++, n -= 2;
  char *end;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (n == 0 || n >= sizeof o->host || *end || port == 0 || port > 65535)
    return -1;
  memcpy(o->host, h, n);
  o->host[n] = 0;
  o->port = (uint16_t)port;
  return 0;
}

void status_line(const app *a, char *out, size_t len) {
  const char *base = "";
  char tmp[160];
  if (a->over) {
    const ball_state *b = &a->g.b;
    int won = a->side >= 0 && b->score[a->side] > b->score[1 - a->side];
    int tie = b->score[LEFT] == b->score[RIGHT];
    snprintf(tmp, sizeof tmp, "game over %u:%u - %s", b->score[LEFT], b->score[RIGHT],
             tie   ? "a draw"
             : won ? "you win"
                   : "you lose");
    base = tmp;
  } else if (issun_client_state(a->c) == ISSUN_STATE_RECONNECTING) {
    base = "connection lost: reconnecting...";
  } else if (!a->peer) {
    base = "waiting for a second player";
  } else if (a->side < 0) {
    base = "starting...";
  }
  if (a->frame < a->msg_until && *base && strcmp(a->msg, base) != 0)
    snprintf(out, len, "%s. %s", a->msg, base);
  else
    snprintf(out, len, "%s", a->frame < a->msg_until ? a->msg : base);
}

static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++)
    if (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\')
      putchar(*s);
    else
      printf("\\u%04x", (unsigned)(unsigned char)*s);
  putchar('"');
}

/* The final state, one line of JSON (headless mode). */
void print_json(const app *a, const char *result) {
  const ball_state *b = &a->g.b;
  printf("{\"name\":");
  json_str(a->o.name);
  printf(",\"node\":%" PRIu64 ",\"peer\":%" PRIu64 ",\"peer_here\":%s,\"peer_name\":", a->me,
         a->last_peer, a->peer ? "true" : "false");
  json_str(a->peer_name);
  printf(",\"room\":%" PRIu64 ",\"host\":%s,\"side\":\"%s\",\"result\":\"%s\",\"frames\":%ld",
         issun_client_room_id(a->c), issun_client_room_host(a->c) == a->me ? "true" : "false",
         a->side == LEFT    ? "left"
         : a->side == RIGHT ? "right"
                            : "none",
         result, a->frame);
  printf(",\"tick\":%" PRIu32 ",\"ball\":{\"x\":%d,\"y\":%d,\"vx\":%d,\"vy\":%d,\"serve\":%u}",
         b->tick, (int)b->x, (int)b->y, (int)b->vx, (int)b->vy, b->serve);
  printf(",\"score\":[%u,%u],\"paddles\":[%d,%d],\"players\":[%" PRIu64 ",%" PRIu64 "]",
         b->score[LEFT], b->score[RIGHT], a->g.paddle[LEFT], a->g.paddle[RIGHT], b->node[LEFT],
         b->node[RIGHT]);
  printf(",\"last_update\":{\"from\":%" PRIu64 ",\"tick\":%" PRIu32 "}", a->last_from,
         a->last_tick);
  printf(",\"ball_updates\":{\"sent\":%" PRIu64 ",\"received\":%" PRIu64 "}", a->n.ball_sent,
         a->n.ball_recv);
  printf(",\"paddle_moves\":{\"sent\":%" PRIu64 ",\"received\":%" PRIu64 "}", a->n.paddle_sent,
         a->n.paddle_recv);
  printf(",\"peers_seen\":%" PRIu64 ",\"host_changes\":%" PRIu64 ",\"reconnects\":%" PRIu64
         ",\"rate_limited\":%" PRIu64 "}\n",
         a->n.peers, a->n.host_changes, a->n.reconnects, a->n.rate_limited);
  fflush(stdout);
}

/* Fills a->o and the client settings from the command line.  Returns -1 to
 * go on, or the exit code to leave with (0 after --help, 2: bad usage). */
int cli_parse(app *a, issun_client_settings *s, int argc, char **argv) {
  options *o = &a->o;
  o->name = getenv("USER") ? getenv("USER") : "player";
  o->room = "pong";
  o->points = 11;
  o->frames = -1;
  o->seed = (uint64_t)time(NULL) ^ (uint64_t)clock();
  int have_server = 0;
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(k, "--insecure")) {
      s->insecure = 1;
    } else if (!strcmp(k, "--bot")) {
      o->bot = 1;
    } else if (v && !strcmp(k, "--server")) {
      if (parse_server(o, v) != 0) {
        fprintf(stderr, "pong: --server wants HOST:PORT, not '%s'\n", v);
        return 2;
      }
      have_server = 1, i++;
    } else if (v && !strcmp(k, "--name")) {
      o->name = v, i++;
    } else if (v && !strcmp(k, "--room")) {
      o->room = v, i++;
    } else if (v && !strcmp(k, "--ca")) {
      s->ca_file = v, i++;
    } else if (v && !strcmp(k, "--pin")) {
      s->pin_sha256 = v, i++;
    } else if (v && !strcmp(k, "--frames")) {
      o->frames = strtol(v, NULL, 10), i++;
    } else if (v && !strcmp(k, "--points")) {
      o->points = atoi(v), i++;
    } else if (v && !strcmp(k, "--seed")) {
      o->seed = strtoull(v, NULL, 10), i++;
    } else {
      fprintf(stderr, "pong: bad argument '%s'\n", k);
      usage(stderr);
      return 2;
    }
  }
  if (!have_server || strlen(o->name) > ISSUN_MAX_NAME_LEN || o->frames < -1 || o->points < 0) {
    usage(stderr);
    return 2;
  }
  if (o->frames < 0)
    o->frames = o->bot ? 30 * TICK_HZ : 0;
  s->name = o->name;
  return -1; /* go on */
}

/* After each frame: draw the screen, or (headless) report news on stderr. */
void show(app *a) {
  char status[400];
  status_line(a, status, sizeof status);
  if (!a->o.bot) {
    view v = {{NULL, NULL}, a->side, 0, issun_client_room_id(a->c), status};
    v.host = issun_client_room_host(a->c) == a->me;
    if (a->side >= 0) {
      v.name[a->side] = a->o.name;
      v.name[1 - a->side] = a->peer ? (a->peer_name[0] ? a->peer_name : "...") : NULL;
    }
    screen_draw(&a->g, &v);
    return;
  }
  if (strcmp(status, a->msg) != 0 && a->frame >= a->msg_until && *status)
    say(a, "%s", status);
  unsigned sc = a->g.b.score[LEFT] * 1000u + a->g.b.score[RIGHT];
  if (sc != a->said_score)
    say(a, "score %u:%u", a->g.b.score[LEFT], a->g.b.score[RIGHT]);
  a->said_score = sc;
}
