/* screen.c: drawing the court and reading the keys with ncurses. */
#include "screen.h"

#include <curses.h>
#include <stdio.h>
#include <unistd.h>

#define TOP 1 /* screen row of the court's top border */

static int open_;

int screen_open(void) {
  if (!isatty(0) || !isatty(1))
    return -1;
  if (!initscr())
    return -1;
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  nodelay(stdscr, TRUE);
  set_escdelay(25);
  curs_set(0);
  open_ = 1;
  return 0;
}

void screen_close(void) {
  if (open_)
    endwin();
  open_ = 0;
}

keys screen_keys(void) {
  keys k = {0, 0};
  int ch;
  while ((ch = getch()) != ERR) {
    if (ch == 'w' || ch == 'W' || ch == KEY_UP)
      k.move--;
    else if (ch == 's' || ch == 'S' || ch == KEY_DOWN)
      k.move++;
    else if (ch == 'q' || ch == 'Q')
      k.quit = 1;
  }
  return k;
}

static const char *who(const view *v, int side) {
  return v->name[side] ? v->name[side] : "-";
}

void screen_draw(const game *g, const view *v) {
  erase();
  if (LINES < COURT_H + 5 || COLS < COURT_W + 2) {
    mvprintw(0, 0, "pong needs a %dx%d terminal", COURT_W + 2, COURT_H + 5);
    refresh();
    return;
  }
  /* Score line: "alice (you)  3 : 5  bob". */
  char left[48], right[48];
  snprintf(left, sizeof left, "%s%s", who(v, LEFT), v->me == LEFT ? " (you)" : "");
  snprintf(right, sizeof right, "%s%s", who(v, RIGHT), v->me == RIGHT ? " (you)" : "");
  mvprintw(0, 0, "%24.24s %3u : %-3u %-.24s", left, g->b.score[LEFT], g->b.score[RIGHT], right);
  /* Border, net, ball, then the paddles on top. */
  for (int x = 0; x < COURT_W + 2; x++) {
    mvaddch(TOP, x, '-');
    mvaddch(TOP + COURT_H + 1, x, '-');
  }
  for (int y = 0; y < COURT_H; y++) {
    mvaddch(TOP + 1 + y, 0, '|');
    mvaddch(TOP + 1 + y, COURT_W + 1, '|');
    if (y % 2 == 0)
      mvaddch(TOP + 1 + y, 1 + COURT_W / 2, ':');
  }
  if (v->name[LEFT] && v->name[RIGHT])
    mvaddch(TOP + 1 + g->b.y / SUB, 1 + g->b.x / SUB, 'O');
  for (int s = LEFT; s <= RIGHT; s++) {
    if (!v->name[s])
      continue;
    int col = s == LEFT ? 1 : COURT_W - 2;
    for (int r = 0; r < PADDLE_H; r++)
      mvaddch(TOP + 1 + g->paddle[s] + r, 1 + col, '#');
  }
  mvprintw(TOP + COURT_H + 2, 0, "%-.*s", COLS - 1, v->status ? v->status : "");
  mvprintw(TOP + COURT_H + 3, 0, "W/S or arrows: move   Q: quit   room %llu%s",
           (unsigned long long)v->room, v->host ? "   (you run the ball)" : "");
  refresh();
}
