/*
 * metrics: the HTTP request classifier against well-formed and hostile
 * requests, and the Prometheus rendering of a real server's counters and
 * histograms (bucket placement, cumulative counts, units, label sets).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/metrics.h"
#include "server/server.h"
#include "server/server_int.h"

static int parse(const char *req, int *head) {
  int h = -1;
  int k = metrics_parse_request(req, strlen(req), &h);
  if (head)
    *head = h;
  return k;
}

static void test_parse_routes(void **state) {
  int head;
  assert_int_equal(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &head), MREQ_METRICS);
  assert_int_equal(head, 0);
  assert_int_equal(parse("GET /metrics?name[]=up HTTP/1.1\r\n\r\n", NULL), MREQ_METRICS);
  assert_int_equal(parse("GET /health HTTP/1.0\r\n\r\n", NULL), MREQ_HEALTH);
  assert_int_equal(parse("HEAD /health HTTP/1.1\r\n\r\n", &head), MREQ_HEALTH);
  assert_int_equal(head, 1);
  assert_int_equal(parse("GET /health HTTP/1.1\n\n", NULL), MREQ_HEALTH); /* bare LF */
  assert_int_equal(parse("GET / HTTP/1.1\r\n\r\n", NULL), MREQ_NOT_FOUND);
  assert_int_equal(parse("GET /metricsx HTTP/1.1\r\n\r\n", NULL), MREQ_NOT_FOUND);
  assert_int_equal(parse("GET /metrics/ HTTP/1.1\r\n\r\n", NULL), MREQ_NOT_FOUND);
  assert_int_equal(parse("GET /healt HTTP/1.1\r\n\r\n", NULL), MREQ_NOT_FOUND);
  assert_int_equal(parse("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", NULL),
                   MREQ_BAD_METHOD);
  assert_int_equal(parse("DELETE /x HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_METHOD);
  assert_int_equal(parse("PUT /health HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_METHOD);
}

static void test_parse_incomplete_and_hostile(void **state) {
  assert_int_equal(parse("", NULL), MREQ_INCOMPLETE);
  assert_int_equal(parse("GET /metrics HTTP/1.1\r\n", NULL), MREQ_INCOMPLETE);
  assert_int_equal(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n", NULL), MREQ_INCOMPLETE);
  assert_int_equal(parse("\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("GET\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("GET /metrics\r\n\r\n", NULL), MREQ_BAD_REQUEST); /* HTTP/0.9 */
  assert_int_equal(parse("GET /metrics HTTP/2.0\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("GET /metrics HTTP/1.1 x\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("GET  /metrics HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse(" GET /metrics HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("get /metrics HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("GET metrics HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("GET http://h/metrics HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("GET /met\x01rics HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("GET /met\xffrics HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_REQUEST);
  assert_int_equal(parse("G\xc3\x89T /metrics HTTP/1.1\r\n\r\n", NULL), MREQ_BAD_REQUEST);

  /* A NUL inside the request line is not a terminator. */
  const char nul[] = "GET /metrics\0 HTTP/1.1\r\n\r\n";
  int head;
  assert_int_equal(metrics_parse_request(nul, sizeof nul - 1, &head), MREQ_BAD_REQUEST);

  /* No blank line within the limit: too large, whatever the content. */
  char *big = malloc(METRICS_REQ_MAX);
  assert_non_null(big);
  memset(big, 'a', METRICS_REQ_MAX);
  memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
  assert_int_equal(metrics_parse_request(big, METRICS_REQ_MAX, &head), MREQ_TOO_LARGE);
  assert_int_equal(metrics_parse_request(big, METRICS_REQ_MAX - 1, &head), MREQ_INCOMPLETE);
  /* ...but a request that ends exactly at the limit is fine. */
  memcpy(big + METRICS_REQ_MAX - 4, "\r\n\r\n", 4);
  assert_int_equal(metrics_parse_request(big, METRICS_REQ_MAX, &head), MREQ_METRICS);
  free(big);

  /* Every prefix of a valid request is incomplete, never an error. */
  const char *ok = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t\r\n\r\n";
  for (size_t n = 0; n + 1 < strlen(ok); n++)
    assert_int_equal(metrics_parse_request(ok, n, &head), MREQ_INCOMPLETE);
}

/* ---- rendering ------------------------------------------------------------ */

static srv *make_server(void) {
  srv_config cfg;
  char err[256];
  cfg_defaults(&cfg);
  assert_int_equal(cfg_parse_addr("127.0.0.1:0", &cfg.bind, &cfg.bind_len), 0);
  snprintf(cfg.cert_path, sizeof cfg.cert_path, "/nonexistent/cert.pem");
  cfg.cert_path_set = 0; /* generate one in memory */
  cfg.metrics_port = 0;
  cfg.max_clients = 77;
  cfg.log_level = LOG_LVL_ERROR;
  srv *s = NULL;
  if (srv_new(&s, &cfg, err, sizeof err) != 0)
    fail_msg("srv_new: %s", err);
  return s;
}

static int has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
    if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0))
      return 1;
  return 0;
}

#define ASSERT_LINE(text, line)                                                                    \
  do {                                                                                             \
    if (!has_line(text, line))                                                                     \
      fail_msg("missing line: %s", line);                                                          \
  } while (0)

static void test_render_counters_and_histograms(void **state) {
  srv *s = make_server();
  srv_stats *st = &s->stats;
  st->events_relayed[ST_SCOPE_TARGETED] = 5;
  st->dropped[ST_DROP_NO_TARGET] = 3;
  st->handshakes[ST_HS_TLS_FAILED] = 2;
  st->disconnects[ST_DISC_IDLE] = 4;
  st->bytes_sent = 123456789012ull;
  /* latency: 0 and 1 in le=1, 3 in le=5, 100000 in le=100000, 100001 above all */
  stat_observe_latency(st, ST_SCOPE_BROADCAST, 0);
  stat_observe_latency(st, ST_SCOPE_BROADCAST, 1);
  stat_observe_latency(st, ST_SCOPE_BROADCAST, 3);
  stat_observe_latency(st, ST_SCOPE_BROADCAST, 100000);
  stat_observe_latency(st, ST_SCOPE_BROADCAST, 100001);
  stat_observe_latency(st, 7, 1); /* out of range: ignored */
  /* sessions: idle 1.5 s and TIMEOUT 0.05 s are "timeout"; peer 2 days "closed" */
  stat_observe_session(st, ST_DISC_IDLE, 1500);
  stat_observe_session(st, PR_E_TIMEOUT, 50);
  stat_observe_session(st, ST_DISC_PEER, 2ull * 86400000);
  stat_observe_session(st, PR_E_SLOW_CONSUMER, 100);
  stat_observe_session(st, PR_E_SHUTTING_DOWN, 1001);
  stat_observe_session(st, ST_DISC_N, 1); /* ignored */

  char *t = NULL;
  size_t n = metrics_render(s, &t);
  assert_non_null(t);
  assert_int_equal(strlen(t), n);
  ASSERT_LINE(t, "issun_connected_clients 0");
  ASSERT_LINE(t, "issun_max_clients 77");
  ASSERT_LINE(t, "issun_active_rooms 0");
  ASSERT_LINE(t, "issun_events_relayed_total{scope=\"targeted\"} 5");
  ASSERT_LINE(t, "issun_events_relayed_total{scope=\"broadcast\"} 0");
  ASSERT_LINE(t, "issun_events_dropped_total{reason=\"no_target\"} 3");
  ASSERT_LINE(t, "issun_events_dropped_total{reason=\"slow_consumer\"} 0");
  ASSERT_LINE(t, "issun_handshakes_total{result=\"tls_failed\"} 2");
  ASSERT_LINE(t, "issun_disconnects_total{reason=\"idle_timeout\"} 4");
  ASSERT_LINE(t, "issun_disconnects_total{reason=\"protocol_error\"} 0");
  ASSERT_LINE(t, "issun_bytes_sent_total 123456789012");

  ASSERT_LINE(t, "# TYPE issun_relay_latency_microseconds histogram");
  ASSERT_LINE(t, "issun_relay_latency_microseconds_bucket{scope=\"broadcast\",le=\"1\"} 2");
  ASSERT_LINE(t, "issun_relay_latency_microseconds_bucket{scope=\"broadcast\",le=\"2\"} 2");
  ASSERT_LINE(t, "issun_relay_latency_microseconds_bucket{scope=\"broadcast\",le=\"5\"} 3");
  ASSERT_LINE(t, "issun_relay_latency_microseconds_bucket{scope=\"broadcast\",le=\"50000\"} 3");
  ASSERT_LINE(t, "issun_relay_latency_microseconds_bucket{scope=\"broadcast\",le=\"100000\"} 4");
  ASSERT_LINE(t, "issun_relay_latency_microseconds_bucket{scope=\"broadcast\",le=\"+Inf\"} 5");
  ASSERT_LINE(t, "issun_relay_latency_microseconds_sum{scope=\"broadcast\"} 200005");
  ASSERT_LINE(t, "issun_relay_latency_microseconds_count{scope=\"broadcast\"} 5");
  ASSERT_LINE(t, "issun_relay_latency_microseconds_count{scope=\"targeted\"} 0");

  ASSERT_LINE(t, "# TYPE issun_connection_duration_seconds histogram");
  ASSERT_LINE(t, "issun_connection_duration_seconds_bucket{status=\"timeout\",le=\"0.1\"} 1");
  ASSERT_LINE(t, "issun_connection_duration_seconds_bucket{status=\"timeout\",le=\"1\"} 1");
  ASSERT_LINE(t, "issun_connection_duration_seconds_bucket{status=\"timeout\",le=\"5\"} 2");
  ASSERT_LINE(t, "issun_connection_duration_seconds_sum{status=\"timeout\"} 1.55");
  ASSERT_LINE(t, "issun_connection_duration_seconds_count{status=\"timeout\"} 2");
  ASSERT_LINE(t, "issun_connection_duration_seconds_bucket{status=\"closed\",le=\"86400\"} 0");
  ASSERT_LINE(t, "issun_connection_duration_seconds_bucket{status=\"closed\",le=\"+Inf\"} 1");
  ASSERT_LINE(t, "issun_connection_duration_seconds_sum{status=\"closed\"} 172800");
  ASSERT_LINE(t, "issun_connection_duration_seconds_bucket{status=\"error\",le=\"0.1\"} 1");
  ASSERT_LINE(t, "issun_connection_duration_seconds_sum{status=\"error\"} 0.1");
  ASSERT_LINE(t, "issun_connection_duration_seconds_bucket{status=\"shutdown\",le=\"1\"} 0");
  ASSERT_LINE(t, "issun_connection_duration_seconds_bucket{status=\"shutdown\",le=\"5\"} 1");
  ASSERT_LINE(t, "issun_connection_duration_seconds_sum{status=\"shutdown\"} 1.001");

  /* No per-client label anywhere; every sample belongs to a declared family. */
  const char *per_client[] = {"{node_id=", ",node_id=", "{client_id=", ",client_id=", "addr="};
  for (size_t i = 0; i < sizeof per_client / sizeof per_client[0]; i++)
    assert_null(strstr(t, per_client[i]));
  for (const char *p = t; *p;) {
    const char *nl = strchr(p, '\n');
    assert_non_null(nl); /* every line ends with a newline */
    if (*p != '#') {
      char name[128];
      size_t k = strcspn(p, "{ ");
      assert_true(k < sizeof name);
      memcpy(name, p, k);
      name[k] = 0;
      char type_line[200];
      snprintf(type_line, sizeof type_line, "# TYPE %s ", name);
      int declared = strstr(t, type_line) != NULL;
      for (const char *suf = "_bucket\0_sum\0_count\0"; !declared && *suf; suf += strlen(suf) + 1) {
        size_t sl = strlen(suf);
        if (k > sl && strcmp(name + k - sl, suf) == 0) {
          snprintf(type_line, sizeof type_line, "# TYPE %.*s histogram", (int)(k - sl), name);
          declared = has_line(t, type_line);
        }
      }
      if (!declared)
        fail_msg("sample without a TYPE: %.*s", (int)(nl - p), p);
    }
    p = nl + 1;
  }
  free(t);
  srv_free(s);
}

static void test_render_process_metrics(void **state) {
  srv *s = make_server();
  char *t = NULL;
  metrics_render(s, &t);
  assert_non_null(t);
  const char *names[] = {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                         "process_open_fds ", "process_start_time_seconds "};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *p = strstr(t, names[i]);
    while (p && p != t && p[-1] != '\n')
      p = strstr(p + 1, names[i]);
    if (!p)
      fail_msg("missing %s", names[i]);
    double v = strtod(p + strlen(names[i]), NULL);
    assert_true(v >= 0);
    if (i == 1)
      assert_true(v > 1024 * 1024); /* some resident memory */
    if (i == 2)
      assert_true(v >= 3); /* at least the UDP socket, epoll, timerfd */
    if (i == 3)
      assert_true(v > 1.6e9); /* after 2020 */
  }
  free(t);
  srv_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_routes),
      cmocka_unit_test(test_parse_incomplete_and_hostile),
      cmocka_unit_test(test_render_counters_and_histograms),
      cmocka_unit_test(test_render_process_metrics),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
