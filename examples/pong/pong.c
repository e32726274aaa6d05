/*
 * pong: two-player terminal pong over the issun relay, to show how a game
 * uses the networked event bus.  Start reading here.
 *
 *   pong --server HOST:PORT [--name NAME] [--room NAME]
 *        [--ca FILE | --pin SHA256 | --insecure] [--points P] [--frames N]
 *   pong --server HOST:PORT --bot [--frames N] [--seed S] ...   (headless)
 *
 * The networking story, all of it in this file but the rooms (lobby.c):
 *   1. connect a client and attach an event bus to it;
 *   2. register one bus type per kind of event, each with a scope and a
 *      delivery (all Broadcast here: "the other player in my room"):
 *        pong::Hello       reliable    our name, on joining and when someone joins
 *        pong::PaddleMove  reliable    our paddle's row, when it changes (<= 30/s)
 *        pong::BallUpdate  unreliable  the host's ball and score, every 3rd tick (20/s)
 *        pong::GameOver    reliable    the host's final state
 *      What changes rarely and must arrive goes reliable; the ball's state,
 *      sent over and over, goes in datagrams: a lost one is replaced 50 ms
 *      later.  Both stay far below the relay's 100 events/s per client.
 *   3. find a room: join a waiting "pong" room with a free seat, or open one;
 *   4. every frame: poll the network, step the game, publish, dispatch, read
 *      what the other player published, draw.
 * The room's host (its creator, or whoever the server promotes when the host
 * leaves) simulates the ball; the other player predicts it between updates.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pong.h"
#include "screen.h"

#define BALL_EVERY 3   /* BallUpdate every 3 ticks: 20 per second */
#define PADDLE_EVERY 2 /* PaddleMove at most every 2 frames: 30 per second */

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- what the client tells us between frames ------------------------------ */

static void on_state(issun_client *c, issun_state st, int err, void *ud) {
  app *a = ud;
  if (st == ISSUN_STATE_RECONNECTING) {
    say(a, "connection lost (%s): reconnecting...", issun_client_last_error(c));
  } else if (st == ISSUN_STATE_CONNECTED && a->me) { /* not the first connect */
    a->n.reconnects++;
    a->need_room = 1; /* the server may or may not have kept our session */
    say(a, "reconnected");
  } else if (st == ISSUN_STATE_FAILED) {
    a->failed = 1;
    say(a, "disconnected: %s (%s)", issun_strerror(err), issun_client_last_error(c));
  }
}

/* Non-fatal errors: RATE_LIMITED means the server dropped some of our
 * events (over 100 a second); pong stays well under that. */
static void on_server_error(issun_client *c, uint16_t code, const char *message, void *ud) {
  app *a = ud;
  (void)c;
  if (code == ISSUN_WIRE_RATE_LIMITED)
    a->n.rate_limited++;
  say(a, "server says %s: %s", issun_wire_code_name(code), message);
}

/* ---- one frame -------------------------------------------------------------- */

/* The host decides who plays which side: it keeps its own (left for the
 * room's creator), the other player gets the other one. */
static void assign_sides(app *a) {
  if (a->side < 0)
    a->side = LEFT;
  a->g.b.node[a->side] = a->me;
  int other = 1 - a->side;
  if (a->g.b.node[other] != a->peer) {
    a->g.b.node[other] = a->peer;
    a->peer_top = PADDLE_MAX / 2;
    if (a->peer)
      game_serve(&a->g, other);
  }
}

static int match_over(const app *a) {
  const ball_state *b = &a->g.b;
  return (a->o.frames && b->tick >= a->o.frames) ||
         (a->o.points && (b->score[LEFT] >= a->o.points || b->score[RIGHT] >= a->o.points));
}

static void publish_ball(app *a, issun_event_type type) {
  uint8_t buf[BALL_WIRE_LEN];
  size_t n = ball_encode(&a->g.b, buf);
  /* An unreliable send fails while reconnecting; the next update will do. */
  if (issun_bus_publish(a->bus, type, buf, n) == 0 && type == a->BALL)
    a->n.ball_sent++;
}

/* Takes in what the other player published this frame. */
static void read_events(app *a) {
  issun_bus_reader rd;
  issun_event ev;
  uint64_t host = issun_client_room_host(a->c);

  issun_bus_reader_init(&rd, a->bus, a->HELLO);
  while (issun_bus_reader_next(&rd, &ev) == 1) {
    if (ev.meta.local || ev.meta.sender != a->peer)
      continue; /* only the other player of our room speaks here */
    char name[ISSUN_MAX_NAME_LEN + 1];
    size_t n = ev.payload_len < ISSUN_MAX_NAME_LEN ? ev.payload_len : ISSUN_MAX_NAME_LEN;
    for (size_t i = 0; i < n; i++) { /* a name from the network: printable ASCII only */
      char ch = ((const char *)ev.payload)[i];
      name[i] = ch >= 0x20 && ch < 0x7f ? ch : '?';
    }
    name[n] = 0;
    if (strcmp(name, a->peer_name) != 0)
      say(a, "playing against %s", name);
    memcpy(a->peer_name, name, n + 1);
  }

  issun_bus_reader_init(&rd, a->bus, a->PADDLE);
  while (issun_bus_reader_next(&rd, &ev) == 1) {
    int top;
    if (ev.meta.local || ev.meta.sender != a->peer ||
        paddle_decode(&top, ev.payload, ev.payload_len) != 0)
      continue;
    a->peer_top = top; /* the newest one wins: they arrive in order */
    a->n.paddle_recv++;
  }

  issun_bus_reader_init(&rd, a->bus, a->BALL);
  while (issun_bus_reader_next(&rd, &ev) == 1) {
    ball_state b;
    if (ev.meta.local || ev.meta.sender != a->peer || ev.meta.sender != host ||
        ball_decode(&b, ev.payload, ev.payload_len) != 0)
      continue;
    if (ev.meta.sender == a->last_from && b.tick <= a->last_tick)
      continue; /* datagrams may arrive late or out of order: keep the newest */
    a->g.b = b;
    a->last_from = ev.meta.sender;
    a->last_tick = b.tick;
    a->side = b.node[LEFT] == a->me ? LEFT : b.node[RIGHT] == a->me ? RIGHT : -1;
    a->n.ball_recv++;
  }

  issun_bus_reader_init(&rd, a->bus, a->OVER);
  while (issun_bus_reader_next(&rd, &ev) == 1) {
    ball_state b;
    if (ev.meta.local || ev.meta.sender != a->peer ||
        ball_decode(&b, ev.payload, ev.payload_len) != 0)
      continue;
    a->g.b = b;
    a->over = 1;
  }
}

/* One frame: move our paddle, step the ball, publish, dispatch, read. */
static void frame(app *a, keys k) {
  int live = issun_client_state(a->c) == ISSUN_STATE_CONNECTED && !a->need_room &&
             issun_client_room_id(a->c) != 0;
  int host = live && issun_client_room_host(a->c) == a->me;

  if (a->side >= 0 && !a->over) { /* our paddle */
    int *p = &a->g.paddle[a->side];
    *p += k.move;
    *p = *p < 0 ? 0 : *p > PADDLE_MAX ? PADDLE_MAX : *p;
  }
  if (host)
    assign_sides(a);
  int playing = a->peer && !a->leaving && a->side >= 0 && !a->over &&
                a->g.b.node[1 - a->side] == a->peer; /* both players know their sides */
  if (playing && host) { /* the host runs the ball and tells the other player */
    int scored = game_step(&a->g, 1);
    if (a->g.b.tick % BALL_EVERY == 0 || scored >= 0)
      publish_ball(a, a->BALL);
    if (match_over(a)) {
      publish_ball(a, a->OVER);
      a->over = 1;
    }
  } else if (playing) { /* the other player predicts it until the next update */
    game_step(&a->g, 0);
  }

  if (live && a->need_hello) {
    a->need_hello = 0;
    a->sent_paddle = -1; /* PaddleMove again, for the newcomer */
    issun_bus_publish(a->bus, a->HELLO, a->o.name, strlen(a->o.name));
  }
  if (live && a->side >= 0 && a->g.paddle[a->side] != a->sent_paddle &&
      a->frame - a->paddle_frame >= PADDLE_EVERY) { /* on change, at most 30/s */
    uint8_t buf[4];
    size_t n = paddle_encode(a->g.paddle[a->side], buf);
    if (issun_bus_publish(a->bus, a->PADDLE, buf, n) == 0) {
      a->sent_paddle = a->g.paddle[a->side];
      a->paddle_frame = a->frame;
      a->n.paddle_sent++;
    }
  }

  issun_bus_dispatch(a->bus); /* end of frame: this frame's events become readable */
  read_events(a);
  if (a->side >= 0)
    a->g.paddle[1 - a->side] = a->peer_top;
  if (a->leaving)
    a->peer = 0;
  a->leaving = 0;
}

/* ---- setup and the loop ------------------------------------------------------ */

static int setup(app *a, issun_client_settings *s) {
  /* 1. A client (callbacks get `a`), connected, and a bus attached to it. */
  issun_client_callbacks cb = {0};
  cb.on_state = on_state;
  cb.on_presence = lobby_on_presence;
  cb.on_server_error = on_server_error;
  char err[256];
  int rv = issun_client_new_ex(&a->c, s, &cb, a, err, sizeof err);
  if (rv != 0) {
    fprintf(stderr, "pong: %s: %s\n", issun_strerror(rv), err);
    return -1;
  }
  fprintf(stderr, "pong: connecting to %s port %u...\n", a->o.host, a->o.port);
  if (issun_client_connect(a->c, a->o.host, a->o.port) != 0) {
    fprintf(stderr, "pong: cannot connect: %s\n", issun_client_last_error(a->c));
    return -1;
  }
  a->me = issun_client_node_id(a->c);

  /* 2. One bus type per kind of event. */
  if (issun_bus_new(&a->bus, a->c) != 0 ||
      issun_bus_register(a->bus, "pong::Hello", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1,
                         &a->HELLO) != 0 ||
      issun_bus_register(a->bus, "pong::PaddleMove", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1,
                         &a->PADDLE) != 0 ||
      issun_bus_register(a->bus, "pong::BallUpdate", ISSUN_SCOPE_BROADCAST, ISSUN_UNRELIABLE, 1,
                         &a->BALL) != 0 ||
      issun_bus_register(a->bus, "pong::GameOver", ISSUN_SCOPE_BROADCAST, ISSUN_RELIABLE, 1,
                         &a->OVER) != 0) {
    fprintf(stderr, "pong: cannot set up the event bus\n");
    return -1;
  }

  /* 3. A room. */
  if ((rv = lobby_find(a)) != 0) {
    fprintf(stderr, "pong: no room: %s (%s)\n", issun_strerror(rv), issun_client_last_error(a->c));
    return -1;
  }
  fprintf(stderr, "pong[%s]: node %" PRIu64 " in room %" PRIu64 " (%s)%s\n", a->o.name, a->me,
          issun_client_room_id(a->c), a->o.room,
          a->peer ? ", joining a waiting player" : ": waiting for a second player");
  return 0;
}

int main(int argc, char **argv) {
  static app a; /* zeroed */
  issun_client_settings s;
  issun_client_settings_default(&s);
  int rv = cli_parse(&a, &s, argc, argv);
  if (rv >= 0)
    return rv;
  game_init(&a.g, a.o.seed);
  bot_init(&a.bt, a.o.seed);
  a.side = -1;
  a.peer_top = PADDLE_MAX / 2;
  a.sent_paddle = -1;
  int ok = setup(&a, &s) == 0;
  if (ok && !a.o.bot && screen_open() != 0) {
    fprintf(stderr, "pong: needs a terminal (or use --bot)\n");
    ok = 0;
  }
  if (!ok) {
    issun_bus_free(a.bus);
    issun_client_free(a.c);
    return 1;
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  /* 4. The game loop: 60 frames a second. */
  const char *result = "quit";
  uint64_t next = now_us(), give_up = next + (uint64_t)(a.o.frames / TICK_HZ + 60) * 1000000u;
  for (;; a.frame++) {
    issun_bus_poll_network(a.bus); /* network in: remote events join this frame */
    if (a.failed) {
      result = "failed";
      break;
    }
    int connected = issun_client_state(a.c) == ISSUN_STATE_CONNECTED;
    if (connected && a.need_room)
      lobby_recheck(&a);
    else if (connected && !a.peer && a.frame % (2 * TICK_HZ) == TICK_HZ)
      lobby_merge(&a);

    keys k = {0, 0};
    if (a.o.bot)
      k.move = a.side >= 0 ? bot_input(&a.bt, &a.g, a.side) : 0;
    else
      k = screen_keys();
    if (k.quit || interrupted)
      break;
    frame(&a, k);
    if (a.o.bot && a.over) {
      result = "over";
      break;
    }
    if (a.o.bot && now_us() > give_up) {
      result = "timeout";
      break;
    }
    show(&a);

    next += 1000000u / TICK_HZ; /* wait for the next frame, doing network I/O meanwhile */
    uint64_t now = now_us();
    if (now > next + 100000u)
      next = now; /* far behind (a blocking room request): do not race to catch up */
    while ((now = now_us()) < next)
      issun_client_poll(a.c, (int)((next - now + 999) / 1000));
  }

  screen_close();
  issun_client_flush(a.c, 2000); /* let the last reliable events (GameOver) reach the server */
  if (a.o.bot)
    print_json(&a, result);
  else if (a.failed)
    fprintf(stderr, "pong: %s\n", a.msg);
  issun_bus_free(a.bus);
  issun_client_close(a.c);
  issun_client_free(a.c);
  return (a.o.bot ? strcmp(result, "over") != 0 : a.failed) ? 1 : 0;
}
