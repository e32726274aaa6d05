/*
 * Certificates end to end: the server loads PEM chains with ECDSA, Ed25519
 * and RSA keys made by scripts/gen-cert.sh; libissun verifies them against
 * the right CA, refuses a wrong CA or a wrong pin, accepts the right pin,
 * and connects insecurely only when told to.  Real openssl, real files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "it.h"

static char tmp[256];

static int setup(void **state) {
  (void)state;
  snprintf(tmp, sizeof tmp, "/tmp/issun-it-certs-XXXXXX");
  if (!mkdtemp(tmp)) return -1;
  const char *src = getenv("ISSUN_SOURCE_DIR");
  if (!src) return -1;
  const char *kinds[] = {"ecdsa", "ed25519", "rsa"};
  char cmd[1024], out[2048];
  for (int i = 0; i < 3; i++) {
    snprintf(cmd, sizeof cmd, "%s/scripts/gen-cert.sh --dir %s/%s --key %s", src, tmp, kinds[i],
             kinds[i]);
    if (it_run(cmd, out, sizeof out) != 0) {
      fprintf(stderr, "%s\n%s\n", cmd, out);
      return -1;
    }
  }
  /* An unrelated CA, to be refused. */
  snprintf(cmd, sizeof cmd, "%s/scripts/gen-cert.sh --dir %s/other", src, tmp);
  return it_run(cmd, out, sizeof out) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  return it_run(cmd, NULL, 0);
}

static void start_with(it_server *s, const char *kind) {
  static char cert[400], key[400];
  snprintf(cert, sizeof cert, "ISSUN_CERT_PATH=%s/%s/cert.pem", tmp, kind);
  snprintf(key, sizeof key, "ISSUN_KEY_PATH=%s/%s/key.pem", tmp, kind);
  const char *env[] = {cert, key, NULL};
  assert_int_equal(it_server_start(s, env), 0);
  assert_true(it_server_log_has(s, "Certificate loaded"));
  assert_false(it_server_log_has(s, "self-signed"));
}

static int try_connect(it_server *s, const itc_opts *o) {
  itc_opts opts = *o;
  opts.no_connect = 1;
  itc *t = itc_new(s, "cert", &opts);
  int rv = itc_connect(t);
  if (rv == 0) {
    /* A verified session relays like any other. */
    itc_opts uo = *o;
    uo.no_connect = 0;
    itc *u = itc_new(s, "peer", &uo);
    if (issun_client_send(t->c, "cert::Hi", ISSUN_SCOPE_BROADCAST, 0, ISSUN_RELIABLE, "x", 1,
                          NULL) != 0 ||
        !IT_WAIT(5000, itc_count_type(u, "cert::Hi") == 1, t, u))
      rv = -1000;
    itc_free(u);
  }
  itc_free(t);
  return rv;
}

static void check_kind(const char *kind) {
  it_server s;
  start_with(&s, kind);
  char ca[400], wrong[400];
  snprintf(ca, sizeof ca, "%s/%s/ca.pem", tmp, kind);
  snprintf(wrong, sizeof wrong, "%s/other/ca.pem", tmp);

  assert_int_equal(try_connect(&s, &(itc_opts){.ca_file = ca}), 0);
  assert_int_equal(try_connect(&s, &(itc_opts){.ca_file = wrong}), ISSUN_ERR_CERT);
  /* The pin is the leaf's SHA-256, as the server logs it. */
  assert_true(s.fpr[0] != 0);
  assert_int_equal(try_connect(&s, &(itc_opts){.pin = s.fpr}), 0);
  char bad_pin[128];
  snprintf(bad_pin, sizeof bad_pin, "%s", s.fpr);
  bad_pin[0] = bad_pin[0] == 'A' ? 'B' : 'A';
  assert_int_equal(try_connect(&s, &(itc_opts){.pin = bad_pin}), ISSUN_ERR_CERT);
  assert_int_equal(try_connect(&s, &(itc_opts){.insecure = 1}), 0);
  assert_int_equal(it_server_stop(&s), 0);
}

static void test_ecdsa_chain(void **state) {
  (void)state;
  check_kind("ecdsa");
}

static void test_ed25519_chain(void **state) {
  (void)state;
  check_kind("ed25519");
}

static void test_rsa_chain(void **state) {
  (void)state;
  check_kind("rsa");
}

/* The self-signed fallback is refused by a client that verifies, and
 * accepted by one that pins its logged fingerprint. */
static void test_self_signed_needs_pin(void **state) {
  (void)state;
  it_server s;
  assert_int_equal(it_server_start(&s, NULL), 0);
  assert_true(it_server_log_has(&s, "self-signed"));
  char ca[400];
  snprintf(ca, sizeof ca, "%s/ecdsa/ca.pem", tmp);
  assert_int_equal(try_connect(&s, &(itc_opts){.ca_file = ca}), ISSUN_ERR_CERT);
  assert_int_equal(try_connect(&s, &(itc_opts){.pin = s.fpr}), 0);
  assert_int_equal(it_server_stop(&s), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ecdsa_chain),
      cmocka_unit_test(test_ed25519_chain),
      cmocka_unit_test(test_rsa_chain),
      cmocka_unit_test(test_self_signed_needs_pin),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
