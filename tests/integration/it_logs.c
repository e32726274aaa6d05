/*
 * Operator logs of a real issun-server (issue 5): human-readable lines by
 * default; with ISSUN_LOG_FORMAT=json one JSON object per line (checked by
 * Python's json parser) with time, level, message and the fields node_id,
 * room_id, addr, reason; no line per event above debug; a display name with
 * quotes and a newline (the peer's choice) can neither break a JSON object
 * nor forge a log line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "it.h"

#define NEVENTS 40
#define BOB "bob \"the\" builder\nERROR forged"

/* Connects two clients, opens a room, relays NEVENTS events, disconnects
 * one, stops the server.  Returns the path of a copy of its log. */
static void exchange(it_server *s, char *copy, size_t copylen) {
  itc *a = itc_new(s, "alice", NULL), *b = itc_new(s, BOB, NULL);
  for (int i = 0; i < NEVENTS; i++)
    assert_int_equal(issun_client_send(a->c, "log::Tick", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE,
                                       "t", 1, NULL),
                     0);
  assert_true(IT_WAIT(5000, b->nev == NEVENTS, a, b));
  assert_int_equal(itc_room_create(a, "logs", 0, NULL, 0, NULL), 0);
  itc_free(b);
  assert_true(IT_WAIT(5000, it_server_log_has(s, "Client disconnected"), a));
  assert_int_equal(it_server_signal(s, 15, 5000), 0);
  assert_int_equal(s->exit_status, 0);
  itc_free(a);
  snprintf(copy, copylen, "%s.copy", s->dir);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", s->log_path, copy);
  assert_int_equal(it_run(cmd, NULL, 0), 0);
}

static const char *checker =
    "import json, re, sys\n"
    "level = sys.argv[2]\n"
    "lines = open(sys.argv[1]).read().splitlines()\n"
    "assert lines, 'empty log'\n"
    "objs = []\n"
    "for ln in lines:\n"
    "    o = json.loads(ln)\n"
    "    assert isinstance(o, dict), ln\n"
    "    assert re.fullmatch(r'\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z', o['time']), "
    "ln\n"
    "    assert o['level'] in ('ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE'), ln\n"
    "    assert isinstance(o['message'], str) and o['message'], ln\n"
    "    objs.append(o)\n"
    "def one(msg):\n"
    "    m = [o for o in objs if o['message'] == msg]\n"
    "    assert m, 'no line: ' + msg\n"
    "    return m\n"
    "conn = one('Client connected')\n"
    "assert len(conn) == 2, conn\n"
    "for o in conn:\n"
    "    assert re.fullmatch(r'[1-9]\\d*', o['node_id']), o\n"
    "    assert re.fullmatch(r'127\\.0\\.0\\.1:\\d+', o['addr']), o\n"
    "bob = 'bob \"the\" builder' + chr(10) + 'ERROR forged'  # as the client sent it\n"
    "assert sorted(o['name'] for o in conn) == ['alice', bob], conn\n"
    "d = one('Client disconnected')[0]\n"
    "assert d['reason'] in ('NO_ERROR', 'CLOSED_BY_PEER'), d\n"
    "assert isinstance(d['duration_ms'], int) and re.fullmatch(r'[1-9]\\d*', d['node_id']), d\n"
    "one('Relay server listening on')\n"
    "one('Shutting down')\n"
    "if level == 'debug':\n"
    "    rc = one('room created')[0]\n"
    "    assert re.fullmatch(r'[1-9]\\d*', rc['room_id']), rc\n"
    "    assert re.fullmatch(r'[1-9]\\d*', rc['node_id']), rc\n"
    "else:\n"
    "    assert all(o['level'] != 'DEBUG' for o in objs)\n"
    "    # no line per event at info: 40 events relayed, a handful of lines in all\n"
    "    assert len(objs) < 20, len(objs)\n"
    "print('ok', len(objs))\n";

static void run_checker(const char *log, const char *level) {
  char script[] = "/tmp/issun-it-logcheck-XXXXXX";
  int fd = mkstemp(script);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, checker, strlen(checker)), (ssize_t)strlen(checker));
  close(fd);
  char cmd[600], out[4096];
  /* Debian's interpreter when there is one (python3-yaml and friends live there). */
  snprintf(cmd, sizeof cmd, "py=/usr/bin/python3; [ -x $py ] || py=python3; $py '%s' '%s' %s 2>&1",
           script, log, level);
  int rc = it_run(cmd, out, sizeof out);
  unlink(script);
  if (rc != 0) {
    char show[300];
    snprintf(show, sizeof show, "cat '%s' >&2", log);
    (void)it_run(show, NULL, 0);
    fail_msg("log check failed: %s", out);
  }
  assert_non_null(strstr(out, "ok "));
}

static void test_json_lines_info(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_LOG_FORMAT=json", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  char copy[300];
  exchange(&s, copy, sizeof copy);
  it_server_stop(&s);
  run_checker(copy, "info");
  unlink(copy);
}

static void test_json_lines_debug_carry_room_ids(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_LOG_FORMAT=json", "ISSUN_LOG=debug", NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  char copy[300];
  exchange(&s, copy, sizeof copy);
  it_server_stop(&s);
  run_checker(copy, "debug");
  unlink(copy);
}

static void test_text_lines_by_default(void **state) {
  it_server s;
  assert_int_equal(it_server_start(&s, NULL), 0);
  char copy[300];
  exchange(&s, copy, sizeof copy);
  it_server_stop(&s);
  char cmd[700], out[8192];
  snprintf(cmd, sizeof cmd, "cat '%s'", copy);
  assert_int_equal(it_run(cmd, out, sizeof out), 0);
  unlink(copy);
  /* "2026-01-01T00:00:00.000Z INFO  Client connected node_id=N addr=... name=\"alice\"" */
  assert_null(strstr(out, "{\"time\""));
  assert_non_null(strstr(out, "Z INFO  Client connected node_id="));
  assert_non_null(strstr(out, " addr=127.0.0.1:"));
  assert_non_null(strstr(out, "name=\"alice\""));
  assert_non_null(strstr(out, "INFO  Client disconnected node_id="));
  assert_non_null(strstr(out, " reason="));
  assert_null(strstr(out, "log::Tick")); /* events are not logged at info */
  /* The hostile name stays inside its quotes, escaped, on its line. */
  assert_non_null(strstr(out, "name=\"bob \\\"the\\\" builder\\x0aERROR forged\" clients="));
  assert_null(strstr(out, "\nERROR forged"));
  size_t lines = 0;
  for (const char *p = out; (p = strchr(p, '\n')) != NULL; p++)
    lines++;
  assert_true(lines < 20);
}

/* ISSUN_QLOG_DIR: one qlog trace per QUIC connection, in JSON-SEQ, with
 * the packets both ways; the server says it is tracing. */
static void test_qlog_dir_traces_connections(void **state) {
  char dir[] = "/tmp/issun-qlog-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char envq[64];
  snprintf(envq, sizeof envq, "ISSUN_QLOG_DIR=%s", dir);
  it_server s;
  const char *env[] = {envq, NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  assert_true(it_server_log_has(&s, "Writing a qlog trace of every connection"));
  char copy[300];
  exchange(&s, copy, sizeof copy); /* two clients; the server has exited */
  it_server_stop(&s);
  unlink(copy);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int files = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t n = strlen(e->d_name);
    assert_true(n > 6 && strcmp(e->d_name + n - 6, ".sqlog") == 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    static const char head[] = "\x1e{\"qlog_format\":\"JSON-SEQ\"";
    if (strncmp(buf, head, sizeof head - 1) != 0)
      fail_msg("%s starts with %.40s", path, buf);
    assert_non_null(strstr(buf, "\"transport:packet_received\""));
    assert_non_null(strstr(buf, "\"transport:packet_sent\""));
    unlink(path);
    files++;
  }
  closedir(d);
  rmdir(dir);
  assert_int_equal(files, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_lines_info),
      cmocka_unit_test(test_json_lines_debug_carry_room_ids),
      cmocka_unit_test(test_text_lines_by_default),
      cmocka_unit_test(test_qlog_dir_traces_connections),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
