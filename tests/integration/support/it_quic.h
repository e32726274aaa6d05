/*
 * Raw QUIC client packets for abuse tests: the real first Initial datagram
 * of a fresh connection (a ClientHello offering ALPN issun/1, padded to
 * 1200 bytes), made by ngtcp2 + GnuTLS and then abandoned.  Sending it and
 * never answering is a half-open handshake; sending many is an Initial
 * flood.
 */
#ifndef ISSUN_IT_QUIC_H
#define ISSUN_IT_QUIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct itq itq;

/* NULL on failure. */
itq *itq_new(void);
void itq_free(itq *q);

/* Writes the first Initial of a new connection from local to `to` into buf
 * (fresh random connection IDs every call).  token/tokenlen: a token to put
 * in the Initial (NULL: none), e.g. a forged Retry token.  Returns the
 * datagram length, or 0. */
size_t itq_initial(itq *q, const struct sockaddr *local, socklen_t llen, const struct sockaddr *to,
                   socklen_t tolen, const uint8_t *token, size_t tokenlen, uint8_t *buf,
                   size_t cap);

/* Writes a 1200-byte datagram that parses as a client Initial of QUIC v1
 * (random connection IDs, no token, a length that fits) but whose payload
 * is random, so it never decrypts.  Returns 1200. */
size_t itq_fake_initial(uint8_t *buf, unsigned *seed);

#endif
