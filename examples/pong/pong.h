/*
 * pong.h: what the parts of the pong example share.
 *   pong.c   the event bus and the game loop (start reading there)
 *   lobby.c  finding a room, presence, and finding it again after a reconnect
 *   cli.c    command line, status line, the headless JSON report
 *   game.c   the rules (no networking); screen.c the terminal (ncurses)
 */
#ifndef PONG_PONG_H
#define PONG_PONG_H

#include <issun/issun.h>

#include "game.h"

typedef struct options {
  char host[256];
  uint16_t port;
  const char *name, *room;
  int bot;
  long frames; /* the match ends at this tick (0: never) */
  int points;  /* ... or when a player has this many (0: never) */
  uint64_t seed;
} options;

typedef struct app {
  options o;
  issun_client *c;
  issun_bus *bus;
  issun_event_type HELLO, PADDLE, BALL, OVER;
  game g;
  bot bt;
  uint64_t me, peer;  /* NodeIds: ours and the other player's (0: none) */
  uint64_t last_peer; /* the latest other player, kept after it leaves */
  char peer_name[ISSUN_MAX_NAME_LEN + 1];
  int side;        /* our side, -1 until known */
  int peer_top;    /* the other player's paddle, from its PaddleMove */
  int sent_paddle; /* the row we last published */
  long frame, paddle_frame;
  uint64_t last_from; /* the last BallUpdate we applied: sender and tick */
  uint32_t last_tick;
  int over, failed, need_hello, need_room, leaving;
  unsigned said_score; /* headless: the score last reported, left * 1000 + right */
  char msg[200];       /* the latest news, shown for 3 seconds */
  long msg_until;
  struct {
    uint64_t ball_sent, ball_recv, paddle_sent, paddle_recv, peers, host_changes, reconnects;
    uint64_t rate_limited;
  } n;
} app;

/* lobby.c */
int lobby_find(app *a);     /* join a waiting pong room or open one: 0 or an issun error */
void lobby_recheck(app *a); /* after a reconnect: still in our room? else find one */
void lobby_merge(app *a);   /* waiting alone: move to an older waiting room, if any */
void lobby_on_presence(issun_client *c, const issun_presence *p, void *ud);

/* cli.c */
/* -1: go on; else the exit code (0 after --help, 2: bad command line) */
int cli_parse(app *a, issun_client_settings *s, int argc, char **argv);
void say(app *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *peer_label(const app *a);
void status_line(const app *a, char *out, size_t len);
void print_json(const app *a, const char *result);
void show(app *a); /* after each frame: draw, or report on stderr (headless) */

#endif
