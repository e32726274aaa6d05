/*
 * auth: HS256 JWT verification and signing.  An external vector (RFC 7515
 * appendix A.1) proves the HMAC and base64url against someone else's
 * implementation; every refusal reason is reached; the JSON and base64url
 * readers refuse what is not strictly well-formed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/auth.h"

static const uint8_t SECRET[] = "0123456789abcdef0123456789abcdef-test";
#define SLEN (sizeof(SECRET) - 1)
#define NOW 1700000000ull

static int verify(const char *tok, uint64_t now, uint32_t leeway, uint64_t *sub) {
  return auth_verify(SECRET, SLEN, tok, strlen(tok), now, leeway, sub);
}

/* A token with the given header and claims JSON, signed with SECRET. */
static const char *mk(const char *hdr, const char *claims) {
  static char buf[8192];
  size_t n = auth_sign_raw(SECRET, SLEN, hdr, claims, buf, sizeof buf);
  assert_true(n > 0);
  return buf;
}

static const char *mkc(const char *claims) {
  return mk("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims);
}

static void test_sign_then_verify(void **state) {
  char tok[512];
  uint64_t sub = 0;
  assert_true(auth_sign(SECRET, SLEN, 42, NOW + 60, tok, sizeof tok) > 0);
  assert_int_equal(verify(tok, NOW, 30, &sub), AUTH_OK);
  assert_int_equal(sub, 42);
  assert_true(auth_sign(SECRET, SLEN, UINT64_MAX, NOW + 60, tok, sizeof tok) > 0);
  assert_int_equal(verify(tok, NOW, 30, &sub), AUTH_OK);
  assert_true(sub == UINT64_MAX);
  /* sub 0 is not a NodeId; a buffer too small fails cleanly */
  assert_int_equal(auth_sign(SECRET, SLEN, 0, NOW, tok, sizeof tok), 0);
  assert_int_equal(auth_sign(SECRET, SLEN, 1, NOW, tok, 40), 0);
}

/* RFC 7515 A.1: an HS256 JWS made by another implementation.  It has no
 * "sub", so it must get past the signature and fail on the claims. */
static void test_rfc7515_vector(void **state) {
  const char *key_b64 =
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
  const char *tok = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
                    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9"
                    "pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  uint8_t key[64];
  size_t klen;
  assert_int_equal(auth_b64url_decode(key_b64, strlen(key_b64), key, sizeof key, &klen), 0);
  assert_int_equal(klen, 64);
  assert_int_equal(auth_verify(key, klen, tok, strlen(tok), 1300819000, 0, NULL), AUTH_E_CLAIMS);
  /* one bit off in the signature, or another key: signature */
  char bad[256];
  snprintf(bad, sizeof bad, "%s", tok);
  bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'X' ? 'Y' : 'X';
  assert_int_equal(auth_verify(key, klen, bad, strlen(bad), 1300819000, 0, NULL), AUTH_E_SIGNATURE);
  key[0] ^= 1;
  assert_int_equal(auth_verify(key, klen, tok, strlen(tok), 1300819000, 0, NULL), AUTH_E_SIGNATURE);
}

static void test_missing(void **state) {
  assert_int_equal(auth_verify(SECRET, SLEN, NULL, 0, NOW, 30, NULL), AUTH_E_MISSING);
  assert_int_equal(auth_verify(SECRET, SLEN, "", 0, NOW, 30, NULL), AUTH_E_MALFORMED);
}

static void test_alg(void **state) {
  const char *claims = "{\"sub\":\"1\",\"exp\":1700000100}";
  /* alg none, with or without a signature part */
  char none[512];
  char h[128], p[256];
  auth_b64url_encode((const uint8_t *)"{\"alg\":\"none\"}", 14, h, sizeof h);
  auth_b64url_encode((const uint8_t *)claims, strlen(claims), p, sizeof p);
  snprintf(none, sizeof none, "%s.%s.", h, p);
  assert_int_equal(verify(none, NOW, 30, NULL), AUTH_E_ALG);
  /* alg none, but signed anyway with our secret: still refused */
  assert_int_equal(verify(mk("{\"alg\":\"none\"}", claims), NOW, 30, NULL), AUTH_E_ALG);
  static const char *const hdrs[] = {
      "{\"alg\":\"HS512\"}", "{\"alg\":\"hs256\"}", "{\"alg\":\"HS256 \"}", "{\"alg\":\"RS256\"}",
      "{\"typ\":\"JWT\"}",   "{\"alg\":256}",       "{\"alg\":null}",      "{\"alg\":[\"HS256\"]}",
      "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
  };
  for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
    int r = verify(mk(hdrs[i], claims), NOW, 30, NULL);
    if (r != AUTH_E_ALG) fail_msg("header %s gave %s", hdrs[i], auth_result_name(r));
  }
  /* escapes are decoded before comparing; other members are ignored */
  assert_int_equal(verify(mk("{\"kid\":\"k1\",\"alg\":\"HS\\u0032\\u00356\",\"x\":{\"y\":[1,2]}}",
                             claims),
                          NOW, 30, NULL),
                   AUTH_OK);
}

static void test_signature(void **state) {
  char tok[512];
  assert_true(auth_sign(SECRET, SLEN, 7, NOW + 60, tok, sizeof tok) > 0);
  uint8_t other[] = "another-secret-that-is-long-enough!!";
  assert_int_equal(auth_verify(other, sizeof other - 1, tok, strlen(tok), NOW, 30, NULL),
                   AUTH_E_SIGNATURE);
  /* truncated, extended, emptied signature */
  char t2[600];
  size_t n = strlen(tok);
  snprintf(t2, sizeof t2, "%.*s", (int)(n - 4), tok);
  assert_int_equal(verify(t2, NOW, 30, NULL), AUTH_E_SIGNATURE);
  snprintf(t2, sizeof t2, "%sAAAA", tok);
  assert_int_equal(verify(t2, NOW, 30, NULL), AUTH_E_SIGNATURE);
  char *last = strrchr(tok, '.');
  snprintf(t2, sizeof t2, "%.*s.", (int)(last - tok), tok);
  assert_int_equal(verify(t2, NOW, 30, NULL), AUTH_E_SIGNATURE);
  /* the claims changed after signing */
  char *first = strchr(tok, '.');
  first[3] = first[3] == 'A' ? 'B' : 'A';
  int r = verify(tok, NOW, 30, NULL);
  assert_true(r == AUTH_E_SIGNATURE || r == AUTH_E_MALFORMED);
}

static void test_exp_and_leeway(void **state) {
  char tok[512];
  uint64_t sub;
  assert_true(auth_sign(SECRET, SLEN, 5, NOW, tok, sizeof tok) > 0);
  /* valid while now < exp + leeway */
  assert_int_equal(verify(tok, NOW + 29, 30, &sub), AUTH_OK);
  assert_int_equal(verify(tok, NOW + 30, 30, &sub), AUTH_E_EXPIRED);
  assert_int_equal(verify(tok, NOW - 1, 0, &sub), AUTH_OK);
  assert_int_equal(verify(tok, NOW, 0, &sub), AUTH_E_EXPIRED);
  assert_int_equal(verify(tok, NOW + 100000, 3600, &sub), AUTH_E_EXPIRED);
  /* a fraction is accepted and dropped; a huge exp does not overflow */
  assert_int_equal(verify(mkc("{\"sub\":\"5\",\"exp\":1700000000.999}"), NOW - 1, 0, &sub), AUTH_OK);
  assert_int_equal(verify(mkc("{\"sub\":\"5\",\"exp\":18446744073709551615}"), NOW, 3600, &sub),
                   AUTH_OK);
  /* nbf */
  assert_int_equal(verify(mkc("{\"sub\":\"5\",\"exp\":1700000100,\"nbf\":1700000040}"), NOW, 30,
                          &sub),
                   AUTH_E_NOT_YET);
  assert_int_equal(verify(mkc("{\"sub\":\"5\",\"exp\":1700000100,\"nbf\":1700000030}"), NOW, 30,
                          &sub),
                   AUTH_OK);
  assert_int_equal(verify(mkc("{\"sub\":\"5\",\"exp\":1700000100,\"nbf\":\"x\"}"), NOW, 30, &sub),
                   AUTH_E_CLAIMS);
}

static void test_claims_forms(void **state) {
  static const char *const bad[] = {
      "{\"exp\":1700000100}",                               /* no sub */
      "{\"sub\":\"1\"}",                                    /* no exp */
      "{\"sub\":1,\"exp\":1700000100}",                     /* sub a number */
      "{\"sub\":\"0\",\"exp\":1700000100}",                 /* NodeId 0 */
      "{\"sub\":\"01\",\"exp\":1700000100}",                /* leading zero */
      "{\"sub\":\"+1\",\"exp\":1700000100}",                /* sign */
      "{\"sub\":\"-1\",\"exp\":1700000100}",                /* sign */
      "{\"sub\":\" 1\",\"exp\":1700000100}",                /* space */
      "{\"sub\":\"\",\"exp\":1700000100}",                  /* empty */
      "{\"sub\":\"18446744073709551616\",\"exp\":1700000100}", /* 2^64 */
      "{\"sub\":\"99999999999999999999999\",\"exp\":1700000100}",
      "{\"sub\":\"1\",\"exp\":\"1700000100\"}",             /* exp a string */
      "{\"sub\":\"1\",\"exp\":1.7e9}",                      /* exponent */
      "{\"sub\":\"1\",\"exp\":-1}",                         /* negative */
      "{\"sub\":\"1\",\"exp\":null}",
      "{\"sub\":\"1\",\"exp\":184467440737095516150}",      /* over 64 bits */
      "{\"sub\":null,\"exp\":1700000100}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int r = verify(mkc(bad[i]), NOW, 30, NULL);
    if (r != AUTH_E_CLAIMS) fail_msg("claims %s gave %s", bad[i], auth_result_name(r));
  }
  uint64_t sub = 0;
  /* escapes in sub; extra claims ignored; whitespace anywhere JSON allows */
  assert_int_equal(verify(mkc(" {\r\n\t\"iss\" : \"game\", \"sub\":\"\\u0034\\u0032\" ,\"exp\" : "
                              "1700000100 , \"aud\":[\"a\",{\"b\":true}] }\n"),
                          NOW, 30, &sub),
                   AUTH_OK);
  assert_int_equal(sub, 42);
}

static void test_malformed(void **state) {
  char tok[512];
  assert_true(auth_sign(SECRET, SLEN, 9, NOW + 60, tok, sizeof tok) > 0);
  char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
  char t[1200];
  /* wrong number of parts */
  snprintf(t, sizeof t, "%.*s", (int)(d2 - tok), tok);
  assert_int_equal(verify(t, NOW, 30, NULL), AUTH_E_MALFORMED);
  snprintf(t, sizeof t, "%s.x", tok);
  assert_int_equal(verify(t, NOW, 30, NULL), AUTH_E_MALFORMED);
  assert_int_equal(verify("abc", NOW, 30, NULL), AUTH_E_MALFORMED);
  assert_int_equal(verify("..", NOW, 30, NULL), AUTH_E_MALFORMED);
  /* empty header or claims */
  snprintf(t, sizeof t, "%s", d1);
  assert_int_equal(verify(t, NOW, 30, NULL), AUTH_E_MALFORMED);
  /* padding and characters outside base64url */
  snprintf(t, sizeof t, "%.*s=%s", (int)(d1 - tok), tok, d1);
  assert_int_equal(verify(t, NOW, 30, NULL), AUTH_E_MALFORMED);
  snprintf(t, sizeof t, "%s", tok);
  t[1] = '+';
  assert_int_equal(verify(t, NOW, 30, NULL), AUTH_E_MALFORMED);
  t[1] = '\0';
  assert_int_equal(auth_verify(SECRET, SLEN, t, strlen(tok), NOW, 30, NULL), AUTH_E_MALFORMED);
  /* too long */
  char *big = malloc(AUTH_MAX_TOKEN + 2);
  memset(big, 'A', AUTH_MAX_TOKEN + 1);
  big[10] = '.';
  big[20] = '.';
  big[AUTH_MAX_TOKEN + 1] = 0;
  assert_int_equal(verify(big, NOW, 30, NULL), AUTH_E_MALFORMED);
  free(big);
  (void)d2;

  /* JSON that is not a single strict object */
  static const char *const hdrs[] = {
      "[\"HS256\"]",
      "{\"alg\":\"HS256\"} x",
      "{\"alg\":\"HS256\",}",
      "{\"alg\":\"HS256\" \"typ\":\"JWT\"}",
      "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",       /* duplicate member */
      "{\"alg\":\"HS256\",\"a\\u006cg\":\"none\"}", /* duplicate after unescaping */
      "{'alg':'HS256'}",
      "{\"alg\":\"HS256\",\"x\":tru}",
      "{\"alg\":\"HS256\",\"x\":01}",
      "{\"alg\":\"HS256\",\"x\":1.}",
      "{\"alg\":\"HS256\",\"x\":\"\\x\"}",
      "{\"alg\":\"HS256\",\"x\":\"\\ud800\"}",      /* lone surrogate */
      "{\"alg\":\"HS256\",\"x\":\"\\udc00\"}",
      "{\"alg\":\"HS256\",\"x\":\"tab\there\"}",     /* raw control character */
      "{\"alg\":\"HS256\",\"x\":\"\xff\"}",          /* not UTF-8 */
      "{\"alg\":\"HS256\",\"x\":\"\xc0\xaf\"}",      /* overlong */
      "{\"alg\":\"HS256\",\"x\":[[[[[[[[[1]]]]]]]]]}", /* nesting 9 */
      "{\"alg\":\"HS256\"",
      "",
      "{\"alg\":\"HS256\",\"x\":\"unterminated}",
  };
  for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
    int r = verify(mk(hdrs[i], "{\"sub\":\"1\",\"exp\":1700000100}"), NOW, 30, NULL);
    if (r != AUTH_E_MALFORMED) fail_msg("header #%zu %s gave %s", i, hdrs[i], auth_result_name(r));
  }
  /* nesting 8 and a good surrogate pair are fine */
  assert_int_equal(verify(mk("{\"alg\":\"HS256\",\"x\":[[[[[[[[1]]]]]]]],\"y\":\"\\ud83d\\ude00\"}",
                             "{\"sub\":\"1\",\"exp\":1700000100}"),
                          NOW, 30, NULL),
                   AUTH_OK);
  /* claims: duplicate sub is refused, not "last one wins" */
  assert_int_equal(verify(mkc("{\"sub\":\"1\",\"exp\":1700000100,\"sub\":\"2\"}"), NOW, 30, NULL),
                   AUTH_E_MALFORMED);
  assert_int_equal(verify(mkc("\"just a string\""), NOW, 30, NULL), AUTH_E_MALFORMED);
}

static void test_b64url(void **state) {
  static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    char out[32];
    uint8_t dec[32];
    size_t n;
    size_t k = auth_b64url_encode((const uint8_t *)plain[i], strlen(plain[i]), out, sizeof out);
    assert_int_equal(k, strlen(enc[i]));
    assert_string_equal(out, enc[i]);
    assert_int_equal(auth_b64url_decode(enc[i], strlen(enc[i]), dec, sizeof dec, &n), 0);
    assert_int_equal(n, strlen(plain[i]));
    assert_memory_equal(dec, plain[i], n);
  }
  uint8_t all[256], back[256];
  char e[400];
  size_t n;
  for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
  size_t k = auth_b64url_encode(all, 256, e, sizeof e);
  assert_null(strpbrk(e, "+/="));
  assert_int_equal(auth_b64url_decode(e, k, back, sizeof back, &n), 0);
  assert_int_equal(n, 256);
  assert_memory_equal(all, back, 256);
  /* refusals: non-canonical tail bits, 4k+1 length, padding, foreign chars, no room */
  assert_int_equal(auth_b64url_decode("Zh", 2, back, sizeof back, &n), -1);
  assert_int_equal(auth_b64url_decode("Zm8", 3, back, sizeof back, &n), 0);
  assert_int_equal(auth_b64url_decode("Zm9", 3, back, sizeof back, &n), -1);
  assert_int_equal(auth_b64url_decode("Zm9=", 4, back, sizeof back, &n), -1);
  assert_int_equal(auth_b64url_decode("Zm9vY", 5, back, sizeof back, &n), -1);
  assert_int_equal(auth_b64url_decode("Zm/v", 4, back, sizeof back, &n), -1);
  assert_int_equal(auth_b64url_decode("Zm9vYmFy", 8, back, 5, &n), -1);
  assert_int_equal(auth_b64url_encode(all, 3, e, 4), 0);
}

static void test_node_id_parse(void **state) {
  uint64_t v;
  assert_int_equal(auth_parse_node_id("1", 1, &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(auth_parse_node_id("18446744073709551615", 20, &v), 0);
  assert_true(v == UINT64_MAX);
  assert_int_equal(auth_parse_node_id("18446744073709551616", 20, &v), -1);
  assert_int_equal(auth_parse_node_id("0", 1, &v), -1);
  assert_int_equal(auth_parse_node_id("", 0, &v), -1);
  assert_int_equal(auth_parse_node_id("12a", 3, &v), -1);
}

static void test_names(void **state) {
  for (int r = 0; r < AUTH_E_N; r++) {
    assert_string_not_equal(auth_result_name(r), "unknown");
    assert_true(strlen(auth_result_text(r)) > 0);
  }
  assert_string_equal(auth_result_name(AUTH_E_N), "unknown");
  assert_string_equal(auth_result_name(AUTH_E_EXPIRED), "expired");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sign_then_verify), cmocka_unit_test(test_rfc7515_vector),
      cmocka_unit_test(test_missing),          cmocka_unit_test(test_alg),
      cmocka_unit_test(test_signature),        cmocka_unit_test(test_exp_and_leeway),
      cmocka_unit_test(test_claims_forms),     cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_b64url),           cmocka_unit_test(test_node_id_parse),
      cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
