/*
 * screen.h: the terminal side of pong (ncurses).  ncurses keeps a copy of
 * what the terminal shows and sends only the cells that changed, so drawing
 * the whole court every frame does not flicker.
 */
#ifndef PONG_SCREEN_H
#define PONG_SCREEN_H

#include "game.h"

/* What to show around the court. */
typedef struct view {
  const char *name[2]; /* LEFT and RIGHT players' names (NULL: nobody) */
  int me;              /* our side, or -1 while we do not know it yet */
  int host;            /* 1: we simulate the ball */
  uint64_t room;
  const char *status; /* the message line ("waiting for a second player", ...) */
} view;

/* The keys pressed since the last call. */
typedef struct keys {
  int move; /* rows: negative up, positive down */
  int quit;
} keys;

int screen_open(void); /* 0, or -1 when stdin/stdout is not a terminal */
void screen_close(void);
keys screen_keys(void);
void screen_draw(const game *g, const view *v);

#endif
