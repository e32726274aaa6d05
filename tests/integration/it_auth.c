/*
 * Token authentication (protocol section 8) against a real issun-server
 * started with ISSUN_AUTH_SECRET: the token's sub becomes the NodeId; every
 * kind of bad token gets ERROR UNAUTHORIZED and a closed connection; the
 * clock leeway; tokens minted by `issun-server token`; libissun's get_token
 * callback on reconnect; takeover still needs the resume secret; the
 * refusals are counted by reason.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "it.h"
#include "server/auth.h"

#define SECRET "it-auth-secret-0123456789-abcdefghijklmnop"
#define SLEN (sizeof(SECRET) - 1)

static it_server srv;

static int setup(void **state) {
  const char *env[] = {"ISSUN_AUTH_SECRET=" SECRET, NULL};
  return it_server_start(&srv, env);
}

static int teardown(void **state) {
  return it_server_stop(&srv) == 0 ? 0 : -1;
}

static uint64_t now_s(void) {
  return (uint64_t)time(NULL);
}

/* A token for sub expiring at exp (static buffer: copy before the next call). */
static const char *token(uint64_t sub, uint64_t exp) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  assert_true(auth_sign((const uint8_t *)SECRET, SLEN, sub, exp, b, 512) > 0);
  return b;
}

static const char *raw_token(const char *hdr, const char *claims) {
  static char buf[4][1024];
  static int k;
  char *b = buf[k++ % 4];
  assert_true(auth_sign_raw((const uint8_t *)SECRET, SLEN, hdr, claims, b, 1024) > 0);
  return b;
}

/* Connects with the token; returns the issun_client_connect result. */
static itc *try_token(const char *tok, uint64_t node_id, int *rv) {
  itc *t = itc_new(&srv, "t", &(itc_opts){.no_connect = 1, .token = tok, .node_id = node_id});
  *rv = itc_connect(t);
  return t;
}

static void expect_unauthorized(const char *tok, uint64_t node_id, const char *why) {
  int rv;
  itc *t = try_token(tok, node_id, &rv);
  if (rv != ISSUN_ERR_UNAUTHORIZED)
    fail_msg("expected UNAUTHORIZED (%s), got %s: %s", why, issun_strerror(rv),
             issun_client_last_error(t->c));
  issun_close_info ci;
  assert_int_equal(issun_client_close_info(t->c, &ci), 0);
  assert_true(ci.has_server_error);
  assert_int_equal(ci.server_error_code, ISSUN_WIRE_UNAUTHORIZED);
  if (!strstr(ci.server_error_message, why))
    fail_msg("ERROR message '%s' does not say '%s'", ci.server_error_message, why);
  assert_int_equal(itc_close_code(t), ISSUN_WIRE_UNAUTHORIZED);
  itc_free(t);
}

static void test_sub_becomes_node_id(void **state) {
  itc *a = itc_new(&srv, "a", &(itc_opts){.token = token(1001, now_s() + 60)});
  itc *b = itc_new(&srv, "b", &(itc_opts){.token = token(1002, now_s() + 60), .node_id = 1002});
  assert_int_equal(issun_client_node_id(a->c), 1001);
  assert_int_equal(issun_client_node_id(b->c), 1002);
  /* authenticated sessions relay as usual */
  assert_int_equal(issun_client_send(a->c, "auth::Hi", ISSUN_SCOPE_TARGETED, 1002, ISSUN_RELIABLE,
                                     "x", 1, NULL), 0);
  assert_true(IT_WAIT(5000, itc_count_type(b, "auth::Hi") == 1, a, b));
  assert_int_equal(b->ev[0].sender, 1001);
  itc_free(a);
  itc_free(b);
}

static void test_refusals(void **state) {
  uint64_t now = now_s();
  char other[512];
  uint8_t wrong[] = "not-the-server-secret-but-long-enough";
  assert_true(auth_sign(wrong, sizeof wrong - 1, 7, now + 60, other, sizeof other) > 0);
  char none[512], h[64], p[128];
  char claims[128];
  snprintf(claims, sizeof claims, "{\"sub\":\"7\",\"exp\":%llu}", (unsigned long long)now + 60);
  auth_b64url_encode((const uint8_t *)"{\"alg\":\"none\"}", 14, h, sizeof h);
  auth_b64url_encode((const uint8_t *)claims, strlen(claims), p, sizeof p);
  snprintf(none, sizeof none, "%s.%s.", h, p);

  expect_unauthorized(NULL, 0, "no token");
  expect_unauthorized("", 0, "malformed");
  expect_unauthorized("not.a.jwt", 0, "malformed");
  expect_unauthorized(none, 0, "HS256");
  expect_unauthorized(raw_token("{\"alg\":\"HS512\"}", claims), 0, "HS256");
  expect_unauthorized(other, 0, "signature");
  expect_unauthorized(token(7, now - 3600), 0, "expired");
  expect_unauthorized(raw_token("{\"alg\":\"HS256\"}", "{\"sub\":7,\"exp\":99999999999}"), 0,
                      "claims");
  expect_unauthorized(token(7, now + 60), 8, "node_id");
  /* nothing of this reached a session */
  itc *a = itc_new(&srv, "a", &(itc_opts){.token = token(7, now + 60)});
  assert_int_equal(issun_client_node_id(a->c), 7);
  itc_free(a);
}

static void test_leeway(void **state) {
  /* default leeway 30 s: ten seconds past exp is still fine, a minute is not */
  int rv;
  itc *t = try_token(token(1100, now_s() - 10), 0, &rv);
  assert_int_equal(rv, 0);
  itc_free(t);
  expect_unauthorized(token(1101, now_s() - 60), 0, "expired");

  it_server strict;
  const char *env[] = {"ISSUN_AUTH_SECRET=" SECRET, "ISSUN_AUTH_LEEWAY=0", NULL};
  assert_int_equal(it_server_start(&strict, env), 0);
  itc *u = itc_new(&strict, "u", &(itc_opts){.no_connect = 1, .token = token(1102, now_s() - 2)});
  assert_int_equal(itc_connect(u), ISSUN_ERR_UNAUTHORIZED);
  itc_free(u);
  it_server_stop(&strict);
}

static void test_token_subcommand(void **state) {
  char cmd[1024], out[1024];
  snprintf(cmd, sizeof cmd, "ISSUN_AUTH_SECRET='%s' '%s' token --sub 777 --ttl 60", SECRET,
           getenv("ISSUN_SERVER_BIN"));
  assert_int_equal(it_run(cmd, out, sizeof out), 0);
  char *nl = strchr(out, '\n');
  assert_non_null(nl);
  *nl = 0;
  itc *a = itc_new(&srv, "cli", &(itc_opts){.token = out});
  assert_int_equal(issun_client_node_id(a->c), 777);
  itc_free(a);
  /* without a secret the subcommand refuses, with a reason */
  snprintf(cmd, sizeof cmd, "env -u ISSUN_AUTH_SECRET '%s' token --sub 1 2>&1",
           getenv("ISSUN_SERVER_BIN"));
  assert_int_equal(it_run(cmd, out, sizeof out), 2);
  assert_non_null(strstr(out, "ISSUN_AUTH_SECRET"));
}

/* get_token: a script of tokens, one per connection attempt. */
static int calls;
static const char *script[4];
static const char *scripted_token(issun_client *c, void *ud) {
  const char *t = script[calls < 4 ? calls : 3];
  calls++;
  return t;
}

static void test_get_token_on_each_attempt(void **state) {
  char t1[512], t2[512], t3[512];
  snprintf(t1, sizeof t1, "%s", token(2001, now_s() + 60));
  snprintf(t2, sizeof t2, "%s", token(2001, now_s() - 3600)); /* expired: refused */
  snprintf(t3, sizeof t3, "%s", token(2001, now_s() + 60));
  script[0] = t1;
  script[1] = t2;
  script[2] = t3;
  script[3] = t3;
  calls = 0;
  itc *a = itc_new(&srv, "r", &(itc_opts){.reconnect = 1, .get_token = scripted_token,
                                         .token = "ignored: the callback decides"});
  assert_int_equal(calls, 1);
  assert_int_equal(issun_client_node_id(a->c), 2001);
  /* The network drops: the reconnect asks for a token again; the expired
   * one is refused with UNAUTHORIZED, which the callback makes worth
   * retrying; the next attempt gets a good one and resumes. */
  assert_int_equal(issun__cut_socket(a->c, 0), 0);
  assert_true(IT_WAIT(15000, calls >= 3 && issun_client_state(a->c) == ISSUN_STATE_CONNECTED, a));
  assert_int_equal(calls, 3);
  assert_int_equal(issun_client_node_id(a->c), 2001);
  issun_client_stats st;
  assert_int_equal(issun_client_stats_get(a->c, &st), 0);
  assert_int_equal(st.reconnects, 1);
  itc_free(a);

  /* NULL from the callback: the connect fails at once, as UNAUTHORIZED */
  script[0] = NULL;
  calls = 0;
  itc *b = itc_new(&srv, "n", &(itc_opts){.no_connect = 1, .get_token = scripted_token});
  assert_int_equal(itc_connect(b), ISSUN_ERR_UNAUTHORIZED);
  assert_int_equal(calls, 1);
  assert_non_null(strstr(issun_client_last_error(b->c), "no token"));
  itc_free(b);
}

static void test_set_token(void **state) {
  itc *a = itc_new(&srv, "s", &(itc_opts){.no_connect = 1, .token = token(2101, now_s() - 3600)});
  assert_int_equal(itc_connect(a), ISSUN_ERR_UNAUTHORIZED);
  assert_int_equal(issun_client_set_token(a->c, token(2101, now_s() + 60)), 0);
  assert_int_equal(itc_connect(a), 0);
  assert_int_equal(issun_client_node_id(a->c), 2101);
  assert_int_equal(issun_client_set_token(a->c, "\xff"), ISSUN_ERR_INVALID_ARG);
  assert_int_equal(issun_client_set_token(NULL, "x"), ISSUN_ERR_INVALID_ARG);
  itc_free(a);
}

static void test_takeover_still_needs_resume(void **state) {
  itc *a = itc_new(&srv, "a", &(itc_opts){.token = token(3001, now_s() + 60)});
  /* a valid token for a held NodeId is not enough */
  itc *b = itc_new(&srv, "b", &(itc_opts){.no_connect = 1, .token = token(3001, now_s() + 60)});
  assert_int_equal(itc_connect(b), ISSUN_ERR_DUPLICATE_NODE);
  /* with the resume secret it takes the session over */
  uint8_t secret[16];
  assert_int_equal(issun__resume_secret(a->c, secret), 0);
  itc *c = itc_new(&srv, "c", &(itc_opts){.no_connect = 1, .token = token(3001, now_s() + 60)});
  assert_int_equal(issun__set_resume(c->c, 3001, secret), 0);
  assert_int_equal(itc_connect(c), 0);
  assert_int_equal(issun_client_node_id(c->c), 3001);
  assert_true(IT_WAIT(5000, itc_close_code(a) == ISSUN_WIRE_SESSION_TAKEN_OVER, a, c));
  itc_free(a);
  itc_free(b);
  itc_free(c);
}

static void test_refusals_are_counted(void **state) {
  it_server s;
  const char *env[] = {"ISSUN_AUTH_SECRET=" SECRET, NULL};
  assert_int_equal(it_server_start(&s, env), 0);
  const char *toks[] = {NULL, token(9, now_s() - 3600), token(9, now_s() - 3600), "x.y.z"};
  for (int i = 0; i < 4; i++) {
    itc *t = itc_new(&s, "t", &(itc_opts){.no_connect = 1, .token = toks[i]});
    assert_int_equal(itc_connect(t), ISSUN_ERR_UNAUTHORIZED);
    itc_free(t);
  }
  assert_int_equal(it_server_signal(&s, SIGTERM, 5000), 0);
  assert_true(it_server_log_has(&s, "Authentication failed addr=127.0.0.1"));
  assert_true(it_server_log_has(&s, "unauthorized=4"));
  assert_true(it_server_log_has(&s, "auth_missing=1"));
  assert_true(it_server_log_has(&s, "auth_expired=2"));
  assert_true(it_server_log_has(&s, "auth_malformed=1"));
  assert_false(it_server_log_has(&s, SECRET)); /* the secret never reaches the log */
  it_server_stop(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sub_becomes_node_id),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_leeway),
      cmocka_unit_test(test_token_subcommand),
      cmocka_unit_test(test_get_token_on_each_attempt),
      cmocka_unit_test(test_set_token),
      cmocka_unit_test(test_takeover_still_needs_resume),
      cmocka_unit_test(test_refusals_are_counted),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
