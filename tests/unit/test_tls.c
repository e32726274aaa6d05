/*
 * tls: certificates (generated, and PEM chains made at test time with the
 * openssl CLI: ECDSA P-256, Ed25519 and RSA-2048 leaves under a test CA),
 * the errors for bad files, fingerprints against openssl's, pin parsing,
 * and real TLS 1.3 handshakes between iq_tls_client_session and
 * iq_tls_server_session carried by two in-memory ngtcp2 connections (no
 * sockets; packets are handed over directly, with a fake clock): ALPN
 * enforcement (issun/1, none, legacy, foreign), CA verification by name and
 * by IP SAN, pins, insecure mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <ftw.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quic/tls.h"

#define ALERT_NO_APPLICATION_PROTOCOL 120

static const char test_priority[] =
    "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+GROUP-X25519";

/* ---- files made with openssl ------------------------------------------- */

typedef struct fixture {
  char dir[64];
  char path[64][320]; /* by enum file */
} fixture;

enum file {
  F_CA,       /* test CA certificate */
  F_OTHER_CA, /* an unrelated CA */
  F_EC_CHAIN, /* ECDSA P-256 leaf + CA, SEC1 key */
  F_EC_KEY,
  F_EC_LEAF, /* leaf alone, PEM and DER */
  F_EC_LEAF_DER,
  F_ED_CHAIN, /* Ed25519 leaf + CA, PKCS#8 key */
  F_ED_KEY,
  F_ED_LEAF,
  F_RSA_CHAIN, /* RSA-2048 leaf + CA, traditional "RSA PRIVATE KEY" */
  F_RSA_KEY,
  F_RSA_LEAF,
  F_UNSORTED, /* CA first, then the ECDSA leaf */
  F_GARBAGE,  /* not PEM */
  F_ENC_KEY,  /* the ECDSA key encrypted with a passphrase */
  F_MISSING,  /* never created */
  F_COUNT
};

static const char *const file_names[F_COUNT] = {
    "ca.pem",       "other-ca.pem", "ec-chain.pem", "ec.key",        "ec-leaf.pem", "ec-leaf.der",
    "ed-chain.pem", "ed.key",       "ed-leaf.pem",  "rsa-chain.pem", "rsa.key",     "rsa-leaf.pem",
    "unsorted.pem", "garbage.pem",  "enc.key",      "missing.pem",
};

static int run(const fixture *fx, const char *cmd) {
  char full[2048];
  snprintf(full, sizeof(full), "cd '%s' && (%s) >>openssl.log 2>&1", fx->dir, cmd);
  int rv = system(full);
  if (rv != 0)
    fprintf(stderr, "command failed (%d): %s (see %s/openssl.log)\n", rv, cmd, fx->dir);
  return rv;
}

static const char ext_cnf[] = "basicConstraints=critical,CA:FALSE\n"
                              "keyUsage=critical,digitalSignature\n"
                              "extendedKeyUsage=serverAuth\n"
                              "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n";

static int make_leaf(const fixture *fx, const char *name, const char *genkey, int serial) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "%s && openssl req -new -key %s.key -subj /CN=localhost -out %s.csr && "
           "openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -set_serial %d -days 30 "
           "-sha256 -extfile leaf.cnf -out %s-leaf.pem && "
           "cat %s-leaf.pem ca.pem > %s-chain.pem",
           genkey, name, name, name, serial, name, name, name);
  return run(fx, cmd);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static int group_teardown(void **state) {
  fixture *fx = *state;
  if (!fx)
    return 0;
  if (fx->dir[0])
    nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(fx);
  return 0;
}

static int group_setup(void **state) {
  fixture *fx = calloc(1, sizeof(*fx));
  FILE *f;
  if (!fx)
    return -1;
  *state = fx;
  snprintf(fx->dir, sizeof(fx->dir), "/tmp/issun-tls-XXXXXX");
  if (!mkdtemp(fx->dir))
    return -1;
  for (int i = 0; i < F_COUNT; i++)
    snprintf(fx->path[i], sizeof(fx->path[i]), "%s/%s", fx->dir, file_names[i]);

  char cnf[128];
  snprintf(cnf, sizeof(cnf), "%s/leaf.cnf", fx->dir);
  if (!(f = fopen(cnf, "w")))
    return -1;
  fputs(ext_cnf, f);
  fclose(f);

  if (run(fx, "openssl ecparam -name prime256v1 -genkey -noout -out ca.key && "
              "openssl req -x509 -new -key ca.key -subj '/CN=issun test CA' -days 30 -sha256 "
              "-addext basicConstraints=critical,CA:TRUE "
              "-addext keyUsage=critical,keyCertSign,cRLSign -out ca.pem") ||
      run(fx, "openssl ecparam -name prime256v1 -genkey -noout -out other.key && "
              "openssl req -x509 -new -key other.key -subj '/CN=other CA' -days 30 -sha256 "
              "-addext basicConstraints=critical,CA:TRUE "
              "-addext keyUsage=critical,keyCertSign,cRLSign -out other-ca.pem") ||
      make_leaf(fx, "ec", "openssl ecparam -name prime256v1 -genkey -noout -out ec.key", 101) ||
      make_leaf(fx, "ed", "openssl genpkey -algorithm ED25519 -out ed.key", 102) ||
      make_leaf(fx, "rsa", "openssl genrsa -traditional -out rsa.key 2048", 103) ||
      run(fx, "openssl x509 -in ec-leaf.pem -outform DER -out ec-leaf.der") ||
      run(fx, "cat ca.pem ec-leaf.pem > unsorted.pem") ||
      run(fx, "printf 'this is not a certificate\\n' > garbage.pem") ||
      run(fx, "openssl pkey -in ec.key -aes256 -passout pass:secret -out enc.key"))
    return -1;
  return 0;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (!f)
    return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
      buf[n] = '\0';
      *len = (size_t)n;
    } else {
      free(buf);
      buf = NULL;
    }
  }
  fclose(f);
  return buf;
}

/* openssl's own SHA-256 fingerprint of a PEM certificate, "AB:CD:...". */
static void openssl_fpr(const fixture *fx, const char *pem, char out[IQ_FPR_HEX_LEN + 1]) {
  char cmd[512], line[256];
  snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -noout -fingerprint -sha256", pem);
  FILE *p = popen(cmd, "r");
  (void)fx;
  assert_non_null(p);
  assert_non_null(fgets(line, sizeof(line), p));
  pclose(p);
  char *eq = strchr(line, '=');
  assert_non_null(eq);
  eq[1 + IQ_FPR_HEX_LEN] = '\0';
  assert_int_equal(strlen(eq + 1), IQ_FPR_HEX_LEN);
  strcpy(out, eq + 1);
}

static void assert_fpr_format(const char *fpr) {
  assert_int_equal(strlen(fpr), IQ_FPR_HEX_LEN);
  for (int i = 0; i < IQ_FPR_HEX_LEN; i++) {
    if (i % 3 == 2)
      assert_int_equal(fpr[i], ':');
    else
      assert_true(isxdigit((unsigned char)fpr[i]) && !islower((unsigned char)fpr[i]));
  }
}

static void assert_contains(const char *s, const char *part) {
  if (!strstr(s, part)) {
    print_error("'%s' does not contain '%s'\n", s, part);
    fail();
  }
}

/* ---- server credentials ------------------------------------------------- */

static void test_generate(void **state) {
  iq_tls_server *s = NULL, *s2 = NULL;
  char err[256] = "";
  int gen = 0;
  fixture *fx = *state;
  assert_int_equal(
      iq_tls_server_new(&s, fx->path[F_MISSING], fx->path[F_MISSING], 1, &gen, err, sizeof(err)),
      0);
  assert_non_null(s);
  assert_int_equal(gen, 1);
  assert_fpr_format(iq_tls_server_fingerprint(s));
  assert_int_equal(iq_tls_server_new(&s2, NULL, NULL, 1, NULL, err, sizeof(err)), 0);
  /* a fresh random key each time */
  assert_string_not_equal(iq_tls_server_fingerprint(s), iq_tls_server_fingerprint(s2));
  iq_tls_server_free(s);
  iq_tls_server_free(s2);
  iq_tls_server_free(NULL);
}

static void test_load_chains(void **state) {
  static const int chains[][3] = {
      {F_EC_CHAIN, F_EC_KEY, F_EC_LEAF},
      {F_ED_CHAIN, F_ED_KEY, F_ED_LEAF},
      {F_RSA_CHAIN, F_RSA_KEY, F_RSA_LEAF},
  };
  fixture *fx = *state;
  for (size_t i = 0; i < 3; i++) {
    iq_tls_server *s = NULL;
    char err[256] = "", want[IQ_FPR_HEX_LEN + 1];
    int gen = -1;
    /* allow_generate is irrelevant when the file exists */
    int rv = iq_tls_server_new(&s, fx->path[chains[i][0]], fx->path[chains[i][1]], 1, &gen, err,
                               sizeof(err));
    if (rv != 0) {
      print_error("%s: %s\n", fx->path[chains[i][0]], err);
      fail();
    }
    assert_int_equal(gen, 0);
    openssl_fpr(fx, fx->path[chains[i][2]], want);
    assert_string_equal(iq_tls_server_fingerprint(s), want);
    iq_tls_server_free(s);
  }
}

static void expect_server_error(const char *cert, const char *key, int allow_generate,
                                const char *part1, const char *part2) {
  iq_tls_server *s = (iq_tls_server *)(uintptr_t)1;
  char err[512] = "";
  int gen = -1;
  assert_int_equal(iq_tls_server_new(&s, cert, key, allow_generate, &gen, err, sizeof(err)), -1);
  assert_null(s);
  assert_int_equal(gen, 0);
  assert_contains(err, part1);
  if (part2)
    assert_contains(err, part2);
}

static void test_server_errors(void **state) {
  fixture *fx = *state;
  /* missing certificate, generation not allowed */
  expect_server_error(fx->path[F_MISSING], fx->path[F_EC_KEY], 0, fx->path[F_MISSING],
                      "does not exist");
  /* missing key */
  expect_server_error(fx->path[F_EC_CHAIN], fx->path[F_MISSING], 1, fx->path[F_MISSING],
                      "does not exist");
  expect_server_error(fx->path[F_EC_CHAIN], fx->path[F_MISSING], 0, "key file", NULL);
  /* key of another certificate */
  expect_server_error(fx->path[F_EC_CHAIN], fx->path[F_RSA_KEY], 0, "does not match",
                      fx->path[F_RSA_KEY]);
  expect_server_error(fx->path[F_ED_CHAIN], fx->path[F_EC_KEY], 0, "does not match",
                      fx->path[F_ED_CHAIN]);
  /* chain in the wrong order */
  expect_server_error(fx->path[F_UNSORTED], fx->path[F_EC_KEY], 0, fx->path[F_UNSORTED],
                      "out of order");
  /* not PEM */
  expect_server_error(fx->path[F_GARBAGE], fx->path[F_EC_KEY], 0, fx->path[F_GARBAGE],
                      "no readable PEM certificate");
  expect_server_error(fx->path[F_EC_CHAIN], fx->path[F_GARBAGE], 0, fx->path[F_GARBAGE],
                      "no readable PEM private key");
  expect_server_error(fx->path[F_EC_CHAIN], fx->path[F_EC_CHAIN], 0, fx->path[F_EC_CHAIN],
                      "private key");
  /* passphrase-protected key */
  expect_server_error(fx->path[F_EC_CHAIN], fx->path[F_ENC_KEY], 0, fx->path[F_ENC_KEY],
                      "encrypted");
  /* a directory */
  expect_server_error(fx->dir, fx->path[F_EC_KEY], 1, fx->dir, "directory");
  /* nothing given */
  expect_server_error(NULL, NULL, 0, "no certificate", NULL);
  /* unreadable (only meaningful when not root) */
  if (geteuid() != 0) {
    char locked[400];
    snprintf(locked, sizeof(locked), "%s/locked.pem", fx->dir);
    assert_int_equal(run(fx, "cp ec-chain.pem locked.pem && chmod 000 locked.pem"), 0);
    expect_server_error(locked, fx->path[F_EC_KEY], 1, locked, "ermission denied");
  }
}

static void test_fingerprint_der(void **state) {
  fixture *fx = *state;
  size_t len = 0;
  char *der = slurp(fx->path[F_EC_LEAF_DER], &len);
  char got[IQ_FPR_HEX_LEN + 1], want[IQ_FPR_HEX_LEN + 1];
  assert_non_null(der);
  iq_tls_fingerprint_der((const uint8_t *)der, len, got);
  openssl_fpr(fx, fx->path[F_EC_LEAF], want);
  assert_string_equal(got, want);
  assert_fpr_format(got);
  /* one bit of difference changes it */
  der[len / 2] ^= 1;
  iq_tls_fingerprint_der((const uint8_t *)der, len, got);
  assert_string_not_equal(got, want);
  free(der);
  /* SHA-256("") */
  iq_tls_fingerprint_der((const uint8_t *)"", 0, got);
  assert_string_equal(got, "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:"
                           "27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55");
}

/* ---- client options ------------------------------------------------------- */

static void test_pin_parsing(void **state) {
  static const char *const good[] = {
      ("E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:"
       "B8:55"),
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
      "e3:b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8:55",
  };
  static const char *const bad[] = {
      "",
      "e3b0",
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",   /* 63 digits */
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555", /* 65 */
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855aa",
      "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "e:3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "e3::b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:",
      ":e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      " e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    iq_tls_client *c = NULL;
    char err[256] = "";
    iq_tls_client_opts o = {NULL, good[i], 0};
    if (iq_tls_client_new(&c, &o, err, sizeof(err)) != 0) {
      print_error("pin '%s' refused: %s\n", good[i], err);
      fail();
    }
    iq_tls_client_free(c);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    iq_tls_client *c = (iq_tls_client *)(uintptr_t)1;
    char err[256] = "";
    iq_tls_client_opts o = {NULL, bad[i], 0};
    if (iq_tls_client_new(&c, &o, err, sizeof(err)) != -1) {
      print_error("pin '%s' accepted\n", bad[i]);
      fail();
    }
    assert_null(c);
    assert_contains(err, "pin");
    assert_contains(err, bad[i]);
  }
}

static void test_ca_file_errors(void **state) {
  fixture *fx = *state;
  iq_tls_client *c = NULL;
  char err[512] = "";
  iq_tls_client_opts o = {fx->path[F_MISSING], NULL, 0};
  assert_int_equal(iq_tls_client_new(&c, &o, err, sizeof(err)), -1);
  assert_null(c);
  assert_contains(err, fx->path[F_MISSING]);
  assert_contains(err, "does not exist");

  o.ca_file = fx->path[F_GARBAGE];
  assert_int_equal(iq_tls_client_new(&c, &o, err, sizeof(err)), -1);
  assert_contains(err, fx->path[F_GARBAGE]);

  o.ca_file = fx->path[F_CA];
  assert_int_equal(iq_tls_client_new(&c, &o, err, sizeof(err)), 0);
  /* a CA-verified session needs a name to verify */
  gnutls_session_t sess = NULL;
  assert_int_equal(iq_tls_client_session(c, NULL, &sess), -1);
  assert_int_equal(iq_tls_client_session(c, "", &sess), -1);
  assert_null(sess);
  assert_int_equal(iq_tls_client_session(c, "localhost", &sess), 0);
  /* nothing verified yet: no verification error to report */
  iq_tls_client_verify_error(sess, err, sizeof(err));
  assert_string_equal(err, "");
  /* no pin: nothing for check_peer to refuse */
  assert_int_equal(iq_tls_client_check_peer(c, sess, err, sizeof(err)), 0);
  gnutls_deinit(sess);
  iq_tls_client_free(c);
}

static void test_system_store(void **state) {
  iq_tls_client *c = NULL;
  char err[256] = "";
  /* containers may ship without CA certificates: then the error says so */
  if (iq_tls_client_new(&c, NULL, err, sizeof(err)) == 0) {
    gnutls_session_t sess = NULL;
    assert_int_equal(iq_tls_client_session(c, "relay.example.com", &sess), 0);
    gnutls_deinit(sess);
    iq_tls_client_free(c);
  } else {
    assert_contains(err, "system CA store");
  }
}

/* ---- in-memory QUIC handshakes ------------------------------------------- */

typedef struct endpoint {
  ngtcp2_conn *conn;
  ngtcp2_crypto_conn_ref ref;
  gnutls_session_t tls;
  struct sockaddr_in addr;
  int rv;          /* first fatal ngtcp2 error */
  uint8_t alert;   /* TLS alert this side raised */
  int peer_closed; /* CONNECTION_CLOSE received */
  uint64_t close_code;
} endpoint;

typedef struct hs {
  endpoint c, s;
  ngtcp2_tstamp ts;
} hs;

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
  return ((endpoint *)ref->user_data)->conn;
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                      void *user_data) {
  (void)conn;
  (void)user_data;
  if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  cid->datalen = cidlen;
  if (gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static void fill_callbacks(ngtcp2_callbacks *cb, int server) {
  memset(cb, 0, sizeof(*cb));
  if (server)
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  else {
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
  }
  cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb->encrypt = ngtcp2_crypto_encrypt_cb;
  cb->decrypt = ngtcp2_crypto_decrypt_cb;
  cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb->rand = rand_cb;
  cb->get_new_connection_id = new_cid_cb;
  cb->update_key = ngtcp2_crypto_update_key_cb;
  cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
}

static ngtcp2_path path_of(endpoint *self, endpoint *peer) {
  ngtcp2_path p = {{(ngtcp2_sockaddr *)&self->addr, sizeof(self->addr)},
                   {(ngtcp2_sockaddr *)&peer->addr, sizeof(peer->addr)},
                   NULL};
  return p;
}

static void make_server(hs *h, const uint8_t *pkt, size_t len) {
  ngtcp2_pkt_hd hd;
  ngtcp2_callbacks cb;
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  ngtcp2_cid scid;
  ngtcp2_path path = path_of(&h->s, &h->c);

  assert_int_equal(ngtcp2_accept(&hd, pkt, len), 0);
  fill_callbacks(&cb, 1);
  ngtcp2_settings_default(&settings);
  settings.initial_ts = h->ts;
  ngtcp2_transport_params_default(&params);
  params.original_dcid = hd.dcid;
  params.initial_max_streams_bidi = 1;
  params.initial_max_data = 65536;
  params.initial_max_stream_data_bidi_remote = 65536;
  scid.datalen = 8;
  assert_int_equal(gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen), 0);
  assert_int_equal(ngtcp2_conn_server_new(&h->s.conn, &hd.scid, &scid, &path, hd.version, &cb,
                                          &settings, &params, NULL, &h->s),
                   0);
  ngtcp2_conn_set_tls_native_handle(h->s.conn, h->s.tls);
}

static void make_client(hs *h) {
  ngtcp2_callbacks cb;
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  ngtcp2_cid dcid, scid;
  ngtcp2_path path = path_of(&h->c, &h->s);

  fill_callbacks(&cb, 0);
  ngtcp2_settings_default(&settings);
  settings.initial_ts = h->ts;
  ngtcp2_transport_params_default(&params);
  params.initial_max_streams_uni = 3;
  params.initial_max_data = 65536;
  params.initial_max_stream_data_bidi_local = 65536;
  dcid.datalen = 18;
  scid.datalen = 8;
  assert_int_equal(gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen), 0);
  assert_int_equal(gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen), 0);
  assert_int_equal(ngtcp2_conn_client_new(&h->c.conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb,
                                          &settings, &params, NULL, &h->c),
                   0);
  ngtcp2_conn_set_tls_native_handle(h->c.conn, h->c.tls);
}

static void hs_init(hs *h, gnutls_session_t client_tls, gnutls_session_t server_tls) {
  memset(h, 0, sizeof(*h));
  h->ts = 1000000000;
  h->c.addr.sin_family = h->s.addr.sin_family = AF_INET;
  h->c.addr.sin_addr.s_addr = h->s.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  h->c.addr.sin_port = htons(40000);
  h->s.addr.sin_port = htons(5000);
  h->c.tls = client_tls;
  h->s.tls = server_tls;
  /* the session's user pointer is ngtcp2's: the module must not need it */
  h->c.ref.get_conn = get_conn;
  h->c.ref.user_data = &h->c;
  h->s.ref.get_conn = get_conn;
  h->s.ref.user_data = &h->s;
  gnutls_session_set_ptr(client_tls, &h->c.ref);
  gnutls_session_set_ptr(server_tls, &h->s.ref);
  make_client(h);
}

static void hs_free(hs *h) {
  if (h->c.conn)
    ngtcp2_conn_del(h->c.conn);
  if (h->s.conn)
    ngtcp2_conn_del(h->s.conn);
  gnutls_deinit(h->c.tls);
  gnutls_deinit(h->s.tls);
}

static void deliver(hs *h, endpoint *to, endpoint *from, const uint8_t *pkt, size_t len);

/* `self` failed with rv: close the connection, telling the peer why. */
static void fail_endpoint(hs *h, endpoint *self, endpoint *peer, int rv) {
  ngtcp2_connection_close_error ccerr;
  uint8_t buf[1500];
  self->rv = rv;
  if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING)
    return;
  ngtcp2_connection_close_error_default(&ccerr);
  if (rv == NGTCP2_ERR_CRYPTO) {
    self->alert = ngtcp2_conn_get_tls_alert(self->conn);
    ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, self->alert, NULL, 0);
  } else {
    ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, NULL, 0);
  }
  ngtcp2_ssize n =
      ngtcp2_conn_write_connection_close(self->conn, NULL, NULL, buf, sizeof(buf), &ccerr, h->ts);
  if (n > 0)
    deliver(h, peer, self, buf, (size_t)n);
}

static void deliver(hs *h, endpoint *to, endpoint *from, const uint8_t *pkt, size_t len) {
  ngtcp2_path path = path_of(to, from);
  int rv;
  if (to->rv)
    return;
  if (!to->conn)
    make_server(h, pkt, len);
  rv = ngtcp2_conn_read_pkt(to->conn, &path, NULL, pkt, len, h->ts);
  if (rv == 0)
    return;
  if (rv == NGTCP2_ERR_DRAINING) {
    ngtcp2_connection_close_error ccerr;
    ngtcp2_conn_get_connection_close_error(to->conn, &ccerr);
    to->peer_closed = 1;
    to->close_code = ccerr.error_code;
  }
  fail_endpoint(h, to, from, rv);
}

/* Sends everything `self` has to send; returns the number of packets. */
static int flush(hs *h, endpoint *self, endpoint *peer) {
  uint8_t buf[65536];
  int count = 0;
  while (self->conn && !self->rv && !peer->rv) {
    ngtcp2_ssize n = ngtcp2_conn_write_pkt(self->conn, NULL, NULL, buf, sizeof(buf), h->ts);
    if (n < 0) {
      fail_endpoint(h, self, peer, (int)n);
      break;
    }
    if (n == 0)
      break;
    count++;
    deliver(h, peer, self, buf, (size_t)n);
  }
  return count;
}

static int done(hs *h) {
  return h->c.rv || h->s.rv ||
         (h->s.conn && ngtcp2_conn_get_handshake_completed(h->c.conn) &&
          ngtcp2_conn_get_handshake_completed(h->s.conn));
}

/* Runs the handshake to completion or failure; returns 0 when both sides
 * completed it. */
static int hs_run(hs *h) {
  for (int turn = 0; turn < 200 && !done(h); turn++) {
    int moved = flush(h, &h->c, &h->s);
    moved += flush(h, &h->s, &h->c);
    if (moved || done(h))
      continue;
    /* nothing to send: move the fake clock to the next timer */
    ngtcp2_tstamp next = ngtcp2_conn_get_expiry(h->c.conn);
    if (h->s.conn && ngtcp2_conn_get_expiry(h->s.conn) < next)
      next = ngtcp2_conn_get_expiry(h->s.conn);
    if (next == UINT64_MAX)
      break;
    if (next > h->ts)
      h->ts = next;
    if (ngtcp2_conn_handle_expiry(h->c.conn, h->ts) != 0)
      break;
    if (h->s.conn && ngtcp2_conn_handle_expiry(h->s.conn, h->ts) != 0)
      break;
  }
  if (h->c.rv || h->s.rv)
    return -1;
  return done(h) ? 0 : -1;
}

static iq_tls_server *server_from(const fixture *fx, int chain, int key) {
  iq_tls_server *s = NULL;
  char err[256];
  if (iq_tls_server_new(&s, fx->path[chain], fx->path[key], 0, NULL, err, sizeof(err)) != 0) {
    print_error("%s\n", err);
    fail();
  }
  return s;
}

static iq_tls_client *client_with(const char *ca, const char *pin, int insecure) {
  iq_tls_client *c = NULL;
  char err[256];
  iq_tls_client_opts o = {ca, pin, insecure};
  if (iq_tls_client_new(&c, &o, err, sizeof(err)) != 0) {
    print_error("%s\n", err);
    fail();
  }
  return c;
}

/* A client session built by hand, offering the given ALPN list (n may be
 * 0: no ALPN extension at all), verifying nothing. */
static gnutls_session_t raw_client(gnutls_certificate_credentials_t cred,
                                   const gnutls_datum_t *alpn, unsigned n) {
  gnutls_session_t sess;
  assert_int_equal(
      gnutls_init(&sess, GNUTLS_CLIENT | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA),
      0);
  assert_int_equal(gnutls_priority_set_direct(sess, test_priority, NULL), 0);
  assert_int_equal(ngtcp2_crypto_gnutls_configure_client_session(sess), 0);
  assert_int_equal(gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, cred), 0);
  if (n)
    assert_int_equal(gnutls_alpn_set_protocols(sess, alpn, n, 0), 0);
  return sess;
}

static gnutls_datum_t dat(const char *s) {
  gnutls_datum_t d = {(unsigned char *)s, (unsigned)strlen(s)};
  return d;
}

/* The server refuses: alert no_application_protocol, which reaches the
 * client as CONNECTION_CLOSE with CRYPTO_ERROR 0x100 + 120. */
static void assert_refused_alpn(const hs *h) {
  assert_int_equal(h->s.rv, NGTCP2_ERR_CRYPTO);
  assert_int_equal(h->s.alert, ALERT_NO_APPLICATION_PROTOCOL);
  assert_int_equal(h->c.peer_closed, 1);
  assert_int_equal(h->c.close_code, NGTCP2_CRYPTO_ERROR | ALERT_NO_APPLICATION_PROTOCOL);
}

static void test_hs_issun_pinned(void **state) {
  iq_tls_server *srv = NULL;
  char err[256];
  gnutls_session_t ss, cs;
  hs h;
  (void)state;
  assert_int_equal(iq_tls_server_new(&srv, NULL, NULL, 1, NULL, err, sizeof(err)), 0);
  iq_tls_client *cli = client_with(NULL, iq_tls_server_fingerprint(srv), 0);
  for (int legacy = 0; legacy <= 1; legacy++) {
    assert_int_equal(iq_tls_server_session(srv, legacy, &ss), 0);
    assert_int_equal(iq_tls_client_session(cli, "127.0.0.1", &cs), 0);
    hs_init(&h, cs, ss);
    assert_int_equal(hs_run(&h), 0);
    assert_int_equal(iq_tls_alpn_is_issun(ss), 1);
    assert_int_equal(iq_tls_alpn_is_issun(cs), 1);
    assert_int_equal(gnutls_protocol_get_version(cs), GNUTLS_TLS1_3);
    assert_int_equal(iq_tls_client_check_peer(cli, cs, err, sizeof(err)), 0);
    iq_tls_client_verify_error(cs, err, sizeof(err));
    assert_string_equal(err, "");
    hs_free(&h);
  }
  iq_tls_client_free(cli);
  iq_tls_server_free(srv);
}

static void test_hs_wrong_pin(void **state) {
  iq_tls_server *srv = NULL, *other = NULL;
  char err[512];
  gnutls_session_t ss, cs;
  hs h;
  (void)state;
  assert_int_equal(iq_tls_server_new(&srv, NULL, NULL, 1, NULL, err, sizeof(err)), 0);
  assert_int_equal(iq_tls_server_new(&other, NULL, NULL, 1, NULL, err, sizeof(err)), 0);
  iq_tls_client *cli = client_with(NULL, iq_tls_server_fingerprint(other), 0);
  assert_int_equal(iq_tls_server_session(srv, 0, &ss), 0);
  assert_int_equal(iq_tls_client_session(cli, "localhost", &cs), 0);
  hs_init(&h, cs, ss);
  assert_int_equal(hs_run(&h), 0); /* the pin is checked after the handshake */
  assert_int_equal(iq_tls_client_check_peer(cli, cs, err, sizeof(err)), -1);
  assert_contains(err, "does not match");
  assert_contains(err, iq_tls_server_fingerprint(srv));
  hs_free(&h);
  iq_tls_client_free(cli);
  iq_tls_server_free(srv);
  iq_tls_server_free(other);
}

static void test_hs_alpn_enforcement(void **state) {
  static const struct {
    const char *alpn[2];
    unsigned n;
    int legacy;
    int ok;    /* handshake completes */
    int issun; /* negotiated issun/1 */
  } cases[] = {
      {{NULL, NULL}, 0, 0, 0, 0}, /* no ALPN, strict: refused */
      {{NULL, NULL}, 0, 1, 1, 0}, /* no ALPN, legacy allowed: accepted, no ALPN */
      {{"h3", NULL}, 1, 0, 0, 0}, /* foreign ALPN: always refused */
      {{"h3", NULL}, 1, 1, 0, 0},      {{"issun/2", "issun"}, 2, 1, 0, 0}, /* near misses */
      {{"h3", "issun/1"}, 2, 0, 1, 1}, /* issun/1 among others */
      {{"issun/1", NULL}, 1, 0, 1, 1},
  };
  iq_tls_server *srv = NULL;
  gnutls_certificate_credentials_t cred;
  char err[256];
  (void)state;
  assert_int_equal(iq_tls_server_new(&srv, NULL, NULL, 1, NULL, err, sizeof(err)), 0);
  assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    gnutls_datum_t alpn[2];
    gnutls_session_t ss, cs;
    hs h;
    for (unsigned k = 0; k < cases[i].n; k++)
      alpn[k] = dat(cases[i].alpn[k]);
    assert_int_equal(iq_tls_server_session(srv, cases[i].legacy, &ss), 0);
    cs = raw_client(cred, alpn, cases[i].n);
    hs_init(&h, cs, ss);
    int rv = hs_run(&h);
    if ((rv == 0) != cases[i].ok) {
      print_error("case %zu: handshake %s (server rv %d alert %u)\n", i,
                  rv == 0 ? "completed" : "failed", h.s.rv, h.s.alert);
      fail();
    }
    if (cases[i].ok) {
      assert_int_equal(iq_tls_alpn_is_issun(ss), cases[i].issun);
      assert_int_equal(iq_tls_alpn_is_issun(cs), cases[i].issun);
    } else {
      assert_refused_alpn(&h);
    }
    hs_free(&h);
  }
  gnutls_certificate_free_credentials(cred);
  iq_tls_server_free(srv);
}

static void test_hs_ca_verification(void **state) {
  static const struct {
    int chain, key;
    const char *name;
  } ok[] = {
      {F_EC_CHAIN, F_EC_KEY, "localhost"},   {F_EC_CHAIN, F_EC_KEY, "127.0.0.1"},
      {F_EC_CHAIN, F_EC_KEY, "::1"},         {F_EC_CHAIN, F_EC_KEY, "[::1]"},
      {F_ED_CHAIN, F_ED_KEY, "127.0.0.1"},   {F_RSA_CHAIN, F_RSA_KEY, "127.0.0.1"},
      {F_RSA_CHAIN, F_RSA_KEY, "localhost"},
  };
  fixture *fx = *state;
  iq_tls_client *cli = client_with(fx->path[F_CA], NULL, 0);
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    iq_tls_server *srv = server_from(fx, ok[i].chain, ok[i].key);
    gnutls_session_t ss, cs;
    char err[512];
    hs h;
    assert_int_equal(iq_tls_server_session(srv, 0, &ss), 0);
    assert_int_equal(iq_tls_client_session(cli, ok[i].name, &cs), 0);
    hs_init(&h, cs, ss);
    if (hs_run(&h) != 0) {
      iq_tls_client_verify_error(cs, err, sizeof(err));
      print_error("%s as '%s': client rv %d alert %u: %s\n", file_names[ok[i].chain], ok[i].name,
                  h.c.rv, h.c.alert, err);
      fail();
    }
    assert_int_equal(iq_tls_alpn_is_issun(cs), 1);
    assert_int_equal(iq_tls_client_check_peer(cli, cs, err, sizeof(err)), 0);
    hs_free(&h);
    iq_tls_server_free(srv);
  }
  iq_tls_client_free(cli);
}

static void expect_verify_failure(const fixture *fx, iq_tls_client *cli, iq_tls_server *srv,
                                  const char *name, const char *reason) {
  gnutls_session_t ss, cs;
  char err[512];
  hs h;
  (void)fx;
  assert_int_equal(iq_tls_server_session(srv, 0, &ss), 0);
  assert_int_equal(iq_tls_client_session(cli, name, &cs), 0);
  hs_init(&h, cs, ss);
  assert_int_equal(hs_run(&h), -1);
  assert_int_equal(h.c.rv, NGTCP2_ERR_CRYPTO);
  assert_true(h.c.alert != 0);
  assert_int_equal(h.s.peer_closed, 1); /* the server learns of it */
  iq_tls_client_verify_error(cs, err, sizeof(err));
  assert_contains(err, reason);
  hs_free(&h);
}

static void test_hs_ca_failures(void **state) {
  fixture *fx = *state;
  iq_tls_server *srv = server_from(fx, F_EC_CHAIN, F_EC_KEY);
  iq_tls_server *self_signed = NULL;
  char err[256];
  iq_tls_client *cli = client_with(fx->path[F_CA], NULL, 0);
  iq_tls_client *other = client_with(fx->path[F_OTHER_CA], NULL, 0);
  assert_int_equal(iq_tls_server_new(&self_signed, NULL, NULL, 1, NULL, err, sizeof(err)), 0);

  expect_verify_failure(fx, cli, srv, "example.com", "host name mismatch");
  expect_verify_failure(fx, cli, srv, "10.0.0.1", "host name mismatch");
  expect_verify_failure(fx, cli, srv, "::2", "host name mismatch");
  expect_verify_failure(fx, other, srv, "localhost", "signer not trusted");
  expect_verify_failure(fx, cli, self_signed, "localhost", "signer not trusted");

  iq_tls_client_free(cli);
  iq_tls_client_free(other);
  iq_tls_server_free(srv);
  iq_tls_server_free(self_signed);
}

static void test_hs_insecure(void **state) {
  fixture *fx = *state;
  iq_tls_server *srv = server_from(fx, F_RSA_CHAIN, F_RSA_KEY);
  iq_tls_client *cli = client_with(NULL, NULL, 1);
  gnutls_session_t ss, cs;
  char err[256];
  hs h;
  assert_int_equal(iq_tls_server_session(srv, 0, &ss), 0);
  assert_int_equal(iq_tls_client_session(cli, "not-the-name.example", &cs), 0);
  hs_init(&h, cs, ss);
  assert_int_equal(hs_run(&h), 0);
  assert_int_equal(iq_tls_client_check_peer(cli, cs, err, sizeof(err)), 0);
  hs_free(&h);
  iq_tls_client_free(cli);
  iq_tls_server_free(srv);
}

/* Our client refuses a server that negotiates no ALPN. */
static void test_hs_client_requires_alpn(void **state) {
  fixture *fx = *state;
  gnutls_certificate_credentials_t cred;
  gnutls_session_t ss, cs;
  hs h;
  assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
  assert_true(gnutls_certificate_set_x509_key_file2(cred, fx->path[F_EC_CHAIN], fx->path[F_EC_KEY],
                                                    GNUTLS_X509_FMT_PEM, NULL, 0) >= 0);
  assert_int_equal(
      gnutls_init(&ss, GNUTLS_SERVER | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA), 0);
  assert_int_equal(gnutls_priority_set_direct(ss, test_priority, NULL), 0);
  assert_int_equal(ngtcp2_crypto_gnutls_configure_server_session(ss), 0);
  assert_int_equal(gnutls_credentials_set(ss, GNUTLS_CRD_CERTIFICATE, cred), 0);

  iq_tls_client *cli = client_with(fx->path[F_CA], NULL, 0);
  assert_int_equal(iq_tls_client_session(cli, "localhost", &cs), 0);
  hs_init(&h, cs, ss);
  assert_int_equal(hs_run(&h), -1);
  assert_int_equal(h.c.rv, NGTCP2_ERR_CRYPTO);
  assert_int_equal(h.c.alert, ALERT_NO_APPLICATION_PROTOCOL);
  assert_int_equal(h.s.peer_closed, 1);
  assert_int_equal(h.s.close_code, NGTCP2_CRYPTO_ERROR | ALERT_NO_APPLICATION_PROTOCOL);
  hs_free(&h);
  iq_tls_client_free(cli);
  gnutls_certificate_free_credentials(cred);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_generate),           cmocka_unit_test(test_load_chains),
      cmocka_unit_test(test_server_errors),      cmocka_unit_test(test_fingerprint_der),
      cmocka_unit_test(test_pin_parsing),        cmocka_unit_test(test_ca_file_errors),
      cmocka_unit_test(test_system_store),       cmocka_unit_test(test_hs_issun_pinned),
      cmocka_unit_test(test_hs_wrong_pin),       cmocka_unit_test(test_hs_alpn_enforcement),
      cmocka_unit_test(test_hs_ca_verification), cmocka_unit_test(test_hs_ca_failures),
      cmocka_unit_test(test_hs_insecure),        cmocka_unit_test(test_hs_client_requires_alpn),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
