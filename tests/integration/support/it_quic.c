#include "it_quic.h"

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quic/tls.h"

struct itq {
  iq_tls_client *tls;
};

typedef struct one {
  ngtcp2_conn *conn;
  ngtcp2_crypto_conn_ref ref;
} one;

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
  return ((one *)ref->user_data)->conn;
}

static void rand_cb(uint8_t *dest, size_t n, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  gnutls_rnd(GNUTLS_RND_NONCE, dest, n);
}

static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                      void *ud) {
  gnutls_rnd(GNUTLS_RND_NONCE, cid->data, cidlen);
  cid->datalen = cidlen;
  gnutls_rnd(GNUTLS_RND_NONCE, token, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

static const ngtcp2_callbacks cbs = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .rand = rand_cb,
    .get_new_connection_id = new_cid_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

itq *itq_new(void) {
  itq *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  iq_tls_client_opts o = {.insecure = 1};
  char err[256];
  if (iq_tls_client_new(&q->tls, &o, err, sizeof err) != 0) {
    free(q);
    return NULL;
  }
  return q;
}

void itq_free(itq *q) {
  if (!q) return;
  iq_tls_client_free(q->tls);
  free(q);
}

size_t itq_initial(itq *q, const struct sockaddr *local, socklen_t llen, const struct sockaddr *to,
                   socklen_t tolen, const uint8_t *token, size_t tokenlen, uint8_t *buf,
                   size_t cap) {
  one o = {0};
  gnutls_session_t sess = NULL;
  size_t out = 0;
  if (iq_tls_client_session(q->tls, "localhost", &sess) != 0) return 0;
  o.ref.get_conn = get_conn;
  o.ref.user_data = &o;
  gnutls_session_set_ptr(sess, &o.ref);

  ngtcp2_cid dcid, scid;
  dcid.datalen = 18;
  scid.datalen = 16;
  gnutls_rnd(GNUTLS_RND_NONCE, dcid.data, dcid.datalen);
  gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ngtcp2_tstamp now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = now;
  if (token) {
    settings.token.base = (uint8_t *)token;
    settings.token.len = tokenlen;
  }
  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_data = 65536;
  params.initial_max_stream_data_bidi_local = 65536;
  ngtcp2_path path = {.local = {(struct sockaddr *)local, llen},
                      .remote = {(struct sockaddr *)to, tolen}};
  if (ngtcp2_conn_client_new(&o.conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cbs, &settings,
                             &params, NULL, &o) != 0) {
    gnutls_deinit(sess);
    return 0;
  }
  ngtcp2_conn_set_tls_native_handle(o.conn, sess);
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi;
  ngtcp2_ssize n = ngtcp2_conn_write_pkt(o.conn, &ps.path, &pi, buf, cap, now);
  if (n > 0) out = (size_t)n;
  ngtcp2_conn_del(o.conn);
  gnutls_deinit(sess);
  return out;
}

size_t itq_fake_initial(uint8_t *pkt, unsigned *seed) {
  size_t len = 1200;
  for (size_t i = 0; i < len; i++) pkt[i] = (uint8_t)rand_r(seed);
  pkt[0] = 0xc3;                                   /* long header, Initial, 4-byte PN */
  pkt[1] = 0, pkt[2] = 0, pkt[3] = 0, pkt[4] = 1; /* QUIC v1 */
  pkt[5] = 8;                                      /* DCID: 8 random bytes follow */
  pkt[14] = 8;                                     /* SCID: 8 random bytes follow */
  pkt[23] = 0;                                     /* no token */
  pkt[24] = 0x44, pkt[25] = 0x96;                  /* length 1174: the rest of the datagram */
  return len;
}
