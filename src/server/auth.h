/*
 * Token authentication (protocol section 8): HS256 JSON Web Tokens
 * (RFC 7519, compact form, RFC 7515 JWS) checked against a shared secret.
 *
 * Sans I/O: a token, a secret and "now" in, a NodeId or a reason out.  The
 * decoder is strict and total: every input gives AUTH_OK or one of the
 * AUTH_E_* reasons, never reads outside the token, never allocates.
 *
 * Accepted tokens:
 *   header  a JSON object whose "alg" is exactly "HS256"; a "crit" member
 *           (critical extensions we cannot honour) is refused; "typ", "kid"
 *           and any other member are ignored.
 *   claims  a JSON object with "sub", a JSON *string* holding the NodeId in
 *           canonical decimal (1 to 18446744073709551615, no sign, no
 *           leading zero), and "exp", a JSON number of Unix seconds (digits,
 *           an optional fraction that is ignored; no sign, no exponent).
 *           "nbf", when present, is enforced the same way; every other
 *           claim ("iat", "iss", "aud", ...) is ignored.
 *   both    UTF-8, no duplicate member names at the top level, nothing but
 *           whitespace after the object, nesting at most AUTH_MAX_DEPTH.
 *   parts   base64url without padding, canonical (unused bits zero); the
 *           signature is exactly 32 bytes of HMAC-SHA256 over
 *           "<header>.<claims>" as sent, compared in constant time.
 * A token is valid while now < exp + leeway (and, with nbf, now + leeway >= nbf).
 */
#ifndef ISSUN_SERVER_AUTH_H
#define ISSUN_SERVER_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_MAX_TOKEN 4096  /* bytes of a compact token we look at */
#define AUTH_MIN_SECRET 32   /* RFC 7518 3.2: an HS256 key at least as long as the hash */
#define AUTH_MAX_SECRET 1024 /* bytes */
#define AUTH_MAX_DEPTH 8     /* nesting of JSON values inside header and claims */
#define AUTH_DEFAULT_LEEWAY_S 30

/* Why a token was refused.  Every one becomes ERROR UNAUTHORIZED on the wire;
 * the reason goes to the log, the metrics and the ERROR message. */
enum auth_result {
  AUTH_OK = 0,
  AUTH_E_MISSING,   /* HELLO carried no token */
  AUTH_E_MALFORMED, /* not three base64url parts, not JSON objects, too long */
  AUTH_E_ALG,       /* alg is not HS256 ("none" included), or crit present */
  AUTH_E_SIGNATURE, /* signature is not HMAC-SHA256 of the token with our secret */
  AUTH_E_CLAIMS,    /* sub or exp missing or of the wrong form */
  AUTH_E_EXPIRED,   /* now >= exp + leeway */
  AUTH_E_NOT_YET,   /* now + leeway < nbf */
  AUTH_E_NODE_ID,   /* HELLO.node_id is neither 0 nor sub (checked by the relay) */
  AUTH_E_N
};

/* "missing", "malformed", "alg", "signature", "claims", "expired",
 * "not_yet_valid", "node_id": metric labels.  "unknown" otherwise. */
const char *auth_result_name(int r);

/* A sentence for the ERROR frame and the log ("token expired", ...). */
const char *auth_result_text(int r);

/* Verifies a compact JWS token of `len` bytes (not NUL-terminated) with the
 * HS256 secret.  now_s: Unix seconds.  Returns AUTH_OK and *sub (the NodeId),
 * or an AUTH_E_* reason (AUTH_E_MISSING when tok is NULL). */
int auth_verify(const uint8_t *secret, size_t secret_len, const char *tok, size_t len,
                uint64_t now_s, uint32_t leeway_s, uint64_t *sub);

/* Writes a token {"alg":"HS256","typ":"JWT"}.{"sub":"<sub>","exp":<exp>}
 * signed with the secret, NUL-terminated.  Returns its length, or 0 when it
 * does not fit in cap, sub is 0, or HMAC fails. */
size_t auth_sign(const uint8_t *secret, size_t secret_len, uint64_t sub, uint64_t exp, char *out,
                 size_t cap);

/* Same, with any claims JSON text (for tests and tools): the header given
 * as JSON text too.  Returns the length or 0. */
size_t auth_sign_raw(const uint8_t *secret, size_t secret_len, const char *header_json,
                     const char *claims_json, char *out, size_t cap);

/* base64url without padding.  Encode: returns the length written (NUL
 * added), or 0 when it does not fit.  Decode: strict (alphabet, no '=', no
 * length of 4k+1, unused bits zero); returns 0 and *outlen, or -1. */
size_t auth_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap);
int auth_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen);

/* Parses a canonical NodeId ("1".."18446744073709551615"): 0 and *v, or -1. */
int auth_parse_node_id(const char *s, size_t n, uint64_t *v);

#endif
