/*
 * game.h: the pong rules, with no networking and no terminal.
 *
 * Positions are integers in 1/256 of a character cell, so that the host's
 * simulation, the other player's prediction and the JSON a bot prints are
 * exact and the same on every machine.
 */
#ifndef PONG_GAME_H
#define PONG_GAME_H

#include <stddef.h>
#include <stdint.h>

#define COURT_W 60     /* columns */
#define COURT_H 18     /* rows */
#define PADDLE_H 4     /* rows */
#define SUB 256        /* sub-cell units per cell */
#define TICK_HZ 60     /* simulation ticks (and frames) per second */
#define SERVE_TICKS 60 /* the ball rests this long after a point */
#define PADDLE_MAX (COURT_H - PADDLE_H)

enum { LEFT = 0, RIGHT = 1 };

/* The ball and the score: what the host owns and sends as BallUpdate (and,
 * once, as GameOver). */
typedef struct ball_state {
  uint32_t tick;     /* simulation ticks played in this match */
  int32_t x, y;      /* ball position, sub-cell units */
  int32_t vx, vy;    /* per tick */
  uint16_t score[2]; /* LEFT, RIGHT */
  uint16_t serve;    /* ticks before the ball moves again */
  uint64_t node[2];  /* NodeId playing LEFT and RIGHT (0: nobody) */
} ball_state;

#define BALL_WIRE_LEN 42

/* The whole local view of the game. */
typedef struct game {
  ball_state b;
  int paddle[2]; /* top row of each paddle, 0..PADDLE_MAX */
  uint64_t rng;
} game;

void game_init(game *g, uint64_t seed);

/* Centers the ball and starts a serve pause; the ball then leaves toward
 * `toward` (LEFT or RIGHT) at a random angle. */
void game_serve(game *g, int toward);

/* One tick.  authority 1 (the host): collisions, scoring and serves.
 * authority 0 (the other player): the same motion as a prediction between
 * two BallUpdates, but a ball that leaves the court just stops there.
 * Returns the side that scored (LEFT/RIGHT), or -1. */
int game_step(game *g, int authority);

/* The row where the ball will cross the paddle column of `side`, walls
 * included; -1 when it is not moving toward that side. */
int game_predict_row(const game *g, int side);

/* A beatable computer player: decides once per approach whether to reach
 * the ball, missing about one ball in three (and never saving more than two
 * in a row), and moves its paddle at most one row every two ticks. */
typedef struct bot {
  uint64_t rng;
  int approaching; /* the ball is coming toward us */
  int miss;        /* this approach: go the wrong way */
  int saves;       /* saves in a row */
  int target;      /* paddle top we are heading for */
} bot;

void bot_init(bot *bt, uint64_t seed);
/* -1 (up), +1 (down) or 0: the key the bot presses this tick. */
int bot_input(bot *bt, const game *g, int side);

/* Payloads.  Little-endian, fixed size; decoding checks the length and every
 * range, since they come from the network.  Return 0, or -1 when invalid. */
size_t ball_encode(const ball_state *b, uint8_t out[BALL_WIRE_LEN]);
int ball_decode(ball_state *b, const void *p, size_t n);
size_t paddle_encode(int top, uint8_t out[4]);
int paddle_decode(int *top, const void *p, size_t n);

uint64_t rng_next(uint64_t *s);

#endif
