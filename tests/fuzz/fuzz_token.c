/*
 * libFuzzer target: the input is a HELLO token as an attacker would send
 * it.  auth_verify must give a known result for anything; a token it
 * accepts must carry a NodeId; what base64url decoding accepts must
 * re-encode to exactly the input (the decoder is canonical); and tokens we
 * sign ourselves, with claims JSON taken from the input, must never be
 * refused for their signature.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "server/auth.h"

static const uint8_t SECRET[] = "fuzz-secret-0123456789abcdef0123456789";
#define SLEN (sizeof(SECRET) - 1)
#define NOW 1700000000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* 1. the token as sent */
  uint64_t sub = 0;
  int r = auth_verify(SECRET, SLEN, (const char *)data, size, NOW, 30, &sub);
  FUZZ_CHECK(r >= AUTH_OK && r < AUTH_E_N && r != AUTH_E_MISSING && r != AUTH_E_NODE_ID);
  if (r == AUTH_OK) FUZZ_CHECK(sub != 0);

  /* 2. base64url is canonical: decode then encode gives the input back */
  static uint8_t dec[AUTH_MAX_TOKEN];
  static char enc[AUTH_MAX_TOKEN * 2];
  size_t n;
  if (size <= AUTH_MAX_TOKEN && auth_b64url_decode((const char *)data, size, dec, sizeof dec, &n) == 0) {
    size_t k = auth_b64url_encode(dec, n, enc, sizeof enc);
    FUZZ_CHECK(k == size && memcmp(enc, data, size) == 0);
  }

  /* 3. our own signature over any claims text verifies (or the claims are
   * refused for what they say, never for the signature) */
  if (size < 2048) {
    static char claims[2048], tok[8192];
    memcpy(claims, data, size);
    claims[size] = 0;
    size_t tl = auth_sign_raw(SECRET, SLEN, "{\"alg\":\"HS256\"}", claims, tok, sizeof tok);
    if (tl > 0 && strlen(claims) > 0) {
      r = auth_verify(SECRET, SLEN, tok, tl, NOW, 30, &sub);
      FUZZ_CHECK(r == AUTH_OK || r == AUTH_E_MALFORMED || r == AUTH_E_CLAIMS ||
                 r == AUTH_E_EXPIRED || r == AUTH_E_NOT_YET);
      /* one flipped bit in the signature is always caught */
      tok[tl - 1] = tok[tl - 1] == 'A' ? 'B' : 'A';
      r = auth_verify(SECRET, SLEN, tok, tl, NOW, 30, &sub);
      FUZZ_CHECK(r == AUTH_E_SIGNATURE);
    }
  }
  return 0;
}
