/*
 * TLS 1.3 for QUIC on GnuTLS 3.7: credentials, sessions, ALPN and the
 * client's verification modes.  See tls.h for the contract.
 *
 * ALPN enforcement on the server.  GnuTLS's GNUTLS_ALPN_MANDATORY only acts
 * when the ClientHello carries an ALPN extension: an offer without "issun/1"
 * fails inside the extension parser with GNUTLS_E_NO_APPLICATION_PROTOCOL,
 * but a ClientHello with no ALPN extension at all is let through (3.7.9,
 * lib/ext/alpn.c: the check lives in the extension's receive function, which
 * is not called for an absent extension).  So every server session also gets
 * a post-ClientHello hook that looks at what was selected and at whether the
 * extension was present, and fails the handshake with
 * GNUTLS_E_NO_APPLICATION_PROTOCOL (alert no_application_protocol, QUIC
 * CRYPTO_ERROR 0x178) for a missing extension unless legacy is allowed, and
 * for any offer that did not end in "issun/1".  The session's user pointer
 * belongs to ngtcp2, so the legacy choice is encoded by which hook is set.
 */
#include "quic/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define ALPN_LEN (sizeof(IQ_ALPN) - 1)
#define TLS_EXT_ALPN 16
#define MAX_PEM_FILE (4u << 20) /* a certificate chain or key beyond 4 MiB is not one */

static const char tls_priority[] = "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3:"
                                   "-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
                                   "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1";

struct iq_tls_server {
  gnutls_certificate_credentials_t cred;
  /* Parsed once and shared by every session: gnutls_priority_set_direct()
   * per handshake cost about 8 KB per connection and a parse each time. */
  gnutls_priority_t prio;
  char fpr[IQ_FPR_HEX_LEN + 1];
};

enum client_mode { MODE_CA = 0, MODE_PIN, MODE_INSECURE };

/* Clients share one parsed priority for the whole process, like the server's
 * (parsing it per connect cost about 8 KB and a parse each time).  It is
 * immutable once built and GnuTLS allows sharing it across threads; it lives
 * until exit. */
static gnutls_priority_t client_prio;
static int client_prio_rv = -1;
static pthread_once_t client_prio_once = PTHREAD_ONCE_INIT;

static void client_prio_init(void) {
  client_prio_rv = gnutls_priority_init(&client_prio, tls_priority, NULL);
}

#define MAX_CLIENT_NAMES 256

struct iq_tls_client {
  gnutls_certificate_credentials_t cred;
  enum client_mode mode;
  uint8_t pin[32];
  /* gnutls_session_set_verify_cert() keeps the host name pointer for the
   * session's lifetime, so the names verified are kept here, one copy per
   * distinct name, until the client is freed (after its sessions). */
  char **names;
  size_t nnames;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static void hex_fpr(const uint8_t digest[32], char *out) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < 32; i++) {
    out[i * 3] = hex[digest[i] >> 4];
    out[i * 3 + 1] = hex[digest[i] & 0xf];
    out[i * 3 + 2] = (i == 31) ? '\0' : ':';
  }
}

void iq_tls_fingerprint_der(const uint8_t *der, size_t len, char *out) {
  uint8_t digest[32];
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, der, len, digest) < 0) {
    out[0] = '\0';
    return;
  }
  hex_fpr(digest, out);
}

/* ---- files ------------------------------------------------------------ */

/* Reads a whole (small) file.  `what` names it in errors ("certificate").
 * Returns 0, or -ENOENT when it does not exist, or -1 (err set). */
static int read_file(const char *path, const char *what, gnutls_datum_t *out, char *err,
                     size_t errlen) {
  struct stat st;
  FILE *f = NULL;
  uint8_t *buf = NULL;
  int rv = -1;

  if (stat(path, &st) != 0) {
    int e = errno;
    set_err(err, errlen, "%s file '%s': %s", what, path,
            e == ENOENT ? "does not exist" : strerror(e));
    return e == ENOENT ? -ENOENT : -1;
  }
  if (S_ISDIR(st.st_mode)) {
    set_err(err, errlen, "%s file '%s' is a directory", what, path);
    return -1;
  }
  f = fopen(path, "rb");
  if (!f) {
    set_err(err, errlen, "cannot read %s file '%s': %s", what, path, strerror(errno));
    return -1;
  }
  if (st.st_size > (off_t)MAX_PEM_FILE) {
    set_err(err, errlen, "%s file '%s' is too large to be PEM (%lld bytes)", what, path,
            (long long)st.st_size);
    goto out;
  }
  size_t cap = (size_t)st.st_size + 1, n = 0;
  buf = malloc(cap);
  if (!buf) {
    set_err(err, errlen, "%s file '%s': out of memory", what, path);
    goto out;
  }
  for (;;) {
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0 || n == cap)
      break;
  }
  if (ferror(f)) {
    set_err(err, errlen, "cannot read %s file '%s': %s", what, path, strerror(errno));
    goto out;
  }
  if (n == cap || n == 0) {
    set_err(err, errlen, "%s file '%s' is %s", what, path, n == 0 ? "empty" : "changing");
    goto out;
  }
  buf[n] = '\0';
  out->data = buf;
  out->size = (unsigned)n;
  buf = NULL;
  rv = 0;
out:
  free(buf);
  fclose(f);
  return rv;
}

/* ---- server credentials ----------------------------------------------- */

static int load_pem(iq_tls_server *s, const char *cert_path, const char *key_path, char *err,
                    size_t errlen) {
  gnutls_datum_t cdata = {NULL, 0}, kdata = {NULL, 0};
  gnutls_x509_crt_t *crts = NULL;
  unsigned ncrts = 0;
  gnutls_x509_privkey_t key = NULL;
  int rv = -1, grv;

  if (read_file(cert_path, "certificate", &cdata, err, errlen) != 0)
    goto out;
  if (!key_path || !*key_path) {
    set_err(err, errlen, "no key file given for certificate '%s'", cert_path);
    goto out;
  }
  if (read_file(key_path, "key", &kdata, err, errlen) != 0)
    goto out;

  grv = gnutls_x509_crt_list_import2(&crts, &ncrts, &cdata, GNUTLS_X509_FMT_PEM,
                                     GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
  if (grv == GNUTLS_E_CERTIFICATE_LIST_UNSORTED) {
    set_err(err, errlen,
            "certificate file '%s': the chain is out of order (expected the leaf first, "
            "then each issuer)",
            cert_path);
    goto out;
  }
  if (grv < 0 || ncrts == 0) {
    set_err(err, errlen, "certificate file '%s' holds no readable PEM certificate (%s)", cert_path,
            grv < 0 ? gnutls_strerror(grv) : "empty");
    goto out;
  }

  if ((grv = gnutls_x509_privkey_init(&key)) < 0) {
    set_err(err, errlen, "key file '%s': %s", key_path, gnutls_strerror(grv));
    goto out;
  }
  grv = gnutls_x509_privkey_import2(key, &kdata, GNUTLS_X509_FMT_PEM, NULL, 0);
  if (grv < 0) {
    if (strstr((const char *)kdata.data, "ENCRYPTED"))
      set_err(err, errlen, "key file '%s' is encrypted with a passphrase, which is not supported",
              key_path);
    else
      set_err(err, errlen,
              "key file '%s' holds no readable PEM private key (ECDSA, Ed25519 or RSA; "
              "PKCS#8 or traditional): %s",
              key_path, gnutls_strerror(grv));
    goto out;
  }

  grv = gnutls_certificate_set_x509_key(s->cred, crts, ncrts, key);
  if (grv == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
    set_err(err, errlen, "key file '%s' does not match the certificate in '%s'", key_path,
            cert_path);
    goto out;
  }
  if (grv < 0) {
    set_err(err, errlen, "cannot use certificate '%s' with key '%s': %s", cert_path, key_path,
            gnutls_strerror(grv));
    goto out;
  }

  uint8_t digest[32];
  size_t dlen = sizeof(digest);
  grv = gnutls_x509_crt_get_fingerprint(crts[0], GNUTLS_DIG_SHA256, digest, &dlen);
  if (grv < 0 || dlen != sizeof(digest)) {
    set_err(err, errlen, "certificate file '%s': cannot compute its fingerprint", cert_path);
    goto out;
  }
  hex_fpr(digest, s->fpr);
  rv = 0;
out:
  if (key)
    gnutls_x509_privkey_deinit(key);
  for (unsigned i = 0; i < ncrts; i++)
    gnutls_x509_crt_deinit(crts[i]);
  gnutls_free(crts);
  if (kdata.data) {
    gnutls_memset(kdata.data, 0, kdata.size);
    free(kdata.data);
  }
  free(cdata.data);
  return rv;
}

/* A self-signed ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1. */
static int generate_self_signed(iq_tls_server *s, char *err, size_t errlen) {
  static const char cn[] = "localhost";
  static const uint8_t ip4[4] = {127, 0, 0, 1};
  static const uint8_t ip6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  uint8_t serial[16], keyid[64], digest[32];
  size_t keyid_len = sizeof(keyid), dlen = sizeof(digest);
  time_t now = time(NULL);
  const char *step = "key generation";
  int grv;

  if ((grv = gnutls_x509_privkey_init(&key)) < 0)
    goto fail;
  grv = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                     GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  if (grv < 0)
    goto fail;

  step = "certificate";
  if ((grv = gnutls_x509_crt_init(&crt)) < 0)
    goto fail;
  if ((grv = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial))) < 0)
    goto fail;
  serial[0] = (uint8_t)((serial[0] & 0x7f) | 0x40); /* positive, full length */
  if ((grv = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
      (grv = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
      (grv = gnutls_x509_crt_set_activation_time(crt, now - 3600)) < 0 ||
      (grv = gnutls_x509_crt_set_expiration_time(crt, now + 365L * 24 * 3600)) < 0 ||
      (grv = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
                                           sizeof(cn) - 1)) < 0 ||
      (grv = gnutls_x509_crt_set_key(crt, key)) < 0 ||
      (grv = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, cn, sizeof(cn) - 1,
                                                  GNUTLS_FSAN_APPEND)) < 0 ||
      (grv = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip4, sizeof(ip4),
                                                  GNUTLS_FSAN_APPEND)) < 0 ||
      (grv = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip6, sizeof(ip6),
                                                  GNUTLS_FSAN_APPEND)) < 0 ||
      (grv = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
      (grv = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
      (grv = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
      (grv = gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA1, keyid, &keyid_len)) < 0 ||
      (grv = gnutls_x509_crt_set_subject_key_id(crt, keyid, keyid_len)) < 0)
    goto fail;
  step = "signing";
  if ((grv = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0)
    goto fail;
  step = "credentials";
  if ((grv = gnutls_certificate_set_x509_key(s->cred, &crt, 1, key)) < 0)
    goto fail;
  step = "fingerprint";
  grv = gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, digest, &dlen);
  if (grv < 0)
    goto fail;
  hex_fpr(digest, s->fpr);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
  return 0;
fail:
  set_err(err, errlen, "cannot generate a self-signed certificate (%s): %s", step,
          gnutls_strerror(grv));
  if (crt)
    gnutls_x509_crt_deinit(crt);
  if (key)
    gnutls_x509_privkey_deinit(key);
  return -1;
}

int iq_tls_server_new(iq_tls_server **out, const char *cert_path, const char *key_path,
                      int allow_generate, int *generated, char *err, size_t errlen) {
  iq_tls_server *s;
  struct stat st;
  int grv, missing;

  *out = NULL;
  if (generated)
    *generated = 0;
  s = calloc(1, sizeof(*s));
  if (!s) {
    set_err(err, errlen, "out of memory");
    return -1;
  }
  if ((grv = gnutls_certificate_allocate_credentials(&s->cred)) < 0) {
    set_err(err, errlen, "cannot allocate TLS credentials: %s", gnutls_strerror(grv));
    free(s);
    return -1;
  }
  if ((grv = gnutls_priority_init(&s->prio, tls_priority, NULL)) < 0) {
    set_err(err, errlen, "cannot set up TLS priorities: %s", gnutls_strerror(grv));
    s->prio = NULL;
    goto fail;
  }

  missing = !cert_path || !*cert_path || (stat(cert_path, &st) != 0 && errno == ENOENT);
  if (missing && allow_generate) {
    if (generate_self_signed(s, err, errlen) != 0)
      goto fail;
    if (generated)
      *generated = 1;
  } else if (!cert_path || !*cert_path) {
    set_err(err, errlen, "no certificate file given");
    goto fail;
  } else if (load_pem(s, cert_path, key_path, err, errlen) != 0) {
    goto fail;
  }
  *out = s;
  return 0;
fail:
  if (s->prio)
    gnutls_priority_deinit(s->prio);
  gnutls_certificate_free_credentials(s->cred);
  free(s);
  return -1;
}

void iq_tls_server_free(iq_tls_server *s) {
  if (!s)
    return;
  if (s->prio)
    gnutls_priority_deinit(s->prio);
  gnutls_certificate_free_credentials(s->cred);
  free(s);
}

const char *iq_tls_server_fingerprint(const iq_tls_server *s) {
  return s->fpr;
}

/* ---- ALPN -------------------------------------------------------------- */

int iq_tls_alpn_is_issun(gnutls_session_t sess) {
  gnutls_datum_t p;
  if (gnutls_alpn_get_selected_protocol(sess, &p) != 0)
    return 0;
  return p.size == ALPN_LEN && memcmp(p.data, IQ_ALPN, ALPN_LEN) == 0;
}

static int find_alpn_ext(void *ctx, unsigned tls_id, const unsigned char *data, unsigned size) {
  (void)data;
  (void)size;
  if (tls_id == TLS_EXT_ALPN)
    *(int *)ctx = 1;
  return 0;
}

/* Common body of the two ClientHello hooks.  By the time a POST hook for the
 * ClientHello runs, GnuTLS has parsed every extension (handshake.c calls it
 * after read_client_hello), so the ALPN selection is final. */
static int check_client_alpn(gnutls_session_t sess, const gnutls_datum_t *msg, int allow_legacy) {
  int offered = 0, rv;

  if (iq_tls_alpn_is_issun(sess))
    return 0;
  rv = gnutls_ext_raw_parse(&offered, find_alpn_ext, msg, GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO);
  if (rv < 0 && rv != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
    return rv;
  if (!offered && allow_legacy)
    return 0;
  return GNUTLS_E_NO_APPLICATION_PROTOCOL;
}

static int hook_strict(gnutls_session_t sess, unsigned htype, unsigned when, unsigned incoming,
                       const gnutls_datum_t *msg) {
  if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || when != GNUTLS_HOOK_POST || !incoming)
    return 0;
  return check_client_alpn(sess, msg, 0);
}

static int hook_legacy(gnutls_session_t sess, unsigned htype, unsigned when, unsigned incoming,
                       const gnutls_datum_t *msg) {
  if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || when != GNUTLS_HOOK_POST || !incoming)
    return 0;
  return check_client_alpn(sess, msg, 1);
}

/* Client side: when the server's Finished arrives, its EncryptedExtensions
 * have been parsed; a server that did not select "issun/1" is refused. */
static int hook_client(gnutls_session_t sess, unsigned htype, unsigned when, unsigned incoming,
                       const gnutls_datum_t *msg) {
  (void)msg;
  if (htype != GNUTLS_HANDSHAKE_FINISHED || when != GNUTLS_HOOK_POST || !incoming)
    return 0;
  return iq_tls_alpn_is_issun(sess) ? 0 : GNUTLS_E_NO_APPLICATION_PROTOCOL;
}

static const gnutls_datum_t alpn_issun = {(unsigned char *)IQ_ALPN, (unsigned)ALPN_LEN};

/* ---- sessions ---------------------------------------------------------- */

int iq_tls_server_session(iq_tls_server *s, int allow_legacy, gnutls_session_t *out) {
  gnutls_session_t sess = NULL;

  *out = NULL;
  if (gnutls_init(&sess, GNUTLS_SERVER | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA |
                             GNUTLS_NO_AUTO_SEND_TICKET) != 0)
    return -1;
  if (gnutls_priority_set(sess, s->prio) != 0)
    goto fail;
  if (ngtcp2_crypto_gnutls_configure_server_session(sess) != 0)
    goto fail;
  if (gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, s->cred) != 0)
    goto fail;
  if (gnutls_alpn_set_protocols(sess, &alpn_issun, 1, GNUTLS_ALPN_MANDATORY) != 0)
    goto fail;
  gnutls_handshake_set_hook_function(sess, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_POST,
                                     allow_legacy ? hook_legacy : hook_strict);
  *out = sess;
  return 0;
fail:
  gnutls_deinit(sess);
  return -1;
}

/* ---- client ------------------------------------------------------------ */

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* 64 hex digits, optionally a ':' after any complete pair but the last. */
static int parse_pin(const char *s, uint8_t pin[32]) {
  size_t n = 0;
  for (const char *p = s; *p;) {
    if (n == 32)
      return -1;
    int hi = hexval((unsigned char)p[0]);
    int lo = hi < 0 ? -1 : hexval((unsigned char)p[1]);
    if (lo < 0)
      return -1;
    pin[n++] = (uint8_t)(hi << 4 | lo);
    p += 2;
    if (*p == ':') {
      p++;
      if (!*p)
        return -1;
    }
  }
  return n == 32 ? 0 : -1;
}

int iq_tls_client_new(iq_tls_client **out, const iq_tls_client_opts *o, char *err, size_t errlen) {
  static const iq_tls_client_opts defaults = {NULL, NULL, 0};
  iq_tls_client *c;
  int grv;

  *out = NULL;
  if (!o)
    o = &defaults;
  c = calloc(1, sizeof(*c));
  if (!c) {
    set_err(err, errlen, "out of memory");
    return -1;
  }
  if (o->pin_sha256) {
    if (parse_pin(o->pin_sha256, c->pin) != 0) {
      set_err(err, errlen,
              "pin '%s' is not a SHA-256 fingerprint (expected 64 hex digits, "
              "optionally as pairs joined by ':')",
              o->pin_sha256);
      free(c);
      return -1;
    }
    c->mode = MODE_PIN;
  } else if (o->insecure) {
    c->mode = MODE_INSECURE;
  } else {
    c->mode = MODE_CA;
  }

  if ((grv = gnutls_certificate_allocate_credentials(&c->cred)) < 0) {
    set_err(err, errlen, "cannot allocate TLS credentials: %s", gnutls_strerror(grv));
    free(c);
    return -1;
  }
  if (c->mode == MODE_CA) {
    if (o->ca_file) {
      gnutls_datum_t data = {NULL, 0};
      if (read_file(o->ca_file, "CA", &data, err, errlen) != 0)
        goto fail;
      grv = gnutls_certificate_set_x509_trust_mem(c->cred, &data, GNUTLS_X509_FMT_PEM);
      free(data.data);
      if (grv <= 0) {
        set_err(err, errlen, "CA file '%s' holds no readable PEM certificate%s%s", o->ca_file,
                grv < 0 ? ": " : "", grv < 0 ? gnutls_strerror(grv) : "");
        goto fail;
      }
    } else {
      grv = gnutls_certificate_set_x509_system_trust(c->cred);
      if (grv <= 0) {
        set_err(err, errlen, "the system CA store %s%s",
                grv < 0 ? "cannot be loaded: " : "is empty", grv < 0 ? gnutls_strerror(grv) : "");
        goto fail;
      }
    }
  }
  *out = c;
  return 0;
fail:
  gnutls_certificate_free_credentials(c->cred);
  free(c);
  return -1;
}

void iq_tls_client_free(iq_tls_client *c) {
  if (!c)
    return;
  gnutls_certificate_free_credentials(c->cred);
  for (size_t i = 0; i < c->nnames; i++)
    free(c->names[i]);
  free(c->names);
  free(c);
}

/* A copy of name that lives as long as the client, or NULL. */
static const char *intern_name(iq_tls_client *c, const char *name) {
  char **grown, *copy;
  for (size_t i = 0; i < c->nnames; i++)
    if (strcmp(c->names[i], name) == 0)
      return c->names[i];
  if (c->nnames == MAX_CLIENT_NAMES)
    return NULL;
  grown = realloc(c->names, (c->nnames + 1) * sizeof(*grown));
  if (!grown)
    return NULL;
  c->names = grown;
  copy = strdup(name);
  if (!copy)
    return NULL;
  c->names[c->nnames++] = copy;
  return copy;
}

/* Copies server_name without the brackets of "[v6]" into buf; returns 1 when
 * it is an IP literal, 0 for a host name, -1 when it does not fit. */
static int host_form(const char *name, char *buf, size_t buflen) {
  size_t n = strlen(name);
  unsigned char tmp[sizeof(struct in6_addr)];
  if (n >= 2 && name[0] == '[' && name[n - 1] == ']') {
    name++;
    n -= 2;
  }
  if (n >= buflen)
    return -1;
  memcpy(buf, name, n);
  buf[n] = '\0';
  return inet_pton(AF_INET, buf, tmp) == 1 || inet_pton(AF_INET6, buf, tmp) == 1;
}

int iq_tls_client_session(iq_tls_client *c, const char *server_name, gnutls_session_t *out) {
  gnutls_session_t sess = NULL;
  char host[256];
  int ip = 0;

  *out = NULL;
  if (server_name && *server_name) {
    ip = host_form(server_name, host, sizeof(host));
    if (ip < 0)
      return -1;
  } else if (c->mode == MODE_CA) {
    return -1; /* a CA-verified connection needs a name to verify */
  } else {
    host[0] = '\0';
  }

  if (pthread_once(&client_prio_once, client_prio_init) != 0 || client_prio_rv < 0)
    return -1;
  /* One key share, X25519, the group every issun relay picks first: GnuTLS's
   * default also generates a P-256 share, one more key generation (about a
   * tenth of a client handshake's CPU) that the server then ignores.  A
   * server without X25519 still works, one round trip later
   * (HelloRetryRequest). */
  if (gnutls_init(&sess, GNUTLS_CLIENT | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA |
                             GNUTLS_KEY_SHARE_TOP) != 0)
    return -1;
  if (gnutls_priority_set(sess, client_prio) != 0)
    goto fail;
  if (ngtcp2_crypto_gnutls_configure_client_session(sess) != 0)
    goto fail;
  if (gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, c->cred) != 0)
    goto fail;
  if (gnutls_alpn_set_protocols(sess, &alpn_issun, 1, GNUTLS_ALPN_MANDATORY) != 0)
    goto fail;
  if (host[0] && !ip && gnutls_server_name_set(sess, GNUTLS_NAME_DNS, host, strlen(host)) != 0)
    goto fail;
  /* With an IP literal, GnuTLS 3.7 matches the certificate's IP SANs. */
  if (c->mode == MODE_CA) {
    const char *kept = intern_name(c, host);
    if (!kept)
      goto fail;
    gnutls_session_set_verify_cert(sess, kept, 0);
  }
  gnutls_handshake_set_hook_function(sess, GNUTLS_HANDSHAKE_FINISHED, GNUTLS_HOOK_POST,
                                     hook_client);
  *out = sess;
  return 0;
fail:
  gnutls_deinit(sess);
  return -1;
}

int iq_tls_client_check_peer(iq_tls_client *c, gnutls_session_t sess, char *err, size_t errlen) {
  const gnutls_datum_t *certs;
  unsigned n = 0;
  uint8_t digest[32];
  char have[IQ_FPR_HEX_LEN + 1], want[IQ_FPR_HEX_LEN + 1];

  if (c->mode != MODE_PIN)
    return 0;
  certs = gnutls_certificate_get_peers(sess, &n);
  if (!certs || n == 0) {
    set_err(err, errlen, "the server presented no certificate to check the pin against");
    return -1;
  }
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, certs[0].data, certs[0].size, digest) < 0) {
    set_err(err, errlen, "cannot hash the server's certificate");
    return -1;
  }
  if (memcmp(digest, c->pin, sizeof(digest)) != 0) {
    hex_fpr(digest, have);
    hex_fpr(c->pin, want);
    set_err(err, errlen, "server certificate fingerprint %s does not match the pin %s", have, want);
    return -1;
  }
  return 0;
}

void iq_tls_client_verify_error(gnutls_session_t sess, char *err, size_t errlen) {
  static const struct {
    unsigned bit;
    const char *text;
  } reasons[] = {
      {GNUTLS_CERT_SIGNER_NOT_FOUND, "certificate signer not trusted"},
      {GNUTLS_CERT_UNEXPECTED_OWNER, "host name mismatch"},
      {GNUTLS_CERT_EXPIRED, "certificate expired"},
      {GNUTLS_CERT_NOT_ACTIVATED, "certificate not yet valid"},
      {GNUTLS_CERT_REVOKED, "certificate revoked"},
      {GNUTLS_CERT_SIGNER_NOT_CA, "certificate signer is not a CA"},
      {GNUTLS_CERT_INSECURE_ALGORITHM, "insecure signature algorithm"},
      {GNUTLS_CERT_SIGNATURE_FAILURE, "bad certificate signature"},
      {GNUTLS_CERT_PURPOSE_MISMATCH, "certificate not meant for TLS servers"},
  };
  unsigned status = gnutls_session_get_verify_cert_status(sess);
  gnutls_datum_t txt = {NULL, 0};
  size_t off = 0;

  if (!err || errlen == 0)
    return;
  err[0] = '\0';
  if (status == 0 || status == (unsigned)-1)
    return;
  for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]) && off < errlen; i++) {
    if (!(status & reasons[i].bit))
      continue;
    int w = snprintf(err + off, errlen - off, "%s%s", off ? ", " : "", reasons[i].text);
    if (w < 0)
      break;
    off += (size_t)w;
  }
  if (off < errlen &&
      gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &txt, 0) == 0) {
    snprintf(err + off, errlen - off, "%s%s", off ? ": " : "", (const char *)txt.data);
    gnutls_free(txt.data);
  } else if (off == 0) {
    snprintf(err, errlen, "certificate verification failed (status 0x%x)", status);
  }
  for (size_t n = strlen(err); n > 0 && err[n - 1] == ' '; n--)
    err[n - 1] = '\0';
}
