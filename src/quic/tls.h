/*
 * TLS 1.3 for QUIC on GnuTLS, shared by the server and libissun:
 * certificates (PEM chains with ECDSA, Ed25519 or RSA keys, or an in-memory
 * self-signed ECDSA P-256 one), SHA-256 fingerprints, ALPN "issun/1", and
 * the client's verification modes (CA store, CA file, pinned fingerprint,
 * insecure).  Sessions come out ready for ngtcp2_crypto_gnutls: configured
 * for QUIC, with credentials, priorities (TLS 1.3 only) and ALPN set.  The
 * caller still sets gnutls_session_set_ptr() to its ngtcp2_crypto_conn_ref.
 */
#ifndef ISSUN_QUIC_TLS_H
#define ISSUN_QUIC_TLS_H

#include <gnutls/gnutls.h>
#include <stddef.h>
#include <stdint.h>

#define IQ_ALPN "issun/1"
#define IQ_FPR_HEX_LEN 95 /* "AB:CD:...": 32 bytes as hex pairs joined by ':' */

typedef struct iq_tls_server iq_tls_server;

/* Loads cert_path (a PEM chain, leaf first) and key_path (PEM: ECDSA,
 * Ed25519 or RSA, PKCS#8 or traditional).  When cert_path does not exist
 * and allow_generate is 1, generates a self-signed ECDSA P-256 certificate
 * in memory (CN=localhost, SAN localhost, 127.0.0.1, ::1, valid 1 year) and
 * sets *generated = 1.  Returns 0, or -1 with a readable reason in err
 * (naming the path and what is wrong with it). */
int iq_tls_server_new(iq_tls_server **out, const char *cert_path, const char *key_path,
                      int allow_generate, int *generated, char *err, size_t errlen);
void iq_tls_server_free(iq_tls_server *s);

/* The leaf certificate's SHA-256 fingerprint, "AB:CD:..." (uppercase). */
const char *iq_tls_server_fingerprint(const iq_tls_server *s);

/* A new server session for one QUIC connection.  allow_legacy 0: the
 * handshake fails (alert no_application_protocol) unless the client offers
 * ALPN "issun/1"; 1: a client offering no ALPN at all is also accepted (a
 * legacy connection).  A client offering only other protocols always fails.
 * Returns 0 or -1. */
int iq_tls_server_session(iq_tls_server *s, int allow_legacy, gnutls_session_t *out);

/* Lifetime and hooks (server and client sessions alike): a session uses its
 * iq_tls_server's / iq_tls_client's credentials (and a client's copy of the
 * verified host name), so gnutls_deinit() every session before freeing the
 * object it came from.  The ALPN checks are GnuTLS handshake hooks (server:
 * ClientHello; client: the server's Finished): do not call
 * gnutls_handshake_set_hook_function() on these sessions, it would replace
 * them. */

/* 1 when the session negotiated ALPN "issun/1", 0 when it negotiated none. */
int iq_tls_alpn_is_issun(gnutls_session_t sess);

typedef struct iq_tls_client_opts {
  const char *ca_file;    /* NULL: the system CA store */
  const char *pin_sha256; /* hex, colons optional, case-insensitive; NULL: no pin */
  int insecure;           /* 1: no verification at all (development only) */
} iq_tls_client_opts;

typedef struct iq_tls_client iq_tls_client;

/* Returns 0, or -1 with the reason in err (unreadable CA file, bad pin). */
int iq_tls_client_new(iq_tls_client **out, const iq_tls_client_opts *o, char *err, size_t errlen);
void iq_tls_client_free(iq_tls_client *c);

/* A new client session offering ALPN "issun/1", SNI = server_name (unless it
 * is an IP literal).  With a CA (default or file) and no pin, the chain and
 * the host name are verified during the handshake.  With a pin, verification
 * is by fingerprint only (see iq_tls_client_check_peer).  Returns 0 or -1. */
int iq_tls_client_session(iq_tls_client *c, const char *server_name, gnutls_session_t *out);

/* With a pin, ca_file and insecure are ignored.  Not thread-safe per client:
 * iq_tls_client_session() records the host name in `c`. */

/* Called by the client once the handshake completed, before any application
 * data is sent: checks the pin (when set) against the peer's leaf
 * certificate.  Returns 0, or -1 with the reason in err. */
int iq_tls_client_check_peer(iq_tls_client *c, gnutls_session_t sess, char *err, size_t errlen);

/* After a failed handshake: a readable reason for a verification failure
 * ("certificate signer not trusted", "host name mismatch", ...) or an empty
 * string when verification was not the cause. */
void iq_tls_client_verify_error(gnutls_session_t sess, char *err, size_t errlen);

/* SHA-256 of a DER certificate as "AB:CD:..." into out (>= IQ_FPR_HEX_LEN+1). */
void iq_tls_fingerprint_der(const uint8_t *der, size_t len, char *out);

#endif
