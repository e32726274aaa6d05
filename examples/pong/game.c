/* game.c: the pong rules (see game.h).  Plain integer arithmetic. */
#include "game.h"

#include <string.h>

#define XMAX (COURT_W * SUB - 1)
#define YMAX (COURT_H * SUB - 1)
#define XL (2 * SUB)             /* the ball reaches the left paddle (column 1) */
#define XR ((COURT_W - 2) * SUB) /* ... the right paddle (column COURT_W - 2) */
#define SERVE_VX 128             /* half a cell per tick: 30 cells per second */
#define MAX_VX 240
#define MAX_VY 200

uint64_t rng_next(uint64_t *s) { /* xorshift64* */
  uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static int32_t clamp(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

void game_init(game *g, uint64_t seed) {
  memset(g, 0, sizeof *g);
  g->rng = seed ^ 0x5DEECE66Dull;
  g->paddle[LEFT] = g->paddle[RIGHT] = PADDLE_MAX / 2;
  game_serve(g, (int)(rng_next(&g->rng) & 1));
}

void game_serve(game *g, int toward) {
  g->b.x = COURT_W * SUB / 2;
  g->b.y = COURT_H * SUB / 2;
  g->b.vx = toward == LEFT ? -SERVE_VX : SERVE_VX;
  g->b.vy = (int32_t)(rng_next(&g->rng) % 161) - 80;
  g->b.serve = SERVE_TICKS;
}

/* Bounces off the paddle of `side` if it covers the ball's row. */
static int hit_paddle(game *g, int side) {
  int row = g->b.y / SUB, top = g->paddle[side];
  if (row < top || row >= top + PADDLE_H)
    return 0;
  g->b.vx = clamp(-g->b.vx * 17 / 16, -MAX_VX, MAX_VX); /* a little faster each time */
  g->b.vy = clamp(g->b.vy + (2 * row - (2 * top + PADDLE_H - 1)) * 20, -MAX_VY, MAX_VY);
  return 1;
}

int game_step(game *g, int authority) {
  ball_state *b = &g->b;
  b->tick++;
  if (b->serve > 0) {
    b->serve--;
    return -1;
  }
  int32_t px = b->x;
  b->x += b->vx;
  b->y += b->vy;
  if (b->y < 0)
    b->y = -b->y, b->vy = -b->vy;
  if (b->y > YMAX)
    b->y = 2 * YMAX - b->y, b->vy = -b->vy;
  if (px >= XL && b->x < XL && hit_paddle(g, LEFT))
    b->x = 2 * XL - b->x;
  else if (px < XR && b->x >= XR && hit_paddle(g, RIGHT))
    b->x = 2 * XR - b->x - 1;
  if (b->x >= 0 && b->x <= XMAX)
    return -1;
  int scorer = b->x < 0 ? RIGHT : LEFT;
  if (!authority) { /* wait for the host to say what happened */
    b->x = clamp(b->x, 0, XMAX);
    b->vx = b->vy = 0;
    return -1;
  }
  b->score[scorer]++;
  game_serve(g, 1 - scorer); /* toward the player who lost the point */
  return scorer;
}

int game_predict_row(const game *g, int side) {
  const ball_state *b = &g->b;
  int64_t dist = side == LEFT ? b->x - XL : XR - b->x;
  int64_t speed = side == LEFT ? -b->vx : b->vx;
  if (speed <= 0 || dist < 0)
    return -1;
  int64_t y = b->y + b->vy * (dist / speed), period = 2 * (int64_t)YMAX;
  y %= period; /* unfold the wall bounces */
  if (y < 0)
    y += period;
  if (y > YMAX)
    y = period - y;
  return (int)(y / SUB);
}

void bot_init(bot *bt, uint64_t seed) {
  memset(bt, 0, sizeof *bt);
  bt->rng = seed ^ 0xB0B0B0B0ull;
}

int bot_input(bot *bt, const game *g, int side) {
  int row = game_predict_row(g, side), want;
  if (row < 0 || g->b.serve > 0) {
    bt->approaching = 0;
    want = PADDLE_MAX / 2;
  } else {
    if (!bt->approaching) { /* a new approach: decide once */
      bt->approaching = 1;
      bt->miss = bt->saves >= 2 || rng_next(&bt->rng) % 100 < 30;
      bt->saves = bt->miss ? 0 : bt->saves + 1;
      bt->target = (int)(rng_next(&bt->rng) % 2);
    }
    if (bt->miss) /* park the paddle clear of the ball's row */
      want = row >= PADDLE_H + 2 ? row - PADDLE_H - 2 : row + 3;
    else
      want = row - 1 - bt->target;
  }
  want = clamp(want, 0, PADDLE_MAX);
  if (g->b.tick % 2) /* one row every two ticks: 30 rows per second */
    return 0;
  return (want > g->paddle[side]) - (want < g->paddle[side]);
}

/* ---- payloads ----------------------------------------------------------- */

static uint8_t *put(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    *p++ = (uint8_t)(v >> (8 * i));
  return p;
}

static uint64_t get(const uint8_t **p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)(*p)[i] << (8 * i);
  *p += n;
  return v;
}

size_t ball_encode(const ball_state *b, uint8_t out[BALL_WIRE_LEN]) {
  uint8_t *p = put(out, b->tick, 4);
  p = put(p, (uint32_t)b->x, 4);
  p = put(p, (uint32_t)b->y, 4);
  p = put(p, (uint32_t)b->vx, 4);
  p = put(p, (uint32_t)b->vy, 4);
  p = put(p, b->score[LEFT], 2);
  p = put(p, b->score[RIGHT], 2);
  p = put(p, b->serve, 2);
  p = put(p, b->node[LEFT], 8);
  p = put(p, b->node[RIGHT], 8);
  return (size_t)(p - out);
}

int ball_decode(ball_state *b, const void *payload, size_t n) {
  const uint8_t *p = payload;
  if (n != BALL_WIRE_LEN)
    return -1;
  ball_state v;
  v.tick = (uint32_t)get(&p, 4);
  v.x = (int32_t)(uint32_t)get(&p, 4);
  v.y = (int32_t)(uint32_t)get(&p, 4);
  v.vx = (int32_t)(uint32_t)get(&p, 4);
  v.vy = (int32_t)(uint32_t)get(&p, 4);
  v.score[LEFT] = (uint16_t)get(&p, 2);
  v.score[RIGHT] = (uint16_t)get(&p, 2);
  v.serve = (uint16_t)get(&p, 2);
  v.node[LEFT] = get(&p, 8);
  v.node[RIGHT] = get(&p, 8);
  if (v.x < 0 || v.x > XMAX || v.y < 0 || v.y > YMAX || v.vx < -MAX_VX || v.vx > MAX_VX ||
      v.vy < -MAX_VY || v.vy > MAX_VY || v.serve > SERVE_TICKS)
    return -1;
  *b = v;
  return 0;
}

size_t paddle_encode(int top, uint8_t out[4]) {
  return (size_t)(put(out, (uint32_t)top, 4) - out);
}

int paddle_decode(int *top, const void *payload, size_t n) {
  const uint8_t *p = payload;
  if (n != 4)
    return -1;
  int32_t v = (int32_t)(uint32_t)get(&p, 4);
  if (v < 0 || v > PADDLE_MAX)
    return -1;
  *top = v;
  return 0;
}
