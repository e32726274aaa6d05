/*
 * libissun internals shared by client.c and bus.c, and the TEST HOOKS used
 * by the integration tests (tests/integration/it_*.c).
 *
 * The issun__* hooks are not part of the public API: they are not marked
 * ISSUN_API, so the shared library (built with -fvisibility=hidden) does not
 * export them; tests link the static library (issun_static), where they are
 * ordinary symbols.  They exist to make a client misbehave on purpose, so
 * the server's reactions can be tested with a real QUIC stack.
 *
 * All hooks take a client created with issun_client_new(), are called from
 * the thread that polls it, and return 0 or a negative ISSUN_ERR_* unless
 * documented otherwise.
 */
#ifndef ISSUN_CLIENT_INTERNAL_H
#define ISSUN_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "issun/issun.h"

/* ---- test hooks ------------------------------------------------------ */

/* Do not send HELLO automatically after the handshake (call before
 * connect).  The session stream is still opened locally, but QUIC tells the
 * server about a stream only with its first byte: until the test sends
 * something with issun__send_raw_stream() (its own first frame, or just a
 * partial header to hold the stream open without a frame), the server has
 * no stream to answer on, so an ERROR before its close cannot reach us.
 * Watch the answers with a raw frame callback.  With skip on,
 * issun_client_connect() returns 0 as soon as the QUIC handshake is complete
 * (state stays CONNECTING until an ACK arrives, if one ever does), and the
 * client applies no HELLO/ACK deadline of its own. */
int issun__set_skip_hello(issun_client *c, int skip);

/* Called for every frame received, before the library handles it:
 * from_datagram 1 for a DATAGRAM (the whole datagram as one frame when it
 * parses, else type 0 and the raw bytes), 0 for the session stream.
 * payload is borrowed for the call.  NULL cb removes it. */
typedef void (*issun__raw_frame_cb)(issun_client *c, int from_datagram, uint8_t type,
                                    const uint8_t *payload, size_t len, void *user_data);
int issun__set_raw_frame_cb(issun_client *c, issun__raw_frame_cb cb, void *user_data);

/* Appends raw bytes (any content: partial, malformed or several frames) to
 * the session stream send buffer, bypassing validation and the ACK gate.
 * Needs a handshaken connection (state CONNECTING after the handshake, or
 * CONNECTED).  Written on the next poll. */
int issun__send_raw_stream(issun_client *c, const void *data, size_t len);

/* Sends raw bytes as one QUIC DATAGRAM on the next poll (no validation).
 * Returns ISSUN_ERR_NO_DATAGRAM when the server did not advertise DATAGRAM
 * support, ISSUN_ERR_TOO_LARGE when it does not fit. */
int issun__send_raw_datagram(issun_client *c, const void *data, size_t len);

/* Opens one more stream (bidirectional when bidi is 1, else
 * unidirectional), writes data (may be empty) and FIN when fin is 1.
 * *stream_id (may be NULL) gets its id.  Returns ISSUN_ERR_QUEUE_FULL when
 * the server gives no stream credit. */
int issun__open_stream(issun_client *c, int bidi, const void *data, size_t len, int fin,
                       int64_t *stream_id);

/* Sends a TLS KeyUpdate handshake message in a CRYPTO frame at the
 * 1-RTT level, as no QUIC client may (RFC 9001, 6): what a hostile peer
 * would send to poke at the server's TLS state after the handshake. */
int issun__send_post_handshake_crypto(issun_client *c);

/* stop 1: stop reading — received session-stream data is still processed,
 * but stream and connection flow-control credit is no longer extended, so
 * the server's backlog for this client grows.  stop 0: resume (and extend
 * credit for everything consumed meanwhile). */
int issun__stop_reading(issun_client *c, int stop);

/* stop 1: send no HEARTBEAT frames, and no QUIC PINGs of our own (the QUIC
 * stack still acknowledges packets).  Also disables our 3 x heartbeat
 * liveness check, so the test sees the server's TIMEOUT. */
int issun__stop_heartbeats(issun_client *c, int stop);

/* The last connection's CONNECTION_CLOSE as received: *code and *is_app
 * (1: application error, i.e. a wire code; 0: QUIC transport error).
 * Returns ISSUN_ERR_STATE when no CONNECTION_CLOSE was received. */
int issun__close_error(const issun_client *c, uint64_t *code, int *is_app);

/* Finishes (FIN) the session stream after whatever is queued.  Further
 * sends fail with ISSUN_ERR_STATE. */
int issun__finish_stream(issun_client *c);

/* Simulates a network cut: closes the UDP socket and opens a new one bound
 * to a new local port.  keep_connection 1: the QUIC connection carries on
 * from the new port (NAT rebinding: the server sees a new path and
 * migrates).  keep_connection 0: the QUIC connection is abandoned silently
 * (no CONNECTION_CLOSE): the server only learns by its timeouts, and this
 * client treats it as a dropped network (reconnect with resume, when
 * enabled). */
int issun__cut_socket(issun_client *c, int keep_connection);

/* The current resume secret (from the last ACK).  Returns ISSUN_ERR_STATE
 * when no ACK was received. */
int issun__resume_secret(const issun_client *c, uint8_t out[16]);

/* The NodeId and resume secret the next HELLO carries (to take over another
 * handle's session).  Call before connect. */
int issun__set_resume(issun_client *c, uint64_t node_id, const uint8_t secret[16]);

/* The local UDP port of the current socket, or 0. */
uint16_t issun__local_port(const issun_client *c);

/* ---- internal: bus <-> client --------------------------------------- */

struct issun_bus;

/* Called by the client for each received EVENT when a bus is attached. */
void issun_bus__on_remote(struct issun_bus *b, const issun_event *ev);

/* Set/clear the bus attached to a client (one at most). */
int issun_client__set_bus(issun_client *c, struct issun_bus *b);
struct issun_bus *issun_client__bus(const issun_client *c);

/* issun_client_send() that also reports the metadata given to the event. */
int issun_client__send_meta(issun_client *c, const char *type_name, size_t type_name_len,
                            issun_scope scope, uint64_t target, issun_delivery delivery,
                            const void *payload, size_t payload_len, issun_event_meta *meta);

/* Unix time in milliseconds. */
uint64_t issun__unix_ms(void);

#endif
