/*
 * pong_game: the rules of examples/pong (game.c), which has no I/O.
 * Payload decoding refuses every wrong length and out-of-range field (they
 * come from the network); the ball bounces off walls and paddles and scores
 * when it passes one; the prediction the bot uses matches the simulation;
 * the bot misses now and then but never saves more than two in a row; and
 * the other player's prediction never scores on its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../examples/pong/game.c"

static void test_ball_roundtrip(void **st) {
  (void)st;
  ball_state b = {.tick = 123456,
                  .x = 3 * SUB,
                  .y = COURT_H * SUB - 1,
                  .vx = -MAX_VX,
                  .vy = MAX_VY,
                  .score = {11, 65535},
                  .serve = SERVE_TICKS,
                  .node = {UINT64_MAX, 1}};
  uint8_t buf[BALL_WIRE_LEN];
  assert_int_equal(ball_encode(&b, buf), BALL_WIRE_LEN);
  ball_state d;
  memset(&d, 0xAA, sizeof d);
  assert_int_equal(ball_decode(&d, buf, sizeof buf), 0);
  assert_int_equal(d.tick, b.tick);
  assert_int_equal(d.x, b.x);
  assert_int_equal(d.y, b.y);
  assert_int_equal(d.vx, b.vx);
  assert_int_equal(d.vy, b.vy);
  assert_int_equal(d.score[0], 11);
  assert_int_equal(d.score[1], 65535);
  assert_int_equal(d.serve, SERVE_TICKS);
  assert_true(d.node[0] == UINT64_MAX && d.node[1] == 1);
  /* Little-endian on the wire, whatever the host. */
  assert_int_equal(buf[0], 123456 & 0xff);
  assert_int_equal(buf[1], (123456 >> 8) & 0xff);
}

static void test_ball_decode_refuses(void **st) {
  (void)st;
  ball_state b = {0}, out;
  b.x = SUB, b.y = SUB;
  uint8_t buf[BALL_WIRE_LEN + 1] = {0};
  ball_encode(&b, buf);
  for (size_t n = 0; n <= sizeof buf; n++) /* only the exact length */
    assert_int_equal(ball_decode(&out, buf, n), n == BALL_WIRE_LEN ? 0 : -1);
  struct {
    size_t off;
    int32_t v;
  } bad[] = {{4, -1},          {4, XMAX + 1},     {8, -1},          {8, YMAX + 1},
             {12, MAX_VX + 1}, {12, -MAX_VX - 1}, {16, MAX_VY + 1}, {16, -MAX_VY - 1},
             {4, INT32_MIN},   {8, INT32_MAX}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t m[BALL_WIRE_LEN];
    ball_encode(&b, m);
    put(m + bad[i].off, (uint32_t)bad[i].v, 4);
    ball_state keep = {.tick = 77};
    assert_int_equal(ball_decode(&keep, m, sizeof m), -1);
    assert_int_equal(keep.tick, 77); /* untouched on failure */
  }
  uint8_t m[BALL_WIRE_LEN];
  ball_encode(&b, m);
  put(m + 24, SERVE_TICKS + 1, 2); /* serve counter */
  assert_int_equal(ball_decode(&out, m, sizeof m), -1);
}

static void test_paddle_payload(void **st) {
  (void)st;
  uint8_t buf[8];
  int top = -5;
  for (int v = 0; v <= PADDLE_MAX; v++) {
    assert_int_equal(paddle_encode(v, buf), 4);
    assert_int_equal(paddle_decode(&top, buf, 4), 0);
    assert_int_equal(top, v);
  }
  top = 3;
  paddle_encode(PADDLE_MAX + 1, buf);
  assert_int_equal(paddle_decode(&top, buf, 4), -1);
  paddle_encode(-1, buf);
  assert_int_equal(paddle_decode(&top, buf, 4), -1);
  paddle_encode(1, buf);
  assert_int_equal(paddle_decode(&top, buf, 3), -1);
  assert_int_equal(paddle_decode(&top, buf, 5), -1);
  assert_int_equal(top, 3);
}

/* A ball on its way to the left paddle, serve over. */
static void aim_left(game *g, int row) {
  g->b.serve = 0;
  g->b.x = 10 * SUB;
  g->b.y = row * SUB + SUB / 2;
  g->b.vx = -SERVE_VX;
  g->b.vy = 0;
}

static void test_paddle_bounce_and_score(void **st) {
  (void)st;
  game g;
  game_init(&g, 1);
  aim_left(&g, 9);
  g.paddle[LEFT] = 8; /* covers rows 8..11 */
  int scored = -1;
  for (int i = 0; i < 40 && g.b.vx < 0; i++)
    scored = game_step(&g, 1);
  assert_int_equal(scored, -1);
  assert_true(g.b.vx > SERVE_VX); /* bounced, a little faster */
  assert_true(g.b.x >= XL);       /* in front of the paddle */
  assert_true(g.b.vy < 0);        /* row 9, above the paddle's middle: upward */
  assert_int_equal(g.b.score[LEFT] + g.b.score[RIGHT], 0);

  aim_left(&g, 2);
  g.paddle[LEFT] = 8; /* misses */
  scored = -1;
  for (int i = 0; i < 40 && scored < 0; i++)
    scored = game_step(&g, 1);
  assert_int_equal(scored, RIGHT);
  assert_int_equal(g.b.score[RIGHT], 1);
  assert_int_equal(g.b.serve, SERVE_TICKS); /* a pause, then toward the loser */
  assert_true(g.b.vx < 0);
  assert_int_equal(g.b.x, COURT_W * SUB / 2);
}

static void test_walls_keep_the_ball_in(void **st) {
  (void)st;
  game g;
  game_init(&g, 7);
  for (int i = 0; i < 20000; i++) {
    game_step(&g, 1);
    assert_true(g.b.y >= 0 && g.b.y <= YMAX);
    assert_true(g.b.x >= 0 && g.b.x <= XMAX);
    assert_true(g.b.vx != 0);
    /* Everything the host sends decodes on the other side. */
    uint8_t buf[BALL_WIRE_LEN];
    ball_state d;
    ball_encode(&g.b, buf);
    assert_int_equal(ball_decode(&d, buf, sizeof buf), 0);
  }
  assert_true(g.b.score[LEFT] + g.b.score[RIGHT] > 0); /* nobody moves: points */
}

static void test_predict_matches_simulation(void **st) {
  (void)st;
  uint64_t r = 99;
  for (int n = 0; n < 500; n++) {
    game g;
    game_init(&g, rng_next(&r));
    g.b.serve = 0;
    g.b.x = (int32_t)(rng_next(&r) % (XR - XL)) + XL;
    g.b.y = (int32_t)(rng_next(&r) % YMAX);
    g.b.vx = (int32_t)(rng_next(&r) % (2 * MAX_VX + 1)) - MAX_VX;
    g.b.vy = (int32_t)(rng_next(&r) % (2 * MAX_VY + 1)) - MAX_VY;
    if (g.b.vx == 0)
      g.b.vx = 1;
    int side = g.b.vx < 0 ? LEFT : RIGHT;
    assert_int_equal(game_predict_row(&g, 1 - side), -1);
    int row = game_predict_row(&g, side);
    assert_true(row >= 0 && row < COURT_H);
    /* Step until the ball reaches the paddle column (nobody blocks it):
     * the prediction is the row it crosses at, give or take one for the
     * sub-tick part of the distance. */
    g.paddle[LEFT] = g.paddle[RIGHT] = -100;
    int crossed = -1;
    for (int i = 0; i < 100000 && crossed < 0; i++) {
      int32_t px = g.b.x;
      game_step(&g, 0);
      if ((side == LEFT && px >= XL && g.b.x < XL) || (side == RIGHT && px < XR && g.b.x >= XR))
        crossed = g.b.y / SUB;
    }
    assert_true(crossed >= 0);
    assert_true(abs(crossed - row) <= 1);
  }
}

static void test_prediction_does_not_score(void **st) {
  (void)st;
  game g;
  game_init(&g, 3);
  aim_left(&g, 2);
  g.paddle[LEFT] = 10;
  for (int i = 0; i < 100; i++)
    assert_int_equal(game_step(&g, 0), -1);
  assert_int_equal(g.b.score[LEFT] + g.b.score[RIGHT], 0);
  assert_int_equal(g.b.x, 0); /* waits at the edge for the host's word */
  assert_int_equal(g.b.vx, 0);
}

/* Two bots play each other for a long time: points happen, rallies happen,
 * and nobody saves more than two balls in a row. */
static void test_bots_are_beatable(void **st) {
  (void)st;
  game g;
  bot left, right;
  game_init(&g, 5);
  bot_init(&left, 1);
  bot_init(&right, 2);
  int hits = 0, points = 0, run[2] = {0, 0}, max_run = 0;
  for (int i = 0; i < 60 * 600; i++) { /* ten minutes */
    int32_t vx = g.b.vx;
    g.paddle[LEFT] += bot_input(&left, &g, LEFT);
    g.paddle[RIGHT] += bot_input(&right, &g, RIGHT);
    assert_true(g.paddle[LEFT] >= 0 && g.paddle[LEFT] <= PADDLE_MAX);
    assert_true(g.paddle[RIGHT] >= 0 && g.paddle[RIGHT] <= PADDLE_MAX);
    int s = game_step(&g, 1);
    if (s >= 0) {
      points++;
      run[1 - s] = 0;
    } else if ((vx < 0) != (g.b.vx < 0) && g.b.serve == 0) {
      int saver = vx < 0 ? LEFT : RIGHT;
      hits++;
      if (++run[saver] > max_run)
        max_run = run[saver];
    }
  }
  assert_true(points > 20);
  assert_true(hits > 20);
  assert_true(max_run <= 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ball_roundtrip),
      cmocka_unit_test(test_ball_decode_refuses),
      cmocka_unit_test(test_paddle_payload),
      cmocka_unit_test(test_paddle_bounce_and_score),
      cmocka_unit_test(test_walls_keep_the_ball_in),
      cmocka_unit_test(test_predict_matches_simulation),
      cmocka_unit_test(test_prediction_does_not_score),
      cmocka_unit_test(test_bots_are_beatable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
