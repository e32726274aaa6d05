/*
 * HS256 JWT verification and signing (see auth.h for what is accepted).
 *
 * Order of checks: shape (three base64url parts, length bound), header
 * (JSON object, alg exactly HS256, no crit), signature (HMAC-SHA256 with
 * GnuTLS, constant-time compare), then the claims.  The claims JSON is only
 * parsed once the signature proved it came from a holder of the secret.
 */
#include "server/auth.h"

#include "proto/proto.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <string.h>

#define HS256_LEN 32
#define DEC_MAX (AUTH_MAX_TOKEN / 4 * 3 + 3)
#define KEY_MAX 64      /* decoded member name we care to compare */
#define MEMBERS_MAX 64  /* top-level members per object */

static const char *const names[AUTH_E_N] = {
    "ok",     "missing", "malformed",     "alg",     "signature",
    "claims", "expired", "not_yet_valid", "node_id",
};

static const char *const texts[AUTH_E_N] = {
    "token accepted",
    "authentication required: HELLO carries no token",
    "malformed token",
    "token algorithm must be HS256",
    "bad token signature",
    "token claims sub and exp missing or invalid",
    "token expired",
    "token not valid yet",
    "HELLO node_id does not match the token's sub",
};

const char *auth_result_name(int r) {
  return r >= 0 && r < AUTH_E_N ? names[r] : "unknown";
}

const char *auth_result_text(int r) {
  return r >= 0 && r < AUTH_E_N ? texts[r] : "unauthorized";
}

/* ---- base64url ---------------------------------------------------------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64val(unsigned char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '-') return 62;
  if (ch == '_') return 63;
  return -1;
}

size_t auth_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap) {
  size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
  if (!out || cap < need + 1) return 0;
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64chars[v >> 18 & 63];
    out[o++] = b64chars[v >> 12 & 63];
    out[o++] = b64chars[v >> 6 & 63];
    out[o++] = b64chars[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = b64chars[v >> 18 & 63];
    out[o++] = b64chars[v >> 12 & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = b64chars[v >> 18 & 63];
    out[o++] = b64chars[v >> 12 & 63];
    out[o++] = b64chars[v >> 6 & 63];
  }
  out[o] = 0;
  return o;
}

int auth_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen) {
  if (n % 4 == 1) return -1;
  size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
  if (need > cap) return -1;
  size_t o = 0, i = 0;
  for (; i + 4 <= n; i += 4) {
    int a = b64val((unsigned char)in[i]), b = b64val((unsigned char)in[i + 1]);
    int c = b64val((unsigned char)in[i + 2]), d = b64val((unsigned char)in[i + 3]);
    if ((a | b | c | d) < 0) return -1;
    uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
    out[o++] = (uint8_t)(v >> 16);
    out[o++] = (uint8_t)(v >> 8);
    out[o++] = (uint8_t)v;
  }
  size_t rest = n - i;
  if (rest >= 2) {
    int a = b64val((unsigned char)in[i]), b = b64val((unsigned char)in[i + 1]);
    int c = rest == 3 ? b64val((unsigned char)in[i + 2]) : 0;
    if ((a | b | c) < 0) return -1;
    uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
    /* canonical: the bits below the last whole byte must be zero */
    if (rest == 2 && (v & 0xFFFF)) return -1;
    if (rest == 3 && (v & 0xFF)) return -1;
    out[o++] = (uint8_t)(v >> 16);
    if (rest == 3) out[o++] = (uint8_t)(v >> 8);
  }
  *outlen = o;
  return 0;
}

/* ---- a strict, minimal JSON reader ------------------------------------- */

typedef struct jp {
  const uint8_t *p, *end;
} jp;

static void jws(jp *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

static int hexval(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int read_u4(jp *j, uint32_t *v) {
  if (j->end - j->p < 4) return -1;
  uint32_t x = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(j->p[i]);
    if (h < 0) return -1;
    x = x << 4 | (uint32_t)h;
  }
  j->p += 4;
  *v = x;
  return 0;
}

/* Emits one decoded byte; past `cap` only the length grows. */
static void emit(uint8_t *out, size_t cap, size_t *n, uint8_t b) {
  if (out && *n < cap) out[*n] = b;
  (*n)++;
}

static void emit_cp(uint8_t *out, size_t cap, size_t *n, uint32_t cp) {
  if (cp < 0x80) {
    emit(out, cap, n, (uint8_t)cp);
  } else if (cp < 0x800) {
    emit(out, cap, n, (uint8_t)(0xC0 | cp >> 6));
    emit(out, cap, n, (uint8_t)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    emit(out, cap, n, (uint8_t)(0xE0 | cp >> 12));
    emit(out, cap, n, (uint8_t)(0x80 | (cp >> 6 & 0x3F)));
    emit(out, cap, n, (uint8_t)(0x80 | (cp & 0x3F)));
  } else {
    emit(out, cap, n, (uint8_t)(0xF0 | cp >> 18));
    emit(out, cap, n, (uint8_t)(0x80 | (cp >> 12 & 0x3F)));
    emit(out, cap, n, (uint8_t)(0x80 | (cp >> 6 & 0x3F)));
    emit(out, cap, n, (uint8_t)(0x80 | (cp & 0x3F)));
  }
}

/* A string at j->p (the opening quote).  Decodes escapes into out (up to
 * cap bytes; *n is the full decoded length).  0 or -1. */
static int jstring(jp *j, uint8_t *out, size_t cap, size_t *n) {
  *n = 0;
  if (j->p >= j->end || *j->p != '"') return -1;
  j->p++;
  while (j->p < j->end) {
    uint8_t c = *j->p++;
    if (c == '"') return 0;
    if (c < 0x20) return -1; /* control characters must be escaped */
    if (c != '\\') {
      emit(out, cap, n, c);
      continue;
    }
    if (j->p >= j->end) return -1;
    c = *j->p++;
    switch (c) {
    case '"': case '\\': case '/': emit(out, cap, n, c); break;
    case 'b': emit(out, cap, n, '\b'); break;
    case 'f': emit(out, cap, n, '\f'); break;
    case 'n': emit(out, cap, n, '\n'); break;
    case 'r': emit(out, cap, n, '\r'); break;
    case 't': emit(out, cap, n, '\t'); break;
    case 'u': {
      uint32_t cp, lo;
      if (read_u4(j, &cp) != 0) return -1;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return -1; /* lone low surrogate */
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') return -1;
        j->p += 2;
        if (read_u4(j, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) return -1;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      emit_cp(out, cap, n, cp);
      break;
    }
    default:
      return -1;
    }
  }
  return -1; /* unterminated */
}

/* A number per RFC 8259: -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?  Sets the span. */
static int jnumber(jp *j, const uint8_t **start, size_t *len) {
  const uint8_t *s = j->p;
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p >= j->end) return -1;
  if (*j->p == '0') {
    j->p++;
  } else if (*j->p >= '1' && *j->p <= '9') {
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  } else {
    return -1;
  }
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  *start = s;
  *len = (size_t)(j->p - s);
  return 0;
}

static int jliteral(jp *j, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) return -1;
  j->p += n;
  return 0;
}

/* Skips any value, nesting at most `depth` more levels. */
static int jskip(jp *j, int depth) {
  jws(j);
  if (j->p >= j->end) return -1;
  uint8_t c = *j->p;
  size_t n;
  if (c == '"') return jstring(j, NULL, 0, &n);
  if (c == 't') return jliteral(j, "true");
  if (c == 'f') return jliteral(j, "false");
  if (c == 'n') return jliteral(j, "null");
  if (c == '-' || (c >= '0' && c <= '9')) {
    const uint8_t *s;
    return jnumber(j, &s, &n);
  }
  if (c != '{' && c != '[') return -1;
  if (depth <= 0) return -1;
  uint8_t close = c == '{' ? '}' : ']';
  j->p++;
  jws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    return 0;
  }
  for (;;) {
    if (c == '{') {
      jws(j);
      if (jstring(j, NULL, 0, &n) != 0) return -1;
      jws(j);
      if (j->p >= j->end || *j->p != ':') return -1;
      j->p++;
    }
    if (jskip(j, depth - 1) != 0) return -1;
    jws(j);
    if (j->p >= j->end) return -1;
    if (*j->p == ',') {
      j->p++;
      continue;
    }
    if (*j->p == close) {
      j->p++;
      return 0;
    }
    return -1;
  }
}

enum { JV_ABSENT = 0, JV_STRING, JV_NUMBER, JV_OTHER };

typedef struct jv {
  int kind;
  uint8_t str[KEY_MAX];
  size_t len; /* full decoded length (may exceed KEY_MAX) */
  const uint8_t *num;
  size_t numlen;
} jv;

/* Parses a whole text that must be one JSON object; fills vals[i] for the
 * member named wanted[i].  Duplicate member names are refused.  0 or -1. */
static int jobject(const uint8_t *text, size_t n, const char *const *wanted, jv *vals,
                   size_t nwanted) {
  static const size_t key_cap = KEY_MAX;
  uint8_t keys[MEMBERS_MAX][KEY_MAX];
  size_t klens[MEMBERS_MAX];
  size_t nkeys = 0;
  jp j = {text, text + n};

  for (size_t i = 0; i < nwanted; i++) vals[i].kind = JV_ABSENT;
  if (!pr_utf8_valid(text, n)) return -1;
  jws(&j);
  if (j.p >= j.end || *j.p != '{') return -1;
  j.p++;
  jws(&j);
  if (j.p < j.end && *j.p == '}') {
    j.p++;
    goto done;
  }
  for (;;) {
    jws(&j);
    if (nkeys == MEMBERS_MAX) return -1;
    uint8_t *k = keys[nkeys];
    size_t kl;
    if (jstring(&j, k, key_cap, &kl) != 0 || kl > key_cap) return -1;
    for (size_t i = 0; i < nkeys; i++)
      if (klens[i] == kl && memcmp(keys[i], k, kl) == 0) return -1; /* duplicate */
    klens[nkeys++] = kl;
    jws(&j);
    if (j.p >= j.end || *j.p != ':') return -1;
    j.p++;
    jws(&j);
    jv *v = NULL;
    for (size_t i = 0; i < nwanted; i++)
      if (strlen(wanted[i]) == kl && memcmp(wanted[i], k, kl) == 0) v = &vals[i];
    if (v && j.p < j.end && *j.p == '"') {
      v->kind = JV_STRING;
      if (jstring(&j, v->str, sizeof v->str, &v->len) != 0) return -1;
    } else if (v && j.p < j.end && (*j.p == '-' || (*j.p >= '0' && *j.p <= '9'))) {
      v->kind = JV_NUMBER;
      if (jnumber(&j, &v->num, &v->numlen) != 0) return -1;
    } else {
      if (v) v->kind = JV_OTHER;
      if (jskip(&j, AUTH_MAX_DEPTH) != 0) return -1;
    }
    jws(&j);
    if (j.p >= j.end) return -1;
    if (*j.p == ',') {
      j.p++;
      continue;
    }
    if (*j.p == '}') {
      j.p++;
      break;
    }
    return -1;
  }
done:
  jws(&j);
  return j.p == j.end ? 0 : -1;
}

/* ---- claims ---------------------------------------------------------------- */

int auth_parse_node_id(const char *s, size_t n, uint64_t *v) {
  if (n == 0 || n > 20 || s[0] == '0') return -1;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    unsigned d = (unsigned)(s[i] - '0');
    if (x > (UINT64_MAX - d) / 10) return -1;
    x = x * 10 + d;
  }
  *v = x;
  return 0;
}

/* A NumericDate: digits with an optional fraction (dropped); no sign, no
 * exponent, at most UINT64_MAX. */
static int numeric_date(const jv *v, uint64_t *out) {
  if (v->kind != JV_NUMBER) return -1;
  uint64_t x = 0;
  size_t i = 0;
  for (; i < v->numlen && v->num[i] >= '0' && v->num[i] <= '9'; i++) {
    unsigned d = (unsigned)(v->num[i] - '0');
    if (x > (UINT64_MAX - d) / 10) return -1;
    x = x * 10 + d;
  }
  if (i == 0) return -1; /* a sign */
  if (i < v->numlen) {
    if (v->num[i] != '.') return -1; /* exponent */
    for (i++; i < v->numlen; i++)
      if (v->num[i] < '0' || v->num[i] > '9') return -1;
  }
  *out = x;
  return 0;
}

static int hs256(const uint8_t *secret, size_t slen, const void *data, size_t n,
                 uint8_t out[HS256_LEN]) {
  return gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, slen, data, n, out) == 0 ? 0 : -1;
}

int auth_verify(const uint8_t *secret, size_t secret_len, const char *tok, size_t len,
                uint64_t now_s, uint32_t leeway_s, uint64_t *sub) {
  if (!tok) return AUTH_E_MISSING;
  if (len == 0 || len > AUTH_MAX_TOKEN) return AUTH_E_MALFORMED;
  const char *d1 = memchr(tok, '.', len);
  if (!d1) return AUTH_E_MALFORMED;
  const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
  if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok))) return AUTH_E_MALFORMED;
  size_t hlen = (size_t)(d1 - tok), plen = (size_t)(d2 - d1 - 1);
  size_t slen = len - (size_t)(d2 + 1 - tok);
  if (hlen == 0 || plen == 0) return AUTH_E_MALFORMED;

  /* header */
  uint8_t buf[DEC_MAX];
  size_t n;
  if (auth_b64url_decode(tok, hlen, buf, sizeof buf, &n) != 0) return AUTH_E_MALFORMED;
  static const char *const hdr_names[] = {"alg", "crit"};
  jv hv[2];
  if (jobject(buf, n, hdr_names, hv, 2) != 0) return AUTH_E_MALFORMED;
  if (hv[0].kind != JV_STRING || hv[0].len != 5 || memcmp(hv[0].str, "HS256", 5) != 0)
    return AUTH_E_ALG;
  if (hv[1].kind != JV_ABSENT) return AUTH_E_ALG;

  /* signature */
  uint8_t sig[HS256_LEN + 3], mac[HS256_LEN];
  if (slen == 0 || auth_b64url_decode(d2 + 1, slen, sig, sizeof sig, &n) != 0 || n != HS256_LEN)
    return AUTH_E_SIGNATURE;
  if (!secret || secret_len == 0 || hs256(secret, secret_len, tok, (size_t)(d2 - tok), mac) != 0)
    return AUTH_E_SIGNATURE;
  if (gnutls_memcmp(sig, mac, HS256_LEN) != 0) return AUTH_E_SIGNATURE;

  /* claims */
  if (auth_b64url_decode(d1 + 1, plen, buf, sizeof buf, &n) != 0) return AUTH_E_MALFORMED;
  static const char *const claim_names[] = {"sub", "exp", "nbf"};
  jv cv[3];
  if (jobject(buf, n, claim_names, cv, 3) != 0) return AUTH_E_MALFORMED;
  uint64_t id, exp, nbf;
  if (cv[0].kind != JV_STRING || cv[0].len > sizeof cv[0].str ||
      auth_parse_node_id((const char *)cv[0].str, cv[0].len, &id) != 0)
    return AUTH_E_CLAIMS;
  if (numeric_date(&cv[1], &exp) != 0) return AUTH_E_CLAIMS;
  if (cv[2].kind != JV_ABSENT && numeric_date(&cv[2], &nbf) != 0) return AUTH_E_CLAIMS;
  /* valid while now < exp + leeway, computed without overflow */
  if (exp <= UINT64_MAX - leeway_s && now_s >= exp + leeway_s) return AUTH_E_EXPIRED;
  if (cv[2].kind != JV_ABSENT && now_s <= UINT64_MAX - leeway_s && now_s + leeway_s < nbf)
    return AUTH_E_NOT_YET;
  if (sub) *sub = id;
  return AUTH_OK;
}

/* ---- signing -------------------------------------------------------------- */

size_t auth_sign_raw(const uint8_t *secret, size_t secret_len, const char *header_json,
                     const char *claims_json, char *out, size_t cap) {
  size_t hl = strlen(header_json), cl = strlen(claims_json);
  size_t o = auth_b64url_encode((const uint8_t *)header_json, hl, out, cap);
  if ((o == 0 && hl != 0) || o + 1 >= cap) return 0;
  out[o++] = '.';
  size_t k = auth_b64url_encode((const uint8_t *)claims_json, cl, out + o, cap - o);
  if (k == 0 && cl != 0) return 0;
  o += k;
  uint8_t mac[HS256_LEN];
  if (hs256(secret, secret_len, out, o, mac) != 0) return 0;
  if (o + 1 >= cap) return 0;
  out[o++] = '.';
  k = auth_b64url_encode(mac, HS256_LEN, out + o, cap - o);
  if (k == 0) return 0;
  return o + k;
}

size_t auth_sign(const uint8_t *secret, size_t secret_len, uint64_t sub, uint64_t exp, char *out,
                 size_t cap) {
  if (sub == 0) return 0;
  char claims[96];
  snprintf(claims, sizeof claims, "{\"sub\":\"%llu\",\"exp\":%llu}", (unsigned long long)sub,
           (unsigned long long)exp);
  return auth_sign_raw(secret, secret_len, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, out, cap);
}
