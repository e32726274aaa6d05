/*
 * The relay over a slow link: one player reaches it through
 * scripts/lossy-proxy.py (no loss, 10 ms each way: a 20 ms round trip) and
 * must get its events a round trip or two after they are sent, however long
 * its connection has been up.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "it.h"

static it_server srv;
static pid_t proxy_pid; /* the running proxy, or 0; teardown stops it should a test fail midway */

static int setup(void **state) {
  (void)state;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=100000", NULL};
  return it_server_start(&srv, env);
}

static void proxy_stop(void) {
  if (proxy_pid <= 0) return;
  kill(proxy_pid, SIGTERM);
  waitpid(proxy_pid, NULL, 0);
  proxy_pid = 0;
}

static int teardown(void **state) {
  (void)state;
  proxy_stop();
  return it_server_stop(&srv) == 0 ? 0 : -1;
}

/* Starts scripts/lossy-proxy.py in front of server s (delay_ms each way,
 * no loss), waits for it to listen and returns its port. */
static uint16_t proxy_start(const it_server *s, int delay_ms) {
  const char *src = getenv("ISSUN_SOURCE_DIR");
  assert_non_null(src);
  char script[512], port_file[320], server_port[16], delay[16];
  snprintf(script, sizeof script, "%s/scripts/lossy-proxy.py", src);
  snprintf(port_file, sizeof port_file, "%s/proxy.port", s->dir);
  snprintf(server_port, sizeof server_port, "%u", s->port);
  snprintf(delay, sizeof delay, "%d", delay_ms);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
    execlp("python3", "python3", script, "--port-file", port_file, server_port, "0", delay, "0",
           (char *)NULL);
    _exit(127);
  }
  proxy_pid = pid;
  uint64_t end = it_now_ms() + 10000;
  while (it_now_ms() < end) {
    FILE *f = fopen(port_file, "r");
    unsigned port = 0;
    if (f) {
      if (fscanf(f, "%u", &port) != 1) port = 0;
      fclose(f);
    }
    if (port) return (uint16_t)port;
    if (waitpid(pid, NULL, WNOHANG) == pid) {
      proxy_pid = 0;
      fail_msg("lossy-proxy.py exited early");
    }
    usleep(10000); /* polling for the file, with a deadline */
  }
  fail_msg("lossy-proxy.py did not start");
  return 0;
}

static void send_to(itc *a, uint64_t to, size_t len) {
  static char payload[1000];
  memset(payload, 'x', sizeof payload);
  assert_true(len <= sizeof payload);
  assert_int_equal(issun_client_send(a->c, "link::Data", ISSUN_SCOPE_TARGETED, to, ISSUN_RELIABLE,
                                     payload, len, NULL),
                   0);
}

/* Sends n events of len bytes to `to`, one every gap_ms, polling both. */
static void stream(itc *a, itc *b, uint64_t to, int n, size_t len, int gap_ms) {
  itc *const both[] = {a, b};
  for (int i = 0; i < n; i++) {
    send_to(a, to, len);
    uint64_t next = it_now_ms() + (uint64_t)gap_ms;
    while (it_now_ms() < next) it_poll(1, both, 2);
  }
}

/* The relay paces packets with ngtcp2's pacer, which must be told the bytes
 * of every write pass: it spaces the next packet by the bytes written since
 * it was last told, over the current sending rate.  It used to be told only
 * on passes that left data queued, so the first such pass after a long
 * stretch of drained ones was charged all the bytes of that stretch.  Here,
 * 4 MB at 1 MB/s (every pass drains), then 300 KB at once (more than the
 * congestion window, so the pass leaves data queued): the rest of the burst
 * then waited about 0.8 s, and the wait grows with the connection's age
 * (over a lossy link it held a player's events for a second).  Now the
 * burst arrives in a few round trips. */
static void burst_after_long_stream(const it_server *s) {
  it_server via = *s;
  via.port = proxy_start(s, 10);
  itc *a = itc_new(s, "link-a", NULL), *b = itc_new(&via, "link-b", NULL);
  uint64_t idb = issun_client_node_id(b->c);

  uint64_t r0 = b->nev;
  stream(a, b, idb, 4000, 1000, 1);
  assert_true(IT_WAIT(20000, b->nev - r0 == 4000, a, b));

  r0 = b->nev;
  uint64_t t0 = it_now_ms();
  stream(a, b, idb, 300, 1000, 0);
  int ok = IT_WAIT(20000, b->nev - r0 == 300, a, b);
  uint64_t took = it_now_ms() - t0;
  print_message("a burst of 300 KB reached b in %llu ms\n", (unsigned long long)took);
  assert_true(ok);
  assert_true(took < 400); /* about 70 ms here; 830 ms with the fault */
  itc_free(a);
  itc_free(b);
  proxy_stop();
}

static void test_burst_after_long_stream(void **state) {
  (void)state;
  assert_true(it_server_log_has(&srv, "cc=cubic"));
  burst_after_long_stream(&srv);
}

/* The same with ISSUN_CC=bbr, whose pacing rate comes from its own model of
 * the path rather than from the window. */
static void test_burst_after_long_stream_bbr(void **state) {
  (void)state;
  it_server s;
  const char *env[] = {"ISSUN_MAX_EVENTS_PER_SEC=100000", "ISSUN_CC=bbr", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  assert_true(it_server_log_has(&s, "cc=bbr"));
  burst_after_long_stream(&s);
  assert_int_equal(it_server_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_burst_after_long_stream),
      cmocka_unit_test(test_burst_after_long_stream_bbr),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
